"""The COVID-CT-MD slice labels in shared/data/real are in reversed slice order: evidence and fix.

    .venv/bin/python benchmarks/covid_ct_md_label_order.py [--root ../shared/data/real] \
        [--out benchmarks]

The shared `covid-ct-md/labels/*.csv` put the dataset's label arrays (`*-updated-1.npy`)
against the slices in ascending SliceLocation order. The arrays run the other way (from the
top of the chest), so every label sits on its mirror slice. The evidence used here does not
come from any model:

1. Anatomy (`covidct.train.label_order`): as shipped, P001's right upper lobe labels lie
   60 mm below its middle-lobe labels and below its lower-lobe labels; reversed, every lobe
   is where anatomy puts it.
2. The images: a montage of the slices the two orders disagree on, lung window, no overlay
   (`results/covid_ct_md_label_order_<series>.png`), top rows labelled infected only as
   shipped, bottom rows only when reversed. Look at them.

cap001 has only lower-lobe labels, so anatomy cannot decide its order; it comes from the same
label arrays, so the same order is applied, and its montage is there to be looked at.
normal001's labels are all 0 (order does not matter; not rewritten).

Writes `<out>/labels/covid-ct-md/{P001,cap001}.csv` (same rows, file names and positions; the
label columns reversed), the montages and `<out>/results/covid_ct_md_label_order.txt`.
`benchmarks/real_manifest.json` uses the rewritten files. The shared files stay as they are.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from covidct.io import load_volume  # noqa: E402
from covidct.train.label_order import (  # noqa: E402
    lobe_medians_mm,
    lobe_order_contradiction,
)
from covidct.train.real_studies import LOBES, match_slice_labels  # noqa: E402

HERE = Path(__file__).resolve().parent
SERIES = ("P001", "cap001")
LABEL_COLUMNS = ("infection", *LOBES)
SHOWN = 6  # slices per row of the montage


def reversed_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Same rows (file, positions), the label columns taken from the mirror row."""
    out = []
    for row, mirror in zip(rows, reversed(rows), strict=True):
        new = dict(row)
        for column in LABEL_COLUMNS:
            new[column] = mirror[column]
        out.append(new)
    return out


def write_csv(path: Path, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def lobe_medians(z: np.ndarray, lobes: dict[str, np.ndarray]) -> str:
    parts = [f"{name} {count} slices, median z {median:.0f} mm"
             for name, (count, median) in lobe_medians_mm(z, lobes).items()]
    return "; ".join(parts) or "no lobe labelled"


def montage(volume, shipped: np.ndarray, fixed: np.ndarray, title: str, path: Path) -> None:
    only_shipped = np.flatnonzero((shipped == 1) & (fixed == 0))
    only_fixed = np.flatnonzero((fixed == 1) & (shipped == 0))
    rows = [("infected only as shipped", only_shipped), ("infected only reversed", only_fixed)]
    fig, axes = plt.subplots(2, SHOWN, figsize=(2.4 * SHOWN, 6.0))
    z = volume.slice_positions_mm()
    for r, (label, picks) in enumerate(rows):
        chosen = picks[np.linspace(0, len(picks) - 1, SHOWN).round().astype(int)] \
            if len(picks) else []
        for c in range(SHOWN):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(chosen):
                k = int(chosen[c])
                ax.imshow(volume.hu[k], cmap="gray", vmin=-1200, vmax=200)
                ax.set_title(f"{label}\nslice {k}, z {z[k]:.0f} mm", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared/data/real")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    lines = ["# COVID-CT-MD slice labels: shipped order vs reversed (no model involved)",
             f"data root: {args.root}", ""]
    for name in SERIES:
        src = args.root / "covid-ct-md" / "labels" / f"{name}.csv"
        with src.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fieldnames = list(reader.fieldnames or [])
            rows = list(reader)
        fixed_path = args.out / "labels" / "covid-ct-md" / f"{name}.csv"
        write_csv(fixed_path, fieldnames, reversed_rows(rows))
        volume = load_volume(args.root / "covid-ct-md" / name)
        z = volume.slice_positions_mm()
        shipped = match_slice_labels(volume, src, lobes=True)
        fixed = match_slice_labels(volume, fixed_path, lobes=True)
        lines.append(f"{name}: {len(rows)} rows, {int((shipped.infection == 1).sum())} infected;"
                     f" lung series z {z.min():.0f}..{z.max():.0f} mm (+superior)")
        for label, labels in (("shipped", shipped), ("reversed", fixed)):
            infected = z[labels.infection == 1]
            lines.append(f"  {label:8s}: infected z {infected.min():.0f}..{infected.max():.0f} mm"
                         f"; {lobe_medians(z, labels.lobes)}")
            verdict = lobe_order_contradiction(z, labels.lobes)
            lines.append(f"            anatomy check: {verdict or 'no contradiction found'}")
        picture = args.out / "results" / f"covid_ct_md_label_order_{name}.png"
        montage(volume, shipped.infection, fixed.infection,
                f"{name}: slices the two label orders disagree on (lung window, no overlay)",
                picture)
        lines.append(f"  montage: {picture.relative_to(args.out)}; rewritten labels: "
                     f"{fixed_path.relative_to(args.out)}")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    (args.out / "results" / "covid_ct_md_label_order.txt").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
