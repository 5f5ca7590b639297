"""The NIfTI outputs (lung and airway masks, infection mask, lesion labels, heatmap).

For a DICOM input they are written with the project's one NIfTI writer, so they have
the shape and affine of `covidct convert`'s output. For a NIfTI, NRRD or MetaImage
input they are written on the input's own grid (``covidct.io.source_grid``): the
input's shape, (i, j, k) array layout and affine, and for a NIfTI its header, so the
user's image array and ours pair voxel for voxel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from covidct.pipeline import CaseResult

LUNG_MASK = "lung_mask.nii.gz"
INFECTION_MASK = "infection_mask.nii.gz"
HEATMAP = "heatmap.nii.gz"
AIRWAY_MASK = "airway_mask.nii.gz"
LESION_LABELS = "lesion_labels.nii.gz"   # 0 none, 1 ground-glass opacity, 2 consolidation


def write_nifti_outputs(result: CaseResult, out_dir: Path) -> dict[str, str]:
    """Write the volumes in parallel threads (zlib releases the GIL). Returns names."""
    from covidct.io.nifti import write_nifti
    from covidct.io.source_grid import write_nifti_like_source

    volume = result.volume
    grid = volume.metadata.get("source_grid")
    source = volume.metadata.get("source_path")

    def write(array: np.ndarray, path: Path, dtype: type) -> Path:
        if grid is not None:
            return write_nifti_like_source(array, grid, path, dtype, source_path=source)
        return write_nifti(array, volume.affine, path, dtype)

    jobs = (
        ("lung_mask", LUNG_MASK, result.lung_mask, np.uint8),
        ("airway_mask", AIRWAY_MASK, result.airway_mask, np.uint8),
        ("infection_mask", INFECTION_MASK, result.infection_mask, np.uint8),
        ("heatmap", HEATMAP, result.heatmap, np.float32),
    )
    if result.lesion_labels is not None:
        jobs += (("lesion_labels", LESION_LABELS, result.lesion_labels, np.uint8),)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(write, array, out_dir / name, dtype)
                   for _, name, array, dtype in jobs]
        for future in futures:
            future.result()
    return {key: name for key, name, _, _ in jobs}
