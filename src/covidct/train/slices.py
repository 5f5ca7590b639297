"""2D training samples from cases, through the same preprocessing as inference.

Lung samples: `preprocess.lung_model_input` images and nearest-resized lung labels
(0 background, 1 right, 2 left). Classifier samples: the case's lung ROI box
(`preprocess.lung_roi_box` on the whole-case lung mask, one box per case) and
`preprocess.classifier_input` on the slices that hold lung (`classify.lung_slices`),
labelled per slice, with the infection mask in the same crop as a (56 x 56) area-fraction
map where the case has one (it supervises the auxiliary localization heads). Images are
kept as float16 to halve memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from covidct.classify import lung_slice_flags
from covidct.errors import DataError
from covidct.preprocess import (
    MODEL_INPUT_SIZE,
    CropBox,
    classifier_input,
    crop_slices,
    lung_model_input,
    lung_roi_box,
    resize_slices,
)
from covidct.train.datasets import CaseRecord, LoadedCase, load_case
from covidct.train.masks import slice_labels_from_masks

logger = logging.getLogger(__name__)

EMPTY_SLICE_SHARE = 0.1  # default: lung training also sees a few slices without lung
INFECTION_MAP_SIZE = 56  # 2x the classifier's 28x28 stage; pooled to 28 and 14 in the loss


@dataclass(frozen=True)
class SliceSet:
    """Model inputs (n, 1, 224, 224) float16, targets, and the case index of each slice."""

    images: torch.Tensor
    targets: torch.Tensor  # lung: (n, 224, 224) uint8; classifier: (n,) float32 0/1
    case_index: np.ndarray  # (n,) int: position of the slice's case in `case_ids`
    case_ids: tuple[str, ...]
    maps: torch.Tensor | None = None  # classifier: (n, 1, 56, 56) float16 infection fraction

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _even_pick(indices: np.ndarray, limit: int | None) -> np.ndarray:
    if limit is None or indices.size <= limit:
        return indices
    return indices[np.linspace(0, indices.size - 1, limit).round().astype(int)]


def lung_samples(case: LoadedCase, max_slices: int | None = None,
                 size: int = MODEL_INPUT_SIZE, soft: bool = False,
                 empty_share: float = EMPTY_SLICE_SHARE, antialias: bool = False,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n,1,size,size) float16, labels) of one case.

    Labels: (n,size,size) uint8 (nearest), or with `soft` (n,3,size,size) float16 shares of
    background / right / left per pixel (area-averaged): trained on those, the network
    places the lung boundary between its 224-grid pixels, which the bilinear resize back
    to a 512 grid keeps (a perfect nearest-label prediction caps lung Dice near 0.976 on
    512x512 slices; area shares, near 0.997: benchmarks/results/lung_stage_checks.txt).
    """
    if case.lung is None:
        raise DataError(f"Case {case.case_id} has no lung mask; lung training needs one.")
    has_lung = case.lung.reshape(case.lung.shape[0], -1).any(axis=1)
    with_lung = _even_pick(np.flatnonzero(has_lung), max_slices)
    n_empty = int(round(empty_share * with_lung.size))
    picked = np.sort(np.concatenate([with_lung, _even_pick(np.flatnonzero(~has_lung), n_empty)]))
    images = lung_model_input(case.volume.hu[picked], size=size, antialias=antialias).half()
    if soft:
        onehot = F.one_hot(torch.as_tensor(case.lung[picked]).long().clamp(0, 2), 3)
        shares = F.interpolate(onehot.permute(0, 3, 1, 2).float(), size=(size, size),
                               mode="area")
        return images, shares.half()
    labels = resize_slices(case.lung[picked], (size, size), mode="nearest").to(torch.uint8)
    return images, labels


def case_slice_labels(case: LoadedCase) -> np.ndarray | None:
    """Bool per slice, or None when the case cannot label its slices."""
    if case.slice_labels is not None:
        return np.asarray(case.slice_labels, dtype=bool)
    if case.infection is not None:
        return slice_labels_from_masks(case.infection, case.lung)
    if case.label == "negative":
        return np.zeros(case.volume.shape[0], dtype=bool)
    return None


Selection = tuple[np.ndarray | None, CropBox | None]  # (slice indices picked, ROI box)


def classifier_samples(case: LoadedCase, lung: np.ndarray | None = None,
                       max_slices: int | None = None, size: int = MODEL_INPUT_SIZE,
                       selection: Selection | None = None, antialias: bool = False,
                       ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(images (n,1,size,size) float16, labels (n,) float32) of the lung slices of one case.

    `lung` defaults to the case's reference lung mask (training); pass a predicted mask
    to reproduce inference exactly. `selection`: `classifier_selection` of that mask, when
    the caller already has it. None when the case has no lung or no slice labels.
    """
    lung = case.lung if lung is None else lung
    labels = case_slice_labels(case)
    if lung is None or labels is None:
        logger.warning("Case %s skipped: no %s.", case.case_id,
                       "lung mask" if lung is None else "slice labels")
        return None
    picked, box = selection or classifier_selection(case, lung, max_slices)
    if picked is None:
        return None
    images = classifier_input(case.volume.hu[picked], box, size=size,
                              antialias=antialias).half()
    return images, torch.as_tensor(labels[picked], dtype=torch.float32)


def classifier_selection(case: LoadedCase, lung: np.ndarray, max_slices: int | None,
                         ) -> Selection:
    """(indices of the lung slices picked, ROI box), or (None, None) without lung."""
    spacing = case.volume.spacing_mm
    box = lung_roi_box(lung, (spacing[1], spacing[2]))
    flags = lung_slice_flags(lung, spacing)
    if box is None or not flags.any():
        return None, None
    return _even_pick(np.flatnonzero(flags), max_slices), box


def infection_maps(case: LoadedCase, max_slices: int | None = None,
                   size: int = INFECTION_MAP_SIZE, selection: Selection | None = None,
                   ) -> torch.Tensor | None:
    """(n, 1, size, size) float16 share of each pixel that is infection, for the same slices
    and crop as `classifier_samples` (reference lung mask); None without an infection mask
    (a negative case without one has an empty map)."""
    if case.lung is None:
        return None
    infection = case.infection
    if infection is None:
        if case.label != "negative":
            return None
        infection = np.zeros(case.lung.shape, dtype=np.uint8)
    picked, box = selection or classifier_selection(case, case.lung, max_slices)
    if picked is None:
        return None
    crop = crop_slices((np.asarray(infection[picked]) > 0).astype(np.float32), box, fill=0.0)
    return F.interpolate(torch.from_numpy(crop)[:, None], size=(size, size), mode="area").half()


def build_slice_set(records: Sequence[CaseRecord], task: str, *, max_slices: int | None = None,
                    loader: Callable[[CaseRecord], LoadedCase] = load_case,
                    progress: bool = True, soft_labels: bool = False,
                    empty_share: float = EMPTY_SLICE_SHARE, antialias: bool = False) -> SliceSet:
    """Samples of every case for task 'lung' (soft_labels: area shares) or 'classifier'.

    `antialias`: how images are shrunk to the model input (`preprocess.resize_slices`).
    """
    images, targets, owners, ids, maps = [], [], [], [], []
    for record in tqdm(records, desc=f"{task} slices", disable=not progress, leave=False):
        case = loader(record)
        selection = None
        if task == "lung":
            sample = lung_samples(case, max_slices, soft=soft_labels, empty_share=empty_share,
                                  antialias=antialias)
        else:  # one ROI box and slice pick for the images and the infection maps
            if case.lung is not None:
                selection = classifier_selection(case, case.lung, max_slices)
            sample = classifier_samples(case, max_slices=max_slices, selection=selection,
                                        antialias=antialias)
        if sample is None or sample[0].shape[0] == 0:
            continue
        owners.append(np.full(sample[0].shape[0], len(ids)))
        ids.append(case.case_id)
        images.append(sample[0])
        targets.append(sample[1])
        if task == "classifier":
            maps.append(infection_maps(case, max_slices, selection=selection))
    if not images:
        raise DataError(f"No usable {task} training slices in {len(records)} cases "
                        "(lung masks and slice labels or infection masks are needed).")
    all_maps = torch.cat(maps) if maps and all(m is not None for m in maps) else None
    return SliceSet(images=torch.cat(images), targets=torch.cat(targets),
                    case_index=np.concatenate(owners), case_ids=tuple(ids), maps=all_maps)
