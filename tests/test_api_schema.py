"""The Python API (covidct.analyze / load_volume / CaseResult.save) and the result.json
JSON Schema that documents its output."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

import covidct
from analysis_fakes import fake_bundle, phantom
from covidct.errors import ConfigError, CovidCTError, InputError
from covidct.io import write_nifti

SHAPE, SPACING = (16, 48, 64), (6.0, 2.5, 2.5)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    volume, _, _ = phantom(lesion=True, shape=SHAPE, spacing=SPACING)
    bundle = fake_bundle()
    result = covidct.analyze(volume, models=bundle, config={"overlay_count": 1})
    out = tmp_path_factory.mktemp("api") / "out"
    doc = result.save(out, report=False)
    return volume, bundle, result, out, doc


def test_analyze_returns_the_typed_result_and_writes_nothing(analysed, tmp_path, monkeypatch):
    volume, bundle, result, _, _ = analysed
    assert isinstance(result, covidct.CaseResult)
    assert result.lung_mask.shape == volume.shape and result.heatmap.dtype == np.float32
    assert result.prob.shape == (volume.shape[0],)
    # the small phantom's lungs touch the field of view: indeterminate, with positive slices
    assert result.decision.label == "indeterminate" and result.decision.positive_slices > 0
    assert result.metrics.corona_score_cm3 > 0
    assert result.config.overlay_count == 1
    # from a path: same answer, and nothing is written anywhere
    path = write_nifti(volume.hu, volume.affine, tmp_path / "ct.nii.gz", dtype=np.int16)
    monkeypatch.chdir(tmp_path)
    again = covidct.analyze(path, models=bundle, config=covidct.AnalysisConfig(overlay_count=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]
    np.testing.assert_array_equal(again.lung_mask, result.lung_mask)
    assert again.metrics.corona_score_cm3 == pytest.approx(result.metrics.corona_score_cm3)
    loaded = covidct.load_volume(path)
    assert loaded.shape == volume.shape and loaded.spacing_mm == pytest.approx(SPACING)


def test_save_writes_outputs_that_follow_the_schema(analysed):
    _, _, _, out, doc = analysed
    written = json.loads((out / "result.json").read_text())
    assert written == doc
    covidct.validate_result(written)
    Draft202012Validator.check_schema(covidct.result_schema())
    assert (out / "lung_mask.nii.gz").is_file() and not (out / "report.html").exists()
    assert "dicom" not in doc["outputs"]  # the input was not DICOM


def test_api_errors_say_what_to_do(analysed, tmp_path):
    volume, bundle, result, out, _ = analysed
    with pytest.raises(InputError, match="not empty"):
        result.save(out)
    with pytest.raises(ConfigError, match="Unknown configuration key"):
        covidct.analyze(volume, models=bundle, config={"sigma": 2})
    with pytest.raises(InputError, match="takes a path or a covidct.Volume"):
        covidct.analyze(np.zeros((4, 4, 4)), models=bundle)
    with pytest.raises(ConfigError, match="models must be"):
        covidct.analyze(volume, models=42)
    with pytest.raises(InputError, match="needs a DICOM input"):
        result.save(tmp_path / "dicom", dicom_out=True)
    with pytest.raises(InputError, match="does not exist"):
        covidct.load_volume(tmp_path / "missing")


def _schema_properties(schema: dict, pointer: str) -> set[str]:
    node = schema
    for part in pointer.split("/"):
        node = node[part]
    return set(node["properties"])


def test_schema_lists_every_key_covidct_writes(analysed):
    _, _, _, out, doc = analysed
    schema = covidct.result_schema()
    assert set(doc) <= set(schema["properties"])
    props = schema["properties"]
    for key in ("input", "decision", "lung", "infection", "outputs"):
        missing = set(doc[key]) - set(props[key]["properties"])
        assert not missing, f"result.json '{key}' keys missing from the schema: {missing}"
    assert set(doc["infection"]["zones"][0]) <= set(schema["$defs"]["zone"]["properties"])
    assert set(doc["slices"][0]) <= set(props["slices"]["items"]["properties"])


@pytest.mark.parametrize(("path", "value", "message"), [
    (("decision", "label"), "maybe", "is not one of"),
    (("infection", "percent_of_lung"), 150.0, "greater than the maximum"),
    (("infection", "severity_score"), 30, "greater than the maximum"),
    (("lung", "volume_cm3"), "493", "is not of type"),
    (("schema_version",), 2, "was expected"),
])
def test_schema_rejects_a_broken_document(analysed, path, value, message):
    doc = copy.deepcopy(analysed[4])
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(CovidCTError, match=message):
        covidct.validate_result(doc)
    del doc["decision"]
    with pytest.raises(CovidCTError, match="'decision' is a required property"):
        covidct.validate_result(doc)


def test_import_covidct_does_not_import_torch():
    code = "import sys, covidct; covidct.load_volume; print('torch' in sys.modules)"
    src = Path(covidct.__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(src)}, timeout=60)
    assert run.stdout.strip() == "False", run.stderr


def test_save_refuses_the_input_folder_and_unmakeable_folders(tmp_path):
    """result.save checks its folder as the CLI does: never inside the input."""
    from covidct.synth.dicom_writer import write_ct_series

    volume, _, _ = phantom(lesion=True, shape=SHAPE, spacing=SPACING)
    series = tmp_path / "input"
    write_ct_series(volume, series, seed=1)
    before = sorted(p.name for p in series.iterdir())
    result = covidct.analyze(series, models=fake_bundle(), config={"overlay_count": 1})
    with pytest.raises(InputError, match="overlaps the input"):
        result.save(tmp_path / "input" / "out")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    with pytest.raises(InputError, match="cannot be created"):
        result.save(a_file / "out")
    assert sorted(p.name for p in series.iterdir()) == before
