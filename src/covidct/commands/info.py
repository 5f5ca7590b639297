"""`covidct info PATH`: what is in a CT input and which series would be analysed."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "describe a CT input (DICOM folder/zip, NIfTI, NRRD, MHA): series, geometry, warnings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="DICOM folder, file or .zip; .nii/.nii.gz/.nrrd/.mha/.mhd")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to load when there are several CT series")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def describe_volume(volume: Any) -> dict[str, Any]:
    """A JSON-ready summary of a loaded Volume."""
    import numpy as np

    from covidct.hu_units import hounsfield_problems
    from covidct.io.orient import axis_codes

    meta = dict(volume.metadata)
    hu = volume.hu
    problems = hounsfield_problems(volume)  # not HU: `covidct analyze` would refuse it
    keys = ("format", "series_uid", "series_description", "study_date", "patient_id",
            "manufacturer", "model", "slice_thickness_mm", "kernel", "transfer_syntax",
            "gantry_tilt_deg", "padding_voxels", "padding_hu", "skipped")
    return {
        "source_path": meta.get("source_path"),
        **{k: meta.get(k) for k in keys if k in meta},
        "shape_zyx": list(volume.shape),
        "spacing_mm_zyx": [round(s, 6) for s in volume.spacing_mm],
        "origin_lps_mm": [round(v, 4) for v in volume.origin_lps_mm],
        "orientation": axis_codes(volume.affine),
        "affine_lps": np.round(volume.affine, 6).tolist(),
        "dtype": str(hu.dtype),
        "hu_min": float(hu.min()) if hu.size else None,
        "hu_max": float(hu.max()) if hu.size else None,
        "series_found": meta.get("series_found", []),
        "hounsfield_problems": problems,
        "warnings": [*volume.warnings, *problems],
    }


def run(args: argparse.Namespace) -> int:
    from covidct.io import load_volume

    volume = load_volume(args.path, series_uid=args.series)
    info = describe_volume(volume)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for entry in info["series_found"]:
        mark = "*" if entry.get("chosen") else " "
        print(f"{mark} series {entry['series_uid']}  {entry['orientation']}  "
              f"{entry['n_positions']} slices  {entry['rows']}x{entry['columns']}  "
              f"'{entry.get('series_description') or ''}'")
    skip = ("series_found", "warnings", "affine_lps", "hounsfield_problems")
    for key, value in info.items():
        if key not in skip and value is not None:
            print(f"{key}: {value}")
    for message in info["warnings"]:
        print(f"warning: {message}")
    return 0
