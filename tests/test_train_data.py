"""A tiny chest phantom on disk in the synth layout (helpers for the training tests).

Body ellipse (soft tissue), two lung ellipses (-850 HU, 1 right at low x, 2 left),
and in 'covid' cases a -300 HU blob inside the right lung on some slices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from covidct.io.nifti import write_nifti
from covidct.train.slices import case_slice_labels, classifier_samples, lung_samples
from covidct.volume import Volume


def phantom(seed: int, covid: bool, shape: tuple[int, int, int] = (8, 64, 64),
            ) -> tuple[Volume, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    hu = np.full(shape, -1000.0, dtype=np.float32)
    lung = np.zeros(shape, dtype=np.uint8)
    infection = np.zeros(shape, dtype=np.uint8)
    body = ((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.46 * w)) ** 2 <= 1
    for k in range(z):
        scale = 0.6 + 0.4 * np.sin(np.pi * (k + 0.5) / z)
        hu[k][body] = 40.0
        for label, cx in ((1, 0.3 * w), (2, 0.7 * w)):
            inside = ((yy - h / 2) / (0.3 * h * scale)) ** 2 \
                + ((xx - cx) / (0.14 * w * scale)) ** 2 <= 1
            hu[k][inside] = -850.0
            lung[k][inside] = label
        if covid and 2 <= k < z - 2:
            blob = ((yy - h / 2) ** 2 + (xx - 0.3 * w) ** 2) <= (0.08 * w) ** 2
            hu[k][blob & (lung[k] == 1)] = -300.0
            infection[k][blob & (lung[k] == 1)] = 1
    hu += rng.normal(0, 20, size=shape).astype(np.float32)
    return Volume.from_spacing(hu, (5.0, 5.0, 5.0)), lung, infection


def write_dataset(root: Path, n_cases: int = 6) -> Path:
    """ROOT/case_XXX/{ct,lung,infection}.nii.gz + truth.json; alternating covid/negative."""
    for index in range(n_cases):
        covid = index % 2 == 0
        volume, lung, infection = phantom(index, covid)
        case = root / f"case_{index:03d}"
        case.mkdir(parents=True)
        write_nifti(volume.hu, volume.affine, case / "ct.nii.gz", dtype=np.int16)
        write_nifti(lung, volume.affine, case / "lung.nii.gz", dtype=np.uint8)
        write_nifti(infection, volume.affine, case / "infection.nii.gz", dtype=np.uint8)
        (case / "truth.json").write_text(json.dumps({"label": "covid" if covid else "negative"}))
    return root


def test_phantom_samples() -> None:
    from covidct.train.datasets import LoadedCase

    volume, lung, infection = phantom(0, covid=True)
    case = LoadedCase("c", volume, lung, infection, None, "covid")
    images, labels = lung_samples(case)
    assert images.shape == (8, 1, 224, 224) and labels.shape == (8, 224, 224)
    assert set(np.unique(labels.numpy())) == {0, 1, 2}
    # right lung (1) lies at low x
    assert np.nonzero(labels.numpy() == 1)[2].mean() < np.nonzero(labels.numpy() == 2)[2].mean()
    expected = case_slice_labels(case)
    assert expected.tolist() == [False, False, True, True, True, True, False, False]
    cls_images, cls_labels = classifier_samples(case)
    assert cls_images.shape[1:] == (1, 224, 224)
    assert cls_labels.sum() == 4


def test_soft_lung_labels_are_area_shares() -> None:
    from covidct.train.datasets import LoadedCase

    volume, lung, infection = phantom(0, covid=True)
    case = LoadedCase("c", volume, lung, infection, None, "covid")
    _, hard = lung_samples(case)
    _, soft = lung_samples(case, soft=True)
    assert soft.shape == (8, 3, 224, 224)
    assert torch.allclose(soft.float().sum(dim=1), torch.ones(8, 224, 224), atol=1e-2)
    for side in (1, 2):  # same lung area as the nearest labels, within the boundary pixels
        hard_area = float((hard == side).sum())
        assert abs(float(soft[:, side].float().sum()) - hard_area) < 0.03 * hard_area
