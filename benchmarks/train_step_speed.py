"""Training-step time of the default architectures: fp32 vs bf16 autocast, NCHW vs channels_last.

    .venv/bin/python benchmarks/train_step_speed.py [--out benchmarks/results/train_step_speed.txt]

One AdamW step on a batch of 16 random 224x224 slices; the median of --repeats steps after
two warm-up steps. All four variants run in the same process, so their ratios are
comparable even on a shared, noisy machine (absolute times are not).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from covidct.models.factory import create_model

MODELS = (("resnet18", 0.5), ("unet_vgg16", 0.125))


def step_seconds(arch: str, width: float, channels_last: bool, bf16: bool, repeats: int) -> float:
    torch.manual_seed(0)
    model = create_model(arch, width=width).train()
    x = torch.rand(16, 1, 224, 224)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x).float().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = [f"# {platform.node()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}",
             "model               layout          dtype  s/step  vs NCHW fp32"]
    for arch, width in MODELS:
        base = None
        for channels_last in (False, True):
            for bf16 in (False, True):
                t = step_seconds(arch, width, channels_last, bf16, args.repeats)
                base = base or t
                lines.append(f"{arch:<19} {'channels_last' if channels_last else 'NCHW':<15} "
                             f"{'bf16' if bf16 else 'fp32':<6} {t:6.3f}  {base / t:5.2f}x")
                print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
