"""`covidct track OUT1 OUT2 ...`: follow one patient over time from analyze outputs."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from covidct.errors import InputError

HELP = "follow one patient over time: Corona score, infection volume and % by study date"
COLUMNS = ("study", "study_date", "decision", "corona_score_cm3", "infection_cm3",
           "percent_of_lung", "severity_score", "corona_change_cm3")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", type=Path,
                        help="analyze output folders (or their result.json), one per study")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write a plot over time")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the table as JSON")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="write the table as CSV")


def _read(path: Path) -> dict[str, Any]:
    file = path / "result.json" if path.is_dir() else path
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read {file} ({exc}); expected the result.json written by "
                         "`covidct analyze`, or its output folder.") from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != 1:
        raise InputError(f"{file} is not a covidct result.json (schema_version 1).")
    return doc


def _date(value: Any) -> date | None:
    try:
        return datetime.strptime(str(value), "%Y%m%d").date() if value else None
    except ValueError:
        return None


def build_rows(paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per study, by study date when every study has one (else in the order given)."""
    docs = [(path, _read(path)) for path in paths]
    notes: list[str] = []
    dates = [_date(doc["input"].get("study_date")) for _, doc in docs]
    order = list(range(len(docs)))
    if all(d is not None for d in dates):
        order.sort(key=lambda i: dates[i])
    else:
        notes.append("not every result has a study date: studies are in the order given")
    patients = {doc["input"].get("patient_id") for _, doc in docs} - {None, ""}
    if len(patients) > 1:
        notes.append(f"the results come from {len(patients)} patient IDs: {sorted(patients)}")
    rows: list[dict[str, Any]] = []
    for i in order:
        path, doc = docs[i]
        corona = float(doc["corona_score_cm3"])
        rows.append({
            "study": str(path),
            "study_date": dates[i].isoformat() if dates[i] else None,
            "decision": doc["decision"]["label"],
            "corona_score_cm3": corona,
            "infection_cm3": float(doc["infection"]["volume_cm3"]),
            "percent_of_lung": float(doc["infection"]["percent_of_lung"]),
            "severity_score": int(doc["infection"]["severity_score"]),
            "corona_change_cm3": corona - rows[0]["corona_score_cm3"] if rows else 0.0,
        })
    return rows, notes


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("#", "study date", "decision", "Corona cm3", "infection cm3", "% lung",
              "severity", "change cm3", "study")
    lines = [header]
    for n, r in enumerate(rows, start=1):
        lines.append((str(n), r["study_date"] or "-", r["decision"],
                      f"{r['corona_score_cm3']:.1f}", f"{r['infection_cm3']:.1f}",
                      f"{r['percent_of_lung']:.1f}", str(r["severity_score"]),
                      f"{r['corona_change_cm3']:+.1f}", r["study"]))
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def plot_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    dated = all(r["study_date"] for r in rows)
    x = [date.fromisoformat(r["study_date"]) for r in rows] if dated else list(
        range(1, len(rows) + 1))
    fig = Figure(figsize=(7.0, 3.5), dpi=90)
    ax = fig.add_subplot()
    ax.plot(x, [r["corona_score_cm3"] for r in rows], "o-", color="tab:red",
            label="Corona score (cm3)")
    ax.plot(x, [r["infection_cm3"] for r in rows], "s--", color="tab:orange",
            label="infection volume (cm3)")
    ax.set_ylabel("cm3")
    ax.set_xlabel("study date" if dated else "study (order given)")
    right = ax.twinx()
    right.plot(x, [r["percent_of_lung"] for r in rows], "^:", color="tab:blue",
               label="% of lung")
    right.set_ylabel("% of lung involved")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    if dated:
        fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def run(args: argparse.Namespace) -> int:
    rows, notes = build_rows(list(args.results))
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.plot:
        print(f"plot: {plot_rows(rows, args.plot)}")
    if args.json:
        args.json.write_text(json.dumps({"studies": rows, "notes": notes}, indent=2) + "\n")
        print(f"json: {args.json}")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"csv: {args.csv}")
    return 0
