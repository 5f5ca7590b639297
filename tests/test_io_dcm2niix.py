"""Acceptance: `covidct convert` writes what dcm2niix writes, voxel for voxel in world space.

Each voxel of our NIfTI is mapped through both affines into dcm2niix's grid; the index
must land on a voxel centre and the HU values must match. Voxels we set to air
(padding outside the field of view) must be one constant padding value in dcm2niix's
output (dcm2niix keeps the raw padding).
Known differences, tested differently below:
- gantry tilt: dcm2niix's untilted output keeps the pixels but approximates the slice
  offsets (its "_Tilt_" file is resampled); we compare the arrays index by index and
  test separately that our sheared affine reproduces every ImagePositionPatient.
- missing slice / uneven spacing: dcm2niix's plain output holds each true slice once on
  one step (so positions after the irregular step are wrong); ours is a uniform grid of
  nearest true slices (covidct.io.dicom_geometry). Each true slice of dcm2niix's plain
  output must appear in ours, within half a step of its true position.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from covidct.cli import main
from covidct.errors import InputError
from covidct.io.dicom import PADDING_HU
from covidct.io.nifti import read_nifti_array
from covidct.synth.dicom_writer import DicomQuirks, write_ct_series

pytestmark = pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")

REAL_SERIES = [
    "cip-copdgene-10002K/ct-64Dicom",
    "totalsegmentator-siemens-dicom/example_ct_dicom",
    "lungmask-slices",
    "dcmqi-ge-slices",
]
QUIRKS = {
    "plain": DicomQuirks(),
    "messy_folder": DicomQuirks(shuffle_file_names=True, localizer=True, stray_orientation=True,
                                second_series=True, non_image_objects=True, duplicate_file=True),
    "fov_2048": DicomQuirks(fov_padding_value=-2048),
    "padding_tag": DicomQuirks(fov_padding_value=-1500, pixel_padding_tag=True),
    "unsigned_padding": DicomQuirks(unsigned_intercept=True, fov_padding_value=-2000,
                                    pixel_padding_tag=True),
    "jpeg2000": DicomQuirks(jpeg2000=True, unsigned_intercept=True),
    "missing_slice": DicomQuirks(missing_slice=True),
    "nonuniform": DicomQuirks(nonuniform_spacing=True),
    "tilt": DicomQuirks(gantry_tilt_deg=15.0),
}


def _dcm2niix(src: Path, out: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    out.mkdir()
    done = subprocess.run(["dcm2niix", "-z", "y", "-b", "n", "-f", "out", "-o", str(out),
                           str(src)], capture_output=True, text=True, timeout=120, check=False)
    files = [p for p in sorted(out.glob("*.nii.gz")) if "_Eq_" not in p.name
             and "_Tilt_" not in p.name]
    assert files, f"dcm2niix wrote nothing for {src}: {done.stdout} {done.stderr}"
    out = []
    for path in files:
        try:
            out.append(read_nifti_array(path))
        except InputError as exc:  # e.g. the RGB secondary capture of a messy folder
            assert "expected real numbers" in str(exc)
    return out


def _convert(src: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    assert main(["convert", str(src), str(out)]) == 0
    return read_nifti_array(out)


def _matching(ours: np.ndarray, theirs: list) -> tuple[np.ndarray, np.ndarray]:
    same = [t for t in theirs if sorted(t[0].shape) == sorted(ours.shape)]
    assert len(same) == 1, [t[0].shape for t in theirs]
    return same[0]


def assert_same_world_values(ours, ours_affine, theirs, theirs_affine) -> None:
    idx = np.indices(ours.shape).reshape(3, -1).astype(np.float64)
    to_theirs = np.linalg.inv(theirs_affine) @ ours_affine
    mapped = to_theirs[:3, :3] @ idx + to_theirs[:3, 3:4]
    nearest = np.rint(mapped)
    assert np.abs(mapped - nearest).max() < 0.02, "grids are not the same in world space"
    nearest = nearest.astype(np.int64)
    for axis in range(3):
        assert nearest[axis].min() >= 0 and nearest[axis].max() < theirs.shape[axis]
    values = theirs[nearest[0], nearest[1], nearest[2]].reshape(ours.shape)
    _assert_values(ours, values)


def _assert_values(ours: np.ndarray, theirs: np.ndarray) -> None:
    padded = (ours == PADDING_HU) & (theirs != PADDING_HU)
    np.testing.assert_array_equal(ours[~padded], theirs[~padded])
    if padded.any():
        assert np.unique(theirs[padded]).size == 1  # one constant padding value


@pytest.mark.parametrize("series", REAL_SERIES)
def test_real_series_match_dcm2niix(tmp_path, real_data: Path, series: str) -> None:
    src = real_data / series
    ours, ours_affine = _convert(src, tmp_path / "ours.nii.gz")
    theirs, theirs_affine = _matching(ours, _dcm2niix(src, tmp_path / "d2n"))
    assert_same_world_values(ours, ours_affine, theirs, theirs_affine)


@pytest.mark.parametrize("name", list(QUIRKS))
def test_synthetic_quirks_match_dcm2niix(tmp_path, small_ct, name: str) -> None:
    src = tmp_path / "dicom"
    write_ct_series(small_ct, src, quirks=QUIRKS[name])
    ours, ours_affine = _convert(src, tmp_path / "ours.nii.gz")
    if name in ("missing_slice", "nonuniform"):
        (plain,) = _dcm2niix(src, tmp_path / "d2n")
        _assert_true_slices_on_grid(src, plain[0])
        return
    theirs, theirs_affine = _matching(ours, _dcm2niix(src, tmp_path / "d2n"))
    if name == "tilt":
        assert ours.shape == theirs.shape
        _assert_values(ours, theirs)
    else:
        assert_same_world_values(ours, ours_affine, theirs, theirs_affine)


def _assert_true_slices_on_grid(src: Path, theirs: np.ndarray) -> None:
    from covidct.io import load_volume

    volume = load_volume(src)
    index = np.asarray(volume.metadata["source_slice_index"])
    true_z = np.asarray(volume.metadata["slice_positions_mm"])[:, 2]
    grid_z = volume.slice_positions_mm()
    step = volume.spacing_mm[0]
    assert theirs.shape[0] == true_z.size == index.max() + 1
    for n in range(true_z.size):
        shown = np.flatnonzero(index == n)
        assert shown.size >= 1
        assert np.abs(grid_z[shown] - true_z[n]).min() <= step / 2 + 1e-6
        for k in shown:
            _assert_values(volume.hu[k], theirs[n])


def test_single_slice_matches_dcm2niix(tmp_path, small_ct) -> None:
    paths = write_ct_series(small_ct, tmp_path / "all")
    (tmp_path / "one").mkdir()
    shutil.copy(paths[4], tmp_path / "one" / paths[4].name)
    ours, ours_affine = _convert(tmp_path / "one", tmp_path / "ours.nii.gz")
    assert ours.shape == (1, 40, 48)
    theirs, theirs_affine = _matching(ours, _dcm2niix(tmp_path / "one", tmp_path / "d2n"))
    # dcm2niix gives a lone slice a nominal z step; compare within the slice plane.
    ours_affine, theirs_affine = ours_affine.copy(), theirs_affine.copy()
    ours_affine[:3, 0] = theirs_affine[:3, 0] = [0, 0, 1]
    assert_same_world_values(ours, ours_affine, theirs, theirs_affine)
