"""Montage of COVID-19 lesions inserted into a real chest CT (LIDC-IDRI-0001).

Each row is one inserted case (seed, severity): the axial slice with the most lesion,
before and after insertion in a lung window (W 1500, L -600), and after with the truth
outline (yellow GGO, red consolidation), plus a sagittal view of the right lung to show
the posterior / lower distribution.

    .venv/bin/python benchmarks/lesion_insertion_montage.py [--ct PATH] [--out PNG]

Writes benchmarks/results/lesion_insertion.png. LIDC-IDRI-0001 may be used for training
(see data/real/SOURCES.md); the lung mask is the HU-threshold baseline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CT = ROOT.parent / "shared/data/real/lidc-idri-0001/LIDC-IDRI-0001.nii.gz"
ROWS = ((11, 0.02), (12, 0.08), (13, 0.2), (14, 0.45))


def _window(hu: np.ndarray) -> np.ndarray:
    return np.clip((hu + 1350.0) / 1500.0, 0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=Path, default=DEFAULT_CT)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks/results/lesion_insertion.png")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from covidct.io import load_volume
    from covidct.synth.insert import InsertionParams, insert_lesions
    from covidct.train.baseline import threshold_lungs

    volume = load_volume(args.ct)
    lung = threshold_lungs(volume)
    ys, xs = np.nonzero(lung.any(axis=0))
    crop = (slice(max(ys.min() - 10, 0), ys.max() + 10),
            slice(max(xs.min() - 10, 0), xs.max() + 10))
    fig, axes = plt.subplots(len(ROWS), 4, figsize=(16, 3.6 * len(ROWS)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 0.75]})
    summary = []
    for row, (seed, severity) in enumerate(ROWS):
        case = insert_lesions(volume, lung, np.random.default_rng(seed),
                              InsertionParams(severity=severity))
        area = (case.mask > 0).sum(axis=(1, 2))
        k = int(np.argmax(area))
        before = np.asarray(volume.hu[k], dtype=np.float32)[crop]
        after = np.asarray(case.volume.hu[k], dtype=np.float32)[crop]
        mask = case.mask[k][crop]
        kinds = ", ".join(sorted({les.kind for les in case.lesions}))
        axes[row, 0].imshow(_window(before), cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title(f"before (slice {k})", fontsize=9)
        axes[row, 1].imshow(_window(after), cmap="gray", vmin=0, vmax=1)
        axes[row, 1].set_title(f"after: seed {seed}, severity {severity:.0%} "
                               f"(got {case.involved_fraction:.1%})", fontsize=9)
        axes[row, 2].imshow(_window(after), cmap="gray", vmin=0, vmax=1)
        axes[row, 2].contour(mask >= 1, levels=[0.5], colors="yellow", linewidths=0.6)
        if (mask == 2).any():
            axes[row, 2].contour(mask == 2, levels=[0.5], colors="red", linewidths=0.6)
        axes[row, 2].set_title(f"truth outline ({len(case.lesions)} foci: {kinds})", fontsize=9)
        # sagittal through the right-lung focus with the most voxels (anterior left)
        col = int(np.argmax((case.mask > 0).sum(axis=(0, 1))))
        sag = np.asarray(case.volume.hu[:, :, col], dtype=np.float32)[::-1]
        axes[row, 3].imshow(_window(sag), cmap="gray", vmin=0, vmax=1,
                            aspect=volume.spacing_mm[0] / volume.spacing_mm[1])
        axes[row, 3].contour(case.mask[::-1, :, col] > 0, levels=[0.5], colors="yellow",
                             linewidths=0.5)
        axes[row, 3].set_title(f"sagittal x-index {col} (anterior left, head up)", fontsize=9)
        for ax in axes[row]:
            ax.set_axis_off()
        summary.append({"seed": seed, "severity": severity, "slice": k,
                        "involved_fraction": case.involved_fraction, "noise_hu": case.noise_hu,
                        "lesions": [les.as_dict() for les in case.lesions]})
    fig.suptitle(f"COVID-19 lesions inserted into {args.ct.name} (lung window W1500 L-600)",
                 fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=72)
    plt.close(fig)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
