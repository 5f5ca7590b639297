"""Non-finite voxels become padding; values that are not Hounsfield units are refused.

Known answers come from the reported inputs (09-nifti-nan, 14-not-hounsfield) and the
public series in shared/data/real, which are all HU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from covidct.cli import main
from covidct.errors import InputError
from covidct.hu_units import (
    PADDING_HU,
    hounsfield_problems,
    replace_nonfinite,
    require_hounsfield,
)
from covidct.io import load_volume
from covidct.io.nifti import read_nifti_array
from covidct.volume import Volume

REPORTED = REAL_DATA.parent / "reported-inputs"
NAN_DIR = REPORTED / "09-nifti-nan"
NOT_HU_DIR = REPORTED / "14-not-hounsfield"
COPD_NRRD = "cip-copdgene-10002K/ct-64.nrrd"

# Every CT volume file in shared/data/real (label maps are listed apart: not CT).
REAL_CT_FILES = [
    "cip-copdgene-10002K/cip_10002K_ct64.nii.gz",
    COPD_NRRD,
    "lidc-idri-0001/LIDC-IDRI-0001.nii.gz",
    "lidc-idri-0003/LIDC-IDRI-0003.nii.gz",
    "totalsegmentator-examples/ct_cropped.nii.gz",
    "totalsegmentator-examples/example_ct.nii.gz",
]
REAL_LABEL_MAPS = [
    "cip-copdgene-10002K/cip_10002K_lm64_1right_2left_3airway.nii.gz",
    "cip-copdgene-10002K/lm-64.nrrd",
    "cip-copdgene-10002K/wholeLung-64.nrrd",
]
REAL_DICOM = [
    "cip-copdgene-10002K/ct-64Dicom",
    "covid-ct-md/normal001",  # 154 slices of 512x512: loaded once, here only
    "dcmqi-ge-slices",
    "dcmqi-ge-slices/01.dcm",
    "dcmqi-ge-slices/02.dcm",
    "dcmqi-ge-slices/03.dcm",
    "lungmask-slices",
    "lungmask-slices/0.dcm",
    "lungmask-slices/1.dcm",
    "totalsegmentator-siemens-dicom/example_ct_dicom",
]


def _reported(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reported input {path} not found")
    return path


def _nan_mask(path: Path) -> np.ndarray:
    raw, _ = read_nifti_array(path)  # canonical (z, y, x), before any NaN handling
    assert np.issubdtype(raw.dtype, np.floating)
    return ~np.isfinite(raw)


# --- non-finite voxels -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "n_nan"), [("nan.nii.gz", 100172), ("nan1.nii.gz", 79)])
def test_nan_nifti_loads_with_nan_as_padding(name, n_nan) -> None:
    path = _reported(NAN_DIR / name)
    raw, _ = read_nifti_array(path)
    bad = ~np.isfinite(raw)
    assert int(bad.sum()) == n_nan
    volume = load_volume(path)
    assert np.isfinite(volume.hu).all()
    assert (volume.hu[bad] == PADDING_HU).all()
    np.testing.assert_array_equal(volume.hu[~bad], raw[~bad])
    notes = [w for w in volume.warnings if "not finite" in w]
    assert len(notes) == 1
    assert f"{n_nan} of {raw.size} voxels" in notes[0]
    assert "NaN" in notes[0] and "padding" in notes[0]
    assert hounsfield_problems(volume) == []


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan1.nii.gz"])
def test_convert_writes_nan_as_minus_1024_not_0(name, tmp_path, capsys) -> None:
    path = _reported(NAN_DIR / name)
    bad = _nan_mask(path)
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(path), str(out)]) == 0
    assert "not finite" in capsys.readouterr().out
    written, _ = read_nifti_array(out)
    assert written.dtype == np.int16
    assert (written[bad] == PADDING_HU).all()
    raw, _ = read_nifti_array(path)
    np.testing.assert_array_equal(written[~bad], np.rint(raw[~bad]).astype(np.int16))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_inf_and_nan_in_itk_files_become_padding(suffix, tmp_path) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(1)
    hu = rng.uniform(-1000, 400, size=(6, 10, 12)).astype(np.float32)
    hu[0, 0, :3] = np.inf
    hu[5, 9, 11] = -np.inf
    hu[2, 4, 4] = np.nan
    image = sitk.GetImageFromArray(hu)  # (k, j, i) = (z, y, x), identity direction: axial
    image.SetSpacing((0.8, 0.7, 2.5))
    path = tmp_path / f"inf{suffix}"
    sitk.WriteImage(image, str(path))

    volume = load_volume(path)
    bad = ~np.isfinite(hu)
    assert volume.shape == hu.shape and np.isfinite(volume.hu).all()
    assert (volume.hu[bad] == PADDING_HU).all()
    np.testing.assert_array_equal(volume.hu[~bad], hu[~bad])
    (note,) = [w for w in volume.warnings if "not finite" in w]
    assert "5 of 720 voxels (0.694% of the volume)" in note
    assert "1 NaN, 3 +inf, 1 -inf" in note


def test_replace_nonfinite_copies_and_keeps_finite_volumes() -> None:
    hu = np.full((2, 3, 4), -500.0, dtype=np.float32)
    hu[1, 2, 3] = np.nan
    volume = Volume.from_spacing(hu, (1.0, 1.0, 1.0))
    fixed = replace_nonfinite(volume)
    assert np.isnan(hu[1, 2, 3]) and np.isnan(volume.hu[1, 2, 3])  # caller's array untouched
    assert fixed.hu[1, 2, 3] == PADDING_HU and fixed.hu.dtype == np.float32
    assert len(fixed.warnings) == 1 and "1 of 24 voxels (4.17% of the volume)" in fixed.warnings[0]
    assert replace_nonfinite(fixed) is fixed
    ints = Volume.from_spacing(np.zeros((1, 2, 2), dtype=np.int16), (1.0, 1.0, 1.0))
    assert replace_nonfinite(ints) is ints


# --- Hounsfield units --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cause"), [("unit.nii.gz", "normalised to 0..1"),
                                             ("byte.nii.gz", "8-bit image (0..255)")])
def test_not_hounsfield_inputs_are_described(name, cause) -> None:
    volume = load_volume(_reported(NOT_HU_DIR / name))
    (problem,) = hounsfield_problems(volume)
    assert "not Hounsfield units" in problem and cause in problem
    assert "minimum 0, 1st percentile 0, 99th percentile" in problem
    with pytest.raises(InputError, match="Hounsfield") as info:
        require_hounsfield(volume)
    assert "RescaleIntercept" in str(info.value) and "scl_slope" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.fixture()
def no_models(monkeypatch):
    """Fail fast (instead of loading weights) if analyze ever gets past the HU check."""
    import covidct.models.registry as registry

    def refuse(*_, **__):
        raise AssertionError("analyze went past the Hounsfield check")

    monkeypatch.setattr(registry, "load_bundle", refuse)


@pytest.fixture()
def raw_uint16_nrrd(real_data, tmp_path) -> Path:
    """The COPDGene CT as stored values HU + 1024 (uint16), RescaleIntercept not applied."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(real_data / COPD_NRRD))
    raw = sitk.Cast(image + 1024, sitk.sitkUInt16)
    path = tmp_path / "raw.nrrd"
    sitk.WriteImage(raw, str(path))
    return path


@pytest.fixture(params=["unit.nii.gz", "byte.nii.gz", "raw.nrrd"])
def not_hu(request) -> Path:
    """The two reported non-HU NIfTIs and the raw uint16 NRRD."""
    if request.param == "raw.nrrd":
        return request.getfixturevalue("raw_uint16_nrrd")
    return _reported(NOT_HU_DIR / request.param)


def test_raw_stored_values_are_named(raw_uint16_nrrd) -> None:
    volume = load_volume(raw_uint16_nrrd)
    assert (int(volume.hu.min()), int(volume.hu.max())) == (17, 2119)
    (problem,) = hounsfield_problems(volume)
    assert "raw 12-bit stored pixel values (0..4095)" in problem


def test_analyze_refuses_not_hounsfield_with_exit_2(not_hu, no_models, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["analyze", str(not_hu), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "covidct analyze: error:" in err and "not Hounsfield units" in err
    assert "RescaleIntercept" in err
    assert not out.exists()

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["analyze", str(not_hu), "-o", str(kept), "-q", "--overwrite"]) == 2
    assert "not Hounsfield units" in capsys.readouterr().err
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_info_warns_but_exits_0(not_hu, capsys) -> None:
    assert main(["info", str(not_hu)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("warning: The values are not Hounsfield units") for line in lines)
    assert main(["info", str(not_hu), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["hounsfield_problems"]) == 1
    assert info["hounsfield_problems"][0] in info["warnings"]


def test_info_on_hounsfield_input_has_no_problem(real_data, capsys) -> None:
    assert main(["info", str(real_data / COPD_NRRD), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hounsfield_problems"] == [] and info["warnings"] == []


@pytest.mark.parametrize(("scale", "offset", "expected"), [
    (1 / 1000.0, 0.0, "no voxel reaches air"),         # HU / 1000
    (1 / 2048.0, 0.0, "normalised to -1..1"),
    (100.0, 0.0, "look scaled up"),                    # slope applied to HU again
    (1.0, 32768.0, "raw unsigned 16-bit stored"),
])
def test_scaled_variants_are_refused(real_data, scale, offset, expected) -> None:
    ct = load_volume(real_data / COPD_NRRD)
    volume = ct.with_hu(ct.hu.astype(np.float32) * np.float32(scale) + np.float32(offset))
    problems = hounsfield_problems(volume)
    assert any(expected in p for p in problems), problems
    assert hounsfield_problems(ct) == []


def test_all_nonfinite_is_a_problem() -> None:
    volume = Volume.from_spacing(np.full((1, 2, 2), np.nan, dtype=np.float32), (1.0, 1.0, 1.0))
    (problem,) = hounsfield_problems(volume)
    assert "no finite voxel" in problem


# --- every real series is HU -------------------------------------------------------------


@pytest.mark.parametrize("relative", REAL_CT_FILES + REAL_DICOM)
def test_real_series_are_hounsfield(real_data, relative) -> None:
    volume = load_volume(real_data / relative)
    assert hounsfield_problems(volume) == []
    require_hounsfield(volume)


@pytest.mark.parametrize("relative", REAL_LABEL_MAPS)
def test_real_label_maps_are_not_hounsfield(real_data, relative) -> None:
    (problem,) = hounsfield_problems(load_volume(real_data / relative))
    assert "minimum 0," in problem


def test_the_lists_cover_every_real_volume_file(real_data) -> None:
    found = {str(p.relative_to(real_data)) for p in real_data.rglob("*")
             if p.name.endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"))}
    assert found == set(REAL_CT_FILES) | set(REAL_LABEL_MAPS)


def test_nonfinite_block_inside_the_image_is_refused() -> None:
    """NaN padding reaching the slice border is padding; a NaN block enclosed by the image
    (a damaged volume) would become 'air' inside the body, so it is refused."""
    hu = np.full((10, 64, 64), 40.0, dtype=np.float32)
    hu[:, :, :8] = np.nan                      # padding at the edge: 10 x 64 x 8 voxels
    volume = Volume.from_spacing(hu, (2.0, 1.0, 1.0))
    assert np.isfinite(replace_nonfinite(volume).hu).all()
    small = hu.copy()
    small[4, 30:35, 30:35] = np.nan            # 25 voxels = 0.05 cm3 inside: a warning
    assert "not finite" in replace_nonfinite(volume.with_hu(small)).warnings[-1]
    block = hu.copy()
    block[2:7, 20:40, 20:40] = np.nan          # 2000 voxels = 4 cm3 inside
    with pytest.raises(InputError, match=r"4\.0 cm3 .* inside the image \(slices 2-6\)"):
        replace_nonfinite(volume.with_hu(block))
