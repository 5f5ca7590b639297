"""DICOM outputs: the SEG frames land on the right source slices whatever the series
geometry, the SR says what result.json says, the objects validate (dciodvfy), UIDs are
deterministic, and `covidct analyze` writes them for DICOM input."""

from __future__ import annotations

import json
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from analysis_fakes import fake_bundle
from covidct import __version__
from covidct.cli import main
from covidct.export.dicom_objects import write_dicom_outputs
from covidct.export.dicom_seg import SEGMENT_NUMBER, SEGMENTS, build_seg
from covidct.export.dicom_uids import OutputUIDs
from covidct.export.nifti_outputs import write_nifti_outputs
from covidct.export.outputs import write_outputs
from covidct.io import read_nifti_array
from covidct.io.dicom_source import read_source_datasets, source_stack
from covidct.synth.dicom_writer import DicomQuirks
from dicom_case import SHAPE, loaded_case

AXIAL = (0, 1, 2)
GEOMETRIES = {  # (flipped axes, quirks, axis order of the written series)
    "head-first, positive cosines": ((), DicomQuirks(), AXIAL),
    "negative row and column cosines": ((1, 2), DicomQuirks(), AXIAL),
    "feet-first": ((0,), DicomQuirks(), AXIAL),
    "gantry tilt 15 deg, feet-first, negative row cosine": (
        (0, 2), DicomQuirks(gantry_tilt_deg=15.0), AXIAL),
    "non-uniform spacing and a missing slice, negative column cosine": (
        (1,), DicomQuirks(nonuniform_spacing=True, missing_slice=True, shuffle_file_names=True),
        AXIAL),
    "coronal series, negative column cosine": ((0,), DicomQuirks(), (1, 0, 2)),
}


def _ct_datasets(paths):
    return [ds for ds in (pydicom.dcmread(p) for p in paths) if ds.Modality == "CT"]


def _seg_frames(seg: pydicom.Dataset):
    """(referenced source SOP UID, segment number, IPP) per frame, from the SEG's headers."""
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        ipp = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        yield source.ReferencedSOPInstanceUID, int(number), ipp


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_seg_frames_equal_the_nifti_masks_at_the_referenced_slice(name, tmp_path):
    axes, quirks, order = GEOMETRIES[name]
    uniform = not (quirks.nonuniform_spacing or quirks.missing_slice)
    paths, result = loaded_case(tmp_path / "src", axes=axes, quirks=quirks, order=order)
    write_nifti_outputs(result, tmp_path)
    lung, affine = read_nifti_array(tmp_path / "lung_mask.nii.gz")
    infection, _ = read_nifti_array(tmp_path / "infection_mask.nii.gz")
    assert lung.any() and infection.any()
    sources = _ct_datasets(paths)
    stack = source_stack(read_source_datasets(tmp_path / "src"),
                         result.volume.metadata["series_uid"])
    uids = OutputUIDs.for_result(stack.series_uid, __version__, result.models)
    build_seg(result, stack, uids).save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    seg = hd.seg.segread(tmp_path / "seg.dcm")

    n = len(sources)
    assert int(seg.NumberOfFrames) == n * len(SEGMENTS)  # empty frames are kept
    # Each pixel's voxel comes from the SEG's own geometry through the NIfTI's inverse affine.
    # With irregular slice positions the loader puts the series on a uniform grid of nearest
    # true slices (covidct.io.dicom_geometry): a source image's frame is then the grid slice
    # nearest its true position.
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    shown_by = result.volume.metadata.get("source_slice_index")  # per canonical z
    if not uniform:  # true-slice index: the rank of each image's depth along the normal
        iop0 = np.array([float(v) for v in sources[0].ImageOrientationPatient])
        normal = np.cross(iop0[:3], iop0[3:])
        ranked = sorted(by_uid, key=lambda u: np.array(by_uid[u].ImagePositionPatient,
                                                       float) @ normal)
        true_index = {uid: n for n, uid in enumerate(ranked)}
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    dr, dc = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    rows, cols = int(seg.Rows), int(seg.Columns)
    rr, cc = np.mgrid[:rows, :cols]
    inverse = np.linalg.inv(affine)
    truth = {SEGMENT_NUMBER["Right lung"]: lung == 1, SEGMENT_NUMBER["Left lung"]: lung == 2,
             SEGMENT_NUMBER["Infection"]: infection > 0}
    checked = 0
    for f, (uid, number, ipp) in enumerate(_seg_frames(seg)):
        source = by_uid[uid]
        np.testing.assert_allclose(ipp, [float(v) for v in source.ImagePositionPatient],
                                   atol=1e-4)
        if number not in truth:
            continue
        lps = (ipp[:, None, None] + iop[:3, None, None] * (cc * dc) + iop[3:, None, None]
               * (rr * dr))
        voxel = np.einsum("ij,jyx->iyx", inverse[:3, :3], lps) + inverse[:3, 3, None, None]
        if not uniform:  # the grid slice showing this image nearest its true position
            zs = [z for z, m in enumerate(shown_by) if m == true_index[uid]]
            voxel[0] = min(zs, key=lambda z: abs(z - float(voxel[0].mean())))
        assert np.allclose(voxel, np.rint(voxel), atol=1e-3)
        z, j, i = np.rint(voxel).astype(int)
        expected = truth[number][z, j, i]
        frame = seg.pixel_array[f] if n * len(SEGMENTS) > 1 else seg.pixel_array
        np.testing.assert_array_equal(frame.astype(bool), expected, err_msg=f"frame {f + 1}")
        checked += 1
    assert checked == 3 * n


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A DICOM series analysed (known masks) and every output written, DICOM included."""
    root = tmp_path_factory.mktemp("dicom_out")
    paths, result = loaded_case(root / "src", axes=(1, 2))
    out = root / "out"
    doc = write_outputs(result, out, report=False,
                        dicom_sources=read_source_datasets(root / "src"))
    return paths, result, out, doc


def _measurements(group, name_value: str):
    return [m for m in group.get_measurements() if m.name.value == name_value]


def _site_key(measurement) -> tuple[str | None, str | None]:
    sites = measurement.finding_sites
    if not sites:
        return None, None
    site = sites[0]
    laterality = site.laterality.meaning.lower() if site.laterality is not None else None
    modifier = site.topographical_modifier
    return laterality, modifier.meaning.lower() if modifier is not None else None


def test_sr_values_equal_result_json(written):
    _, _, out, _ = written
    doc = json.loads((out / "result.json").read_text())
    assert doc["outputs"]["dicom"]["seg"] == "seg.dcm" and doc["outputs"]["dicom"]["sr"] == "sr.dcm"
    seg = pydicom.dcmread(out / "seg.dcm")
    sr = hd.sr.srread(out / "sr.dcm")
    report = sr.content
    lung, infection, decision = doc["lung"], doc["infection"], doc["decision"]
    levels = {"upper": "upper", "middle": "mid", "lower": "lower"}
    for side in ("right", "left"):
        (group,) = [g for g in report.get_volumetric_roi_measurement_groups()
                    if g.finding_type.meaning == f"{side.capitalize()} lung"]
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.referenced_segment_numbers == [SEGMENT_NUMBER[f"{side.capitalize()} lung"]]
        (volume,) = _measurements(group, "118565006")
        assert volume.value == pytest.approx(lung[f"{side}_cm3"], abs=1e-9)
        assert volume.unit.value == "cm3" and volume.unit.scheme_designator == "UCUM"
        percents = {_site_key(m): m.value for m in _measurements(group, "PCTLUNGINVOLVED")}
        scores = {_site_key(m): m.value for m in _measurements(group, "ZONESCORE")}
        assert percents[(side, None)] == pytest.approx(infection[f"{side}_percent"], abs=1e-9)
        zones = [z for z in infection["zones"] if z["side"] == side]
        assert len(zones) == 3
        for zone in zones:
            key = (side, levels[zone["level"]])
            assert percents[key] == pytest.approx(zone["percent"], abs=1e-9)
            assert scores[key] == zone["score"]
    (inf_group,) = [g for g in report.get_volumetric_roi_measurement_groups()
                    if g.finding_type.meaning == "Lesion"]
    assert inf_group.referenced_segment.referenced_segment_numbers == [
        SEGMENT_NUMBER["Infection"]]
    values = {m.name.value: (m.value, m.unit.value) for m in inf_group.get_measurements()}
    assert values["118565006"] == (pytest.approx(infection["volume_cm3"], abs=1e-9), "cm3")
    assert values["PCTLUNGINVOLVED"] == (pytest.approx(infection["percent_of_lung"],
                                                        abs=1e-9), "%")
    assert values["CORONASCORE"] == (pytest.approx(doc["corona_score_cm3"], abs=1e-9), "cm3")
    assert values["SEVERITYSCORE"] == (infection["severity_score"], "{score}")
    assert doc["corona_score_cm3"] > 0 and infection["volume_cm3"] > 0
    (case,) = report.get_image_measurement_groups()
    values = {m.name.value: m.value for m in case.get_measurements()}
    assert values["118565006"] == pytest.approx(lung["volume_cm3"], abs=1e-9)
    assert values["POSSLICERATIO"] == pytest.approx(decision["positive_slice_ratio"], abs=1e-9)
    assert values["CASETHRESHOLD"] == pytest.approx(decision["threshold"], abs=1e-9)
    (evaluation,) = case.get_qualitative_evaluations()
    assert evaluation.value.meaning.lower().startswith("covid-19 pneumonia suspected")
    assert decision["label"] == "covid-suspected"


def test_objects_copy_patient_and_study_and_reference_the_source(written):
    paths, _, out, doc = written
    source = _ct_datasets(paths)[0]
    files = [out / "seg.dcm", out / "sr.dcm", *(out / p for p in doc["outputs"]["dicom"]["sc"])]
    assert len(files) == 2 + 2  # overlay_count = 2
    for path in files:
        ds = pydicom.dcmread(path)
        for key in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate"):
            assert ds.get(key) == source.get(key), (path.name, key)
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    seg = pydicom.dcmread(out / "seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "covidct" and algorithm.AlgorithmVersion == __version__
    assert "1" * 64 in algorithm.AlgorithmParameters and "0" * 64 in algorithm.AlgorithmParameters
    codes = {s.SegmentLabel: s.SegmentedPropertyTypeCodeSequence[0].CodeValue
             for s in seg.SegmentSequence}
    assert codes == {"Right lung": "3341006", "Left lung": "44029006", "Airway": "89187006",
                     "Infection": "52988006", "Ground-glass opacity": "112120",
                     "Consolidation": "95436008"}
    sc = pydicom.dcmread(files[2])
    assert sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "YES"
    rgb = sc.pixel_array.astype(int)
    assert (np.abs(rgb[..., 0] - rgb[..., 2]) > 60).any()  # colour was burned in


def test_uids_are_deterministic_per_series_version_and_models(written, tmp_path):
    paths, result, out, _ = written
    sources = read_source_datasets(paths[0].parent)
    again = write_dicom_outputs(result, sources, tmp_path / "again")
    first = [out / "seg.dcm", out / "sr.dcm", *sorted((out / "sc").glob("*.dcm"))]
    uids = [(pydicom.dcmread(p).SOPInstanceUID, pydicom.dcmread(p).SeriesInstanceUID)
            for p in first]
    assert [(pydicom.dcmread(p).SOPInstanceUID, pydicom.dcmread(p).SeriesInstanceUID)
            for p in again] == uids
    assert len({u for u, _ in uids}) == len(uids) and all(u.startswith("2.25.") for u, _ in uids)
    new_models = OutputUIDs.for_result("1.2.3", __version__, {"lung": {"sha256": "a"}})
    assert new_models.uid("seg instance") != OutputUIDs.for_result(
        "1.2.3", __version__, {"lung": {"sha256": "b"}}).uid("seg instance")
    assert new_models.uid("seg instance") != OutputUIDs.for_result(
        "1.2.3", "9.9.9", {"lung": {"sha256": "a"}}).uid("seg instance")
    # other settings make another result: another object
    settings = result.config.to_dict()
    heatmap = {**settings, "infection_method": "heatmap"}
    same = OutputUIDs.for_result("1.2.3", __version__, result.models, settings)
    assert same.uid("seg instance") == OutputUIDs.for_result(
        "1.2.3", __version__, result.models, dict(reversed(settings.items()))).uid("seg instance")
    assert same.uid("seg instance") != OutputUIDs.for_result(
        "1.2.3", __version__, result.models, heatmap).uid("seg instance")


def test_wrong_source_series_is_refused(written, tmp_path):
    from covidct.errors import InputError

    _, result, _, _ = written
    # the same series UID, but a slice is missing: its frames would land on the wrong slices
    loaded_case(tmp_path / "other", axes=(1, 2), quirks=DicomQuirks(missing_slice=True))
    with pytest.raises(InputError, match="do not match the analysed volume"):
        write_dicom_outputs(result, read_source_datasets(tmp_path / "other"), tmp_path / "x")
    assert not (tmp_path / "x" / "seg.dcm").exists()


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian dicom3tools) is not installed; .ci/run installs it")
def test_dciodvfy_reports_no_errors(written):
    _, _, out, doc = written
    files = [out / "seg.dcm", out / "sr.dcm", *(out / p for p in doc["outputs"]["dicom"]["sc"])]
    for path in files:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = (run.stdout + run.stderr).splitlines()
        assert lines, path
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, (path.name, errors)


@pytest.fixture()
def stand_in_models(monkeypatch):
    import covidct.models.registry as registry

    monkeypatch.setattr(registry, "load_bundle", lambda models_dir=None, **_: fake_bundle())


def test_analyze_writes_dicom_outputs_for_dicom_input(stand_in_models, tmp_path, capsys):
    from dicom_case import write_phantom_series

    write_phantom_series(tmp_path / "src", quirks=DicomQuirks(localizer=True))
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "src"), "-o", str(out), "-q", "--no-report",
                 "--overlay-count", "1"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert set(doc["outputs"]["dicom"]) == {"seg", "sr", "sc"}
    seg = pydicom.dcmread(out / "seg.dcm")
    assert int(seg.NumberOfFrames) == len(SEGMENTS) * SHAPE[0]
    assert len(doc["outputs"]["dicom"]["sc"]) == 1
    no = tmp_path / "no"
    assert main(["analyze", str(tmp_path / "src"), "-o", str(no), "-q", "--no-report",
                 "--no-dicom-out"]) == 0
    assert not (no / "seg.dcm").exists() and "dicom" not in json.loads(
        (no / "result.json").read_text())["outputs"]


def test_dicom_out_on_nifti_input_is_a_clear_error(stand_in_models, tmp_path, capsys):
    from analysis_fakes import phantom
    from covidct.io import write_nifti

    volume, _, _ = phantom(lesion=False, shape=SHAPE, spacing=(6.0, 2.5, 2.5))
    path = write_nifti(volume.hu, volume.affine, tmp_path / "ct.nii.gz", dtype=np.int16)
    assert main(["analyze", str(path), "-o", str(tmp_path / "out"), "-q", "--dicom-out"]) == 2
    assert "--dicom-out (dicom_out=True) needs a DICOM input" in capsys.readouterr().err
