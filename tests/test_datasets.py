"""Dataset readers on tiny files laid out like the real public sets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from covidct.errors import DataError
from covidct.train.datasets import discover_cases, load_case, split_cases
from covidct.train.masks import (
    LEFT_RIGHT,
    align_to_grid,
    lung_to_right_left,
    slice_labels_from_masks,
    split_lung_sides,
)

SPACING = (2.0, 1.0, 1.0)  # dz, dy, dx


def phantom(depth: int = 6, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hu, lung 1 right / 2 left, infection) on the canonical grid (x low = patient right)."""
    _, y, x = np.mgrid[:depth, :size, :size]
    body = ((y - 16) / 14.0) ** 2 + ((x - 16) / 15.0) ** 2 <= 1
    right = ((y - 16) / 9.0) ** 2 + ((x - 9) / 5.0) ** 2 <= 1
    left = ((y - 16) / 9.0) ** 2 + ((x - 23) / 5.0) ** 2 <= 1
    hu = np.full((depth, size, size), -1000.0, dtype=np.float32)
    hu[body] = 40.0
    hu[right | left] = -850.0
    lung = np.zeros(hu.shape, np.uint8)
    lung[right], lung[left] = 1, 2
    infection = np.zeros(hu.shape, np.uint8)
    infection[2:4] = (right & (np.abs(y - 16) < 5) & (np.abs(x - 9) < 4))[2:4]
    hu[infection > 0] = -300.0
    return hu, lung, infection


def write_nifti(path: Path, zyx: np.ndarray, *, flip_x: bool = False) -> Path:
    """Store a canonical (z, y, x) array as NIfTI (i toward patient left unless flip_x)."""
    dz, dy, dx = SPACING
    data = zyx.transpose(2, 1, 0)
    affine = np.diag([-dx, -dy, dz, 1.0])  # RAS: i -> L, j -> P, k -> S
    if flip_x:
        data = data[::-1]
        affine[0, 0], affine[0, 3] = dx, -(zyx.shape[2] - 1) * dx
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
    return path


def test_synth_layout(tmp_path: Path) -> None:
    hu, lung, infection = phantom()
    for name, label, inf in (("case_000", "covid", infection), ("case_001", "negative", None)):
        write_nifti(tmp_path / name / "ct.nii.gz", hu)
        write_nifti(tmp_path / name / "lung.nii.gz", lung)
        write_nifti(tmp_path / name / "infection.nii.gz", inf if inf is not None else 0 * lung)
        truth = {"label": label, "slice_labels": [False] * 6}
        (tmp_path / name / "truth.json").write_text(json.dumps(truth))
    records = discover_cases(tmp_path)
    assert [r.case_id for r in records] == ["case_000", "case_001"]
    assert records[0].layout == "synth"
    case = load_case(records[0])
    assert case.label == "covid" and case.volume.shape == hu.shape
    np.testing.assert_array_equal(case.lung, lung)
    np.testing.assert_array_equal(case.slice_labels, [0, 0, 1, 1, 0, 0])
    np.testing.assert_allclose(case.volume.hu, hu)
    assert not load_case(records[1]).slice_labels.any()


def test_nifti_pairs_folders_binary_lung_and_flipped_mask(tmp_path: Path) -> None:
    hu, lung, infection = phantom()
    write_nifti(tmp_path / "images" / "pat1.nii.gz", hu)
    write_nifti(tmp_path / "lungs" / "pat1.nii.gz", (lung > 0).astype(np.uint8))
    write_nifti(tmp_path / "infections" / "pat1.nii.gz", infection, flip_x=True)
    (record,) = discover_cases(tmp_path)
    assert record.layout == "nifti-pairs"
    case = load_case(record)
    np.testing.assert_array_equal(case.lung, lung)  # split by side: right at low x
    np.testing.assert_array_equal(case.infection, infection)  # re-oriented onto the CT
    assert case.label == "covid"  # derived from the infection mask


def test_nifti_pairs_flat_suffixes_and_labels_csv(tmp_path: Path) -> None:
    hu, lung, infection = phantom()
    write_nifti(tmp_path / "a.nii.gz", hu)
    write_nifti(tmp_path / "a_lung.nii.gz", lung)
    write_nifti(tmp_path / "a_infection.nii.gz", infection)
    write_nifti(tmp_path / "b.nii.gz", hu)
    (tmp_path / "labels.csv").write_text("case,label\na,covid\nb,negative\n")
    records = discover_cases(tmp_path, layout="nifti-pairs")
    assert [(r.case_id, r.label) for r in records] == [("a", "covid"), ("b", "negative")]
    b = load_case(records[1])
    assert b.lung is None and b.infection is None and b.slice_labels is None


def test_medseg_stacked_slices_and_rp_volumes(tmp_path: Path) -> None:
    hu, lung, infection = phantom(depth=3)
    mask = np.zeros_like(lung)
    mask[0][infection[2] > 0] = 1  # GGO on slice 0
    mask[1][infection[2] > 0] = 2  # consolidation on slice 1
    mask[2][infection[2] > 0] = 3  # pleural effusion only: not infection
    write_nifti(tmp_path / "tr_im.nii.gz", hu)
    write_nifti(tmp_path / "tr_mask.nii.gz", mask)
    hu6, lung6, inf6 = phantom()
    write_nifti(tmp_path / "rp_im" / "1.nii.gz", hu6)
    write_nifti(tmp_path / "rp_msk" / "1.nii.gz", inf6 * 2)
    write_nifti(tmp_path / "rp_lung_msk" / "1.nii.gz", (lung6 > 0).astype(np.uint8))
    records = {r.case_id: r for r in discover_cases(tmp_path)}
    assert set(records) == {"medseg_tr", "medseg_rp_1"}
    stack = load_case(records["medseg_tr"])
    assert stack.label is None
    np.testing.assert_array_equal(stack.slice_labels, [True, True, False])
    rp = load_case(records["medseg_rp_1"])
    assert rp.label == "covid"
    np.testing.assert_array_equal(rp.lung, lung6)
    np.testing.assert_array_equal(rp.infection, inf6)


def test_covid19_ct_seg_left_right_convention_and_names(tmp_path: Path) -> None:
    hu, lung, infection = phantom()
    ma_lung = np.where(lung == 1, 2, np.where(lung == 2, 1, 0)).astype(np.uint8)  # 1 left
    write_nifti(tmp_path / "COVID-19-CT-Seg_20cases" / "coronacases_org_001.nii.gz", hu)
    write_nifti(tmp_path / "Lung_Mask" / "coronacases_001.nii.gz", ma_lung)
    write_nifti(tmp_path / "Infection_Mask" / "coronacases_001.nii.gz", infection)
    rp_name = "radiopaedia_org_covid-19-pneumonia-10_85902_1-dcm.nii.gz"
    write_nifti(tmp_path / "COVID-19-CT-Seg_20cases" / rp_name, hu)
    combined = ma_lung.copy()
    combined[infection > 0] = 3  # infection overwrites the lung label
    write_nifti(tmp_path / "Lung_and_Infection_Mask" / "radiopaedia_10_85902_1.nii.gz", combined)
    records = discover_cases(tmp_path)
    assert [r.case_id for r in records] == ["coronacases_001", "radiopaedia_10_85902_1"]
    for record in records:
        case = load_case(record)
        assert case.label == "covid"
        np.testing.assert_array_equal(case.lung, lung)  # swapped to 1 right, 2 left
        np.testing.assert_array_equal(case.infection, infection)


def test_mosmed_categories_and_masks(tmp_path: Path) -> None:
    hu, _, infection = phantom()
    write_nifti(tmp_path / "studies" / "CT-0" / "study_0001.nii.gz", hu)
    write_nifti(tmp_path / "studies" / "CT-1" / "study_0255.nii.gz", hu)
    write_nifti(tmp_path / "masks" / "study_0255_mask.nii.gz", infection)
    records = discover_cases(tmp_path)
    assert [(r.case_id, r.label) for r in records] == [("study_0001", "negative"),
                                                       ("study_0255", "covid")]
    case = load_case(records[1])
    np.testing.assert_array_equal(case.slice_labels, [0, 0, 1, 1, 0, 0])
    assert load_case(records[0]).slice_labels is None


def test_csv_slice_ranges(tmp_path: Path) -> None:
    hu, _, _ = phantom()
    write_nifti(tmp_path / "images" / "p1.nii.gz", hu)
    write_nifti(tmp_path / "p2.nii.gz", hu)
    (tmp_path / "annotations.csv").write_text(
        "case,first_slice,last_slice,label\np1,1,2,covid\np1,5,5,positive\np2,,,negative\n")
    records = discover_cases(tmp_path)
    assert [(r.layout, r.label) for r in records] == [("csv", "covid"), ("csv", "negative")]
    np.testing.assert_array_equal(load_case(records[0]).slice_labels, [0, 1, 1, 0, 0, 1])
    assert not load_case(records[1]).slice_labels.any()


def test_unknown_layout_lists_known_layouts(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match="synth.*medseg.*mosmed"):
        discover_cases(tmp_path)
    with pytest.raises(DataError, match="Unknown layout"):
        discover_cases(tmp_path, layout="kaggle")


def test_split_cases_by_case_deterministic_stratified(tmp_path: Path) -> None:
    from covidct.train.layouts import CaseRecord

    records = [CaseRecord(f"c{i:02d}", "synth", tmp_path, label="covid" if i % 2 else "negative")
               for i in range(20)]
    parts = split_cases(records, (0.6, 0.2, 0.2), seed=3)
    assert parts == split_cases(list(reversed(records)), (0.6, 0.2, 0.2), seed=3)
    assert [len(p) for p in parts] == [12, 4, 4]
    ids = [r.case_id for p in parts for r in p]
    assert sorted(ids) == sorted(r.case_id for r in records)
    assert all(sum(r.label == "covid" for r in p) == len(p) // 2 for p in parts)
    assert parts != split_cases(records, (0.6, 0.2, 0.2), seed=4)


def test_slice_label_thresholds() -> None:
    lung = np.zeros((3, 100, 100), np.uint8)
    lung[:, :, :] = 1  # 10000 lung pixels: 0.5 % is 50
    infection = np.zeros_like(lung)
    infection[0, 0, :49] = 1
    infection[1, 0, :50] = 1
    infection[2, 0, :19] = 1
    np.testing.assert_array_equal(slice_labels_from_masks(infection, lung), [0, 1, 0])
    np.testing.assert_array_equal(slice_labels_from_masks(infection), [1, 1, 0])


def test_split_touching_lungs_and_conventions() -> None:
    lung = np.zeros((1, 10, 20), bool)
    lung[0, 2:8, 2:18] = True  # one component across the midline (x = 9.5)
    sides = split_lung_sides(lung)
    assert set(np.unique(sides[0, 2:8, 2:10])) == {1}
    assert set(np.unique(sides[0, 2:8, 10:18])) == {2}
    two = np.where(sides == 1, 2, np.where(sides == 2, 1, 0))
    np.testing.assert_array_equal(lung_to_right_left(two, LEFT_RIGHT), sides)
    np.testing.assert_array_equal(lung_to_right_left(two, "by-side"), sides)


def test_align_rejects_other_grid() -> None:
    with pytest.raises(DataError, match="not on the image's voxel grid"):
        align_to_grid(np.zeros((2, 3, 4)), np.diag([2.0, 1, 1, 1]), np.eye(4), (2, 3, 4))


def test_reads_covidct_synth_output(tmp_path: Path) -> None:
    synth = pytest.importorskip("covidct.synth")
    case = synth.generate_case(7, synth.SynthParams(matrix=40, covid=True))
    synth.write_case(case, tmp_path / "case_007")
    (record,) = discover_cases(tmp_path, layout="synth")
    loaded = load_case(record)
    assert loaded.label == case.truth["label"] == "covid"
    np.testing.assert_array_equal(loaded.lung, case.lung)
    np.testing.assert_array_equal(loaded.infection, case.infection)
    np.testing.assert_array_equal(loaded.slice_labels, np.asarray(case.truth["slice_labels"], bool))
    np.testing.assert_allclose(loaded.volume.affine, case.ct.affine, atol=1e-4)
    right_x = np.nonzero(loaded.lung == 1)[2].mean()
    assert right_x < np.nonzero(loaded.lung == 2)[2].mean()  # patient right at low x
