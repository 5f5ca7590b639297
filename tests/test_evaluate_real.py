"""`covidct evaluate --manifest`: manifest parsing, slice-label matching, a real end-to-end run."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from covidct.cli import main
from covidct.errors import ConfigError, CovidCTError, DataError
from covidct.train.real_studies import (
    check_inputs,
    decision_matches,
    load_manifest,
    match_slice_labels,
)
from covidct.volume import Volume

CSV_HEADER = "index_by_slice_location,file,image_position_z_mm,infection,LLL,LUL,RLL,RML,RUL\n"


def write_manifest(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def study(**extra: object) -> dict[str, object]:
    return {"name": "a", "path": "a.nii.gz", "expected": "not-suspected", **extra}


# --------------------------------------------------------------------------- manifest errors


def test_missing_manifest_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json does not exist"):
        load_manifest(tmp_path / "nope.json", environ={})


def test_bad_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"studies": [}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_manifest(path, environ={})


def test_unknown_expected_label_names_it_and_the_allowed_ones(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.json", {"studies": [study(expected="covid")]})
    with pytest.raises(ConfigError) as info:
        load_manifest(path, environ={})
    text = str(info.value)
    assert "'covid' is not a known label" in text
    assert "not-covid-suspected" in text and "study #1 (a)" in text


def test_unknown_study_and_header_keys_are_rejected(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.json", {"studies": [study(slice_label="x.csv")]})
    with pytest.raises(ConfigError, match="unknown key\\(s\\) slice_label"):
        load_manifest(path, environ={})
    path = write_manifest(tmp_path / "h.json", {"rooot": ".", "studies": [study()]})
    with pytest.raises(ConfigError, match="unknown header key\\(s\\) rooot"):
        load_manifest(path, environ={})


def test_duplicate_names_and_lobes_without_csv_are_rejected(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.json", {"studies": [study(), study()]})
    with pytest.raises(ConfigError, match="repeated: a"):
        load_manifest(path, environ={})
    path = write_manifest(tmp_path / "l.json", {"studies": [study(lobe_labels=True)]})
    with pytest.raises(ConfigError, match="'lobe_labels' needs 'slice_labels'"):
        load_manifest(path, environ={})


def test_paths_resolve_against_root_or_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    path = write_manifest(folder / "m.json", {
        "root": "../data",
        "studies": [study(reference_mask="../refs/a.nii.gz", slice_labels="labels/a.csv"),
                    {"name": "b", "path": "./b.nrrd", "expected": "any",
                     "reference_mask": str(tmp_path / "abs.nii.gz")}]})
    m = load_manifest(path, environ={})
    a, b = m.studies
    assert m.root == (tmp_path / "data").resolve()
    assert a.path == (tmp_path / "data" / "a.nii.gz").resolve()
    assert a.slice_labels == (tmp_path / "data" / "labels" / "a.csv").resolve()
    assert a.reference_mask == (tmp_path / "refs" / "a.nii.gz").resolve()
    assert b.path == (folder / "b.nrrd").resolve()
    assert b.reference_mask == tmp_path / "abs.nii.gz"
    # --root beats $COVIDCT_REAL_DATA, which beats the header's root.
    other = tmp_path / "elsewhere"
    env_root = load_manifest(path, environ={"COVIDCT_REAL_DATA": str(other)})
    assert env_root.studies[0].path == other.resolve() / "a.nii.gz"
    assert env_root.studies[0].reference_mask == (tmp_path / "refs" / "a.nii.gz").resolve()
    cli_root = load_manifest(path, tmp_path / "x", environ={"COVIDCT_REAL_DATA": str(other)})
    assert cli_root.studies[0].path == (tmp_path / "x" / "a.nii.gz").resolve()
    with pytest.raises(ConfigError, match="--only zz: no such study.*has: a, b"):
        m.select(["zz"])
    assert [s.name for s in m.select(["b"]).studies] == ["b"]


def test_missing_image_fails_before_any_analysis(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.json", {"root": ".", "studies": [study()]})
    with pytest.raises(DataError, match=r"a: image .*a\.nii\.gz"):
        check_inputs(load_manifest(path, environ={}))


def test_side_dice_leaves_a_side_empty_in_both_masks_undefined() -> None:
    from covidct.train.real_studies import _side_dice

    ref = np.zeros((1, 4, 4), np.uint8)
    ref[0, :2, :2] = 1
    pred = np.zeros_like(ref)
    pred[0, :2, :1] = 1
    pred[0, 3, 3] = 2
    scores = _side_dice(pred, ref)
    assert scores["dice_right"] == pytest.approx(2 * 2 / (2 + 4), abs=1e-4)
    assert scores["dice"] == pytest.approx(2 * 2 / (3 + 4), abs=1e-4)
    assert scores["dice_left"] == 0.0
    assert _side_dice(pred * (pred == 1), ref)["dice_left"] is None


def test_expected_labels_match_decisions() -> None:
    assert decision_matches("covid-suspected", "covid-suspected")
    assert not decision_matches("covid-suspected", "indeterminate")
    assert decision_matches("not-covid-suspected", "indeterminate")
    assert decision_matches("not-covid-suspected", "not-suspected")
    assert not decision_matches("not-covid-suspected", "covid-suspected")
    assert not decision_matches("indeterminate", "not-suspected")
    assert all(decision_matches("any", d)
               for d in ("covid-suspected", "not-suspected", "indeterminate"))


# --------------------------------------------------------------------------- slice labels


@pytest.fixture()
def five_slices() -> Volume:
    """5 slices 2.5 mm apart, z = -10.0, -7.5, -5.0, -2.5, 0.0 mm."""
    return Volume.from_spacing(np.zeros((5, 4, 4), np.int16), (2.5, 1.0, 1.0), (0.0, 0.0, -10.0))


def test_slice_labels_match_by_z_within_half_a_millimetre(tmp_path: Path,
                                                         five_slices: Volume) -> None:
    np.testing.assert_allclose(five_slices.slice_positions_mm(), [-10, -7.5, -5, -2.5, 0])
    csv_path = tmp_path / "labels.csv"
    # Rows out of order, 0.3-0.4 mm off; slice z = -7.5 has no row.
    csv_path.write_text(CSV_HEADER + "0,f0.dcm,0.30,1,1,0,1,0,0\n"
                                     "1,f1.dcm,-10.40,0,0,0,0,0,0\n"
                                     "2,f2.dcm,-5.00,1,1,0,0,0,1\n"
                                     "3,f3.dcm,-2.45,0,0,0,0,0,0\n")
    labels = match_slice_labels(five_slices, csv_path, lobes=True)
    assert labels.infection.tolist() == [0, -1, 1, 0, 1]
    assert labels.labelled.tolist() == [True, False, True, True, True]
    assert labels.lobe_counts == {"LLL": 2, "LUL": 0, "RLL": 1, "RML": 0, "RUL": 1}
    assert match_slice_labels(five_slices, csv_path).lobe_counts is None


def test_csv_rows_matching_no_slice_are_an_error(tmp_path: Path, five_slices: Volume) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(CSV_HEADER + "0,f0.dcm,-10.0,0,0,0,0,0,0\n"
                                     "1,f1.dcm,-8.60,1,0,0,0,0,0\n"
                                     "2,f2.dcm,40.0,1,0,0,0,0,0\n")
    with pytest.raises(DataError) as info:
        match_slice_labels(five_slices, csv_path)
    text = str(info.value)
    assert isinstance(info.value, CovidCTError)
    assert "2 of 3 rows match no slice" in text
    assert "line 3 (z -8.60 mm)" in text and "line 4 (z 40.00 mm)" in text
    assert "-10.00 to 0.00 mm" in text


def test_csv_two_rows_on_one_slice_or_bad_values_are_errors(tmp_path: Path,
                                                            five_slices: Volume) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(CSV_HEADER + "0,f0.dcm,-5.0,0,0,0,0,0,0\n1,f1.dcm,-5.2,1,0,0,0,0,0\n")
    with pytest.raises(DataError, match="line 3 .* matches slice 2 .* an earlier row"):
        match_slice_labels(five_slices, csv_path)
    csv_path.write_text(CSV_HEADER + "0,f0.dcm,-5.0,yes,0,0,0,0,0\n")
    with pytest.raises(DataError, match="line 2: infection must be 0 or 1; got 'yes'"):
        match_slice_labels(five_slices, csv_path)
    csv_path.write_text("z,infection\n-5.0,1\n")
    with pytest.raises(DataError, match="lacks column\\(s\\) image_position_z_mm"):
        match_slice_labels(five_slices, csv_path)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def real_run(real_data: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[int, str, dict, Path]:
    """One CLI run on lungmask-slices (twice, once expecting the wrong decision) + COPDGene."""
    folder = tmp_path_factory.mktemp("manifest")
    manifest = write_manifest(folder / "real.json", {"root": "/nonexistent", "studies": [
        {"name": "copdgene", "path": "cip-copdgene-10002K/ct-64.nrrd",
         "expected": "not-covid-suspected",
         "reference_mask": "cip-copdgene-10002K/cip_10002K_lm64_1right_2left_3airway.nii.gz"},
        {"name": "lungmask", "path": "lungmask-slices", "expected": "indeterminate",
         "reference_mask": "./not_made_yet.nii.gz"},
        {"name": "lungmask-wrong", "path": "lungmask-slices", "expected": "covid-suspected"},
    ]})
    out_json = folder / "out.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["evaluate", "--manifest", str(manifest), "--root", str(real_data),
                     "--json", str(out_json)])
    return code, stdout.getvalue(), json.loads(out_json.read_text()), folder


def _row(text: str, name: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.split() and ln.split()[0] == name)
    return line.split()


def test_end_to_end_copdgene_dice_and_decisions(real_run: tuple[int, str, dict, Path]) -> None:
    code, text, doc, _ = real_run
    assert code == 0, text  # a mismatching decision is reported, not an error
    row = _row(text, "copdgene")
    # study expected decision check lungDice baseDice sliceAUC sens spec time
    assert row[1:4] == ["not-covid-suspected", "not-suspected", "ok"]
    model_dice, base_dice = float(row[4]), float(row[5])
    assert 0.5 < model_dice <= 1.0
    assert 0.5 < base_dice <= 1.0
    assert row[6:9] == ["-", "-", "-"]  # no slice labels
    assert _row(text, "lungmask")[1:4] == ["indeterminate", "indeterminate", "ok"]
    assert _row(text, "lungmask")[4] == "-"  # reference not there: skipped, not failed
    assert "decisions matching expected: 2/3  MISMATCH: lungmask-wrong" in text
    assert "not_made_yet.nii.gz does not exist (yet): Dice skipped" in text
    assert "lungmask: indeterminate" in text and "minimum 3" in text  # the reason is printed


def test_end_to_end_wrong_expectation_shows_mismatch(real_run: tuple[int, str, dict, Path]
                                                     ) -> None:
    _, text, doc, _ = real_run
    row = _row(text, "lungmask-wrong")
    assert row[1:4] == ["covid-suspected", "indeterminate", "MISMATCH"]
    wrong = next(s for s in doc["studies"] if s["name"] == "lungmask-wrong")
    assert wrong["matches_expected"] is False
    assert doc["summary"]["mismatches"] == ["lungmask-wrong"]


def test_end_to_end_json_fields(real_run: tuple[int, str, dict, Path],
                                real_data: Path) -> None:
    _, text, doc, _ = real_run
    assert doc["root"] == str(real_data.resolve())
    assert set(doc) >= {"manifest", "root", "models", "summary", "studies"}
    assert re.fullmatch(r"[0-9a-f]{64}", doc["models"]["lung"]["sha256"] or "")
    cop = doc["studies"][0]
    assert cop["name"] == "copdgene" and cop["shape"] == [79, 64, 64]
    assert cop["decision"] == "not-suspected" and cop["matches_expected"] is True
    dice = cop["lung_dice"]
    assert set(dice) == {"dice", "dice_right", "dice_left"}
    assert 0.5 < dice["dice"] <= 1.0 and 0.5 < dice["dice_right"] <= 1.0
    assert 0.5 < cop["baseline_dice"]["dice"] <= 1.0
    # The printed value is the JSON's, rounded to 3 decimals.
    assert float(_row(text, "copdgene")[4]) == pytest.approx(dice["dice"], abs=5e-4)
    # The reference volume is the CIP map's lung (labels 1, 2): a few litres.
    assert 1500 < cop["lung_volume_cm3"]["reference"] < 9000
    assert len(cop["slices"]["prob"]) == 79 and cop["slices"]["infection"] is None
    assert cop["timings_s"]["total"] > 0
    # CIP label 3 (extrapulmonary airway) is scored once the analysis returns an airway mask.
    from dataclasses import fields

    from covidct.pipeline import CaseResult

    if "airway_mask" in {f.name for f in fields(CaseResult)}:
        assert 0.3 < cop["airway_dice"] <= 1.0
    else:
        assert cop["airway_dice"] is None
    summary = doc["summary"]
    assert summary["decisions_matching"] == 2 and summary["decisions_total"] == 3
    assert summary["lung_dice_mean"]["studies"] == 1
    assert summary["lung_dice_mean"]["model"] == pytest.approx(dice["dice"], abs=1e-4)
    assert summary["slices_pooled"]["slices"] == 0 and summary["slices_pooled"]["auc"] is None


def test_real_covid_ct_md_csv_matches_every_slice(real_data: Path) -> None:
    """The shipped P001 labels line up with the DICOM series' slice positions."""
    from covidct.io import load_volume

    volume = load_volume(real_data / "covid-ct-md" / "P001")
    labels = match_slice_labels(volume, real_data / "covid-ct-md" / "labels" / "P001.csv",
                                lobes=True)
    assert int(labels.labelled.sum()) == 148 == volume.shape[0]
    assert int((labels.infection == 1).sum()) == 80


# --------------------------------------------------------------------------- label order


def _lobes(z: np.ndarray, spans: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    return {name: ((z >= lo) & (z <= hi)).astype(np.int8) for name, (lo, hi) in spans.items()}


def test_lobe_labels_in_anatomical_order_raise_nothing_and_reversed_ones_are_named() -> None:
    from covidct.train.label_order import lobe_order_contradiction

    z = np.arange(-300.0, -50.0, 2.0)  # +superior, like ImagePositionPatient z
    anatomical = _lobes(z, {"RUL": (-140, -60), "RML": (-200, -150), "RLL": (-290, -120),
                            "LUL": (-180, -60), "LLL": (-290, -130)})
    assert lobe_order_contradiction(z, anatomical) is None
    mirrored = {name: flags[::-1] for name, flags in anatomical.items()}
    note = lobe_order_contradiction(z, mirrored)
    assert note is not None and "reversed slice order" in note
    assert "RUL" in note and "RML" in note and "LUL" in note and "LLL" in note
    # Only lower lobes labelled (a lower-lobe pneumonia): anatomy cannot tell the order.
    lower_only = {name: flags for name, flags in mirrored.items() if name in ("RLL", "LLL")}
    assert lobe_order_contradiction(z, lower_only) is None
    # One pair in order is enough to say nothing (the lobes overlap in z).
    mixed = dict(mirrored, LUL=anatomical["LUL"], LLL=anatomical["LLL"])
    assert lobe_order_contradiction(z, mixed) is None
    # Rows without a label (-1) are not labelled slices.
    unlabelled = {name: np.where(flags == 1, flags, -1).astype(np.int8)
                  for name, flags in mirrored.items()}
    assert lobe_order_contradiction(z, unlabelled) == note


def test_covid_ct_md_labels_as_shipped_are_flagged_and_the_rewritten_ones_are_their_mirror(
        real_data: Path) -> None:
    """The shared P001 lobe labels put the right upper lobe below the middle and lower lobes;
    benchmarks/labels holds the same rows with the label columns reversed, which pass."""
    import csv

    from covidct.io import load_volume
    from covidct.train.label_order import lobe_order_contradiction

    repo = Path(__file__).resolve().parents[1]
    volume = load_volume(real_data / "covid-ct-md" / "P001")
    z = volume.slice_positions_mm()
    shipped_csv = real_data / "covid-ct-md" / "labels" / "P001.csv"
    fixed_csv = repo / "benchmarks" / "labels" / "covid-ct-md" / "P001.csv"
    shipped = match_slice_labels(volume, shipped_csv, lobes=True)
    fixed = match_slice_labels(volume, fixed_csv, lobes=True)
    note = lobe_order_contradiction(z, shipped.lobes)
    assert note is not None and "RUL" in note and "RML" in note
    assert lobe_order_contradiction(z, fixed.lobes) is None
    for name in ("P001", "cap001"):
        with (real_data / "covid-ct-md" / "labels" / f"{name}.csv").open() as f:
            rows = list(csv.DictReader(f))
        with (repo / "benchmarks" / "labels" / "covid-ct-md" / f"{name}.csv").open() as f:
            mirrored = list(csv.DictReader(f))
        assert [r["file"] for r in mirrored] == [r["file"] for r in rows]
        assert [r["image_position_z_mm"] for r in mirrored] == \
            [r["image_position_z_mm"] for r in rows]
        for column in ("infection", "LLL", "LUL", "RLL", "RML", "RUL"):
            assert [r[column] for r in mirrored] == [r[column] for r in reversed(rows)]
