"""Network inference with the input in NCHW vs channels_last layout (bf16 autocast, CPU).

The shipped modules are converted to channels_last when loaded (covidct.models.registry);
this measures whether handing them a channels_last input too pays, on 32 slices of a real
chest CT (LIDC-IDRI-0001) through each shipped network, interleaving the two layouts so
machine noise hits both. Reported: best-of-N wall and CPU seconds per layout, their ratio,
and the largest output difference.

Recorded result (benchmarks/results/input_layout_speed.txt): no consistent gain, and the
classifier ran slower with it; the stages keep NCHW inputs.

    .venv/bin/python benchmarks/input_layout_speed.py > benchmarks/results/input_layout_speed.txt
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from covidct.io import load_volume
from covidct.models.registry import load_bundle
from covidct.models.runtime import autocast, cpu_has_fast_bf16
from covidct.preprocess import lung_model_input

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REPEATS = 5


def run(module: torch.nn.Module, x: torch.Tensor, bf16: bool) -> tuple[float, float, torch.Tensor]:
    wall, cpu = time.perf_counter(), time.process_time()
    outs = []
    with torch.inference_mode(), autocast(bf16):
        for start in range(0, x.shape[0], 16):
            outs.append(module(x[start:start + 16]).float())
    return time.perf_counter() - wall, time.process_time() - cpu, torch.cat(outs)


def main() -> None:
    bf16 = cpu_has_fast_bf16()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} nproc {os.cpu_count()} "
          f"torch threads {torch.get_num_threads()} bf16 {bf16}")
    volume = load_volume(DATA / "lidc-idri-0001" / "LIDC-IDRI-0001.nii.gz")
    mid = volume.shape[0] // 2
    x = lung_model_input(volume.hu[mid - 16:mid + 16], antialias=True)
    bundle = load_bundle(None)
    for name, loaded in (("lung", bundle.lung), ("classifier", bundle.classifier)):
        module = loaded.module
        layouts = {"nchw": x.contiguous(),
                   "channels_last": x.contiguous(memory_format=torch.channels_last)}
        best = {k: [np.inf, np.inf] for k in layouts}
        outputs = {}
        run(module, layouts["nchw"], bf16)  # warm-up
        for _ in range(REPEATS):
            for key, tensor in layouts.items():
                wall, cpu, out = run(module, tensor, bf16)
                best[key] = [min(best[key][0], wall), min(best[key][1], cpu)]
                outputs[key] = out
        diff = float((outputs["nchw"] - outputs["channels_last"]).abs().max())
        for key in layouts:
            print(f"{name:10} {key:14} wall {best[key][0]:.3f} s  cpu {best[key][1]:.3f} s"
                  f"  (32 slices, best of {REPEATS})")
        wall_ratio = best["nchw"][0] / best["channels_last"][0]
        cpu_ratio = best["nchw"][1] / best["channels_last"][1]
        print(f"{name:10} nchw / channels_last: wall {wall_ratio:.2f}  cpu {cpu_ratio:.2f}"
              f"  max |output diff| {diff:.4f}")


if __name__ == "__main__":
    main()
