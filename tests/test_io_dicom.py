"""DICOM loading: series discovery and choice, slice order, HU, padding, geometry checks."""

from __future__ import annotations

import hashlib
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from covidct.errors import SeriesSelectionError
from covidct.io import load_volume
from covidct.io.dicom import PADDING_HU
from covidct.synth.dicom_writer import DicomQuirks, write_ct_series
from covidct.volume import Volume


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _fov(shape: tuple[int, int]) -> np.ndarray:
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    return (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (min(ny, nx) / 2) ** 2


def test_messy_folder_picks_main_series_in_position_order(tmp_path, small_ct: Volume) -> None:
    quirks = DicomQuirks(shuffle_file_names=True, localizer=True, stray_orientation=True,
                         second_series=True, non_image_objects=True, duplicate_file=True)
    paths = write_ct_series(small_ct, tmp_path, quirks=quirks, series_uid="1.2.3.4")
    before = _tree_digest(tmp_path)
    vol = load_volume(tmp_path)
    assert _tree_digest(tmp_path) == before  # the input is never modified
    np.testing.assert_array_equal(vol.hu, small_ct.hu)
    np.testing.assert_allclose(vol.affine, small_ct.affine, atol=1e-5)
    assert vol.metadata["series_uid"] == "1.2.3.4"
    found = vol.metadata["series_found"]
    assert [(e["n_positions"], e["chosen"]) for e in found] == [(12, True), (6, False)]
    text = " | ".join(vol.warnings)
    for expected in ("duplicate", "lone image of another orientation", "chose series 1.2.3.4",
                     "localizer", "SR", "secondary capture"):
        assert expected in text
    assert len(paths) == 12 + 6 + 2 + 2 + 1


def test_explicit_series_and_zip_and_single_file(tmp_path, small_ct: Volume) -> None:
    folder = tmp_path / "dicom"
    write_ct_series(small_ct, folder, quirks=DicomQuirks(second_series=True), series_uid="1.2.3")
    thick = [e for e in load_volume(folder).metadata["series_found"] if not e["chosen"]][0]
    vol = load_volume(folder, series_uid=thick["series_uid"])
    np.testing.assert_array_equal(vol.hu, small_ct.hu[::2])
    assert vol.spacing_mm[0] == pytest.approx(5.0)
    with pytest.raises(SeriesSelectionError, match="not among"):
        load_volume(folder, series_uid="9.9.9")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"nested/{path.name}")
    np.testing.assert_array_equal(load_volume(archive).hu, small_ct.hu)
    single = load_volume(folder / "IMG0005.dcm")
    assert single.shape == (1, 40, 48)
    np.testing.assert_array_equal(single.hu[0], small_ct.hu[4])
    assert single.spacing_mm[0] == pytest.approx(2.5)  # from SliceThickness for one slice


def test_equal_series_need_explicit_choice(tmp_path, small_ct: Volume) -> None:
    write_ct_series(small_ct, tmp_path, series_uid="1.2.3.1", series_description="soft")
    write_ct_series(small_ct, tmp_path / "b", series_uid="1.2.3.2", series_description="lung")
    with pytest.raises(SeriesSelectionError, match="--series") as info:
        load_volume(tmp_path)
    assert "1.2.3.1" in str(info.value) and "1.2.3.2" in str(info.value)
    assert load_volume(tmp_path, series_uid="1.2.3.2").metadata["series_description"] == "lung"


@pytest.mark.parametrize(
    ("quirks", "pad_raw"),
    [
        (DicomQuirks(fov_padding_value=-2048), None),
        (DicomQuirks(fov_padding_value=-1500, pixel_padding_tag=True), None),
        (DicomQuirks(fov_padding_value=-2000, pixel_padding_tag=True, unsigned_intercept=True),
         None),
        (DicomQuirks(jpeg2000=True, unsigned_intercept=True), None),
    ],
)
def test_hu_and_padding(tmp_path, small_ct: Volume, quirks: DicomQuirks, pad_raw) -> None:
    write_ct_series(small_ct, tmp_path, quirks=quirks)
    vol = load_volume(tmp_path)
    expected = small_ct.hu.copy()
    if quirks.unsigned_intercept:
        expected = np.maximum(expected, -1024)
    if quirks.fov_padding_value is not None:
        expected[:, _fov(expected.shape[1:])] = PADDING_HU
    np.testing.assert_array_equal(vol.hu, expected)
    assert vol.hu.dtype == np.int16


def test_geometry_problems_are_reported(tmp_path, small_ct: Volume) -> None:
    cases = {
        "missing": (DicomQuirks(missing_slice=True), "missing slice"),
        "uneven": (DicomQuirks(nonuniform_spacing=True), "non-uniform slice spacing"),
        "tilt": (DicomQuirks(gantry_tilt_deg=12.0), "gantry tilt of 12.00"),
    }
    for name, (quirks, message) in cases.items():
        paths = write_ct_series(small_ct, tmp_path / name, quirks=quirks)
        vol = load_volume(tmp_path / name)
        assert any(message in w for w in vol.warnings), (name, vol.warnings)
        dss = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: d.InstanceNumber)
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in dss])
        if name == "tilt":  # the sheared affine reproduces every ImagePositionPatient
            k = np.arange(len(dss))
            world = vol.affine[:3, 0:1] * k + vol.affine[:3, 3:4]
            np.testing.assert_allclose(world.T, positions, atol=1e-4)
            assert vol.metadata["gantry_tilt_deg"] == pytest.approx(12.0, abs=1e-3)
        else:
            np.testing.assert_allclose(vol.metadata["slice_positions_mm"], positions, atol=1e-5)


def test_duplicate_positions_keep_one_image(tmp_path, small_ct: Volume) -> None:
    paths = write_ct_series(small_ct, tmp_path)
    ds = pydicom.dcmread(paths[3])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 99
    ds.save_as(tmp_path / "extra.dcm")
    vol = load_volume(tmp_path)
    assert vol.shape == small_ct.shape
    assert any("share a slice position" in w for w in vol.warnings)


def _enhanced_ct(volume: Volume, order: list[int]) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = volume.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    dz, dy, dx = volume.spacing_mm
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [dy, dx]
    shared.PixelMeasuresSequence[0].SliceThickness = dz
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelValueTransformationSequence = Sequence([Dataset()])
    shared.PixelValueTransformationSequence[0].RescaleSlope = 1
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -1024
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = list(volume.affine[:3, :3] @ [k, 0, 0]
                                                                  + volume.affine[:3, 3])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = (volume.hu[order].astype(np.int32) + 1024).astype(np.uint16).tobytes()
    return ds


def test_enhanced_ct_multiframe(tmp_path, small_ct: Volume) -> None:
    order = [5, 0, 11, 3, 1, 2, 4, 6, 10, 7, 9, 8]
    _enhanced_ct(small_ct, order).save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    vol = load_volume(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(vol.hu, small_ct.hu)
    np.testing.assert_allclose(vol.affine, small_ct.affine, atol=1e-5)


def test_real_series_metadata(real_data: Path) -> None:
    siemens = load_volume(real_data / "totalsegmentator-siemens-dicom" / "example_ct_dicom")
    assert siemens.shape == (20, 512, 512)
    assert siemens.spacing_mm == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert siemens.metadata["manufacturer"] == "SIEMENS"
    assert "JPEG 2000" in siemens.metadata["transfer_syntax"]
    assert siemens.slice_positions_mm()[0] == pytest.approx(-804.5)  # sorted inferior first
    lungmask = load_volume(real_data / "lungmask-slices")
    assert any("no Modality" in w for w in lungmask.warnings)
    assert lungmask.metadata["padding_voxels"] > 100_000  # -2048 outside the field of view
    assert lungmask.hu.min() > -1100
    ge = load_volume(real_data / "dcmqi-ge-slices")  # feet first, padding -3024 HU
    assert ge.shape == (3, 512, 512) and ge.slice_positions_mm()[0] == pytest.approx(-128.69)
    assert ge.hu.min() == PADDING_HU and ge.metadata["kernel"] == "STANDARD"


@pytest.mark.slow
def test_300_slice_series_loads_fast(tmp_path) -> None:
    hu = np.random.default_rng(1).integers(-1024, 2000, (300, 512, 512)).astype(np.int16)
    write_ct_series(Volume.from_spacing(hu, (1.0, 0.7, 0.7)), tmp_path)
    start = time.perf_counter()
    vol = load_volume(tmp_path)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(vol.hu, hu)
    assert elapsed < 10, elapsed


def test_copy_of_real_tree_is_unchanged(tmp_path, real_data: Path) -> None:
    src = tmp_path / "ge"
    shutil.copytree(real_data / "dcmqi-ge-slices", src)
    before = _tree_digest(src)
    load_volume(src)
    assert _tree_digest(src) == before
