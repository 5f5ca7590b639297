"""Write a Volume as a valid CT Image Storage series, optionally with real-world quirks.

Geometry comes from the Volume affine: slice k is at ``affine @ [k, 0, 0, 1]``,
ImageOrientationPatient is (direction of x, direction of y), PixelSpacing (dy, dx).
Quirks are opt-in and reproducible from ``seed``; they exist to test readers.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from covidct.volume import Volume

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@dataclass(frozen=True)
class DicomQuirks:
    """Opt-in quirks of real CT exports (all off by default)."""

    shuffle_file_names: bool = False  # random file names, unrelated to slice order
    localizer: bool = False  # a coronal scout (ImageType LOCALIZER) as its own series
    stray_orientation: bool = False  # a lone coronal image inside the main series
    second_series: bool = False  # a thicker reconstruction (every 2nd slice), another UID
    non_image_objects: bool = False  # an SR document and an RGB secondary capture
    duplicate_file: bool = False  # one instance copied under another file name
    # stored value outside a circular FOV (e.g. -2048, or -2000 wrapped to 63536 when unsigned)
    fov_padding_value: int | None = None
    pixel_padding_tag: bool = False  # also write PixelPaddingValue = fov_padding_value
    unsigned_intercept: bool = False  # uint16 storage with RescaleIntercept -1024
    jpeg2000: bool = False  # JPEG 2000 lossless transfer syntax
    nonuniform_spacing: bool = False  # the upper half is shifted by half a slice
    missing_slice: bool = False  # the middle slice is not written
    gantry_tilt_deg: float = 0.0  # image planes tilted about the x axis


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_ct_series(
    volume: Volume,
    out_dir: str | Path,
    *,
    quirks: DicomQuirks = DicomQuirks(),  # noqa: B008 - frozen, immutable default
    seed: int = 0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str = "COVIDCT-SYNTH",
    series_description: str = "covidct synthetic chest CT",
    study_date: str | date = "20200401",
    series_number: int = 2,
    kernel: str = "STANDARD",
) -> list[Path]:
    """Write ``volume`` as DICOM files in ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if isinstance(study_date, date):
        study_date = study_date.strftime("%Y%m%d")
    study_uid = study_uid or _uid(seed, patient_id, "study")
    series_uid = series_uid or _uid(seed, patient_id, series_description, "series")
    frame_uid = _uid(seed, study_uid, "frame")
    common = {
        "study_uid": study_uid, "frame_uid": frame_uid, "patient_id": patient_id,
        "study_date": study_date, "kernel": kernel,
    }

    affine = np.asarray(volume.affine, dtype=np.float64)
    nz, ny, nx = volume.shape
    dz, dy, dx = volume.spacing_mm
    row_dir = affine[:3, 2] / dx
    col_dir = affine[:3, 1] / dy
    step = affine[:3, 0].copy()
    if quirks.gantry_tilt_deg:
        t = math.radians(quirks.gantry_tilt_deg)
        rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        col_dir = rot @ col_dir

    hu = np.rint(np.asarray(volume.hu, dtype=np.float64))
    if quirks.fov_padding_value is not None:
        yy, xx = np.mgrid[:ny, :nx]
        outside = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (min(ny, nx) / 2) ** 2
    slices = list(range(nz))
    if quirks.missing_slice and nz >= 3:
        slices.remove(nz // 2)

    files: list[tuple[str, Dataset]] = []
    for number, k in enumerate(slices, start=1):
        position = affine[:3, 3] + k * step
        if quirks.nonuniform_spacing and k >= nz // 2:
            position = position + 0.5 * step
        ds = _image(hu[k], position, row_dir, col_dir, (dy, dx), dz, quirks, common,
                    _uid(series_uid, k), series_uid, series_number, series_description, number,
                    outside=outside if quirks.fov_padding_value is not None else None)
        if quirks.gantry_tilt_deg:
            ds.GantryDetectorTilt = quirks.gantry_tilt_deg
        files.append((f"IMG{number:04d}.dcm", ds))

    if quirks.second_series:
        thick_uid = _uid(series_uid, "thick")
        for number, k in enumerate(range(0, nz, 2), start=1):
            ds = _image(hu[k], affine[:3, 3] + k * step, row_dir, col_dir, (dy, dx), 2 * dz,
                        quirks, common, _uid(thick_uid, k), thick_uid, series_number + 1,
                        f"{series_description} thick", number)
            files.append((f"THICK{number:04d}.dcm", ds))
    if quirks.localizer or quirks.stray_orientation:
        scout = hu.max(axis=1)[::-1]  # (z top->bottom, x): a coronal projection
        top = affine[:3, 3] + (nz - 1) * step + 0.5 * (ny - 1) * col_dir * dy
        cor_col = -step / np.linalg.norm(step)
        if quirks.localizer:
            uid = _uid(series_uid, "scout")
            ds = _image(scout, top, row_dir, cor_col, (np.linalg.norm(step), dx), dx, quirks,
                        common, _uid(uid, 0), uid, 1, "scout", 1, localizer=True)
            files.append(("SCOUT0001.dcm", ds))
        if quirks.stray_orientation:
            ds = _image(scout, top, row_dir, cor_col, (np.linalg.norm(step), dx), dx, quirks,
                        common, _uid(series_uid, "stray"), series_uid, series_number,
                        series_description, len(slices) + 1)
            files.append(("STRAY0001.dcm", ds))
    if quirks.non_image_objects:
        files.append(("SR0001.dcm", _sr(common, _uid(series_uid, "sr"))))
        files.append(("SC0001.dcm", _secondary_capture(common, _uid(series_uid, "sc"))))

    if quirks.shuffle_file_names:
        names = [f"{rng.integers(0, 2**63):016x}" for _ in files]
        files = [(name, ds) for name, (_, ds) in zip(names, files, strict=True)]
    written = []
    for name, ds in files:
        path = out_dir / name
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    if quirks.duplicate_file and written:
        copy = out_dir / f"copy_of_{written[0].name}"
        shutil.copyfile(written[0], copy)
        written.append(copy)
    return written


def _base(sop_class: str, sop_uid: str, common: dict, modality: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.StudyInstanceUID = common["study_uid"]
    ds.PatientID = common["patient_id"]
    ds.PatientName = common["patient_id"]
    ds.StudyDate = common["study_date"]
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.Manufacturer = "covidct"
    ds.ManufacturerModelName = "synthetic"
    return ds


def _image(pixels, position, row_dir, col_dir, spacing_yx, thickness, quirks, common, sop_uid,
           series_uid, series_number, description, number, localizer=False,
           outside=None) -> Dataset:
    ds = _base(CTImageStorage, sop_uid, common, "CT")
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate = common["study_date"]
    ds.FrameOfReferenceUID = common["frame_uid"]
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = number
    ds.AcquisitionNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if localizer else "AXIAL"]
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
    ds.PixelSpacing = [f"{spacing_yx[0]:.6f}", f"{spacing_yx[1]:.6f}"]
    ds.SliceThickness = f"{thickness:.6f}"
    ds.SliceLocation = f"{position[2]:.6f}"
    ds.KVP = "120"
    ds.ConvolutionKernel = common["kernel"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(s) for s in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    if quirks.unsigned_intercept:
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        stored = np.clip(pixels + 1024, 0, 65535).astype(np.uint16)
    else:
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        stored = np.clip(pixels, -32768, 32767).astype(np.int16)
    if outside is not None:
        value = int(np.array(quirks.fov_padding_value, dtype=np.int64).astype(stored.dtype))
        stored[outside] = value
        if quirks.pixel_padding_tag:
            ds.add_new(0x00280120, "US" if quirks.unsigned_intercept else "SS", value)
    if quirks.jpeg2000 and min(stored.shape) >= 32:  # openjpeg's default levels need >= 32 px
        ds.compress(JPEG2000Lossless, stored, encoding_plugin="pylibjpeg")
    else:
        ds.PixelData = stored.tobytes()
    return ds


def _sr(common: dict, sop_uid: str) -> Dataset:
    ds = _base(BASIC_TEXT_SR, sop_uid, common, "SR")
    ds.SeriesInstanceUID = _uid(sop_uid, "series")
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    return ds


def _secondary_capture(common: dict, sop_uid: str) -> Dataset:
    ds = _base(SECONDARY_CAPTURE, sop_uid, common, "OT")
    ds.SeriesInstanceUID = _uid(sop_uid, "series")
    ds.SeriesNumber = 901
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = 8, 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros((8, 8, 3), dtype=np.uint8).tobytes()
    return ds
