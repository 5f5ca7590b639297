"""Known-answer tests of the synthetic chest-CT generator (small, coarse cases)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidct.synth import (
    FINDINGS,
    SynthParams,
    case_seed,
    generate_case,
    slice_labels_rule,
    write_case,
)
from covidct.synth.params import resolve_params

SMALL = {"matrix": 112, "pixel_mm": 3.5, "slice_mm": 5.0}


@pytest.fixture(scope="module")
def covid_case():
    return generate_case(7, SynthParams(**SMALL, covid=True, severity=0.2))


@pytest.fixture(scope="module")
def negative_case():
    return generate_case(8, SynthParams(**SMALL, covid=False, finding_list=FINDINGS))


def test_truth_volumes_are_mask_counts(covid_case):
    truth, voxel_cm3 = covid_case.truth, covid_case.ct.voxel_volume_mm3 / 1000
    lung, inf = covid_case.lung, covid_case.infection
    assert truth["lung_volume_cm3"] == pytest.approx((lung > 0).sum() * voxel_cm3)
    assert truth["lung_volume_right_cm3"] == pytest.approx((lung == 1).sum() * voxel_cm3)
    assert truth["lung_volume_left_cm3"] == pytest.approx((lung == 2).sum() * voxel_cm3)
    assert truth["infection_volume_cm3"] == pytest.approx(inf.sum() * voxel_cm3)
    assert truth["infection_volume_cm3"] == pytest.approx(
        truth["infection_volume_right_cm3"] + truth["infection_volume_left_cm3"])


def test_adult_lung_volumes(covid_case, negative_case):
    for case in (covid_case, negative_case):
        t = case.truth
        assert 2500 < t["lung_volume_cm3"] < 7500
        assert t["lung_volume_right_cm3"] > t["lung_volume_left_cm3"]  # right lung larger


def test_right_lung_on_patient_right(covid_case):
    # x runs right -> left: the right lung has the lower column index and lower LPS x
    _, _, cols_r = np.nonzero(covid_case.lung == 1)
    _, _, cols_l = np.nonzero(covid_case.lung == 2)
    assert cols_r.max() < cols_l.min() + 3
    aff = covid_case.ct.affine
    assert aff[0, 2] > 0  # column index grows towards patient left (LPS +x)
    assert (aff @ [0, 0, cols_r.mean(), 1])[0] < (aff @ [0, 0, cols_l.mean(), 1])[0]


def test_anatomy_hu(covid_case, negative_case):
    hu = negative_case.ct.hu
    lung = negative_case.lung > 0
    assert -950 < np.median(hu[lung]) < -780
    assert (hu < -990).mean() > 0.2  # air around the patient
    assert (hu > 300).sum() > 500  # bone
    assert ((hu > -150) & (hu < -50)).sum() > 5000  # fat
    inf = covid_case.infection > 0
    assert -800 < np.median(covid_case.ct.hu[inf]) < -150  # ground glass to consolidation
    healthy = (covid_case.lung > 0) & ~inf
    assert np.median(covid_case.ct.hu[inf]) > np.median(covid_case.ct.hu[healthy]) + 100


def test_lesions_inside_lung_bilateral(covid_case):
    inf = covid_case.infection > 0
    assert inf.any()
    assert not (inf & (covid_case.lung == 0)).any()
    t = covid_case.truth
    assert t["infection_volume_right_cm3"] > 0 and t["infection_volume_left_cm3"] > 0
    assert t["label"] == "covid"
    assert 0.08 < t["infection_fraction"] < 0.35  # severity 0.2 asked


def test_negative_has_no_infection_even_with_findings(negative_case):
    assert negative_case.infection.sum() == 0
    assert negative_case.truth["label"] == "negative"
    assert set(negative_case.truth["findings"]) == set(FINDINGS)
    assert sum(negative_case.truth["slice_labels"]) == 0


def test_slice_label_rule(covid_case):
    lung, inf = covid_case.lung, covid_case.infection
    expected = []
    for k in range(lung.shape[0]):
        lung_px = int((lung[k] > 0).sum())
        inf_px = int((inf[k] > 0).sum())
        expected.append(int(lung_px > 0 and inf_px >= 20 and inf_px >= 0.005 * lung_px))
    assert covid_case.truth["slice_labels"] == expected
    assert slice_labels_rule(lung, inf).tolist() == expected
    assert covid_case.truth["positive_slices"] == sum(expected) > 0


def test_slice_label_rule_thresholds():
    lung = np.zeros((3, 100, 100), np.uint8)
    lung[:, :, :] = 1  # 10000 lung pixels per slice: 0.5% = 50 pixels
    inf = np.zeros_like(lung)
    inf[0].flat[:49] = 1
    inf[1].flat[:50] = 1
    lung[2] = 0
    lung[2, :10, :10] = 1  # 100 lung pixels: 20-pixel floor applies
    inf[2].flat[:19] = 1
    assert slice_labels_rule(lung, inf).tolist() == [0, 1, 0]


def test_effusion_is_outside_the_lung():
    base = SynthParams(**SMALL, covid=False, finding_list=())
    with_fluid = SynthParams(**SMALL, covid=False, finding_list=("effusion",))
    a, b = generate_case(11, base), generate_case(11, with_fluid)
    assert b.truth["lung_volume_cm3"] < a.truth["lung_volume_cm3"] - 20
    lost = (a.lung > 0) & (b.lung == 0)
    assert np.median(b.ct.hu[lost]) > -200  # fluid where the lung was


def test_deterministic_per_seed():
    p = SynthParams(matrix=64, pixel_mm=6.0, slice_mm=5.0, covid=True)
    a, b, c = generate_case(3, p), generate_case(3, p), generate_case(4, p)
    assert np.array_equal(a.ct.hu, b.ct.hu)
    assert np.array_equal(a.lung, b.lung) and np.array_equal(a.infection, b.infection)
    assert a.truth == b.truth | {"generation_s": a.truth["generation_s"]}
    assert not np.array_equal(a.ct.hu, c.ct.hu) if a.ct.shape == c.ct.shape else True


def test_default_spacing_ranges():
    pixels, slices, covid = [], [], []
    for seed in range(300):
        p = resolve_params(seed, SynthParams())
        pixels.append(p.pixel_mm)
        slices.append(p.slice_mm)
        covid.append(p.covid)
        assert p.matrix * p.pixel_mm > 2 * (150 * p.patient_scale + p.fat_mm)  # body fits
    assert 0.55 <= min(pixels) and max(pixels) <= 0.9
    assert 1.0 <= min(slices) and max(slices) <= 5.0
    assert max(slices) - min(slices) > 3
    assert 0.35 < np.mean(covid) < 0.65


def test_explicit_ranges_and_volume_geometry():
    p = SynthParams(matrix=64, pixel_mm=(5.0, 6.0), slice_mm=(4.0, 6.0), n_slices=20)
    case = generate_case(5, p)
    dz, dy, dx = case.ct.spacing_mm
    assert 4.0 <= dz <= 6.0 and 5.0 <= dy <= 6.0 and dy == dx
    assert case.ct.shape == (20, 64, 64)
    assert case.ct.hu.dtype == np.int16
    assert case.lung.shape == case.infection.shape == case.ct.shape
    assert np.all(np.diff(case.ct.slice_positions_mm()) > 0)  # inferior -> superior


def test_write_case_layout_and_nifti_geometry(tmp_path, covid_case):
    from covidct.io.nifti import read_nifti_array

    out = write_case(covid_case, tmp_path / "case_000")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ct.nii.gz", "infection.nii.gz", "lung.nii.gz", "truth.json"]
    ct, affine = read_nifti_array(out / "ct.nii.gz")
    assert np.array_equal(ct, covid_case.ct.hu)
    assert np.allclose(affine, covid_case.ct.affine, atol=1e-4)
    lung, _ = read_nifti_array(out / "lung.nii.gz")
    assert np.array_equal(lung, covid_case.lung)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["label"] == "covid" and truth["params"]["seed"] == 7


def test_cli_writes_reproducible_cases(tmp_path):
    from covidct.cli import main

    out = tmp_path / "corpus"
    args = ["synth", str(out), "--cases", "2", "--seed", "5", "--matrix", "64", "--pixel-mm",
            "6", "--slice-mm", "5", "--n-slices", "24", "--quiet"]
    assert main(args) == 0
    for i in range(2):
        case_dir = out / f"case_{i:03d}"
        assert (case_dir / "ct.nii.gz").exists() and (case_dir / "truth.json").exists()
    truth = json.loads((out / "case_001" / "truth.json").read_text())
    assert truth["params"]["seed"] == case_seed(5, 1)
    again = generate_case(case_seed(5, 1), SynthParams(matrix=64, pixel_mm=6.0, slice_mm=5.0,
                                                       n_slices=24))
    assert again.truth["infection_volume_cm3"] == pytest.approx(truth["infection_volume_cm3"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["cases"]) == 2


def test_cli_rejects_bad_options(tmp_path, capsys):
    from covidct.cli import main

    assert main(["synth", str(tmp_path), "--cases", "0", "--quiet"]) == 2
    assert "--cases" in capsys.readouterr().err


def test_apex_superior_and_noise_level():
    p = SynthParams(matrix=96, pixel_mm=4.0, slice_mm=5.0, noise_hu=25.0, fov_circle=False,
                    covid=False, findings=False)
    case = generate_case(12, p)
    rows = np.flatnonzero((case.lung > 0).any(axis=(1, 2)))
    air = case.ct.hu[:, :6, :6].astype(float)  # a corner of air outside the patient
    assert 15 < air.std() < 35
    # slices run inferior -> superior: the lung apex is in the upper slices, the liver low
    lung_area = (case.lung > 0).sum(axis=(1, 2))
    assert rows[-1] > rows[0] and np.argmax(lung_area) < rows[-1] - 5


def test_workers_match_single_process(tmp_path):
    from covidct.cli import main

    common = ["--cases", "2", "--seed", "9", "--matrix", "48", "--pixel-mm", "8", "--slice-mm",
              "8", "--n-slices", "12", "--quiet"]
    assert main(["synth", str(tmp_path / "a"), *common]) == 0
    assert main(["synth", str(tmp_path / "b"), *common, "--workers", "2"]) == 0
    for i in range(2):
        a = json.loads((tmp_path / "a" / f"case_{i:03d}" / "truth.json").read_text())
        b = json.loads((tmp_path / "b" / f"case_{i:03d}" / "truth.json").read_text())
        assert a["lung_volume_cm3"] == b["lung_volume_cm3"]
        assert a["infection_volume_cm3"] == b["infection_volume_cm3"]


def test_write_case_dicom_reads_back(tmp_path):
    pytest.importorskip("covidct.synth.dicom_writer")
    from covidct.io import load_volume

    case = generate_case(4, SynthParams(matrix=48, pixel_mm=8.0, slice_mm=8.0, n_slices=10))
    out = write_case(case, tmp_path / "case", dicom=True)
    volume = load_volume(out / "dicom")
    assert np.array_equal(volume.hu.astype(np.int16), case.ct.hu)
    assert np.allclose(volume.affine, case.ct.affine, atol=1e-3)
    assert json.loads((out / "truth.json").read_text())["dicom_files"] == 10
