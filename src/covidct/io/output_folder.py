"""Checks on an output folder before any work is done: never inside the input, never over
earlier results unasked, and creatable by this user (so an analysis is not run only to fail
at its first write)."""

from __future__ import annotations

import os
from pathlib import Path

from covidct.errors import InputError


def check_output_folder(input_path: Path | None, out_dir: Path, overwrite: bool,
                        overwrite_hint: str = "--overwrite") -> None:
    """Raise InputError when `out_dir` is the input, holds it or lies inside it; exists and
    is not a folder; is a non-empty folder and `overwrite` is False; or cannot be created
    or written here (a file in its path, no permission). Creates nothing."""
    dst = Path(out_dir).resolve()
    if input_path is not None:
        src = Path(input_path).resolve()
        if src == dst or src.is_relative_to(dst) or (src.is_dir() and dst.is_relative_to(src)):
            raise InputError(
                f"The output folder {out_dir} overlaps the input {input_path}; covidct never "
                "writes into its input. Choose an output folder outside the input.")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"The output {out_dir} exists and is not a folder; choose a folder.")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise InputError(
            f"The output folder {out_dir} is not empty. Choose a new folder, or pass "
            f"{overwrite_hint} to replace the covidct outputs in it (other files are kept).")
    existing = dst
    while not existing.exists():  # the nearest existing folder is where it would be made
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"The output folder {out_dir} cannot be created: {existing} is a file, "
                         "not a folder. Choose another output folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"The output folder {out_dir} cannot be written: no permission to "
                         f"write in {existing}. Choose a folder you can write to.")


def check_output_file(input_path: Path, out_file: Path, overwrite: bool,
                      overwrite_hint: str = "--overwrite") -> None:
    """Raise InputError when `out_file` is the input file or lies inside the input folder; is
    a folder; or exists and `overwrite` is False. Creates nothing."""
    src = Path(input_path).resolve()
    dst = Path(out_file).resolve()
    if src == dst or (src.is_dir() and dst.is_relative_to(src)):
        raise InputError(f"The output {out_file} is the input or lies inside it "
                         f"({input_path}); covidct never writes into its input. Choose an "
                         "output file outside the input.")
    if dst.is_dir():
        raise InputError(f"The output {out_file} is a folder; give a file name ending in "
                         ".nii.gz or .nii.")
    if dst.exists() and not overwrite:
        raise InputError(f"The output {out_file} exists. Choose a new file name, or pass "
                         f"{overwrite_hint} to replace it.")
