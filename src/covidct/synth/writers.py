"""Write a synthetic case as files: NIfTI CT and masks, truth.json, optionally DICOM."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from covidct.errors import CovidCTError
from covidct.io.nifti import write_nifti

logger = logging.getLogger(__name__)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_case(case: Any, case_dir: str | Path, dicom: bool = False,
               quirks: Any = None) -> Path:
    """Write `case_dir/{ct.nii.gz (int16 HU), lung.nii.gz, infection.nii.gz, truth.json}`.

    dicom=True adds `case_dir/dicom/` (one CT series, through the io engineer's
    `covidct.synth.dicom_writer.write_ct_series`; `quirks` is its DicomQuirks).
    Returns case_dir.
    """
    case_dir = Path(case_dir)
    case_dir.mkdir(parents=True, exist_ok=True)
    affine = case.ct.affine
    write_nifti(case.ct.hu, affine, case_dir / "ct.nii.gz", np.int16)
    write_nifti(case.lung, affine, case_dir / "lung.nii.gz", np.uint8)
    write_nifti(case.infection, affine, case_dir / "infection.nii.gz", np.uint8)
    truth = dict(case.truth)
    if dicom:
        truth["dicom_files"] = len(_write_dicom(case, case_dir / "dicom", quirks))
    (case_dir / "truth.json").write_text(json.dumps(truth, indent=1, default=_json_default))
    return case_dir


def _write_dicom(case: Any, out_dir: Path, quirks: Any) -> list[Path]:
    try:
        from covidct.synth.dicom_writer import DicomQuirks, write_ct_series
    except ImportError as exc:  # the DICOM writer is a separate module
        raise CovidCTError(
            "DICOM output needs covidct.synth.dicom_writer, which is not available "
            f"({exc}); run without --dicom to write NIfTI only."
        ) from exc
    seed = int(case.truth.get("params", {}).get("seed", 0))
    kwargs: dict[str, Any] = {"quirks": quirks if quirks is not None else DicomQuirks(),
                              "seed": seed}
    pid = case.ct.metadata.get("patient_id")
    if pid:
        kwargs["patient_id"] = pid
    return list(write_ct_series(case.ct, out_dir, **kwargs))
