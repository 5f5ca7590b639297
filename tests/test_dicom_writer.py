"""The synthetic DICOM writer produces valid CT series, with each quirk as promised."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from covidct.synth.dicom_writer import DicomQuirks, write_ct_series
from covidct.volume import Volume


def _read(paths):
    return [pydicom.dcmread(p) for p in paths]


def test_plain_series_has_correct_geometry_and_tags(tmp_path, small_ct: Volume) -> None:
    paths = write_ct_series(small_ct, tmp_path, seed=3, patient_id="P1", study_date="20200315")
    assert [p.name for p in paths][:2] == ["IMG0001.dcm", "IMG0002.dcm"]
    dss = _read(paths)
    assert len(dss) == 12
    first, last = dss[0], dss[-1]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert [float(v) for v in first.ImagePositionPatient] == [-10.0, -20.0, -30.0]
    last_position = [float(v) for v in last.ImagePositionPatient]
    assert last_position == pytest.approx([-10, -20, -30 + 11 * 2.5])
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([0.7, 0.8])
    assert float(first.SliceThickness) == pytest.approx(2.5)
    assert (first.PatientID, first.StudyDate, first.Modality) == ("P1", "20200315", "CT")
    assert len({ds.SeriesInstanceUID for ds in dss}) == 1
    assert len({ds.SOPInstanceUID for ds in dss}) == 12
    hu = first.pixel_array * float(first.RescaleSlope) + float(first.RescaleIntercept)
    np.testing.assert_array_equal(hu, small_ct.hu[0])
    again = write_ct_series(small_ct, tmp_path / "again", seed=3, patient_id="P1")
    assert pydicom.dcmread(again[0]).SOPInstanceUID == first.SOPInstanceUID  # reproducible


def test_quirks_write_what_they_promise(tmp_path, small_ct: Volume) -> None:
    quirks = DicomQuirks(shuffle_file_names=True, localizer=True, second_series=True,
                         non_image_objects=True, duplicate_file=True, unsigned_intercept=True,
                         fov_padding_value=-2000, pixel_padding_tag=True, jpeg2000=True,
                         missing_slice=True)
    paths = write_ct_series(small_ct, tmp_path, quirks=quirks)
    dss = _read(paths)
    assert not any(p.name.startswith("IMG") for p in paths)
    ct = [ds for ds in dss if ds.Modality == "CT" and "AXIAL" in ds.get("ImageType", [])]
    series = {ds.SeriesInstanceUID for ds in ct}
    assert len(series) == 2  # main (11 slices after the missing one) + thick (6)
    assert sorted(sum(ds.SeriesInstanceUID == uid for ds in ct) for uid in series) == [6, 12]
    assert sum("LOCALIZER" in ds.get("ImageType", []) for ds in dss) == 1
    assert {ds.Modality for ds in dss} >= {"SR", "OT"}
    main = [ds for ds in ct if ds.SeriesDescription.endswith("chest CT")]
    assert main[0].file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    assert main[0].PixelRepresentation == 0 and float(main[0].RescaleIntercept) == -1024
    assert main[0].PixelPaddingValue == 63536  # -2000 stored as unsigned
    assert (main[0].pixel_array == 63536).any()


def test_gantry_tilt_tilts_the_image_plane(tmp_path, small_ct: Volume) -> None:
    paths = write_ct_series(small_ct, tmp_path, quirks=DicomQuirks(gantry_tilt_deg=20))
    ds = pydicom.dcmread(paths[0])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    assert np.degrees(np.arccos(iop[4])) == pytest.approx(20, abs=1e-4)
    assert float(ds.GantryDetectorTilt) == 20
