"""The held-out synthetic family (covidct.heldout): stated truth, confounders, determinism,
CLI, and that no training code imports it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from covidct.cli import main
from covidct.errors import ConfigError
from covidct.heldout import CONFOUNDERS, HeldoutParams, generate_heldout_case
from covidct.synth.case import slice_labels_rule

SMALL = {"matrix": 64, "slice_mm": 5.0}
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "covidct"


@pytest.fixture(scope="module")
def covid_case():
    return generate_heldout_case(3, HeldoutParams(covid=True, severity=0.1, confounders=(),
                                                  **SMALL))


@pytest.fixture(scope="module")
def plain_case():
    return generate_heldout_case(5, HeldoutParams(covid=False, confounders=(), **SMALL))


def test_covid_truth_matches_masks(covid_case):
    case, truth = covid_case, covid_case.truth
    voxel_cm3 = case.ct.voxel_volume_mm3 / 1000.0
    assert truth["label"] == "covid"
    assert truth["infection_volume_cm3"] == pytest.approx(
        int((case.infection > 0).sum()) * voxel_cm3)
    assert truth["lung_volume_cm3"] == pytest.approx(int((case.lung > 0).sum()) * voxel_cm3)
    assert not (case.infection.astype(bool) & (case.lung == 0)).any()  # lesions in the lung
    assert truth["slice_labels"] == slice_labels_rule(case.lung, case.infection).tolist()
    assert truth["positive_slices"] > 0
    # the drawn severity is met (placement stops once the fine-grid target is reached)
    assert 0.05 < truth["infection_fraction"] < 0.25
    assert {"ggo", "crazy_paving", "consolidation"} >= {les["pattern"]
                                                        for les in truth["lesions"]}
    assert case.ct.shape == case.lung.shape == case.infection.shape
    assert set(np.unique(case.lung)) <= {0, 1, 2}


def test_lesions_raise_lung_density(covid_case):
    hu, inf = covid_case.ct.hu, covid_case.infection > 0
    healthy = (covid_case.lung > 0) & ~inf
    assert np.median(hu[inf]) > np.median(hu[healthy]) + 200


def test_negative_plain_has_no_infection(plain_case):
    assert plain_case.truth["label"] == "negative"
    assert not plain_case.infection.any()
    assert plain_case.truth["infection_volume_cm3"] == 0.0
    lung_hu = plain_case.ct.hu[plain_case.lung > 0]
    assert -920 < np.median(lung_hu) < -780


def _finding_effect(name: str, case, base) -> bool:
    """Whether the confounder's signature shows against the same seed without it (same
    anatomy, vessels and noise: the seed's streams do not depend on the findings)."""
    hu, lung = case.ct.hu.astype(float), case.lung > 0
    bhu, blung = base.ct.hu.astype(float), base.lung > 0
    if name == "effusion":  # fluid replaces dorsal lung
        return lung.sum() < 0.97 * blung.sum() and ((hu > -100) & blung & ~lung).sum() > 50
    if name == "emphysema":
        return (hu[lung] < -950).mean() > (bhu[blung] < -950).mean() + 0.01
    denser = ((hu - bhu) > 50) & lung
    if name == "fibrosis":  # reticulation (denser) with honeycomb cysts (lighter)
        return int(denser.sum()) >= 500
    least = {"dependent": 500, "atelectasis": 500, "nodules": 10}[name]
    return int(denser.sum()) >= least and not ((bhu - hu) > 50)[lung].any()


@pytest.mark.parametrize("name", CONFOUNDERS)
def test_confounder_present_without_infection(name, plain_case):
    case = generate_heldout_case(5, HeldoutParams(covid=False, confounders=(name,), **SMALL))
    assert case.truth["label"] == "negative"
    assert case.truth["confounders"] == [name]
    assert not case.infection.any() and case.truth["positive_slices"] == 0
    assert _finding_effect(name, case, plain_case)


def test_same_seed_same_case_other_seed_differs(plain_case):
    again = generate_heldout_case(5, HeldoutParams(covid=False, confounders=(), **SMALL))
    np.testing.assert_array_equal(again.ct.hu, plain_case.ct.hu)
    np.testing.assert_array_equal(again.lung, plain_case.lung)
    strip = {"generation_s"}
    assert ({k: v for k, v in again.truth.items() if k not in strip}
            == {k: v for k, v in plain_case.truth.items() if k not in strip})
    other = generate_heldout_case(6, HeldoutParams(covid=False, confounders=(), **SMALL))
    assert other.ct.shape != plain_case.ct.shape or not np.array_equal(other.ct.hu,
                                                                       plain_case.ct.hu)


def test_params_reject_unknown_confounder():
    with pytest.raises(ConfigError, match="Unknown confounders"):
        HeldoutParams(confounders=("pneumothorax",))
    with pytest.raises(ConfigError, match="severity"):
        HeldoutParams(severity=1.5)


def test_cli_writes_the_training_layout(tmp_path, capsys):
    out = tmp_path / "heldout"
    code = main(["synth", str(out), "--family", "heldout", "--cases", "1", "--matrix", "48",
                 "--slice-mm", "5", "--covid-fraction", "1", "--severity", "0.08", "--quiet"])
    assert code == 0
    case_dir = out / "case_000"
    assert {p.name for p in case_dir.iterdir()} == {"ct.nii.gz", "lung.nii.gz",
                                                   "infection.nii.gz", "truth.json"}
    truth = json.loads((case_dir / "truth.json").read_text())
    assert truth["family"] == "heldout" and truth["label"] == "covid"
    from covidct.train.datasets import discover_cases, load_case

    loaded = load_case(discover_cases(out)[0])
    assert loaded.label == "covid"
    assert loaded.slice_labels.astype(int).tolist() == truth["slice_labels"]
    assert int(loaded.infection.sum()) * loaded.volume.voxel_volume_mm3 / 1000 == pytest.approx(
        truth["infection_volume_cm3"], rel=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["family"] == "heldout"


def test_cli_rejects_training_family_options(tmp_path, capsys):
    code = main(["synth", str(tmp_path / "x"), "--family", "heldout", "--kernel", "sharp"])
    assert code != 0
    assert "--kernel" in capsys.readouterr().err
    code = main(["synth", str(tmp_path / "y"), "--confounders", "effusion"])
    assert code != 0


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_synth_command_imports_the_heldout_family():
    """Training must never see the held-out family: outside covidct.heldout itself, only
    the `covidct synth` command (which writes it on request) may import it."""
    allowed = {PACKAGE / "commands" / "synth.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "heldout") or path in allowed:
            continue
        if any(n == "covidct.heldout" or n.startswith("covidct.heldout.")
               for n in _imports(path)):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders, f"these modules import covidct.heldout: {offenders}"


def test_training_refuses_heldout_cases(tmp_path):
    from covidct.errors import DataError
    from covidct.train.datasets import discover_cases
    from covidct.train.loop import refuse_test_only

    out = tmp_path / "mixed"
    assert main(["synth", str(out), "--family", "heldout", "--cases", "1", "--matrix", "48",
                 "--slice-mm", "5", "--covid-fraction", "0", "--quiet"]) == 0
    with pytest.raises(DataError, match="test-only"):
        refuse_test_only(discover_cases(out))
