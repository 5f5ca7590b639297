"""UIDs as anonymizers write them: one SOPInstanceUID for every slice, UUID strings.

Duplicates are judged by position and pixel data (as dcm2niix does), never by UID
alone; pydicom's per-file warnings are collected and reported once with a count.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pydicom
import pytest

from covidct.io import load_volume
from covidct.io.library_warnings import collect
from covidct.synth.dicom_writer import write_ct_series
from covidct.volume import Volume


def _ct(n: int = 9) -> Volume:
    rng = np.random.default_rng(7)
    hu = rng.integers(-1000, 500, size=(n, 20, 22)).astype(np.int16)
    return Volume.from_spacing(hu, (3.0, 0.9, 0.9), (0.0, 0.0, -20.0))


def _rewrite(paths, **values) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
            if keyword == "SOPInstanceUID":
                ds.file_meta.MediaStorageSOPInstanceUID = value
        ds.save_as(path)


def test_every_slice_with_one_sop_instance_uid_is_kept(tmp_path) -> None:
    ct = _ct()
    paths = write_ct_series(ct, tmp_path)
    _rewrite(paths, SOPInstanceUID="1.2.3.4.5")
    shutil.copy(paths[2], tmp_path / "copy_of_slice.dcm")  # a true copy is still dropped
    volume = load_volume(tmp_path)
    assert volume.shape == ct.shape
    np.testing.assert_array_equal(volume.hu, ct.hu)
    text = " | ".join(volume.warnings)
    assert "8 image(s) carry the SOPInstanceUID of another image" in text
    assert "1 duplicate cop(ies) of an image (same SOPInstanceUID, position and pixel data)" in text


def test_same_uid_and_position_but_other_pixels_is_not_a_copy(tmp_path) -> None:
    ct = _ct(3)
    paths = write_ct_series(ct, tmp_path / "a")
    ds = pydicom.dcmread(paths[1])
    pixels = ds.pixel_array.copy()
    pixels[0, 0] += 1
    ds.PixelData = pixels.tobytes()
    ds.InstanceNumber = 50
    ds.save_as(tmp_path / "a" / "changed.dcm")
    volume = load_volume(tmp_path / "a")
    assert volume.shape == ct.shape  # one image per position: the geometry keeps one
    assert any("carry the SOPInstanceUID of another image" in w for w in volume.warnings)
    assert any("share a slice position" in w for w in volume.warnings)


def test_uuid_uids_are_read_and_reported_once(tmp_path, caplog) -> None:
    ct = _ct()
    paths = write_ct_series(ct, tmp_path)
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = f"3f2504e0-4f89-11d3-9a0c-0305e82c33{n:02d}"
        ds.SeriesInstanceUID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        ds.save_as(path)
    caplog.clear()  # writing the UUIDs above warned too
    with caplog.at_level(logging.WARNING):
        volume = load_volume(tmp_path)
    np.testing.assert_array_equal(volume.hu, ct.hu)
    assert volume.metadata["series_uid"] == "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    (uid_note,) = [w for w in volume.warnings if "not valid DICOM UIDs" in w]
    assert uid_note.startswith("18 UID value(s)")
    library = [w for w in volume.warnings if w.startswith("pydicom reported")]
    assert len(library) == 1 and "Invalid value for VR UI" in library[0]
    count = int(library[0].split("reported ")[1].split(" time")[0])
    assert count >= len(paths)
    # pydicom's own per-file lines do not reach the log: one summary line only
    pydicom_lines = [r for r in caplog.records if r.name == "pydicom"]
    assert pydicom_lines == []
    assert sum("pydicom reported" in r.getMessage() for r in caplog.records) == 1


def test_collect_counts_warnings_and_log_lines_once() -> None:
    import warnings

    from pydicom.misc import warn_and_log

    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with collect("pydicom") as sink:
            for n in range(5):
                warn_and_log(f"Invalid value for VR UI: 'abc-{n}'. Please see <link>")
            warnings.warn("not pydicom's", UserWarning, stacklevel=1)
    assert len(sink.messages) == 5
    (first,) = sink.summary("pydicom")
    assert first.startswith("pydicom reported 5 time(s) while reading: Invalid value for VR UI")
    assert [str(w.message) for w in outside] == ["not pydicom's"]  # passed on unchanged


@pytest.mark.parametrize("uid", ["1.2.840.10008.1", "0",
                                 "2.25.329800735698586629295641978511506172918"])
def test_valid_uids_raise_no_warning(tmp_path, uid) -> None:
    ct = _ct(3)
    _rewrite(write_ct_series(ct, tmp_path), SeriesInstanceUID=uid)
    volume = load_volume(tmp_path)
    assert not any("not valid DICOM UIDs" in w for w in volume.warnings)
