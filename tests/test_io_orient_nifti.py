"""Canonical reorientation, the NIfTI writer/reader and NRRD/MHA, with known answers."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from covidct.errors import InputError
from covidct.io import load_volume
from covidct.io.nifti import read_nifti_array, write_nifti
from covidct.io.orient import axis_codes, to_canonical
from covidct.volume import Volume


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_to_canonical_undoes_any_permutation_and_flip(small_ct: Volume, perm) -> None:
    hu = small_ct.hu[:4, :5, :6]
    vol = Volume(hu, small_ct.affine)
    for flips in itertools.product((False, True), repeat=3):
        array, affine = np.transpose(vol.hu, perm), vol.affine.copy()
        affine[:3, :3] = vol.affine[:3, list(perm)]
        for axis, flip in enumerate(flips):
            if flip:
                array = np.flip(array, axis)
                affine[:3, 3] += (array.shape[axis] - 1) * affine[:3, axis]
                affine[:3, axis] *= -1
        out, out_affine = to_canonical(array, affine)
        np.testing.assert_array_equal(out, vol.hu)
        np.testing.assert_allclose(out_affine, vol.affine, atol=1e-9)
    assert axis_codes(vol.affine) == "SPL"


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_write_then_read_nifti_roundtrip(tmp_path, small_ct: Volume, dtype) -> None:
    array = np.abs(small_ct.hu) % 200 if dtype == np.uint8 else small_ct.hu
    path = write_nifti(array, small_ct.affine, tmp_path / "a.nii.gz", dtype=dtype)
    back, affine = read_nifti_array(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, array.astype(dtype))
    np.testing.assert_allclose(affine, small_ct.affine, atol=1e-5)
    img = nib.load(path)  # RAS on disk: x runs right->left, so the first RAS column is negative
    assert img.affine[0, 0] == pytest.approx(-0.8)
    assert img.header["qform_code"] == 1 and img.header["sform_code"] == 1


def test_write_nifti_rejects_values_that_do_not_fit(tmp_path, small_ct: Volume) -> None:
    with pytest.raises(InputError, match="do not fit"):
        write_nifti(small_ct.hu, small_ct.affine, tmp_path / "m.nii.gz", dtype=np.uint8)


def test_nifti_in_any_orientation_loads_canonical_and_honours_scaling(tmp_path, small_ct) -> None:
    # Store as (x, y, z) flipped in x, RAS, with scl_slope 2 / scl_inter -1000.
    raw = ((small_ct.hu.astype(np.int32) + 1000) // 2).astype(np.int16)
    expected = raw.astype(np.float32) * 2 - 1000
    data = np.flip(raw.transpose(2, 1, 0), axis=0)
    lps = np.zeros((4, 4))
    lps[:3, 0] = -small_ct.affine[:3, 2]
    lps[:3, 1] = small_ct.affine[:3, 1]
    lps[:3, 2] = small_ct.affine[:3, 0]
    lps[:3, 3] = small_ct.affine[:3, 3] + (data.shape[0] - 1) * small_ct.affine[:3, 2]
    lps[3, 3] = 1
    img = nib.Nifti1Image(data, np.diag([-1, -1, 1, 1]) @ lps)
    img.header.set_slope_inter(2.0, -1000.0)
    nib.save(img, tmp_path / "rot.nii")
    vol = load_volume(tmp_path / "rot.nii")
    np.testing.assert_array_equal(vol.hu, expected)
    np.testing.assert_allclose(vol.affine, small_ct.affine, atol=1e-5)
    assert vol.metadata["format"] == "nifti"


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_formats_with_flipped_direction_load_canonical(tmp_path, small_ct, suffix) -> None:
    # ITK index (i, j, k) = (x, y, z) with y flipped (posterior->anterior) in the file.
    image = sitk.GetImageFromArray(np.flip(small_ct.hu, axis=1))
    dz, dy, dx = small_ct.spacing_mm
    image.SetSpacing((dx, dy, dz))
    image.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    origin = np.array(small_ct.origin_lps_mm) + (small_ct.shape[1] - 1) * np.array([0, dy, 0])
    image.SetOrigin(tuple(origin))
    sitk.WriteImage(image, str(tmp_path / f"ct{suffix}"))
    vol = load_volume(tmp_path / f"ct{suffix}")
    np.testing.assert_array_equal(vol.hu, small_ct.hu)
    np.testing.assert_allclose(vol.affine, small_ct.affine, atol=1e-6)


def test_real_copdgene_dicom_nrrd_and_nifti_agree(real_data) -> None:
    root = real_data / "cip-copdgene-10002K"
    dicom = load_volume(root / "ct-64Dicom")
    nrrd = load_volume(root / "ct-64.nrrd")
    nifti = load_volume(root / "cip_10002K_ct64.nii.gz")
    assert dicom.shape == nrrd.shape == nifti.shape == (79, 64, 64)
    for other in (nrrd, nifti):
        np.testing.assert_array_equal(other.hu, dicom.hu)
        np.testing.assert_allclose(other.affine, dicom.affine, atol=2e-3)
