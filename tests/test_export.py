"""Every output of one analysis: result.json schema, NIfTI, PNGs, report."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from analysis_fakes import fake_bundle, phantom
from covidct.config import AnalysisConfig
from covidct.export import overlays, render3d
from covidct.export.outputs import write_outputs
from covidct.io.nifti import nifti_affine
from covidct.pipeline import analyze


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    volume, _, _ = phantom(lesion=True)
    volume = volume.with_warnings("<b>slice spacing varies</b>")
    result = analyze(volume, AnalysisConfig(overlay_count=3), fake_bundle())
    out = tmp_path_factory.mktemp("out")
    doc = write_outputs(result, out, timings_s={"read": 0.1})
    return result, out, doc


def test_every_output_is_written_and_listed(written):
    _, out, doc = written
    for key in ("result_json", "lung_mask", "infection_mask", "heatmap", "render_3d",
                "slice_profile", "report"):
        assert (out / doc["outputs"][key]).is_file(), key
    assert len(doc["outputs"]["overlays"]) == 3
    assert all((out / name).is_file() for name in doc["outputs"]["overlays"])


def test_result_json_schema(written):
    result, out, _ = written
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema_version"] == 1
    assert set(doc["input"]) >= {"path", "series_uid", "shape", "spacing_mm"}
    assert doc["input"]["shape"] == list(result.volume.shape)
    assert set(doc["decision"]) >= {"label", "positive_slice_ratio", "threshold", "lung_slices",
                                    "positive_slices", "reason"}
    assert doc["decision"]["label"] == "covid-suspected"
    assert set(doc["lung"]) == {"volume_cm3", "right_cm3", "left_cm3", "extent_mm", "airway_cm3"}
    assert set(doc["infection"]) >= {"volume_cm3", "percent_of_lung", "right_percent",
                                     "left_percent", "zones", "severity_score"}
    assert len(doc["infection"]["zones"]) == 6
    assert doc["infection"]["severity_score"] == sum(z["score"] for z in
                                                     doc["infection"]["zones"])
    assert doc["corona_score_cm3"] == pytest.approx(result.metrics.corona_score_cm3, abs=1e-3)
    slices = doc["slices"]
    assert [s["index"] for s in slices] == list(range(result.volume.shape[0]))
    np.testing.assert_allclose([s["z_mm"] for s in slices], result.volume.slice_positions_mm(),
                               atol=1e-3)
    assert set(slices[0]) == {"index", "z_mm", "has_lung", "probability", "positive",
                              "classifier_probability", "ggo_area_cm2"}
    for s, k in zip(slices, range(len(slices)), strict=True):
        if result.has_lung[k]:
            assert s["probability"] == pytest.approx(float(result.prob[k]), abs=1e-5)
            assert s["classifier_probability"] == pytest.approx(
                float(result.classifier_prob[k]), abs=1e-5)
            assert s["ggo_area_cm2"] == pytest.approx(float(result.ggo_area_cm2[k]), abs=1e-3)
        else:
            assert s["classifier_probability"] is None and s["ggo_area_cm2"] is None
    assert {"read", "lung_segmentation", "localization", "export_nifti", "total"} <= set(
        doc["timings_s"])
    assert doc["models"]["classifier"]["sha256"] == "1" * 64
    assert doc["config"]["infection_sigma_mm"] == AnalysisConfig().infection_sigma_mm
    assert doc["config"]["slice_threshold"] == 0.5  # resolved from the model card
    assert doc["warnings"] == ["<b>slice spacing varies</b>"]


def test_nifti_outputs_have_the_input_geometry(written):
    result, out, _ = written
    expected_affine = nifti_affine(result.volume.affine)
    for name, dtype in (("lung_mask.nii.gz", np.uint8), ("infection_mask.nii.gz", np.uint8),
                        ("heatmap.nii.gz", np.float32)):
        img = nib.load(out / name)
        assert img.shape == result.volume.shape[::-1]
        assert img.get_data_dtype() == dtype
        np.testing.assert_allclose(img.affine, expected_affine, atol=1e-5)
    lung = np.asanyarray(nib.load(out / "lung_mask.nii.gz").dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(lung, result.lung_mask)


def test_report_is_self_contained_escaped_and_says_not_a_medical_device(written):
    _, out, _ = written
    html = (out / "report.html").read_text()
    assert "not a medical device" in html.lower()
    assert html.count("data:image/png;base64,") == 5  # 3 overlays, 3D render, profile
    assert "<b>slice spacing varies</b>" not in html
    assert "&lt;b&gt;slice spacing varies&lt;/b&gt;" in html
    assert "covid-suspected" in html and "test-classifier" in html


def test_overlays_pick_the_lesion_slices(written):
    result, _, _ = written
    chosen = overlays.select_slices(result, 3)
    assert chosen == sorted(chosen)
    assert all(result.infection_mask[z].any() for z in chosen)


def test_radiological_orientation():
    canonical = np.array([[0, 0, 0.7, 0], [0, 0.7, 0, 0], [2.5, 0, 0, 0], [0, 0, 0, 1.0]])
    assert overlays.display_flips(canonical) == (False, False)
    flipped = canonical.copy()
    flipped[0, 2] = -0.7  # columns run left -> right: patient right must go to image left
    image = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(overlays.display_slice(image, flipped), image[:, ::-1])


def test_block_downsample_known_answer():
    mask = np.zeros((8, 8, 8), bool)
    mask[:4] = True
    fractions, grid = render3d.block_downsample(mask, (1.0, 0.5, 0.5), 2.0)
    assert grid == (2.0, 2.0, 2.0)
    assert fractions.shape == (4, 2, 2)
    np.testing.assert_allclose(fractions[:, 0, 0], [1, 1, 0, 0])


def test_lesion_outputs_density_and_halves(written):
    """The phantom's -400 HU sphere is ground glass: labels, volumes, PO, halves, report."""
    result, out, _ = written
    doc = json.loads((out / "result.json").read_text())
    inf = doc["infection"]
    assert inf["method"] == "hu"
    assert inf["ggo_volume_cm3"] + inf["consolidation_volume_cm3"] == pytest.approx(
        inf["volume_cm3"], abs=1e-2)
    assert inf["ggo_volume_cm3"] > 0.9 * inf["volume_cm3"] > 0
    assert [h["name"] for h in inf["halves"]] == ["ventral", "dorsal"]
    assert sum(h["lung_cm3"] for h in inf["halves"]) == pytest.approx(
        doc["lung"]["volume_cm3"], abs=1e-2)
    density = doc["density"]
    assert set(density) >= {"parenchyma_cm3", "percent_opacity", "percent_high_opacity",
                            "mean_lung_hu", "definitions"}
    assert density["percent_opacity"] >= inf["percent_of_lung"] > 0
    assert density["percent_high_opacity"] == 0.0          # -400 HU: not high opacity
    labels = np.asarray(nib.load(out / doc["outputs"]["lesion_labels"]).dataobj)
    mask = np.asarray(nib.load(out / doc["outputs"]["infection_mask"]).dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2}
    np.testing.assert_array_equal(labels > 0, mask > 0)
    html = (out / "report.html").read_text()
    assert "zone-based score" in html and "percentage of high opacity (PHO)" in html
    assert "dorsal half" in html
    from covidct.commands.analyze import summary_lines

    text = "\n".join(summary_lines(doc, out))
    assert "zone-based score" in text and "ground glass" in text and "PHO" in text
    assert "dorsal" in text
