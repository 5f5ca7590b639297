"""`covidct info` and `covidct convert`, run in-process through main(argv)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidct.cli import main
from covidct.io.nifti import read_nifti_array
from covidct.synth.dicom_writer import DicomQuirks, write_ct_series


def test_info_json_lists_series_geometry_and_warnings(tmp_path, small_ct, capsys) -> None:
    write_ct_series(small_ct, tmp_path, quirks=DicomQuirks(second_series=True, missing_slice=True),
                    series_uid="1.2.3.4", kernel="B70f")
    assert main(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["series_uid"] == "1.2.3.4"
    assert info["shape_zyx"] == [12, 40, 48]  # 11 true slices on a uniform grid
    assert info["spacing_mm_zyx"] == pytest.approx([2.5, 0.7, 0.8])
    assert info["orientation"] == "SPL"
    assert (info["manufacturer"], info["kernel"], info["slice_thickness_mm"]) == ("covidct",
                                                                                   "B70f", 2.5)
    assert info["hu_min"] == float(small_ct.hu.min())
    assert [s["chosen"] for s in info["series_found"]] == [True, False]
    assert any("missing slice" in w for w in info["warnings"])


def test_info_text_and_explicit_series(tmp_path, small_ct, capsys) -> None:
    write_ct_series(small_ct, tmp_path, quirks=DicomQuirks(second_series=True), series_uid="1.2.3")
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "* series 1.2.3  axial  12 slices" in out
    thick = [line.split()[1] for line in out.splitlines() if line.startswith("  series")][0]
    assert main(["info", str(tmp_path), "--series", thick, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape_zyx"] == [6, 40, 48]


def test_convert_writes_int16_hu_with_exact_affine(tmp_path, small_ct, capsys) -> None:
    write_ct_series(small_ct, tmp_path / "dicom", quirks=DicomQuirks(shuffle_file_names=True))
    out = tmp_path / "out" / "ct.nii.gz"
    assert main(["convert", str(tmp_path / "dicom"), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    hu, affine = read_nifti_array(out)
    assert hu.dtype == np.int16
    np.testing.assert_array_equal(hu, small_ct.hu)
    np.testing.assert_allclose(affine, small_ct.affine, atol=1e-5)


def test_convert_nrrd_input(tmp_path, real_data) -> None:
    out = tmp_path / "ct.nii"
    src = real_data / "cip-copdgene-10002K" / "ct-64.nrrd"
    assert main(["convert", str(src), str(out)]) == 0
    assert read_nifti_array(out)[0].shape == (79, 64, 64)


def test_convert_ambiguous_series_is_exit_2(tmp_path, small_ct, capsys) -> None:
    write_ct_series(small_ct, tmp_path / "in" / "a", series_uid="1.2.3.1")
    write_ct_series(small_ct, tmp_path / "in" / "b", series_uid="1.2.3.2")
    assert main(["convert", str(tmp_path / "in"), str(tmp_path / "x.nii.gz")]) == 2
    assert "--series" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()


def test_convert_never_writes_over_its_input_or_an_existing_file(tmp_path, small_ct,
                                                                 capsys) -> None:
    from covidct.io.nifti import write_nifti

    src = write_nifti(small_ct.hu, small_ct.affine, tmp_path / "ct.nii.gz")
    before = src.read_bytes()
    assert main(["convert", str(src), str(src)]) == 2
    assert main(["convert", str(src), str(src), "--overwrite"]) == 2
    assert "never writes into its input" in capsys.readouterr().err
    assert src.read_bytes() == before
    dicom = tmp_path / "dicom"
    write_ct_series(small_ct, dicom)
    files = sorted(p.name for p in dicom.iterdir())
    assert main(["convert", str(dicom), str(dicom / "x.nii.gz")]) == 2
    assert sorted(p.name for p in dicom.iterdir()) == files
    other = tmp_path / "mine.nii.gz"
    other.write_bytes(b"user data")
    assert main(["convert", str(src), str(other)]) == 2
    assert "exists" in capsys.readouterr().err and other.read_bytes() == b"user data"
    assert main(["convert", str(src), str(other), "--overwrite"]) == 0
    assert other.read_bytes() != b"user data"
