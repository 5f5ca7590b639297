"""Compare synthetic chest CT with a real one (COPDGene 10002K, downsampled to ~4 mm).

Synthetic cases are resampled (anti-aliased) to the real scan's grid; we compare HU
histograms inside the lung and inside the body, the lung's share of the body volume,
mean/median lung HU and lung volume, and draw axial + coronal slices side by side.

    .venv/bin/python benchmarks/synth_realism.py [--cases 4] [--out benchmarks/results]

Writes synth_realism.txt, synth_realism.json and synth_realism.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from covidct.io.nifti import read_nifti_array
from covidct.synth import SynthParams, generate_case

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / "../shared/data/real/cip-copdgene-10002K"
LUNG_BINS = np.arange(-1025, -299, 10)
BODY_BINS = np.arange(-1025, 1001, 25)


def load_real() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    image = sitk.ReadImage(str(REAL / "ct-64.nrrd"))
    if not np.allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3)):
        raise SystemExit("expected an axial identity-direction NRRD")
    hu = sitk.GetArrayFromImage(image).astype(np.float32)  # (z, y, x), LPS canonical
    label, _ = read_nifti_array(REAL / "cip_10002K_lm64_1right_2left_3airway.nii.gz")
    sx, sy, sz = image.GetSpacing()
    return hu, label.astype(np.uint8), (sz, sy, sx)


def body_mask(hu: np.ndarray) -> np.ndarray:
    """Patient body: the largest connected component above -400 HU, holes filled per slice."""
    solid = hu > -400
    lab, n = ndimage.label(solid)
    if n == 0:
        return solid
    sizes = ndimage.sum(solid, lab, index=range(1, n + 1))
    body = lab == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def resample(case, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic HU and lung mask on a grid of the given spacing (Gaussian anti-aliasing)."""
    src = np.array(case.ct.spacing_mm)
    zoom = src / np.array(spacing)
    sigma = np.maximum(0.0, (1.0 / zoom - 1.0) * 0.42)
    hu = ndimage.zoom(ndimage.gaussian_filter(case.ct.hu.astype(np.float32), sigma), zoom,
                      order=1)
    lung = ndimage.zoom((case.lung > 0).astype(np.float32), zoom, order=1) > 0.5
    return hu, lung


def stats(hu: np.ndarray, lung: np.ndarray, spacing: tuple[float, float, float]) -> dict:
    body = body_mask(hu)
    lung = lung & body
    vox = float(np.prod(spacing)) / 1000.0
    lung_hist = np.histogram(hu[lung], LUNG_BINS)[0].astype(float)
    body_hist = np.histogram(hu[body], BODY_BINS)[0].astype(float)
    return {
        "lung_volume_cm3": float(lung.sum() * vox),
        "body_volume_cm3": float(body.sum() * vox),
        "lung_fraction_of_body": float(lung.sum() / max(body.sum(), 1)),
        "lung_mean_hu": float(hu[lung].mean()),
        "lung_median_hu": float(np.median(hu[lung])),
        "lung_p10_p90_hu": [float(v) for v in np.percentile(hu[lung], [10, 90])],
        "body_median_hu": float(np.median(hu[body])),
        "soft_tissue_fraction_of_body": float(((hu[body] > -200) & (hu[body] < 200)).mean()),
        "fat_fraction_of_body": float(((hu[body] > -200) & (hu[body] < -30)).mean()),
        "lung_hist": (lung_hist / max(lung_hist.sum(), 1)).tolist(),
        "body_hist": (body_hist / max(body_hist.sum(), 1)).tolist(),
    }


def overlap(p: list[float], q: list[float]) -> float:
    """Histogram intersection, 1 = identical distributions."""
    return float(np.minimum(np.asarray(p), np.asarray(q)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    real_hu, real_label, spacing = load_real()
    real = stats(real_hu, (real_label == 1) | (real_label == 2), spacing)
    rows, synth_imgs = [], []
    started = time.perf_counter()
    for i in range(args.cases):
        covid = i == args.cases - 1  # the last case is a COVID-19 case, for the picture
        params = SynthParams(matrix=256, pixel_mm=1.5, slice_mm=2.5, covid=covid,
                             severity=0.15 if covid else None, findings=False)
        case = generate_case(args.seed + i, params)
        hu, lung = resample(case, spacing)
        st = stats(hu, lung, spacing)
        st["seed"], st["covid"] = args.seed + i, covid
        st["lung_hist_overlap"] = overlap(st["lung_hist"], real["lung_hist"])
        st["body_hist_overlap"] = overlap(st["body_hist"], real["body_hist"])
        rows.append(st)
        synth_imgs.append((case, hu))
    seconds = time.perf_counter() - started
    negatives = [r for r in rows if not r["covid"]]
    keys = ("lung_mean_hu", "lung_median_hu", "lung_fraction_of_body", "lung_volume_cm3",
            "body_median_hu", "fat_fraction_of_body", "soft_tissue_fraction_of_body",
            "lung_hist_overlap", "body_hist_overlap")
    lines = [f"synthetic (negatives, n={len(negatives)}, mean) vs real COPDGene 10002K "
             f"on its {spacing[0]:.2f} x {spacing[1]:.2f} x {spacing[2]:.2f} mm grid",
             f"{'metric':32s} {'real':>10s} {'synthetic':>10s}"]
    for key in keys:
        real_v = real.get(key, 1.0)
        syn_v = float(np.mean([r[key] for r in negatives]))
        lines.append(f"{key:32s} {real_v:10.3f} {syn_v:10.3f}")
    covid_rows = [r for r in rows if r["covid"]]
    for r in covid_rows:
        lines.append(f"covid case seed {r['seed']}: lung mean {r['lung_mean_hu']:.0f} HU, "
                     f"lung median {r['lung_median_hu']:.0f} HU")
    lines.append(f"generation + resampling of {args.cases} cases at 256x256: {seconds:.1f} s")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "synth_realism.txt").write_text(text + "\n")
    (args.out / "synth_realism.json").write_text(json.dumps(
        {"real": real, "synthetic": rows, "lung_bins": LUNG_BINS.tolist(),
         "body_bins": BODY_BINS.tolist()}, indent=1))
    _picture(real_hu, real_label, synth_imgs, real, rows, args.out / "synth_realism.png")


def _levels(lung: np.ndarray) -> list[int]:
    zs = np.flatnonzero(lung.any(axis=(1, 2)))
    return [int(zs[0] + f * (zs[-1] - zs[0])) for f in (0.25, 0.55, 0.85)]


def _coronal(hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    ys = np.flatnonzero(lung.any(axis=(0, 2)))
    return hu[::-1, int(ys.mean()) if ys.size else hu.shape[1] // 2, :]


def _picture(real_hu, real_label, synth, real, rows, path: Path) -> None:
    shown = [(real_hu, real_label > 0, "real COPDGene 10002K")]
    for (case, hu), r in zip(synth[-2:], rows[-2:], strict=True):
        lung = ndimage.zoom((case.lung > 0).astype(np.float32), np.array(hu.shape)
                            / np.array(case.lung.shape), order=0) > 0.5
        label = "synthetic COVID-19" if r["covid"] else "synthetic negative"
        shown.append((hu, lung, f"{label} (seed {r['seed']})"))
    fig, axes = plt.subplots(len(shown) + 1, 4, figsize=(16, 4.2 * (len(shown) + 1)))
    for row, (hu, lung, title) in zip(axes, shown, strict=False):
        for ax, k in zip(row[:3], _levels(lung), strict=True):
            ax.imshow(hu[k], cmap="gray", vmin=-1100, vmax=300)
            ax.set_title(f"{title} axial {k}", fontsize=9)
            ax.axis("off")
        row[3].imshow(_coronal(hu, lung), cmap="gray", vmin=-1100, vmax=300, aspect=0.96)
        row[3].set_title(f"{title} coronal", fontsize=9)
        row[3].axis("off")
    last = axes[-1]
    centres = (LUNG_BINS[:-1] + LUNG_BINS[1:]) / 2
    last[0].plot(centres, real["lung_hist"], "k", label="real")
    for r in rows:
        last[0].plot(centres, r["lung_hist"], alpha=0.7,
                     label=f"seed {r['seed']}{' covid' if r['covid'] else ''}")
    last[0].set_title("HU inside the lung", fontsize=9)
    last[0].legend(fontsize=7)
    centres = (BODY_BINS[:-1] + BODY_BINS[1:]) / 2
    last[1].semilogy(centres, np.maximum(real["body_hist"], 1e-5), "k", label="real")
    for r in rows:
        last[1].semilogy(centres, np.maximum(r["body_hist"], 1e-5), alpha=0.7)
    last[1].set_title("HU inside the body", fontsize=9)
    names = ["real"] + [str(r["seed"]) for r in rows]
    last[2].bar(names, [real["lung_fraction_of_body"]] + [r["lung_fraction_of_body"]
                                                         for r in rows])
    last[2].set_title("lung volume / body volume", fontsize=9)
    last[3].bar(names, [real["lung_mean_hu"]] + [r["lung_mean_hu"] for r in rows])
    last[3].set_title("mean lung HU", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=55)
    plt.close(fig)


if __name__ == "__main__":
    main()
