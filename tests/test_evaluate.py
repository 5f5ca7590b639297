"""`covidct evaluate` in-process, with a stand-in model bundle (thresholding oracle)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from conftest import REAL_DATA
from covidct import cli
from covidct.train import evaluate as evaluate_mod
from covidct.train import predict as predict_mod
from covidct.train.baseline import threshold_lungs
from covidct.train.metrics import dice
from covidct.train.predict import CasePrediction
from covidct.volume import Volume

SPACING = (10.0, 6.0, 6.0)  # dz, dy, dx: chest-sized lungs on a tiny grid
REAL = REAL_DATA / "cip-copdgene-10002K"


def chest(infected: bool, peripheral: bool = False, depth: int = 8, size: int = 40
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hu, lung 1 right / 2 left, infection); x low = patient right."""
    _, y, x = np.mgrid[:depth, :size, :size]
    body = ((y - 20) / 18.0) ** 2 + ((x - 20) / 19.0) ** 2 <= 1
    right = ((y - 20) / 12.0) ** 2 + ((x - 11) / 7.0) ** 2 <= 1
    left = ((y - 20) / 12.0) ** 2 + ((x - 29) / 7.0) ** 2 <= 1
    hu = np.where(body, 40.0, -1000.0).astype(np.float32)
    hu[right | left] = -850.0
    lung = np.zeros(hu.shape, np.uint8)
    lung[right], lung[left] = 1, 2
    infection = np.zeros(hu.shape, np.uint8)
    if infected:
        z = (np.arange(depth) >= 3) & (np.arange(depth) <= 5)
        ggo = z[:, None, None] & right & (np.abs(y - 20) < 4) & (np.abs(x - 11) < 3)
        infection[ggo] = 1
        hu[ggo] = -300.0
        if peripheral:  # consolidation against the chest wall: the baseline misses it
            wall = z[:, None, None] & right & (x <= 7)
            infection[wall] = 1
            hu[wall] = 40.0
    return hu, lung, infection


def write(path: Path, zyx: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dz, dy, dx = SPACING
    image = nib.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)),
                            np.diag([-dx, -dy, dz, 1.0]))
    nib.save(image, str(path))


def make_synth(root: Path) -> None:
    specs = [("case_000", "covid", True, False), ("case_001", "covid", True, True),
             ("case_002", "negative", False, False), ("case_003", "negative", False, False)]
    for name, label, infected, peripheral in specs:
        hu, lung, infection = chest(infected, peripheral)
        write(root / name / "ct.nii.gz", hu)
        write(root / name / "lung.nii.gz", lung)
        write(root / name / "infection.nii.gz", infection)
        (root / name / "truth.json").write_text(json.dumps({"label": label}))


def oracle(bundle: object, volume: Volume) -> CasePrediction:
    """Stand-in models: baseline lungs; p(abnormal) from dense pixels inside them."""
    lung = threshold_lungs(volume)
    dense = ((np.asarray(volume.hu) > -600) & (lung > 0)).reshape(volume.shape[0], -1).sum(1)
    has_lung = (lung.reshape(volume.shape[0], -1) > 0).sum(1) * 36.0 >= 100.0
    prob = np.where(has_lung, np.clip(dense / 10.0, 0, 1), 0).astype(np.float32)
    return CasePrediction(lung_mask=lung, prob=prob, has_lung=has_lung)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    spec = SimpleNamespace(slice_threshold=0.5, case_threshold=0.1)
    bundle = SimpleNamespace(lung=SimpleNamespace(sha256="l"),
                             classifier=SimpleNamespace(spec=spec, sha256="c"))
    monkeypatch.setattr("covidct.models.registry.load_bundle", lambda models_dir=None: bundle)
    monkeypatch.setattr(predict_mod, "predict_case", oracle)
    return bundle


def test_evaluate_cli_on_synth_layout(tmp_path: Path, fake_models: SimpleNamespace,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    make_synth(tmp_path / "data")
    out = tmp_path / "eval.json"
    code = cli.main(["evaluate", "--data", str(tmp_path / "data"), "--json", str(out),
                     "--plots", str(tmp_path / "plots"), "--no-localization"])
    assert code == 0
    table = capsys.readouterr().out
    assert "case_001" in table and "lung Dice mean" in table
    doc = json.loads(out.read_text())
    summary = doc["summary"]
    assert summary["cases"] == 4 and summary["slice"]["auc"] == 1.0
    assert summary["case"]["accuracy"] == 1.0 and summary["case"]["auc_positive_ratio"] == 1.0
    lung = summary["lung"]
    assert lung["baseline_dice_clean_mean"] == 1.0
    assert lung["baseline_dice_infected_mean"] < 1.0  # peripheral consolidation missed
    by_id = {c["case_id"]: c for c in doc["cases"]}
    assert by_id["case_000"]["decision"] == "covid-suspected"
    assert by_id["case_002"]["decision"] == "not-suspected"
    assert by_id["case_001"]["baseline_dice"] < 0.99
    # per-slice record: probabilities, predicted lung slices and labels on the slice grid
    case = by_id["case_000"]
    assert len(case["slice_prob"]) == len(case["slice_has_lung"]) == len(case["slice_label"])
    assert sum(case["slice_has_lung"]) == case["lung_slices"] and any(case["slice_label"])
    assert case["slice_spacing_mm"] > 0
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 0
    assert (tmp_path / "plots" / "baseline_worst_cases.png").stat().st_size > 0


def test_evaluate_needs_calibrated_thresholds(tmp_path: Path, fake_models: SimpleNamespace,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    make_synth(tmp_path / "data")
    fake_models.classifier.spec.case_threshold = None
    assert cli.main(["evaluate", "--data", str(tmp_path / "data"), "--no-localization"]) == 2
    assert "case_threshold" in capsys.readouterr().err
    assert cli.main(["evaluate", "--data", str(tmp_path / "data"), "--no-localization",
                     "--case-threshold", "0.2"]) == 0


def test_summary_counts_missed_positive_slices() -> None:
    from covidct.decision import decide

    prob = np.array([0.0, 0.9, 0.2, 0.1])
    has_lung = np.array([False, True, True, True])
    case = evaluate_mod.CaseEvaluation(
        case_id="a", label="covid", infected=True, lung_dice=None, baseline_dice=None,
        prob=prob, has_lung=has_lung, slice_labels=np.array([True, True, False, False]),
        decision=decide(prob, has_lung, 0.5, 0.1))
    pooled_prob, pooled_labels = evaluate_mod.slice_pool([case])
    np.testing.assert_array_equal(pooled_labels, [True, True, False, False])
    summary = evaluate_mod.summarize([case], 0.5, 0.1)
    assert summary["slice"]["sensitivity"] == 0.5  # the lung-less positive slice is a miss
    assert summary["case"]["auc_positive_ratio"] is None  # one class only


@pytest.mark.skipif(not REAL.is_dir(), reason="real COPDGene fixture not available")
def test_single_case_lung_dice_on_real_copdgene(tmp_path: Path, fake_models: SimpleNamespace,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lung.json"
    code = cli.main(["evaluate", "--image", str(REAL / "ct-64.nrrd"), "--lung-labels",
                     str(REAL / "cip_10002K_lm64_1right_2left_3airway.nii.gz"),
                     "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    # The HU baseline on real, clean lungs agrees well with the CIP label map (1 R, 2 L),
    # which shows the NRRD image and NIfTI labels are aligned and sides are not swapped.
    assert result["baseline"]["dice"] > 0.85
    assert result["baseline"]["dice_right"] > 0.8 and result["baseline"]["dice_left"] > 0.8
    assert "baseline" in capsys.readouterr().out


def test_dice_of_oracle_sides_on_phantom() -> None:
    hu, lung, _ = chest(False)
    mask = threshold_lungs(Volume.from_spacing(hu, SPACING))
    assert dice(mask == 1, lung == 1) == 1.0 and dice(mask == 2, lung == 2) == 1.0


@pytest.mark.slow
def test_evaluate_with_shipped_models_on_synth(tmp_path: Path) -> None:
    """Integration: the shipped weights on two small synth cases (skipped without weights)."""
    from covidct.errors import ModelError
    from covidct.models.registry import load_bundle

    synth = pytest.importorskip("covidct.synth")
    try:
        load_bundle()
    except ModelError as exc:
        pytest.skip(f"no shipped weights: {exc}")
    for seed, covid in ((11, True), (12, False)):
        case = synth.generate_case(seed, synth.SynthParams(matrix=64, covid=covid))
        synth.write_case(case, tmp_path / "data" / f"case_{seed:03d}")
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--data", str(tmp_path / "data"), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["lung"]["model_dice_mean"] > 0.8


def test_evaluate_case_reports_localization() -> None:
    """The full analysis (test models: a threshold lung, a bright-spot classifier) on a
    phantom with a -400 HU sphere of known extent: Dice and volumes against that truth."""
    from analysis_fakes import fake_bundle, phantom
    from covidct.train.datasets import LoadedCase

    volume, lung, spot = phantom()
    case = LoadedCase("phantom", volume, lung, spot.astype(np.uint8), None, "covid")
    ev = evaluate_mod.evaluate_case(fake_bundle(), case, 0.5, 0.1, baseline=False)
    loc = ev.localization
    true_cm3 = spot.sum() * volume.voxel_volume_mm3 / 1000.0
    assert loc["true_infection_cm3"] == pytest.approx(true_cm3)
    assert loc["lesion_dice"] > 0.7
    assert loc["infection_cm3"] == pytest.approx(true_cm3, rel=0.3)
    pooled = evaluate_mod.summarize([ev], 0.5, 0.1)["localization"]
    assert pooled["cases_with_infection"] == 1
    assert pooled["lesion_dice_median"] == pytest.approx(loc["lesion_dice"], abs=1e-4)
    skipped = evaluate_mod.evaluate_case(fake_bundle(), case, 0.5, 0.1, baseline=False,
                                         localization=False)
    assert skipped.localization is None


def test_evaluate_case_scores_the_probabilities_analyze_reports_even_without_a_mask() -> None:
    """A case without a reference infection mask is still scored on the full analysis's
    slice probabilities (classifier and GGO evidence); --no-localization: the classifier's."""
    from analysis_fakes import fake_bundle, phantom
    from covidct.config import AnalysisConfig
    from covidct.pipeline import analyze
    from covidct.train.datasets import LoadedCase

    volume, lung, _ = phantom()
    weak = fake_bundle(classifier_bias=-80.0)  # sees only the lesion's thickest slices
    case = LoadedCase("phantom", volume, lung, None, None, "covid")
    ev = evaluate_mod.evaluate_case(weak, case, 0.5, 0.1, baseline=False)
    full = analyze(volume, AnalysisConfig(slice_threshold=0.5, case_threshold=0.1), weak)
    np.testing.assert_allclose(ev.prob, full.prob, atol=1e-6)
    assert ev.localization is None
    alone = evaluate_mod.evaluate_case(weak, case, 0.5, 0.1, baseline=False, localization=False)
    np.testing.assert_allclose(alone.prob, full.classifier_prob, atol=1e-5)
    assert (ev.prob > alone.prob + 0.1).any()
