"""What the scan shows, from HU alone: the body, the air inside it that looks like lung, and
the central airway.

The lung network was trained on synthetic CT; on real scans it has painted bowel gas, air
beside the arms and parts of the liver as lung. These masks are the anatomical evidence the
lung stage combines with it (covidct.lung): lung is air inside the body, in 3D components
that look like lung parenchyma, minus the trachea and main bronchi.

Everything runs on an in-plane pooled grid (2 x 2 average when pixels are under 1.25 mm):
the pooling halves the noise the texture test sees and makes the 3D steps 4x cheaper; the
lung stage refines the boundary at full resolution with the HU threshold.

Rules and thresholds (chosen on the synthetic corpus and the real series in
shared/data/real; benchmarks/results/anatomy_components.txt lists the measured components):

- body: HU > -500 with holes filled per slice (the image border counts as body where the
  body covers half of it: a field of view cut through the patient), opened with a 4 mm
  square (drops the table, cables and sheets), the largest 3D component;
- lung air: HU < -400 inside the filled body, 3D components (6-connected) of at least
  2 cm3 whose share of voxels below -950 HU (on the pooled grid) is at most
  `MAX_GAS_SHARE`: lung parenchyma holds vessels and septa (the real lungs 0-6 %, the
  emphysematous COPDGene lung 20 %), gas in the stomach and bowel is pure air (44-76 %);
  a component of at least 1000 cm3 is lung whatever its texture (severe emphysema); at
  least half of a lung lies over 8 mm inside the body's outline (air next to the skin is
  the gap beside an arm or above the table); and
  components under 2 % of the largest lung component, or more than 50 mm above or below
  it along the body axis (the lungs are one contiguous organ), are dropped;
- airway: a round air region of 0.5-8 cm2 near the body's midline on the upper lung
  slices seeds a 3D region growing whose HU limit rises from -980 HU while the grown
  volume stays under `MAX_AIRWAY_CM3` and does not jump (leak into the lung).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cc3d
import fill_voids
import numpy as np
from scipy import ndimage

from covidct.blocks import block_reduce, block_upsample, bounding_box
from covidct.gut_gas import gut_gas

logger = logging.getLogger(__name__)

BODY_HU = -500.0
BODY_OPENING_MM = 4.0
FOV_CUT_SHARE = 0.5
AIR_HU = -400.0
GAS_HU = -950.0
MAX_GAS_SHARE = 0.35
MIN_COMPONENT_CM3 = 2.0
ALWAYS_LUNG_CM3 = 1000.0
MIN_LUNG_SHARE = 0.02
SKIN_MARGIN_MM = 8.0
MIN_DEEP_SHARE = 0.5
LUNG_CONTIGUITY_MM = 50.0
POOL_BELOW_MM = 1.25
AIRWAY_SEED_CM2 = (0.5, 8.0)
AIRWAY_SEED_MAX_OFF_MIDLINE_MM = 30.0
AIRWAY_THRESHOLDS_HU = tuple(range(-980, -700, 20))
MAX_AIRWAY_CM3 = 150.0
AIRWAY_MIN_LUNG_CM3 = 250.0
AIRWAY_HALF_WIDTH_MM = 90.0


@dataclass(frozen=True)
class PooledGrid:
    """The in-plane pooling of a (z, y, x) grid: `factor` pixels per side are averaged."""

    factor: int
    shape: tuple[int, int, int]  # the full grid's shape
    spacing_mm: tuple[float, float, float]  # the pooled grid's spacing

    def pool(self, array: np.ndarray) -> np.ndarray:
        """(z, y, x) -> the pooled grid (mean over factor x factor; edges padded). A bool mask
        gives the share of its voxels in each block (uint8 counts, float32 share)."""
        f = self.factor
        if f == 1:
            return np.asarray(array, dtype=np.float32)
        if array.dtype == bool:  # counting in uint8 avoids a float copy of the full grid
            z, y, x = array.shape
            arr = np.pad(array, ((0, 0), (0, -y % f), (0, -x % f))) if (y % f or x % f) \
                else array
            blocks = arr.reshape(z, arr.shape[1] // f, f, arr.shape[2] // f, f)
            return blocks.sum(axis=(2, 4), dtype=np.uint8).astype(np.float32) / (f * f)
        return block_reduce(array, (1, f, f), "mean")

    def upsample(self, mask: np.ndarray) -> np.ndarray:
        """A pooled (z, y', x') mask -> the full grid (nearest)."""
        return block_upsample(mask, (1, self.factor, self.factor), self.shape)


def pooled_grid(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]
                ) -> PooledGrid:
    """2 x 2 in-plane pooling when pixels are finer than POOL_BELOW_MM, else none."""
    dz, dy, dx = (float(s) for s in spacing_mm)
    factor = 2 if max(dy, dx) < POOL_BELOW_MM else 1
    return PooledGrid(factor, tuple(int(s) for s in shape), (dz, dy * factor, dx * factor))


@dataclass(frozen=True)
class ChestAnatomy:
    """HU evidence on the pooled grid `grid` (all (z, y', x') bool)."""

    grid: PooledGrid
    body: np.ndarray       # the patient outline, holes filled (no table, no outside air)
    lung_air: np.ndarray   # air in lung-like components, airway included, organ gas not
    airway: np.ndarray     # trachea and the bronchi grown from it
    gut: np.ndarray        # gas of the stomach, bowel or oesophagus touching the lung air
    components: tuple[dict, ...]  # every air component >= MIN_COMPONENT_CM3, with its verdict


def open_in_plane(mask: np.ndarray, radius_mm: float,
                  spacing_yx_mm: tuple[float, float]) -> np.ndarray:
    """Morphological opening of each (y, x) slice by a square of half-side `radius_mm` (at
    least one pixel): separable min and max filters, faster than a disk."""
    size = [1] + [2 * max(int(round(radius_mm / float(s))), 1) + 1 for s in spacing_yx_mm]
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    # An opening lies inside the mask: filter only its box, grown by the filters' reach so
    # that the erosion sees the zeros around it as on the whole grid (same result).
    box = bounding_box(mask, [0] + [n // 2 for n in size[1:]])
    as_bytes = np.ascontiguousarray(mask[box]).view(np.uint8)
    out[box] = ndimage.maximum_filter(ndimage.minimum_filter(as_bytes, size=size),
                                      size=size) > 0
    return out


def fill_body_slices(soft: np.ndarray) -> np.ndarray:
    """Holes of each slice's body filled; where the body covers at least FOV_CUT_SHARE of
    the image border (a field of view cut through the patient, e.g. a cardiac crop), the
    border counts as body, so lungs cut by the edge are enclosed too."""
    out = np.zeros_like(soft, dtype=bool)
    for k in np.flatnonzero(soft.any(axis=(1, 2))):
        piece = soft[k]
        edge = np.concatenate([piece[0], piece[-1], piece[:, 0], piece[:, -1]])
        if edge.mean() >= FOV_CUT_SHARE:
            padded = np.pad(piece, 1, constant_values=True)
            out[k] = fill_voids.fill(padded, in_place=False)[1:-1, 1:-1]
        else:
            out[k] = fill_voids.fill(piece, in_place=False)
    return out


def body_mask(hu_pooled: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """The patient's body (z, y, x) bool, holes filled per slice, table and outside air excluded.

    HU > BODY_HU, opened per slice with a BODY_OPENING_MM square, largest 3D component.
    """
    # Fill first: a thin chest wall then still closes the ring around the lungs; the
    # opening only separates the table, sheets and cables from the filled body.
    soft = fill_body_slices(hu_pooled > BODY_HU)
    if not soft.any():
        return soft
    opened = open_in_plane(soft, BODY_OPENING_MM, spacing_mm[1:])
    if not opened.any():
        opened = soft
    return cc3d.largest_k(opened, k=1, connectivity=6) > 0


def _component_table(labels: np.ndarray, count: int, hu_pooled: np.ndarray,
                     voxel_cm3: float) -> list[dict]:
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    gas = np.bincount(labels[hu_pooled < GAS_HU], minlength=count + 1)
    slices = ndimage.find_objects(labels)
    table = []
    for index in range(1, count + 1):
        volume_cm3 = float(sizes[index]) * voxel_cm3
        if volume_cm3 < MIN_COMPONENT_CM3 or slices[index - 1] is None:
            continue
        zs = slices[index - 1][0]
        table.append({"label": index, "volume_cm3": round(volume_cm3, 2),
                      "gas_share": round(float(gas[index]) / float(sizes[index]), 3),
                      "z_first": int(zs.start), "z_last": int(zs.stop - 1)})
    return table


def lung_air_mask(hu_pooled: np.ndarray, body: np.ndarray, spacing_mm: tuple[float, float, float]
                  ) -> tuple[np.ndarray, list[dict]]:
    """Air inside the body in components that look like lung (see the module docstring).

    Returns the (z, y, x) bool mask and one dict per air component >= MIN_COMPONENT_CM3
    (volume_cm3, gas_share, z range, and 'lung': the verdict).
    """
    air = (hu_pooled < AIR_HU) & body
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000.0
    labels, count = cc3d.connected_components(air, connectivity=6, return_N=True)
    table = _component_table(labels, count, hu_pooled, voxel_cm3)
    # Lungs lie behind the chest wall: air within SKIN_MARGIN_MM of the body's outline is the
    # gap between an arm and the trunk, or between the back and the table.
    size = [1] + [2 * int(round(SKIN_MARGIN_MM / float(s))) + 1 for s in spacing_mm[1:]]
    deep = ndimage.minimum_filter(body.view(np.uint8), size=size) > 0
    deep_counts = np.bincount(labels[deep], minlength=count + 1)
    for row in table:
        row["deep_share"] = round(float(deep_counts[row["label"]])
                                  / (row["volume_cm3"] / voxel_cm3), 3)
        row["lung"] = ((row["volume_cm3"] >= ALWAYS_LUNG_CM3
                        or row["gas_share"] <= MAX_GAS_SHARE)
                       and row["deep_share"] >= MIN_DEEP_SHARE)
    lungs = [r for r in table if r["lung"]]
    if lungs:
        main = max(lungs, key=lambda r: r["volume_cm3"])
        gap = LUNG_CONTIGUITY_MM / float(spacing_mm[0])
        for row in lungs:
            far = (row["z_first"] > main["z_last"] + gap or row["z_last"] < main["z_first"] - gap)
            if row["volume_cm3"] < MIN_LUNG_SHARE * main["volume_cm3"] or far:
                row["lung"] = False
    keep = np.zeros(count + 1, dtype=bool)
    keep[[r["label"] for r in table if r["lung"]]] = True
    return keep[labels], table


def _airway_seed(hu_pooled: np.ndarray, lung_air: np.ndarray, body: np.ndarray,
                 spacing_mm: tuple[float, float, float]) -> np.ndarray | None:
    """A (z, y, x) mask of the trachea on one upper slice, or None when none is found."""
    _, dy, dx = spacing_mm
    pixel_cm2 = dy * dx / 100.0
    zs = np.flatnonzero(lung_air.any(axis=(1, 2)))
    lung_cm3 = float(np.count_nonzero(lung_air)) * float(np.prod(spacing_mm)) / 1000.0
    if zs.size < 3 or lung_cm3 < AIRWAY_MIN_LUNG_CM3:  # no chest: no trachea to look for
        return None
    top, bottom = int(zs[-1]), int(zs[0])
    stop = top - max((top - bottom) // 3, 1)
    for k in range(top, stop, -1):
        cols = np.flatnonzero(body[k].any(axis=0))
        if cols.size == 0:
            continue
        mid_x = (cols[0] + cols[-1]) / 2.0
        labels, count = ndimage.label(hu_pooled[k] < -700)
        for obj_index, obj in enumerate(ndimage.find_objects(labels), start=1):
            piece = labels[obj] == obj_index
            area = piece.sum() * pixel_cm2
            if not AIRWAY_SEED_CM2[0] <= area <= AIRWAY_SEED_CM2[1]:
                continue
            ys, xs = np.nonzero(piece)
            cx = obj[1].start + xs.mean()
            height, width = obj[0].stop - obj[0].start, obj[1].stop - obj[1].start
            round_enough = piece.sum() >= 0.5 * height * width and 0.5 <= height / width <= 2
            inside = body[k][obj][piece].all()
            if round_enough and inside and abs(cx - mid_x) * dx <= AIRWAY_SEED_MAX_OFF_MIDLINE_MM:
                seed = np.zeros(hu_pooled.shape, dtype=bool)
                seed[k][obj] = piece
                return seed
    return None


def airway_mask(hu_pooled: np.ndarray, lung_air: np.ndarray, body: np.ndarray,
                spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Trachea and central bronchi (z, y, x) bool by leak-controlled 3D region growing."""
    seed = _airway_seed(hu_pooled, lung_air, body, spacing_mm)
    out = np.zeros(hu_pooled.shape, dtype=bool)
    if seed is None:
        return out
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000.0
    # The central airway lies within AIRWAY_HALF_WIDTH_MM of the seed's x, above the lung's
    # lowest slice: growing inside that box only keeps the repeated labelling cheap.
    zs = np.flatnonzero(lung_air.any(axis=(1, 2)))
    seed_x = int(round(np.nonzero(seed)[2].mean()))
    half = int(round(AIRWAY_HALF_WIDTH_MM / spacing_mm[2]))
    rows = np.flatnonzero(body.any(axis=(0, 2)))
    box = (slice(int(zs[0]), None), slice(int(rows[0]), int(rows[-1]) + 1),
           slice(max(seed_x - half, 0), seed_x + half + 1))
    sub_hu, sub_body, sub_seed = hu_pooled[box], body[box], seed[box]
    previous = None
    for limit in AIRWAY_THRESHOLDS_HU:
        region = (sub_hu < limit) & sub_body
        labels = cc3d.connected_components(region, connectivity=6)
        ids = np.unique(labels[sub_seed & region])
        ids = ids[ids > 0]
        if ids.size == 0:
            continue
        grown = labels == ids[0] if ids.size == 1 else np.isin(labels, ids)
        volume = float(grown.sum()) * voxel_cm3
        # a leak into the lung multiplies the volume; the growing trachea and bronchi do not
        # pass MAX_AIRWAY_CM3
        if volume > MAX_AIRWAY_CM3 or (previous is not None and volume > 3.0 * previous[1]
                                       and volume > 60.0):
            break
        previous = (grown, volume)
    if previous is not None:
        out[box] = previous[0]
    return out


def chest_anatomy(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> ChestAnatomy:
    """Body, lung air and airway of a (z, y, x) HU volume, on its pooled grid."""
    grid = pooled_grid(hu.shape, spacing_mm)
    pooled = grid.pool(hu)
    body = body_mask(pooled, grid.spacing_mm)
    lung_air, table = lung_air_mask(pooled, body, grid.spacing_mm)
    airway = airway_mask(pooled, lung_air, body, grid.spacing_mm)
    gut = gut_gas(pooled, lung_air, airway, grid.spacing_mm, gas_hu=GAS_HU, air_hu=AIR_HU)
    return ChestAnatomy(grid=grid, body=body, lung_air=lung_air & ~gut, airway=airway,
                        gut=gut, components=tuple(table))
