"""Lesion insertion into CT (covidct.synth.insert) and `covidct synth --insert-into`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidct.cli import main
from covidct.errors import ConfigError, InputError
from covidct.io import load_volume, write_nifti
from covidct.synth.insert import InsertionParams, insert_lesions, lung_sides
from covidct.train.datasets import discover_cases, load_case
from covidct.volume import Volume

SPACING = (2.5, 1.5, 1.5)


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, np.ndarray, np.ndarray]:
    """-50 HU tissue with two boxes of -850 HU noisy "lung" holding +40 HU vessel cylinders.

    Returns (volume int16, lung mask 1 right / 2 left, vessel mask).
    """
    rng = np.random.default_rng(123)
    nz, ny, nx = 24, 96, 128
    hu = np.full((nz, ny, nx), -50.0, dtype=np.float32)
    lung = np.zeros((nz, ny, nx), dtype=np.uint8)
    lung[2:22, 10:86, 8:60] = 1
    lung[2:22, 10:86, 68:120] = 2
    hu[lung > 0] = -850.0
    hu += rng.normal(0.0, 15.0, hu.shape).astype(np.float32)
    _, yy, xx = np.mgrid[0:nz, 0:ny, 0:nx]
    vessels = np.zeros(hu.shape, dtype=bool)
    for cy, cx in ((30, 25), (60, 45), (45, 90), (70, 100), (25, 110)):
        vessels |= ((yy - cy) ** 2 + (xx - cx) ** 2 <= 4) & (lung > 0)
    hu[vessels] = 40.0
    volume = Volume.from_spacing(np.rint(hu).astype(np.int16), SPACING, (-96.0, -72.0, -30.0))
    return volume, lung, vessels


def _insert(phantom, seed: int = 0, **kwargs) -> object:
    volume, lung, _ = phantom
    return insert_lesions(volume, lung, np.random.default_rng(seed), InsertionParams(**kwargs))


def test_mask_is_exactly_the_changed_voxels_inside_the_lung(phantom):
    volume, lung, vessels = phantom
    case = _insert(phantom, severity=0.1)
    changed = case.volume.hu != volume.hu
    assert case.mask.dtype == np.uint8 and case.mask.shape == volume.shape
    assert set(np.unique(case.mask).tolist()) <= {0, 1, 2}
    assert changed.any()
    assert np.array_equal(changed, case.mask > 0)
    assert not (case.mask[lung == 0]).any()
    assert np.array_equal(case.volume.hu[vessels], volume.hu[vessels])
    assert case.volume.hu.dtype == volume.hu.dtype
    assert np.array_equal(case.volume.affine, volume.affine)
    assert case.lesions and all(les.side in ("right", "left") for les in case.lesions)
    voxel_cm3 = volume.voxel_volume_mm3 / 1000
    assert sum(les.volume_cm3 for les in case.lesions) == pytest.approx(
        (case.mask > 0).sum() * voxel_cm3, rel=1e-3)


def test_input_array_is_not_modified(phantom):
    volume, lung, _ = phantom
    before, lung_before = volume.hu.copy(), lung.copy()
    _insert(phantom, severity=0.3)
    assert np.array_equal(volume.hu, before)
    assert np.array_equal(lung, lung_before)


def test_ggo_and_consolidation_hu_ranges(phantom):
    volume, _, _ = phantom
    ggo = _insert(phantom, seed=3, severity=0.15, consolidation_probability=(0.0, 0.0),
                  crazy_paving_probability=0.0)
    values = ggo.volume.hu[ggo.mask == 1].astype(float)
    assert values.size and not (ggo.mask == 2).any()
    assert np.percentile(values, 5) >= -750 and values.max() <= -250
    assert np.all(values > volume.hu[ggo.mask == 1] - 60)  # a rise (up to noise)
    assert -650 <= np.median(values) <= -300
    cons = _insert(phantom, seed=4, severity=0.3, consolidation_probability=(1.0, 1.0))
    values = cons.volume.hu[cons.mask == 2].astype(float)
    assert values.size > 50
    assert np.percentile(values, 10) >= -150 and np.percentile(values, 95) <= 100
    assert np.median(values) >= -120


def test_crazy_paving_adds_septal_lines(phantom):
    plain = _insert(phantom, seed=5, severity=0.15, consolidation_probability=(0.0, 0.0),
                    crazy_paving_probability=0.0)
    crazy = _insert(phantom, seed=5, severity=0.15, consolidation_probability=(0.0, 0.0),
                    crazy_paving_probability=1.0)
    assert {les.kind for les in crazy.lesions} == {"crazy_paving"}
    assert not (crazy.mask == 2).any()
    # the septa add +100..200 HU on thin lines: the upper tail rises
    top_plain = np.percentile(plain.volume.hu[plain.mask == 1], 99)
    top_crazy = np.percentile(crazy.volume.hu[crazy.mask == 1], 99)
    assert top_crazy > top_plain + 40


def test_same_seed_same_output_other_seed_differs(phantom):
    a = _insert(phantom, seed=9, severity=0.1)
    b = _insert(phantom, seed=9, severity=0.1)
    c = _insert(phantom, seed=10, severity=0.1)
    assert np.array_equal(a.volume.hu, b.volume.hu) and np.array_equal(a.mask, b.mask)
    assert a.lesions == b.lesions
    assert not np.array_equal(a.mask, c.mask)


@pytest.mark.parametrize("severity", [0.02, 0.1, 0.35])
def test_involved_fraction_follows_severity(phantom, severity):
    _, lung, _ = phantom
    case = _insert(phantom, seed=1, severity=severity)
    fraction = (case.mask > 0).sum() / (lung > 0).sum()
    assert case.involved_fraction == pytest.approx(fraction)
    assert fraction == pytest.approx(severity, rel=0.1)


def test_both_lungs_get_foci_when_multifocal(phantom):
    case = _insert(phantom, seed=2, severity=0.2, n_foci=(4, 4))
    assert {les.side for les in case.lesions} == {"right", "left"}


def test_bad_inputs_raise_clear_errors(phantom):
    volume, lung, _ = phantom
    with pytest.raises(ConfigError, match="severity"):
        InsertionParams(severity=1.5)
    with pytest.raises(InputError, match="shape"):
        insert_lesions(volume, lung[:-1], np.random.default_rng(0), InsertionParams())
    with pytest.raises(InputError, match="lung"):
        insert_lesions(volume, np.zeros_like(lung), np.random.default_rng(0), InsertionParams())


def test_lung_sides_drops_airway_label(phantom):
    volume, lung, _ = phantom
    labels = lung.astype(np.uint8).copy()
    labels[:, :10, :] = 3  # label 3: airway, not lung
    sides = lung_sides(labels, volume)
    assert not sides[labels == 3].any()
    binary = lung_sides((lung > 0).astype(np.uint8), volume)
    assert np.array_equal(binary, lung)  # split by side: x index grows to the left


def test_real_lidc_slab(real_data):
    from covidct.train.baseline import threshold_lungs

    path = real_data / "lidc-idri-0001" / "LIDC-IDRI-0001.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    full = load_volume(path)
    k0 = 70  # a slab of 8 slices through the lower lobes
    affine = full.affine.copy()
    affine[:3, 3] = full.affine[:3, :3] @ np.array([k0, 0, 0]) + full.affine[:3, 3]
    volume = Volume(hu=np.asarray(full.hu[k0:k0 + 8]).copy(), affine=affine)
    lung = threshold_lungs(volume)
    case = insert_lesions(volume, lung, np.random.default_rng(7),
                          InsertionParams(severity=0.15, consolidation_probability=(0.0, 0.0),
                                          crazy_paving_probability=0.0))
    changed = case.volume.hu != volume.hu
    assert np.array_equal(changed, case.mask > 0)
    assert not case.mask[lung == 0].any()
    before = np.asarray(volume.hu)[case.mask == 1].astype(float)
    after = np.asarray(case.volume.hu)[case.mask == 1].astype(float)
    assert (before < -300).all()  # only aerated parenchyma changes; vessels untouched
    rise = after - before
    assert np.median(rise) > 150  # a real increase in attenuation ...
    assert -650 <= np.median(after) <= -300  # ... to ground-glass density
    assert np.percentile(after, 95) <= -200
    assert case.involved_fraction == pytest.approx(0.15, rel=0.1)
    assert 2 <= case.noise_hu <= 40


def test_cli_insert_writes_a_synth_layout_case(tmp_path, phantom):
    volume, lung, _ = phantom
    ct_path, mask_path = tmp_path / "ct.nii.gz", tmp_path / "lung.nii.gz"
    write_nifti(volume.hu, volume.affine, ct_path, np.int16)
    write_nifti(lung, volume.affine, mask_path, np.uint8)
    out = tmp_path / "out"
    rc = main(["synth", str(out), "--insert-into", str(ct_path), "--lung-mask", str(mask_path),
               "--cases", "1", "--seed", "5", "--severity", "0.05", "0.2",
               "--include-negatives", "--quiet"])
    assert rc == 0
    records = discover_cases(out)
    assert [r.layout for r in records] == ["synth", "synth"]
    labels = {r.case_id: r.label for r in records}
    assert labels == {"case_000": "covid", "case_001": "negative"}
    loaded = load_case(records[0])
    assert np.array_equal(loaded.lung, lung)
    truth = json.loads((out / "case_000" / "truth.json").read_text())
    assert 0.05 * 0.9 <= truth["infection_fraction"] <= 0.2 * 1.1
    assert loaded.infection.sum() == (np.asarray(loaded.volume.hu) !=
                                      np.asarray(volume.hu)).sum()
    assert loaded.slice_labels is not None and loaded.slice_labels.any()
    ct_back = load_volume(out / "case_000" / "ct.nii.gz")
    assert np.allclose(ct_back.affine, volume.affine, atol=1e-4)
    negative = load_case(records[1])
    assert np.array_equal(np.asarray(negative.volume.hu), np.asarray(volume.hu))
    assert negative.infection is not None and not negative.infection.any()


def test_cli_insert_rejects_unpaired_masks(tmp_path, phantom):
    volume, lung, _ = phantom
    ct_path = tmp_path / "ct.nii.gz"
    write_nifti(volume.hu, volume.affine, ct_path, np.int16)
    rc = main(["synth", str(tmp_path / "out"), "--insert-into", str(ct_path), "--insert-into",
               str(ct_path), "--lung-mask", str(ct_path), "--quiet"])
    assert rc == ConfigError.exit_code
