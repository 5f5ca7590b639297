"""Figures quoted in the lung stage's code comments, measured on one synthetic 512x512 case.

    .venv/bin/python benchmarks/lung_stage_checks.py \
        [--out benchmarks/results/lung_stage_checks.txt]

1. Lung network inference, bf16, NCHW vs channels_last weights (ms per slice, same run).
2. Hole filling of a (z, y, x) lung mask: scipy per slice vs `covidct.lung.fill_holes_per_slice`.
   3D post-processing of the network's labels: a scipy.ndimage.label reference (the first
   implementation, kept here) vs `covidct.lung.postprocess_lung_mask` (cc3d); and the label
   map from two scores: torch.where with Python ints (int64) vs uint8 arithmetic.
3. The lung Dice ceiling of 224x224 training targets on 512x512 slices: a perfect prediction
   of nearest-resized labels vs of area-share labels, resized back (bilinear) and thresholded.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from covidct.lung import fill_holes_per_slice, logits_to_labels, postprocess_lung_mask
from covidct.models.registry import load_bundle
from covidct.models.runtime import autocast
from covidct.preprocess import lung_model_input, resize_slices
from covidct.synth import SynthParams, generate_case


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def scipy_postprocess(labels: np.ndarray, share: float = 0.02) -> np.ndarray:
    """The first (scipy.ndimage) implementation of covidct.lung.postprocess_lung_mask."""
    out = np.zeros(labels.shape, dtype=np.uint8)
    region = ndimage.find_objects((labels > 0).astype(np.uint8))[0]
    sub = labels[region]
    components, count = ndimage.label(sub > 0)
    sizes = np.bincount(components.ravel())[1:]
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes >= share * sizes.max()
    lung = keep[components]
    result = np.zeros(sub.shape, dtype=np.uint8)
    main = {}
    for side in (1, 2):
        side_components, n = ndimage.label((sub == side) & lung)
        if n:
            main[side] = side_components == int(np.argmax(np.bincount(
                side_components.ravel())[1:])) + 1
            result[main[side]] = side
    leftover = lung & (result == 0)
    islands, n = ndimage.label(leftover) if leftover.any() else (None, 0)
    if n and main:
        centres = {s: float(np.mean(np.nonzero(m)[2])) for s, m in main.items()}
        for index, obj in enumerate(ndimage.find_objects(islands), start=1):
            piece = islands[obj] == index
            x = obj[2].start + np.mean(np.nonzero(piece)[2])
            result[obj][piece] = min(centres, key=lambda s: abs(centres[s] - x))
    for side in (1, 2):
        filled = np.stack([ndimage.binary_fill_holes(s) for s in result == side])
        result[filled & (result == 0)] = side
    out[region] = result
    return out


def timed(fn, *args):  # noqa: ANN001, ANN202 - benchmark helper
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def inference_ms(module: torch.nn.Module, x: torch.Tensor, channels_last: bool) -> float:
    module = module.to(memory_format=torch.channels_last if channels_last
                       else torch.contiguous_format)
    with torch.no_grad(), autocast(True, torch.device("cpu")):
        module(x[:16])
        start = time.perf_counter()
        for i in range(0, x.shape[0], 16):
            module(x[i:i + 16])
    return (time.perf_counter() - start) / x.shape[0] * 1000.0


def _labels_int64(logits: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    lung_score = logits[:, 1:].amax(dim=1) - logits[:, 0]
    side_score = logits[:, 1] - logits[:, 2]
    scores = F.interpolate(torch.stack([lung_score, side_score], dim=1), size=shape,
                           mode="bilinear", align_corners=False)
    return (torch.where(scores[:, 1] > 0, 1, 2) * (scores[:, 0] > 0)).to(torch.uint8).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    case = generate_case(4242, SynthParams(matrix=512, n_slices=120, slice_mm=2.5, covid=True,
                                           severity=0.3))
    lines = [f"# {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; synthetic case seed 4242, "
             f"shape {case.ct.shape}"]
    module = load_bundle().lung.module.eval()
    x = lung_model_input(case.ct.hu[:96])
    for channels_last in (False, True, False, True):
        ms = inference_ms(module, x, channels_last)
        lines.append(f"lung network bf16 {'channels_last' if channels_last else 'NCHW':<13} "
                     f"{ms:6.1f} ms/slice")
    mask = case.lung == 1
    start = time.perf_counter()
    expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    per_slice = time.perf_counter() - start
    start = time.perf_counter()
    found = fill_holes_per_slice(mask)
    one_pass = time.perf_counter() - start
    assert (found == expected).all()
    lines.append(f"fill holes, {mask.shape[0]} slices: scipy per slice {per_slice:.2f} s, "
                 f"fill_holes_per_slice {one_pass:.2f} s (identical masks)")
    with torch.no_grad(), autocast(True, torch.device("cpu")):
        logits = torch.cat([module(lung_model_input(case.ct.hu[i:i + 16])).float()
                            for i in range(0, case.ct.shape[0], 16)])
    for _ in range(2):
        old_labels, old_s = timed(_labels_int64, logits, case.ct.hu.shape[1:])
        labels, new_s = timed(logits_to_labels, logits, case.ct.hu.shape[1:])
        assert (old_labels == labels).all()
        lines.append(f"labels from scores, {logits.shape[0]} slices: torch.where int64 "
                     f"{old_s:.2f} s, uint8 arithmetic {new_s:.2f} s (identical)")
    for _ in range(2):
        expected, old_s = timed(scipy_postprocess, labels)
        found, new_s = timed(postprocess_lung_mask, labels)
        assert (expected == found).all()
        lines.append(f"3D post-processing, {labels.shape[0]} slices: scipy {old_s:.2f} s, "
                     f"cc3d + fill_voids {new_s:.2f} s (identical masks)")
    ref = case.lung > 0
    shape = ref.shape[1:]
    nearest = resize_slices(case.lung, (224, 224), mode="nearest").long()
    logits = F.one_hot(nearest, 3).permute(0, 3, 1, 2).float() * 10 - 5
    up = F.interpolate(logits, size=shape, mode="bilinear", align_corners=False)
    nearest_dice = dice((up[:, 1:].amax(1) > up[:, 0]).numpy(), ref)
    lines.append(f"Dice ceiling, nearest 224 labels: {nearest_dice:.4f}")
    shares = F.interpolate(torch.from_numpy(ref.astype(np.float32))[:, None], size=(224, 224),
                           mode="area")
    back = F.interpolate(shares, size=shape, mode="bilinear", align_corners=False)[:, 0]
    lines.append(f"Dice ceiling, area-share 224 labels: {dice((back > 0.5).numpy(), ref):.4f}")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
