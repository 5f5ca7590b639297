"""`covidct analyze` and `covidct demo` through covidct.cli.main (small stand-in models;
the shipped-model checks are in test_pipeline.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from analysis_fakes import fake_bundle, phantom
from conftest import REAL_DATA
from covidct.cli import main
from covidct.io.nifti import write_nifti

REAL = REAL_DATA


@pytest.fixture(autouse=True)
def stand_in_models(monkeypatch):
    import covidct.models.registry as registry

    monkeypatch.setattr(registry, "load_bundle", lambda models_dir=None, **_: fake_bundle())


@pytest.fixture(scope="module")
def phantom_nifti(tmp_path_factory) -> Path:
    volume, _, _ = phantom(lesion=True)
    path = tmp_path_factory.mktemp("in") / "chest.nii.gz"
    return write_nifti(volume.hu, volume.affine, path, dtype=np.int16)


def test_analyze_writes_outputs_prints_summary_and_maps_flags(phantom_nifti, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["analyze", str(phantom_nifti), "-o", str(out), "--infection-sigma-mm", "4.5",
               "--precision", "fp32"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "decision: covid-suspected" in printed and "Corona score" in printed
    assert "not an assessment" not in printed
    assert str(out / "report.html") in printed
    doc = json.loads((out / "result.json").read_text())
    assert f"lung: {doc['lung']['volume_cm3']:.0f} cm3" in printed
    assert doc["config"]["infection_sigma_mm"] == 4.5 and doc["config"]["precision"] == "fp32"
    assert doc["input"]["path"] == str(phantom_nifti)
    assert {"read", "load_models", "lung_segmentation", "total"} <= set(doc["timings_s"])
    for name in ("report.html", "lung_mask.nii.gz", "infection_mask.nii.gz", "heatmap.nii.gz",
                 "render_3d.png", "slice_profile.png"):
        assert (out / name).is_file()


def test_non_empty_output_needs_overwrite(phantom_nifti, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["analyze", str(phantom_nifti), "-o", str(out), "-q"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["analyze", str(phantom_nifti), "-o", str(out), "-q", "--overwrite",
                 "--no-report"]) == 0
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "result.json").is_file() and not (out / "report.html").exists()
    assert capsys.readouterr().out == ""  # --quiet


def test_output_inside_the_input_is_refused(tmp_path, capsys):
    series = tmp_path / "series"
    series.mkdir()
    (series / "a.dcm").write_bytes(b"")
    assert main(["analyze", str(series), "-o", str(series / "out")]) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert sorted(p.name for p in series.iterdir()) == ["a.dcm"]


def test_nifti_outputs_match_convert_on_a_real_dicom_series(tmp_path):
    series = REAL / "cip-copdgene-10002K" / "ct-64Dicom"
    out, converted = tmp_path / "out", tmp_path / "ct.nii.gz"
    assert main(["analyze", str(series), "-o", str(out), "-q", "--no-report"]) == 0
    assert main(["convert", str(series), str(converted)]) == 0
    reference = nib.load(converted)
    for name in ("lung_mask.nii.gz", "infection_mask.nii.gz", "heatmap.nii.gz"):
        img = nib.load(out / name)
        assert img.shape == reference.shape, name
        np.testing.assert_allclose(img.affine, reference.affine, atol=1e-6)
    doc = json.loads((out / "result.json").read_text())
    assert doc["input"]["series_uid"]
    assert len(doc["slices"]) == reference.shape[2]


def test_single_real_slice_is_indeterminate(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(REAL / "lungmask-slices" / "0.dcm"), "-o", str(out)]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["input"]["shape"][0] == 1
    assert doc["decision"]["label"] == "indeterminate"
    # its zeros are not read as clean lungs, on the console or in the report
    assert "not an assessment of the lungs" in capsys.readouterr().out
    assert "Not an assessment of the lungs" in (out / "report.html").read_text()


def test_demo_writes_a_synthetic_case_and_its_analysis(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--matrix", "96", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "truth: covid" in printed and str(out / "analysis" / "report.html") in printed
    doc = json.loads((out / "analysis" / "result.json").read_text())
    source = Path(doc["input"]["path"])
    assert source.parent == out / "input"  # the DICOM series (or NIfTI) the demo wrote
    assert main(["demo", "-o", str(out), "--matrix", "96", "-q"]) == 0  # reruns in place
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    assert main(["demo", "-o", str(other), "-q"]) == 2


REAL_INPUTS = ["cip-copdgene-10002K/ct-64.nrrd", "cip-copdgene-10002K/cip_10002K_ct64.nii.gz",
               "dcmqi-ge-slices", "lungmask-slices/1.dcm",
               "totalsegmentator-siemens-dicom/example_ct_dicom"]


@pytest.mark.parametrize("relative", REAL_INPUTS)
def test_analyze_every_real_input(relative, tmp_path):
    """Each real file or series in the fixtures analyses end to end with the shipped models;
    the outputs sit on the grid `covidct convert` writes and every slice is reported."""
    source = REAL / relative
    out, converted = tmp_path / "out", tmp_path / "ct.nii.gz"
    assert main(["analyze", str(source), "-o", str(out), "-q"]) == 0
    assert main(["convert", str(source), str(converted)]) == 0
    reference = nib.load(converted)
    lung = nib.load(out / "lung_mask.nii.gz")
    assert lung.shape == reference.shape
    np.testing.assert_allclose(lung.affine, reference.affine, atol=1e-5)
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema_version"] == 1 and len(doc["slices"]) == reference.shape[2]
    assert doc["decision"]["label"] in ("covid-suspected", "not-suspected", "indeterminate")
    assert (out / "report.html").is_file()


def test_an_output_folder_that_cannot_be_made_is_refused_before_the_analysis(
        phantom_nifti, tmp_path, capsys, monkeypatch):
    import covidct.pipeline as pipeline

    def no_analysis(*args, **kwargs):
        raise AssertionError("the analysis ran before the output folder was checked")

    monkeypatch.setattr(pipeline, "analyze", no_analysis)
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert main(["analyze", str(phantom_nifti), "-o", str(a_file / "sub"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot be created" in err and "is a file" in err and "Traceback" not in err
    assert a_file.read_text() == "x"


def test_an_all_nan_nifti_is_an_input_error(tmp_path, capsys):
    path = write_nifti(np.full((6, 32, 32), np.nan, np.float32), np.diag([0.8, 0.8, 2.0, 1.0]),
                       tmp_path / "nan.nii.gz", dtype=np.float32)
    assert main(["analyze", str(path), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "export the CT again" in err


def test_dicom_outputs_from_a_series_with_an_empty_character_set(tmp_path):
    """The dcmqi GE slices carry SpecificCharacterSet with an empty value (the default
    repertoire), which highdicom refuses: the objects are still written."""
    import pydicom

    series = REAL / "dcmqi-ge-slices"
    first = next(p for p in sorted(series.rglob("*")) if p.is_file())
    assert str(pydicom.dcmread(first, stop_before_pixels=True)
               .get("SpecificCharacterSet", "x")).strip() == ""
    out = tmp_path / "out"
    assert main(["analyze", str(series), "-o", str(out), "-q", "--no-report"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert not [w for w in doc["warnings"] if "not written" in w]
    assert (out / "seg.dcm").is_file() and (out / "sr.dcm").is_file()
    assert "SpecificCharacterSet" not in pydicom.dcmread(out / "seg.dcm", stop_before_pixels=True)


def test_overwrite_leaves_no_empty_capture_folder(phantom_nifti, tmp_path):
    out = tmp_path / "out"
    (out / "sc").mkdir(parents=True)
    (out / "sc" / "sc_0001.dcm").write_bytes(b"old capture")
    (out / "keep.txt").write_text("mine")
    assert main(["analyze", str(phantom_nifti), "-o", str(out), "-q", "--overwrite",
                 "--no-report"]) == 0
    assert not (out / "sc").exists()  # a NIfTI input writes no captures
    assert (out / "keep.txt").read_text() == "mine"


def test_why_a_dicom_input_gets_no_dicom_outputs_is_in_result_json(tmp_path):
    """The TotalSegmentator Siemens series has no SeriesInstanceUID, which the SEG and SR
    must reference: the analysis is written, and result.json says why the objects are not."""
    out = tmp_path / "out"
    assert main(["analyze", str(REAL / "totalsegmentator-siemens-dicom"), "-o", str(out), "-q",
                 "--no-report"]) == 0
    doc = json.loads((out / "result.json").read_text())
    skipped = [w for w in doc["warnings"] if w.startswith("DICOM outputs (SEG, SR, SC) were not")]
    assert len(skipped) == 1 and "no SeriesInstanceUID" in skipped[0]
    assert not (out / "seg.dcm").exists() and "dicom" not in doc["outputs"]


def test_an_interrupt_while_writing_says_the_folder_is_incomplete(phantom_nifti, tmp_path,
                                                                  capsys, monkeypatch):
    import covidct.export.outputs as outputs

    def interrupted(result, out_dir, **_):  # Ctrl-C after the first output file
        (out_dir / "lung_mask.nii.gz").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_outputs", interrupted)
    out = tmp_path / "out"
    assert main(["analyze", str(phantom_nifti), "-o", str(out), "-q"]) == 130
    err = capsys.readouterr().err
    assert "incomplete (no result.json)" in err and "--overwrite" in err
    assert "interrupted" in err


def test_a_full_disk_is_a_message_not_a_traceback(phantom_nifti, tmp_path, capsys,
                                                  monkeypatch):
    import errno

    import covidct.export.outputs as outputs

    def full(result, out_dir, **_):
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "seg.dcm"))

    monkeypatch.setattr(outputs, "write_outputs", full)
    assert main(["analyze", str(phantom_nifti), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "seg.dcm" in err and "Traceback" not in err
