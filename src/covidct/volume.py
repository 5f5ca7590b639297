"""The one typed CT volume that flows through the pipeline.

Arrays are (z, y, x); the affine maps voxel indices (k, j, i) to patient LPS mm, so
``affine @ [k, j, i, 1]`` is the position of the voxel centre. "Modifying" methods
return a new object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from covidct.errors import InputError


@dataclass(frozen=True)
class Volume:
    """A CT volume in Hounsfield units with exact patient geometry.

    hu: (z, y, x) array of HU values (float32 or int16).
    affine: 4x4 matrix, voxel (k, j, i) -> LPS mm.
    metadata: facts about the source (path, format, series UID, scanner, ...).
    warnings: human-readable problems found while reading (non-uniform spacing, ...).
    """

    hu: np.ndarray
    affine: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise InputError(
                f"A Volume needs a 3D (z, y, x) array; got an array of shape {self.hu.shape}. "
                "Stack 2D slices along a first axis (a single slice is shape (1, y, x))."
            )
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise InputError(f"A Volume needs a finite 4x4 affine; got {self.affine!r}.")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
            raise InputError("The volume's affine is singular (a zero spacing or parallel axes).")
        object.__setattr__(self, "affine", affine)

    @classmethod
    def from_spacing(
        cls,
        hu: np.ndarray,
        spacing_mm: tuple[float, float, float],
        origin_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
        **kwargs: Any,
    ) -> Volume:
        """An axial volume: z runs inferior->superior, y anterior->posterior, x right->left."""
        dz, dy, dx = (float(s) for s in spacing_mm)
        affine = np.array(
            [
                [0.0, 0.0, dx, origin_lps_mm[0]],
                [0.0, dy, 0.0, origin_lps_mm[1]],
                [dz, 0.0, 0.0, origin_lps_mm[2]],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )
        return cls(hu=hu, affine=affine, **kwargs)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """(dz, dy, dx): the length in mm of one step along each array axis."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def origin_lps_mm(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    def slice_positions_mm(self) -> np.ndarray:
        """Each slice's position on the patient's inferior-superior (S) axis, in mm.

        LPS z is +superior, as in ImagePositionPatient; this is that z of slice k's
        first voxel.
        """
        k = np.arange(self.shape[0], dtype=np.float64)
        return self.affine[2, 0] * k + self.affine[2, 3]

    def with_hu(self, hu: np.ndarray) -> Volume:
        """A copy with another array of the same shape (same geometry)."""
        if hu.shape != self.hu.shape:
            raise InputError(f"Array shape {hu.shape} does not match volume {self.hu.shape}.")
        return replace(self, hu=hu)

    def with_warnings(self, *extra: str) -> Volume:
        return replace(self, warnings=self.warnings + tuple(extra))
