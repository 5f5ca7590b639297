"""End-to-end speed of `covidct analyze` on a 300-slice 512x512 synthetic DICOM series.

Runs the real command (read DICOM -> report) in a subprocess per variant: bf16 (the default,
with the DICOM SEG / SR / secondary captures a DICOM input gets), bf16 --no-dicom-out, fp32,
measuring wall time, peak RSS of that process (os.wait4) and the per-stage timings it
records in result.json. Target: <= 20 s wall and <= 3 GB peak with the default models.

--baseline REV adds the default variant of another revision (a git worktree of REV, run
with its own src/ first on PYTHONPATH), alternating with this tree's, so that a speed-up is
a ratio measured in one run on this shared, noisy machine.

    .venv/bin/python benchmarks/analyze_speed.py [--work DIR] [--repeat N] [--baseline REV]

Writes benchmarks/results/analyze_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent
TARGET_WALL_S, TARGET_RSS_GB = 20.0, 3.0


def make_series(folder: Path, seed: int = 4242) -> dict:
    from covidct.synth import SynthParams, generate_case
    from covidct.synth.dicom_writer import write_ct_series

    case = generate_case(seed, SynthParams(matrix=512, n_slices=300, slice_mm=1.0, covid=True,
                                           severity=0.15))
    files = write_ct_series(case.ct, folder, seed=seed)
    return {"shape": list(case.ct.shape), "spacing_mm": list(case.ct.spacing_mm),
            "files": len(files), "truth_infection_cm3": case.truth["infection_volume_cm3"]}


def series_or_default(series: Path | None, prefix: str) -> Path:
    """`series`, or (None) make_series() in a new temporary folder: the benchmarks that time
    one stage on this same 300 x 512 x 512 series share it."""
    if series is not None:
        return series
    folder = Path(tempfile.mkdtemp(prefix=prefix)) / "series"
    make_series(folder)
    return folder


VARIANTS = (  # (label, precision, extra arguments)
    ("bf16", "bf16", []),                               # the default: DICOM SEG/SR/SC too
    ("bf16 --no-dicom-out", "bf16", ["--no-dicom-out"]),
    ("fp32", "fp32", []),
)


def run_once(series: Path, out: Path, precision: str, models: Path | None = None,
             extra: list[str] | None = None, label: str | None = None,
             src: Path | None = None) -> dict:
    """One `covidct analyze` subprocess; src: another tree's src/ to import covidct from."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "covidct", "analyze", str(series), "-o", str(out), "-q",
           "--precision", precision] + (["--models", str(models)] if models else []) \
        + list(extra or [])
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH"))
                                            if p)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {status}")
    doc = json.loads((out / "result.json").read_text())
    return {"variant": label or precision, "precision": precision, "wall_s": round(wall, 2),
            "peak_rss_gb": round(usage.ru_maxrss / 1e6, 3),  # Linux: KiB -> ~GB
            "stages_s": doc["timings_s"], "decision": doc["decision"]["label"],
            "corona_score_cm3": doc["corona_score_cm3"],
            "infection_cm3": doc["infection"]["volume_cm3"],
            "models": {k: v["name"] for k, v in doc["models"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per precision")
    parser.add_argument("--models", type=Path, help="models folder (default: shipped)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also run the default variant of this git revision, alternating")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="covidct_speed_"))
    series = work / "series"
    if not series.is_dir():
        case = make_series(series)
    else:
        case = {"reused": str(series)}
    variants = [(label, precision, extra, None) for label, precision, extra in VARIANTS]
    baseline = None
    if args.baseline:
        baseline = baseline_tree(args.baseline, work)
        variants.insert(0, (f"baseline {args.baseline}", "bf16", [], baseline["src"]))
    runs = []
    for _ in range(args.repeat):
        for label, precision, extra, src in variants:
            runs.append(run_once(series, work / f"out_{precision}", precision, args.models,
                                 extra, label, src))
            print(json.dumps(runs[-1]), flush=True)
    best = {v[0]: min((r for r in runs if r["variant"] == v[0]), key=lambda r: r["wall_s"])
            for v in variants}
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "case": case, "models_dir": str(args.models) if args.models else "shipped",
        "runs": runs,
        "best_wall_s": {p: r["wall_s"] for p, r in best.items()},
        "fp32_over_bf16_wall": round(best["fp32"]["wall_s"] / best["bf16"]["wall_s"], 2),
        "dicom_outputs_over_none_wall": round(
            best["bf16"]["wall_s"] / best["bf16 --no-dicom-out"]["wall_s"], 2),
        "baseline": baseline and {**baseline, "src": str(baseline["src"]),
                                  "over_this_tree_wall": round(
                                      best[variants[0][0]]["wall_s"] / best["bf16"]["wall_s"], 2)},
        "target": {"wall_s": TARGET_WALL_S, "peak_rss_gb": TARGET_RSS_GB},
        "meets_target": {v: best[v]["wall_s"] <= TARGET_WALL_S
                         and best[v]["peak_rss_gb"] <= TARGET_RSS_GB
                         for v in ("bf16", "bf16 --no-dicom-out")},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analyze_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# analyze speed (300 x 512 x 512 synthetic DICOM, end to end)", "",
             f"machine: {os.cpu_count()} CPUs, load average at end {os.getloadavg()}", "",
             "| variant | wall s | peak RSS GB | " + " | ".join(best["bf16"]["stages_s"]) + " |",
             "|---|---|---|" + "---|" * len(best["bf16"]["stages_s"])]
    for r in runs:
        lines.append(f"| {r['variant']} | {r['wall_s']} | {r['peak_rss_gb']} | "
                     + " | ".join(str(r["stages_s"].get(k, "")) for k in best["bf16"]["stages_s"])
                     + " |")
    lines += ["", f"fp32 / bf16 wall: {report['fp32_over_bf16_wall']}",
              f"with DICOM outputs / without (bf16): {report['dicom_outputs_over_none_wall']}"]
    if baseline:
        lines.append(f"baseline {args.baseline} ({baseline['commit'][:12]}) / this tree, default "
                     f"variant, best wall: {report['baseline']['over_this_tree_wall']}")
    lines.append(f"this tree: {git_revision()}; best of {args.repeat} per variant")
    for variant, met in report["meets_target"].items():
        lines.append(f"target <= {TARGET_WALL_S} s and <= {TARGET_RSS_GB} GB ({variant}): "
                     f"{'met' if met else 'MISSED'}")
    (RESULTS / "analyze_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if baseline:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(baseline["src"].parent)], check=False)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def git_revision() -> str:
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    return rev + ("-dirty (src)" if dirty else "")


def baseline_tree(rev: str, work: Path) -> dict:
    """A detached git worktree of `rev` under work/ (its models and code as committed)."""
    tree = work / "baseline_tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                   capture_output=True, check=False)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True)
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    return {"rev": rev, "commit": commit, "src": tree / "src"}


if __name__ == "__main__":
    sys.exit(main())
