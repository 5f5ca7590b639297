"""Every kind of bad input gets a specific error that says what was found and how to fix it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEGLSLossless

from covidct.cli import main
from covidct.errors import InputError, SeriesSelectionError
from covidct.io import load_volume
from covidct.synth.dicom_writer import write_ct_series
from covidct.volume import Volume


def _one_slice(tmp_path: Path, small_ct: Volume) -> pydicom.Dataset:
    path = write_ct_series(Volume(small_ct.hu[:1], small_ct.affine), tmp_path / "src")[0]
    return pydicom.dcmread(path)


def _expect(path: Path, error: type[InputError], *fragments: str) -> None:
    with pytest.raises(error) as info:
        load_volume(path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_empty_folder(tmp_path) -> None:
    _expect(tmp_path, InputError, "contains no files", "Expected")


def test_missing_path(tmp_path) -> None:
    _expect(tmp_path / "nope", InputError, "does not exist")


def test_non_dicom_files(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff" + bytes(200))
    _expect(tmp_path, InputError, "2 non-DICOM file(s)", "Expected DICOM files")


def test_truncated_file(tmp_path, small_ct) -> None:
    path = write_ct_series(small_ct, tmp_path / "src")[0]
    data = path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|corrupt"):
        load_volume(tmp_path / "cut.dcm")
    (tmp_path / "head.dcm").write_bytes(data[:300])  # cut inside the header
    with pytest.raises(InputError, match="truncated|corrupt"):
        load_volume(tmp_path / "head.dcm")


def test_without_pixel_data(tmp_path, small_ct) -> None:
    ds = _one_slice(tmp_path, small_ct)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    _expect(tmp_path / "nopix.dcm", InputError, "without pixel data", "export the images")


@pytest.mark.parametrize("modality", ["MR", "CR", "DX"])
def test_non_ct_modality(tmp_path, small_ct, modality) -> None:
    ds = _one_slice(tmp_path, small_ct)
    ds.Modality = modality
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage (CR/DX differ; the same rule)
    ds.save_as(tmp_path / "x.dcm")
    _expect(tmp_path / "x.dcm", InputError, f"non-CT modality ({modality})", "CT only")


def test_rgb_image(tmp_path, small_ct) -> None:
    ds = _one_slice(tmp_path, small_ct)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros((40, 48, 3), np.uint8).tobytes()
    ds.save_as(tmp_path / "rgb.dcm")
    _expect(tmp_path / "rgb.dcm", InputError, "RGB", "original CT series")


def test_only_localizer(tmp_path, small_ct) -> None:
    ds = _one_slice(tmp_path, small_ct)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.save_as(tmp_path / "scout.dcm")
    _expect(tmp_path / "scout.dcm", InputError, "localizer", "axial CT series")


def test_equal_axial_series(tmp_path, small_ct) -> None:
    write_ct_series(small_ct, tmp_path / "a", series_uid="1.2.3.1")
    write_ct_series(small_ct, tmp_path / "b", series_uid="1.2.3.2")
    _expect(tmp_path, SeriesSelectionError, "ambiguous", "--series")


@pytest.mark.parametrize(
    ("syntax", "what"),
    [(JPEGLSLossless, "JPEG-LS"), (UID("1.2.840.10008.1.2.4.100"), "MPEG2")],  # no MPEG2 decoder
)
def test_undecodable_compressed_syntax(tmp_path, small_ct, syntax, what) -> None:
    ds = _one_slice(tmp_path, small_ct)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\x00garbage, not a codestream" * 8])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "bad.dcm")
    _expect(tmp_path / "bad.dcm", InputError, "Cannot decode", what, "gdcmconv --raw")


def test_cli_reports_errors_with_exit_code_2(tmp_path, capsys) -> None:
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("covidct info: error:") and "Traceback" not in err
    assert err.count("\n") == 1  # one paragraph


def test_truncated_file_in_a_series_is_named_as_possibly_cut_short(tmp_path: Path,
                                                                    real_data: Path) -> None:
    """A file cut in half inside a real series: the series is still read (one slice fewer),
    and the warning says the file may be cut short, not only that it has no pixels."""
    real = real_data / "covid-ct-md" / "P001"
    files = sorted(real.glob("*.dcm"))[:12]
    for f in files:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    cut = tmp_path / files[5].name
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    volume = load_volume(tmp_path)
    text = " ".join(volume.warnings)
    assert "cut short" in text and files[5].name in text
    assert (real / files[5].name).stat().st_size == len(data)  # the original is untouched
    # the DICOM outputs read the headers again: pydicom's complaints are not repeated
    from covidct.export.dicom_objects import dicom_sources_with_reason

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sources, _ = dicom_sources_with_reason(volume, None)
    assert sources is not None and not [w for w in caught if "pydicom" in w.filename]
