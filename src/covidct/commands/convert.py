"""`covidct convert PATH OUT.nii.gz`: the chosen CT series as NIfTI (HU, int16, exact affine)."""

from __future__ import annotations

import argparse

HELP = "convert a CT input (DICOM folder/zip, NRRD, MHA, NIfTI) to NIfTI in HU (int16)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="DICOM folder, file or .zip; .nii/.nii.gz/.nrrd/.mha/.mhd")
    parser.add_argument("out", help="output .nii or .nii.gz")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to convert when there are several CT series")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT when it exists (never the input itself)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from covidct.io import load_volume
    from covidct.io.nifti import write_nifti
    from covidct.io.output_folder import check_output_file

    check_output_file(Path(args.path), Path(args.out), args.overwrite)
    volume = load_volume(args.path, series_uid=args.series)
    hu = np.clip(np.rint(volume.hu), -32768, 32767) if volume.hu.dtype != np.int16 else volume.hu
    write_nifti(hu, volume.affine, args.out, dtype=np.int16)
    for message in volume.warnings:
        print(f"warning: {message}")
    print(f"wrote {args.out}: {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} voxels, "
          f"series {volume.metadata.get('series_uid')}")
    return 0
