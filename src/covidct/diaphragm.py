"""Diaphragm domes: abdominal organs that an axial slice shows as an island inside the lung.

Near the lung bases an axial slice cuts the dome of the right hemidiaphragm (the liver
beneath it) and of the left (spleen, stomach fundus) above the costophrenic recesses, so
the dome appears as a round soft-tissue island with aerated lung all around it. Filling
the lung mask's holes slice by slice (which keeps vessels and consolidation inside the
lung) would call that island lung: on the real validation series it put the liver dome
into the lung mask of every chest CT at hand, and the lesion measure then read it as
consolidation (normal001, LIDC-IDRI-0001/0003, benchmarks/results/lung_domes.txt).

What separates a dome from a lesion or a vessel is where its hole leads in 3D: followed
down (inferiorly), a dome's island opens on its lowest slice into soft tissue outside the
lung (the organ under the diaphragm), over a large footprint; a consolidation surrounded by
lung ends on aerated lung, and a vessel that leaves the lung through the mediastinum does so
over a vessel's cross-section (`dome_holes`).

The lung network also paints domes that are not wholly enclosed (open towards the heart or
the stomach) as dense lung (`dome_components`). Such a dome, too, rests on soft tissue
outside the lung, but so can a consolidated lower lobe; the difference is where the dense
region meets the rest of the body in its own slices: a dome meets the mediastinum or the
abdomen deep inside the body, a consolidation the chest wall under the ribs. The depth
threshold was chosen between the two on the real series and the synthetic test corpus;
its effect: benchmarks/results/lung_domes.txt and lung_anatomy.txt. Canonical arrays run
inferior -> superior along axis 0 (covidct.io.orient), so "below" is index - 1.
"""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage

from covidct.anatomy import open_in_plane

SOFT_TISSUE_MIN_HU = -300.0  # what lies under a dome's island: liver, spleen, stomach wall
DOME_MIN_AREA_MM2 = 300.0  # the island on its lowest slice (a vein leaving the lung: < 2 cm^2)
DOME_OPEN_SHARE = 0.5  # share of that footprint resting on soft tissue outside the lung
DOME_MIN_DEPTH_MM = 55.0  # median depth under the skin where a dense region meets the body
DENSE_MIN_HU = -400.0  # dense (not aerated) lung-mask voxels
DENSE_CORE_MM = 5.0  # in-plane opening radius: rims of partial volume are not regions
CAP_MIN_HU = -700.0  # a dome's cap in the slices above it: partial volume of tissue and air
CAP_MAX_MM = 10.0  # how far above the dense dome its blurred cap may reach


def dome_holes(holes: np.ndarray, lung: np.ndarray, hu: np.ndarray,
               spacing_mm: tuple[float, float, float],
               min_area_mm2: float = DOME_MIN_AREA_MM2,
               open_share: float = DOME_OPEN_SHARE) -> np.ndarray:
    """The voxels of `holes` that belong to a diaphragm dome (see the module docstring).

    holes: (z, y, x) bool, the per-slice holes of the lung mask (not lung themselves);
    lung: (z, y, x) bool lung mask without those holes; hu: (z, y, x) HU, same grid;
    spacing_mm: (z, y, x). Axis 0 must run inferior -> superior (canonical order).
    Returns a (z, y, x) bool mask, a subset of `holes`: every 3D component of the holes'
    in-plane opening by DENSE_CORE_MM (vessels are narrower) whose lowest slice covers at
    least `min_area_mm2` and rests, on at least `open_share` of that footprint, on soft
    tissue (>= SOFT_TISSUE_MIN_HU) that is neither lung nor hole on the slice below.
    """
    out = np.zeros(holes.shape, dtype=bool)
    if not holes.any():
        return out
    pixel_mm2 = float(spacing_mm[1]) * float(spacing_mm[2])
    # regions, not the vessel holes that may touch a dome's island and run on from it
    core = open_in_plane(holes, DENSE_CORE_MM, spacing_mm[1:]) & holes
    components = cc3d.connected_components(core, connectivity=6)
    for index, obj in enumerate(ndimage.find_objects(components), start=1):
        if obj is None or obj[0].start == 0:  # nothing below the lowest slice to look at
            continue
        z0 = obj[0].start
        below = (z0 - 1, *obj[1:])
        if _rests_on_tissue(components[z0][obj[1:]] == index, hu[below],
                            ~lung[below] & ~holes[below], pixel_mm2, min_area_mm2, open_share):
            out[obj] |= components[obj] == index
    return out


def _rests_on_tissue(foot: np.ndarray, below_hu: np.ndarray, below_free: np.ndarray,
                     pixel_mm2: float, min_area_mm2: float, open_share: float) -> bool:
    """A footprint (y, x), or a stack of them (z, y, x), resting on soft tissue
    (>= SOFT_TISSUE_MIN_HU) where the slice below is free (not lung): on at least
    open_share of it, and over at least min_area_mm2 on one slice (a vessel tree that leaves
    the lung at the hilum rests on tissue too, but a vessel's cross-section at a time)."""
    n = np.count_nonzero(foot)
    if n * pixel_mm2 < min_area_mm2:
        return False
    tissue = (below_hu >= SOFT_TISSUE_MIN_HU) & below_free & foot
    per_slice = tissue.reshape(-1, *tissue.shape[-2:]).sum(axis=(1, 2))
    return (per_slice.max() * pixel_mm2 >= min_area_mm2
            and np.count_nonzero(tissue) >= open_share * n)


def dome_components(lung: np.ndarray, hu: np.ndarray, body: np.ndarray,
                    spacing_mm: tuple[float, float, float],
                    min_depth_mm: float = DOME_MIN_DEPTH_MM) -> np.ndarray:
    """The dense regions of a lung mask that are diaphragm domes (see the module docstring).

    lung: (z, y, x) bool lung mask; hu: (z, y, x) HU; body: (z, y, x) bool patient outline
    with holes filled; all on one grid of spacing_mm (z, y, x), axis 0 inferior -> superior.
    Dense regions: lung voxels >= DENSE_MIN_HU opened in-plane by DENSE_CORE_MM, as 3D
    components. A component is a dome when its underside (its voxels with none of it right
    below) rests on soft tissue outside the lung (as `dome_holes`) and the median depth
    under the skin (in-plane distance to the body outline) of the non-lung voxels it touches
    in its own slices (of its own voxels, when it is wholly inside the lung) is
    >= min_depth_mm.
    Returns the (z, y, x) bool mask of those components (a subset of `lung`).
    """
    out = np.zeros(lung.shape, dtype=bool)
    dense = open_in_plane(lung & (hu >= DENSE_MIN_HU), DENSE_CORE_MM, spacing_mm[1:]) & lung
    if not dense.any():
        return out
    pixel_mm2 = float(spacing_mm[1]) * float(spacing_mm[2])
    cross = np.zeros((1, 3, 3), dtype=bool)
    cross[0, 1, :] = cross[0, :, 1] = True
    components = cc3d.connected_components(dense, connectivity=6)
    for index, obj in enumerate(ndimage.find_objects(components), start=1):
        if obj is None or obj[0].start == 0:
            continue
        grown = (obj[0], *(slice(max(s.start - 1, 0), s.stop + 1) for s in obj[1:]))
        piece = components[grown] == index
        # its underside: voxels with no voxel of the region right below them (on any slice:
        # the lowest slice of a region may be a thin tail of it)
        below = (slice(obj[0].start - 1, obj[0].stop - 1), *grown[1:])
        underside = piece.copy()
        underside[1:] &= ~piece[:-1]
        if not _rests_on_tissue(underside, hu[below], ~lung[below], pixel_mm2,
                                DOME_MIN_AREA_MM2, DOME_OPEN_SHARE):
            continue
        contact = ndimage.binary_dilation(piece, structure=cross) & ~lung[grown]
        if not contact.any():  # wholly inside the lung: where the region itself lies
            contact = piece
        depth = np.stack([ndimage.distance_transform_edt(b, sampling=spacing_mm[1:])
                          for b in body[obj[0]]])[(slice(None), *grown[1:])]
        if float(np.median(depth[contact])) >= min_depth_mm:
            out[grown] |= piece
            _add_cap(out, lung, hu, index, components, obj, float(spacing_mm[0]))
    return out


def _add_cap(out: np.ndarray, lung: np.ndarray, hu: np.ndarray, index: int,
             components: np.ndarray, obj: tuple[slice, ...], spacing_z_mm: float) -> None:
    """Grow a dome upwards by up to CAP_MAX_MM: lung voxels >= CAP_MIN_HU on the next
    slice within the dome's footprint on the slice below (one pixel of slack), while that
    narrows. Thick slices show the top of a dome as a blurred disk, denser than lung but
    under DENSE_MIN_HU (the lesion stage would read it as ground glass)."""
    cross = np.zeros((3, 3), dtype=bool)
    cross[1, :] = cross[:, 1] = True
    z = obj[0].stop - 1
    foot = np.zeros(lung.shape[1:], dtype=bool)
    foot[obj[1:]] = components[z][obj[1:]] == index
    top = min(lung.shape[0] - 1, z + max(1, int(round(CAP_MAX_MM / spacing_z_mm))))
    while z < top and foot.any():
        z += 1
        cap = (ndimage.binary_dilation(foot, structure=cross) & lung[z]
               & (hu[z] >= CAP_MIN_HU))
        if np.count_nonzero(cap) > np.count_nonzero(foot):  # a dome narrows upwards
            break
        foot = cap
        out[z] |= foot
