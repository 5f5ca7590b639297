"""Hostile or unstable inputs: unsafe zips, zip bombs, symlink loops, files that grow.

Each is a clear InputError, and nothing is written anywhere: zip members are read into
memory, never extracted.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from covidct.cli import main
from covidct.errors import InputError
from covidct.io import dicom_files, load_volume
from covidct.synth.dicom_writer import write_ct_series
from covidct.volume import Volume


def _ct() -> Volume:
    hu = np.random.default_rng(2).integers(-1000, 400, size=(4, 16, 18)).astype(np.int16)
    return Volume.from_spacing(hu, (2.0, 0.8, 0.8))


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture()
def series(tmp_path) -> list[Path]:
    return write_ct_series(_ct(), tmp_path / "series")


@pytest.mark.parametrize("member", ["../evil.dcm", "a/../../evil.dcm", "/tmp/evil.dcm",
                                    "C:/evil.dcm", "..\\evil.dcm"])
def test_zip_with_escaping_paths_is_refused(tmp_path, series, member) -> None:
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(series[0], "series/ok.dcm")
        zf.writestr(zipfile.ZipInfo(member), series[1].read_bytes())
    before = _listing(tmp_path)
    with pytest.raises(InputError, match="unsafe path"):
        load_volume(archive)
    assert _listing(tmp_path) == before
    assert not Path("/tmp/evil.dcm").exists()


def test_zip_with_a_symlink_member_is_refused(tmp_path, series) -> None:
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("series/link.dcm")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        load_volume(archive)


def test_zip_bomb_is_refused_by_ratio(tmp_path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * (64 * 1024**2))  # 64 MiB of zeros -> ~64 KiB
    assert archive.stat().st_size < 200_000
    with pytest.raises(InputError, match="zip bomb"):
        load_volume(archive)


def test_zip_expanding_past_the_limit_is_refused(tmp_path, series) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in series:
            zf.write(path, path.name)
    total = sum(p.stat().st_size for p in series)
    with pytest.raises(InputError, match="expands to more than"):
        dicom_files.read_dicom_tree(archive, max_expanded_bytes=total - 1)
    assert len(dicom_files.read_dicom_tree(archive, max_expanded_bytes=total).datasets) == 4


def test_zip_whose_header_understates_sizes_is_stopped_while_reading(tmp_path, series) -> None:
    """A lying header (declared size small) is caught by counting the bytes read."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a.dcm", series[0].read_bytes())
    raw = bytearray(buffer.getvalue())
    size = series[0].stat().st_size
    # patch the uncompressed size in the central directory to 10 bytes
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(raw))
    with pytest.raises(InputError):
        dicom_files.read_dicom_tree(archive, max_expanded_bytes=size // 2)


def test_directory_symlink_loop_is_refused(tmp_path, series) -> None:
    os.symlink(tmp_path / "series", tmp_path / "series" / "loop")
    before = _listing(tmp_path / "series")
    with pytest.raises(InputError, match="loop"):
        load_volume(tmp_path / "series")
    assert main(["info", str(tmp_path / "series")]) == 2
    assert _listing(tmp_path / "series") == before


def test_file_symlink_loop_is_refused(tmp_path, series) -> None:
    folder = tmp_path / "series"
    os.symlink(folder / "b.dcm", folder / "a.dcm")
    os.symlink(folder / "a.dcm", folder / "b.dcm")
    with pytest.raises(InputError, match="symbolic link loop"):
        load_volume(folder)


def test_a_second_link_to_the_same_folder_is_read_once(tmp_path, series) -> None:
    root = tmp_path / "study"
    root.mkdir()
    os.symlink(tmp_path / "series", root / "a")
    os.symlink(tmp_path / "series", root / "b")
    volume = load_volume(root)
    assert volume.shape == (4, 16, 18)
    assert not any("duplicate" in w for w in volume.warnings)


def test_dicom_file_growing_while_read_is_refused(tmp_path, series, monkeypatch) -> None:
    real = dicom_files.read_dicom_tree

    def read_then_grow(path, *args, **kwargs):
        report = real(path, *args, **kwargs)
        with open(series[2], "ab") as handle:  # the copy is still running
            handle.write(b"\0" * 128)
        return report

    monkeypatch.setattr("covidct.io.dicom.read_dicom_tree", read_then_grow)
    with pytest.raises(InputError, match="changed while it was being read"):
        load_volume(tmp_path / "series")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_volume_file_growing_while_read_is_refused(tmp_path, monkeypatch, suffix) -> None:
    from covidct.io import formats, nifti

    path = tmp_path / f"ct{suffix}"
    if suffix == ".nii.gz":
        nifti.write_nifti(_ct().hu, _ct().affine, path)
        module, name = nifti, "read_nifti_grid"
    else:
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(_ct().hu), str(path))
        module, name = formats, "read_itk_grid"
    real = getattr(module, name)

    def read_then_grow(p):
        out = real(p)
        with open(path, "ab") as handle:
            handle.write(b"\0" * 16)
        return out

    monkeypatch.setattr(module, name, read_then_grow)
    with pytest.raises(InputError, match="still being copied"):
        load_volume(path)


def test_nifti_header_declaring_more_than_the_file_holds(tmp_path) -> None:
    import nibabel as nib

    path = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[42:48] = (30000).to_bytes(2, "little") * 3  # dim[1..3] = 30000: 54 TB of int16
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="header declares"):
        load_volume(path)


def test_nrrd_header_declaring_more_than_the_file_holds(tmp_path) -> None:
    path = tmp_path / "ct.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 20000 20000 20000\n"
                     b"encoding: gzip\nendian: little\n\n" + bytes(100))
    with pytest.raises(InputError, match="header declares"):
        load_volume(path)


@pytest.mark.parametrize("shape", [(5,), ()])
def test_nifti_with_fewer_than_two_dimensions_is_refused(tmp_path, shape) -> None:
    """Found by benchmarks/fuzz_readers.py: dim[0] = 1 gave a 1D array and a ValueError."""
    import nibabel as nib

    path = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(np.zeros((5, 4, 3), np.int16), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[40:42] = (len(shape)).to_bytes(2, "little")  # dim[0]
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError):
        load_volume(path)


def test_nrrd_header_running_into_binary_data_is_refused(tmp_path, real_data) -> None:
    """Found by benchmarks/fuzz_readers.py: a NRRD whose blank line after the header was
    deleted made ITK's header parser crash the process (segmentation fault)."""
    header = (real_data / "cip-copdgene-10002K" / "ct-64.nrrd").read_bytes().split(b"\n\n")[0]
    cut = header[: header.index(b"kinds:") + len(b"kinds: domain dom")]
    pixels = np.full(64 * 64 * 3, -1000, dtype="<i2").tobytes()
    path = tmp_path / "ct.nrrd"
    path.write_bytes(cut + pixels)
    with pytest.raises(InputError, match="no blank line ends the header"):
        load_volume(path)
    path.write_bytes(cut + b"\xfc\x18\n\n" + pixels)
    with pytest.raises(InputError, match="binary"):
        load_volume(path)


@pytest.mark.parametrize("text", [b"ObjectType = Image\nNDims 3\nElementDataFile = LOCAL\n",
                                  b"ObjectType = Image\nNDims = 3\n"])
def test_metaimage_header_that_is_not_key_value_lines_is_refused(tmp_path, text) -> None:
    path = tmp_path / "ct.mha"
    path.write_bytes(text + bytes(64))
    with pytest.raises(InputError, match="not a readable NRRD/MetaImage"):
        load_volume(path)
