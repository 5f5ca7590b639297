"""`covidct analyze INPUT -o OUT`: the whole analysis of one CT study."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from covidct.config import EXPLAIN, INFECTION_METHODS, PRECISIONS, AnalysisConfig
from covidct.io.output_folder import check_output_folder

HELP = "analyse one chest CT: decision, Corona score, % involvement, masks, report"
OUTPUT_NAMES = ("result.json", "report.html", "lung_mask.nii.gz", "airway_mask.nii.gz",
                "infection_mask.nii.gz", "heatmap.nii.gz", "render_3d.png", "slice_profile.png",
                "seg.dcm", "sr.dcm")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per AnalysisConfig field (``--infection-sigma-mm``); unset flags keep defaults."""
    group = parser.add_argument_group("analysis settings")
    helps = AnalysisConfig.field_help()
    for f in fields(AnalysisConfig):
        default = f.default if f.default is not MISSING else None
        kind = type(default) if default is not None else float
        shown = "the model card's" if default is None else default
        kwargs: dict[str, Any] = {"type": kind, "default": None, "dest": f"cfg_{f.name}",
                                  "metavar": kind.__name__.upper(),
                                  "help": f"{helps[f.name].split(' (default')[0]} "
                                          f"(default: {shown})"}
        choices = {"precision": PRECISIONS, "explain": EXPLAIN,
                   "infection_method": INFECTION_METHODS}
        if f.name in choices:
            kwargs["choices"] = choices[f.name]
            del kwargs["metavar"]
        group.add_argument(f"--{f.name.replace('_', '-')}", **kwargs)


def config_from_args(args: argparse.Namespace) -> AnalysisConfig:
    given = {f.name: getattr(args, f"cfg_{f.name}") for f in fields(AnalysisConfig)
             if getattr(args, f"cfg_{f.name}", None) is not None}
    return AnalysisConfig(**given)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path,
                        help="DICOM folder / file / .zip, or a NIfTI, NRRD or MHA volume")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--series", metavar="UID", help="series instance UID to analyse")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="folder of model weights + cards (default: the shipped models)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty output folder, replacing covidct outputs")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument("--dicom-out", action=argparse.BooleanOptionalAction, default=None,
                        help="write DICOM SEG (seg.dcm), a TID 1500 SR (sr.dcm) and secondary "
                             "captures (sc/) referencing the source series (default: on when "
                             "the input is DICOM)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no summary")
    add_config_arguments(parser)


def _clear_previous_outputs(out_dir: Path) -> None:
    for name in OUTPUT_NAMES:
        (out_dir / name).unlink(missing_ok=True)
    overlays = out_dir / "overlays"
    if overlays.is_dir():
        for png in overlays.glob("slice_*.png"):
            png.unlink()
    captures = out_dir / "sc"
    if captures.is_dir():
        for dcm in captures.glob("sc_*.dcm"):
            dcm.unlink()
        if not any(captures.iterdir()):  # this run may write none (e.g. --no-dicom-out)
            captures.rmdir()


class _Progress:
    """A tqdm bar over the job's steps (stderr, terminal only, silenced by --quiet)."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        disable = True if quiet else None  # None: tqdm disables itself off a terminal
        self.bar = tqdm(total=total, disable=disable, file=sys.stderr, unit="step",
                        bar_format="{desc:<24} {bar} {n_fmt}/{total_fmt} [{elapsed}]")
        self.started = False

    def __call__(self, name: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description_str(name)

    def close(self) -> None:
        if self.started:
            self.bar.update(1)
        self.bar.close()


def analyze_to_folder(input_path: Path, out_dir: Path, config: AnalysisConfig, *,
                      series_uid: str | None = None, models_dir: Path | None = None,
                      report: bool = True, quiet: bool = False,
                      overwrite: bool = False, dicom_out: bool | None = None) -> dict[str, Any]:
    """Read, analyse and write every output; returns the result.json document.

    dicom_out: see covidct.export.dicom_objects.dicom_sources_with_reason (None: DICOM SEG/SR/SC
    when the input is DICOM).
    """
    from covidct.export.dicom_objects import dicom_sources_with_reason
    from covidct.export.outputs import EXPORT_STAGES, write_outputs
    from covidct.hu_units import require_hounsfield
    from covidct.io import load_volume
    from covidct.models.registry import load_bundle
    from covidct.pipeline import STAGES, analyze

    check_output_folder(input_path, out_dir, overwrite)
    started = time.perf_counter()
    progress = _Progress(2 + len(STAGES) + len(EXPORT_STAGES) - (0 if report else 1)
                         + (0 if dicom_out is False else 1), quiet)
    try:
        timings: dict[str, float] = {}
        progress("reading input")
        volume = load_volume(input_path, series_uid=series_uid)
        require_hounsfield(volume)
        timings["read"] = round(time.perf_counter() - started, 3)
        t0 = time.perf_counter()
        # headers again, for SEG / SR / SC
        sources, dicom_skipped = dicom_sources_with_reason(volume, dicom_out)
        if sources is not None:
            timings["read_dicom_sources"] = round(time.perf_counter() - t0, 3)
        elif dicom_out is not False:  # no DICOM step after all
            progress.bar.total -= 1
        progress("loading models")
        t0 = time.perf_counter()
        bundle = load_bundle(models_dir)
        timings["load_models"] = round(time.perf_counter() - t0, 3)
        result = analyze(volume, config, bundle, progress=progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _clear_previous_outputs(out_dir)
        doc = write_outputs(result, out_dir, report=report, timings_s=timings,
                            progress=progress, started=started, dicom_sources=sources,
                            dicom_required=bool(dicom_out), dicom_skipped=dicom_skipped)
    finally:
        progress.close()
    return doc


def summary_lines(doc: dict[str, Any], out_dir: Path) -> list[str]:
    d, inf = doc["decision"], doc["infection"]
    lines = [
        f"decision: {d['label']} ({d['positive_slices']}/{d['lung_slices']} positive lung "
        f"slices, ratio {d['positive_slice_ratio'] or 0:.3f}, threshold {d['threshold'] or 0:.3f})",
        f"reason: {d['reason']}",
        *([("measurements below: not an assessment of the lungs (the decision is "
            "indeterminate; 0 does not mean clean)")] if d["label"] == "indeterminate" else []),
        f"lung: {doc['lung']['volume_cm3']:.0f} cm3 (right {doc['lung']['right_cm3']:.0f}, "
        f"left {doc['lung']['left_cm3']:.0f})",
        f"Corona score: {doc['corona_score_cm3']:.1f} cm3; infection {inf['volume_cm3']:.1f} cm3 "
        f"= {inf['percent_of_lung']:.1f} % of lung (right {inf['right_percent']:.1f} %, "
        f"left {inf['left_percent']:.1f} %); zone-based score {inf['severity_score']}/24",
    ]
    if "ggo_volume_cm3" in inf:
        lines.append(f"lesions: ground glass {inf['ggo_volume_cm3']:.1f} cm3, consolidation "
                     f"{inf['consolidation_volume_cm3']:.1f} cm3")
    halves = {h["name"]: h for h in inf.get("halves", [])}
    if halves:
        lines.append(f"ventral {halves['ventral']['percent']:.1f} % / dorsal "
                     f"{halves['dorsal']['percent']:.1f} % of each half involved")
    density = doc.get("density")
    if density and density.get("percent_opacity") is not None:
        mean = density.get("mean_lung_hu")
        lines.append(f"density: PO {density['percent_opacity']:.1f} %, PHO "
                     f"{density['percent_high_opacity']:.1f} %, mean lung "
                     + (f"{mean:.0f} HU" if mean is not None else "-"))
    for warning in doc.get("warnings", []):
        lines.append(f"input warning: {warning}")
    target = "report.html" if "report" in doc["outputs"] else "result.json"
    lines.append(f"{target}: {out_dir / target}  ({doc['timings_s']['total']:.1f} s)")
    return lines


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        doc = analyze_to_folder(args.input, args.output, config, series_uid=args.series,
                                models_dir=args.models, report=not args.no_report,
                                quiet=args.quiet, overwrite=args.overwrite,
                                dicom_out=args.dicom_out)
    except KeyboardInterrupt:
        out = args.output
        if out.is_dir() and any(out.iterdir()) and not (out / "result.json").exists():
            # interrupted while writing: what is there is not a result (no result.json)
            print(f"covidct analyze: interrupted while writing {out}: its files are "
                  "incomplete (no result.json). Delete the folder, or run again with "
                  "--overwrite.", file=sys.stderr)
        raise
    if not args.quiet:
        print("\n".join(summary_lines(doc, args.output)))
    return 0
