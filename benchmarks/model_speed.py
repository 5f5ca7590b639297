"""Inference speed of the lung and slice models on this machine, fp32 vs bf16 autocast.

The analysis target: 300 slices of 512x512 in <= 20 s in all on a 2-core CPU, leaving
~10 s for the lung model over 300 slices + the classifier over ~200 lung slices (+ its
Grad-CAM backward). Times the whole stages (`covidct.lung.segment_lungs` with its 3D
post-processing, `covidct.classify.classify_slices`) on a synthetic 300x512x512 volume,
and the bare networks (ms/slice) for the candidate widths.

    .venv/bin/python benchmarks/model_speed.py > benchmarks/results/model_speed.txt
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from covidct.classify import classify_slices
from covidct.lung import segment_lungs
from covidct.models import create_model
from covidct.models.registry import list_specs, load_bundle
from covidct.models.runtime import cpu_has_fast_bf16
from covidct.volume import Volume

CANDIDATES = [("unet_vgg16", 1.0), ("unet_vgg16", 0.25), ("unet_vgg16", 0.125),
              ("unet_vgg11", 0.125), ("resnet50", 1.0), ("resnet18", 1.0), ("resnet18", 0.5),
              ("resnet18", 0.25), ("resnet34", 0.5)]


def net_ms_per_slice(arch: str, width: float, bf16: bool, n: int = 32, batch: int = 16) -> float:
    model = create_model(arch, width=width).eval()
    x = torch.rand(batch, 1, 224, 224)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x)
        start = time.perf_counter()
        for _ in range(n // batch):
            model(x)
    return (time.perf_counter() - start) / n * 1000


def phantom_volume(n_slices: int = 300, size: int = 512) -> tuple[Volume, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.45 * size)) ** 2 <= 1
    lung2d = np.zeros((size, size), np.uint8)
    for label, cx in ((1, 0.32), (2, 0.68)):
        inside = ((yy - size / 2) / (0.3 * size)) ** 2 + ((xx - cx * size) / (0.13 * size)) ** 2
        lung2d[inside <= 1] = label
    hu = np.where(body, 40, -1000).astype(np.int16)
    hu = np.repeat(hu[None], n_slices, axis=0)
    lung = np.repeat(lung2d[None], n_slices, axis=0)
    lung[:40] = 0
    lung[-60:] = 0
    hu[lung > 0] = -850
    return Volume.from_spacing(hu, (1.0, 0.7, 0.7)), lung


def timed(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    torch.manual_seed(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"native bf16 {cpu_has_fast_bf16()}, load average {os.getloadavg()[0]:.2f} "
          "(machine shared with other jobs: timings are upper bounds)")
    print("\n## bare networks, batch 16, 224x224, ms/slice (fp32 | bf16 autocast)")
    for arch, width in CANDIDATES:
        fp32 = net_ms_per_slice(arch, width, False, n=4 if width == 1.0 else 32,
                                batch=4 if width == 1.0 else 16)
        bf16 = net_ms_per_slice(arch, width, True, n=4 if width == 1.0 else 32,
                                batch=4 if width == 1.0 else 16)
        print(f"{arch:11s} width {width:<6} {fp32:7.1f} | {bf16:6.1f}")
    if list_specs():
        bundle = load_bundle()
        lung_model, cls_model = bundle.lung, bundle.classifier
        names = f"shipped {lung_model.spec.name} + {cls_model.spec.name}"
    else:
        lung_model, cls_model = create_model("unet_vgg16", 0.125), create_model("resnet18", 0.5)
        names = "untrained unet_vgg16 w0.125 + resnet18 w0.5"
    volume, lung = phantom_volume()
    n_lung = int((lung.reshape(lung.shape[0], -1) > 0).any(axis=1).sum())
    print(f"\n## whole stages on a {volume.shape} volume ({n_lung} lung slices), {names}, s")
    for dtype in ("fp32", "bf16"):
        t_lung = timed(lambda d=dtype: segment_lungs(volume, lung_model, dtype=d))
        t_cls = timed(lambda d=dtype: classify_slices(volume.hu, lung, volume.spacing_mm,
                                                      cls_model, dtype=d))
        print(f"{dtype}: segment_lungs {t_lung:5.2f}  classify_slices {t_cls:5.2f}  "
              f"total {t_lung + t_cls:5.2f}")


if __name__ == "__main__":
    main()
