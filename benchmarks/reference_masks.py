"""Reference lung / airway masks for the real CT series (test fixtures, lung-Dice ground truth).

The masks are made by classical image processing with per-series manual parameters and
edits (the ``SERIES`` table below). Nothing here imports covidct's lung code: only
``covidct.io`` is used, to read the CT and to write the masks on the CT's own grid.

Labels: 0 background, 1 right lung, 2 left lung, 3 extrapulmonary airway (trachea and
main bronchi down to where they enter the lung). Pulmonary vessels and intrapulmonary
bronchi inside the lung are lung (the masks are closed and hole-filled); the hilar
vessels outside the lung surface are not.

Procedure (per series, voxel indices (k, j, i) = (z inferior->superior, y anterior->posterior,
x); the side of x is taken from the affine, see ``right_is_low_x``):

1. Body: HU > BODY_HU, per-slice opening (disk, ``body_open_mm``) to cut the table and
   cables, largest 3D component, holes filled slice by slice. For a field-of-view crop
   (``open_edges``), the named image edges are treated as body when filling holes, so
   lung cut by the crop edge is not mistaken for outside air.
2. Air in the body: HU < ``air_hu`` inside the filled body (air connected to the outside
   is not inside the filled body, so it is excluded).
3. Airway (``airway``='auto' or a seed (k, j, i), or None when the series holds no
   trachea): the seed is found automatically in the top slices as a round air region
   (HU < -900, 0.8-8 cm2) nearest the body's midline. The airway is the 3D component of
   HU < t holding the seed, for t from -960 up to ``airway_max_hu`` in 20 HU steps; the
   largest t before the volume jumps (> 1.6x the previous step, or above 250 cm3) is kept
   (leak control).
4. Lung air = air minus the airway (dilated by one voxel, so the two lungs are no longer
   joined through the trachea); 3D components (6-connected). Lung components: the
   components containing ``lung_seeds`` when given, otherwise every component
   >= ``min_comp_cm3`` and >= 2% of the largest, except (a) components whose voxels lie
   mostly (> 50%) under lung of the two largest components in the same (y, x) column
   (gas in stomach / bowel below the diaphragm dome), (b) components entirely below
   ``z_min`` (a manual per-series limit), (c) components holding an ``exclude_seeds`` point.
5. Right / left: a component with >= 5% of its voxels on each side of the body midline
   is two lungs touching (anterior / posterior junction): it is eroded (3D, one voxel a
   step) until it falls apart into pieces on both sides, and the pieces seed a watershed
   on the distance map that splits it. Every piece is then right or left by the side of
   its centroid (patient right = low x index when affine[0, 2] > 0, LPS).
6. Each lung is closed slice by slice (disk, ``close_mm``), restricted to the body, and
   its holes are filled slice by slice, so vessels, ground glass (already under
   ``air_hu`` in most places) and enclosed consolidation stay lung. Optional
   ``hull_fill``: per slice, the part of each lung's convex hull that lies on the lateral/
   posterior side (away from the mediastinum; the hull restricted to voxels farther than
   ``hull_mediastinum_mm`` from the other lung's hull and from the body midline band) and
   within ``hull_max_mm`` of the lung, with HU < ``hull_max_hu``, is added: this takes in
   consolidation lying against the chest wall. Voxels claimed by both lungs go to the
   nearer lung.
7. Manual edits (``edits``): (label, k_first, k_last, polygon [(j, i), ...], 'add'|'remove')
   applied last, in voxel indices.
8. Airway label 3 = the grown airway outside both lungs, minus (a) airway enclosed by a
   larger per-slice closing (``airway_in_lung_mm``) of a lung (in-plane lobar bronchi),
   (b) airway deeper than ``main_bronchus_mm`` (right, left) below the carina (the
   highest slice, going down, where the airway splits into two regions >= 0.2 cm2),
   which goes to the lung of its side; then its component connected to the seed; airway
   bits not connected to it go to the nearest lung.
9. ``remove_dense`` (label, k_first, k_last, hu_min, min_cm2), applied last: in those
   slices, 2D blobs of that lung's voxels with HU > hu_min and area >= min_cm2 are
   removed (a diaphragm dome cut across and wholly enclosed by lung in its slice, which
   the hole filling of step 6 took in; vessels are far smaller). ``remove_gas`` (label,
   k_first, k_last, hu_max, min_cm2, rim_px), likewise: 2D blobs of that lung's voxels
   with HU < hu_max and area >= min_cm2, taken with their convex hull (the folds
   between gas pockets, foam along the wall) and grown by rim_px pixels (the
   partial-volume rim), are removed (stomach gas joined to the lung air through a thin
   diaphragm).
10. The NIfTI written by covidct.io.write_nifti is re-gzipped at level 9 (same bytes
   inside) to keep the fixtures under 400 KB.

Checks: every series was looked at on its montages (every slice, every 2nd slice above
100 slices) in a lung window with the outlines. See ``NOTES`` (written into summary.txt)
for what was checked and the remaining known imperfections per series. For
covid-ct-md_normal001, lidc-idri-0001 and lidc-idri-0003 the montages were read page by
page and, in addition, (a) every unlabelled air component (HU < -500) inside the body
was listed with its extent (all are bowel / stomach gas below the domes, or the
mediastinal / hilar partial-volume band and esophagus next to the airway: none is lung
left out), (b) the HU in each lung's footprint was followed up slice by slice above
the highest labelled slice (apex complete: the slices above are soft tissue), and
(c) the apices, bases / costophrenic recesses, hila and nodules were looked at on
full-resolution crops. covid-ct-md_cap001 needed per-series work (body opening, stomach
gas, manual polygons; see its entry). A series with ``skip`` set gets no reference, with
or without ``--only``, and a stale file is deleted.

Montages: ``--montage-only`` re-renders them from the masks already written (220 px
panels, < 1.5 MB a page) without segmenting again. COPDGene 10002K
(ct-64.nrrd, CIP automatic labels) is run through the same procedure with
``--copdgene-check`` only to compare (Dice of lung = labels 1|2); no reference is
written for it.

Usage::

    .venv/bin/python benchmarks/reference_masks.py --data /work/shared/data/real \
        --out tests/data/reference_masks --montages benchmarks/results/reference_masks
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import cc3d
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image, disk
from skimage.segmentation import watershed

from covidct.io import load_volume, write_nifti

# ---------------------------------------------------------------------------------------
# Per-series parameters and manual edits (the one table).
# ---------------------------------------------------------------------------------------
DEFAULTS: dict = {
    "body_hu": -500.0,
    "body_open_mm": 3.0,
    "open_edges": (),          # image edges cut through the body: subset of "ant","post","r","l"
    "air_hu": -400.0,
    "airway": "auto",          # "auto", a seed (k, j, i), or None (no trachea in the series)
    "airway_max_hu": -860.0,
    "airway_in_lung_mm": 9.0,  # closing radius deciding which bronchi are intrapulmonary
    "main_bronchus_mm": (20.0, 35.0),  # (right, left) depth below the carina kept as airway
    "min_comp_cm3": 5.0,
    "lung_seeds": None,        # list of (k, j, i): take exactly the components holding them
    "exclude_seeds": (),       # list of (k, j, i): components to drop
    "z_min": None,             # drop components lying entirely below this slice index
    "close_mm": 6.0,
    "hull_fill": False,
    "hull_max_hu": 150.0,
    "hull_max_mm": 25.0,
    "hull_mediastinum_mm": 25.0,
    "roi": None,               # list of (k_first, k_last, [(j, i), ...]): lung air only there
    "edits": (),               # (label, k_first, k_last, [(j, i), ...], "add" | "remove")
    "skip": None,              # reason: no reference is written for this series (yet)
    "remove_dense": (),        # (label, k_first, k_last, hu_min, min_cm2): see step 9
    "remove_gas": (),          # (label, k_first, k_last, hu_max, min_cm2, rim_px): step 9
}

SERIES: dict[str, dict] = {
    # subpleural consolidation touching the posterior chest wall (right lower lobe, k 29-65)
    # left notches with the 6 mm closing: a 10 mm closing takes it in.
    "covid-ct-md_P001": {"path": "covid-ct-md/P001", "close_mm": 10.0},
    # the automatic seed landed in the larynx, whose connection to the trachea is lost
    # near k 158: manual seed in the trachea (k 141). A thin patient: the 3 mm body opening
    # broke the anterior chest wall on some slices (lungs open to the outside air, lost):
    # 1 mm. The gas-filled stomach joins the left lung air under a thin dome (k 0-27): the
    # slices below the lung (k 0-10) are cleared around it, its gas removed above
    # (remove_gas), the stomach wall / fold remnants cut by hand (k 19-23).
    "covid-ct-md_cap001": {
        "path": "covid-ct-md/cap001", "airway": (141, 195, 237),
        "body_open_mm": 1.0,
        "remove_gas": [(2, 11, 23, -950.0, 3.0, 2), (2, 24, 27, -950.0, 1.0, 2)],
        "edits": [
            (2, 0, 10, [(140, 290), (140, 432), (312, 432), (312, 290)], "remove"),
            (2, 19, 22, [(172, 330), (172, 411), (312, 402), (312, 330)], "remove"),
            (2, 23, 23, [(186, 376), (186, 402), (274, 398), (274, 376)], "remove"),
        ],
    },
    "covid-ct-md_normal001": {"path": "covid-ct-md/normal001"},
    "lidc-idri-0001": {"path": "lidc-idri-0001/LIDC-IDRI-0001.nii.gz"},
    # the left diaphragm dome (stomach / spleen) cut across at k 25-26 is wholly enclosed
    # by the left lower lobe there, and the slice hole filling took it in: removed.
    "lidc-idri-0003": {
        "path": "lidc-idri-0003/LIDC-IDRI-0003.nii.gz",
        "remove_dense": [(2, 24, 27, -300.0, 3.0)],
    },
    # only a thin right costophrenic recess (k 12-19) behind the liver; the rest is gas in
    # stomach and bowel: lung air is taken only inside a manual box around the recess.
    "totalsegmentator-siemens": {
        "path": "totalsegmentator-siemens-dicom/example_ct_dicom",
        "airway": None,
        "air_hu": -250.0,  # the recess is a partial-volume band (-250..-950 HU)
        "min_comp_cm3": 0.02,
        "roi": [(10, 19, [(343, 135), (343, 218), (386, 218), (386, 135)])],
    },
    # abdomen-pelvis: two lung bases (k 100-111); big stomach / colon gas -> manual seeds.
    "totalsegmentator-example_ct": {
        "path": "totalsegmentator-examples/example_ct.nii.gz",
        "airway": None,
        "lung_seeds": [(111, 69, 34), (111, 72, 95)],
    },
    # field-of-view crop: the lungs are cut by the right, left and posterior image edges.
    "totalsegmentator-ct_cropped": {
        "path": "totalsegmentator-examples/ct_cropped.nii.gz",
        "open_edges": ("r", "l", "post"),
    },
    "dcmqi-ge-slices": {"path": "dcmqi-ge-slices", "airway": None, "min_comp_cm3": 0.5},
    "lungmask-slices": {"path": "lungmask-slices", "airway": None, "min_comp_cm3": 0.5},
}

COPDGENE = {
    "path": "cip-copdgene-10002K/ct-64.nrrd",
    "labels": "cip-copdgene-10002K/cip_10002K_lm64_1right_2left_3airway.nii.gz",
}

# What was checked on the montages and what is known to be imperfect (into summary.txt).
NOTES: dict[str, str] = {
    "general": (
        "montages checked for every series (slices shown: all, or every 2nd above 100). "
        "Known imperfections everywhere: intrapulmonary bronchi at the hilum are lung "
        "(lumen) but their walls may stay background; the hilar boundary (where the lung "
        "ends and the hilar vessels begin) is the closing's, not an anatomist's; main "
        "bronchi are cut at a fixed depth below the carina (right 20 mm, left 35 mm)."
    ),
    "covid-ct-md_P001": (
        "right-lower-lobe subpleural GGO/consolidation (k 29-65) included with a 10 mm "
        "closing (6 mm left notches); stomach / colon gas below the domes excluded."
    ),
    "totalsegmentator-siemens": (
        "only a thin right posterior costophrenic recess is lung (k 10-19, partial "
        "volume, -250..-950 HU): its outline is uncertain by a voxel or two; "
        "no left lung in the series; stomach and colon gas excluded by a manual box."
    ),
    "totalsegmentator-example_ct": (
        "lung bases only (k 100-111, 3 mm); large stomach / colon gas excluded by manual "
        "seeds on the two bases."
    ),
    "totalsegmentator-ct_cropped": (
        "field-of-view crop: lungs cut by the right, left and posterior image edges "
        "(treated as body when filling holes); stomach / colon gas at the bottom excluded; "
        "airway = trachea and main bronchi (carina found automatically)."
    ),
    "covid-ct-md_cap001": (
        "checked on all 3 montages and on full-resolution crops of k 19-27 (stomach under "
        "the left dome), k 63 (right hilar consolidation inside), k 89-101 (anterior "
        "junction). The first attempts lost the lungs on slices where the 3 mm body "
        "opening broke the thin anterior chest wall (body opening now 1 mm), and took the "
        "gas-filled stomach in as left lung (removed: remove_gas and three manual polygons, "
        "k 0-23). Imperfections: the left lung crosses the body midline anteriorly at k "
        "90-102 (about 3 cm2 a slice, the watershed follows the visible junction line; "
        "kept as left); a few voxels of stomach wall may remain at k 19-23 beside the "
        "lateral lung crescent; the diffuse fibrotic and cystic disease is lung "
        "throughout (closed and hole-filled like the other series)."
    ),
    "covid-ct-md_normal001": (
        "checked on all 3 montages and on crops: apices (right to k 143, left to k 145; "
        "soft tissue above), bases / posterior costophrenic recesses (right to k 14, left "
        "to k 11), lateral and anterior edges, hila; the round density in the right lung "
        "at k 59-73 is the liver dome, correctly outside; bowel / stomach gas (k 0-33) "
        "excluded; no trachea in the lung labels; total 3476 cm3 (small patient, "
        "2 mm slices) accepted. Imperfection: at k 99-103 the right main / upper-lobe "
        "bronchus is airway (label 3) up to the lung surface."
    ),
    "lidc-idri-0001": (
        "checked on all 3 montages and on crops: left apex to k 125, right apex to k 119 "
        "(real asymmetry: soft tissue above k 119 on the right), bases (right to k 20, "
        "left to k 32); the left lower lobe nodule at the posterior pleura (k 84-94) is "
        "inside the left lung (a 1-2 voxel notch at k 90-92); stomach gas (k 35-49) and "
        "bowel gas excluded; right lung on image left. Imperfection: ~9 cm3 of "
        "partial-volume voxels (mean -750 HU) along the mediastinum / hila stay background."
    ),
    "lidc-idri-0003": (
        "checked on all 3 montages and on crops: apices (both to k 121; soft tissue and "
        "metal streaks above), bases (right to k 7, left crescent around the stomach to "
        "k 10), stomach gas (k 0-16) excluded, the left upper-lobe nodule (k 73-79) inside, "
        "right lung on image left. Fixed: the left diaphragm dome "
        "(stomach / spleen) cut across at k 25-26 and enclosed by the left lower lobe had "
        "been filled in as lung (57 + 16 cm2): removed with remove_dense. Imperfection: its "
        "partial-volume rim (-300..-600 HU, k 25-27) stays lung; hilar bronchi lumen are "
        "lung with their walls background; at the left apex (k 117-121) metal streak "
        "artifacts cross the lung: a 1 cm2 anterior tip at k 118-119 (-640 HU) is kept as "
        "lung, uncertain; ~15 cm3 of mediastinal / hilar partial-volume voxels (mean "
        "-710 HU) and the esophagus stay background."
    ),
    "dcmqi-ge-slices": "3 slices at the lung bases over liver and stomach; both lungs right.",
    "lungmask-slices": "2 slices at heart level; both lungs right.",
}


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _disk_px(radius_mm: float, pixel_mm: float) -> np.ndarray:
    return disk(max(1, int(round(radius_mm / pixel_mm))))


def _per_slice(mask: np.ndarray, fn) -> np.ndarray:
    out = np.zeros_like(mask, dtype=bool)
    for k in range(mask.shape[0]):
        if mask[k].any():
            out[k] = fn(mask[k])
    return out


def _closing2d(m: np.ndarray, se: np.ndarray) -> np.ndarray:
    r = se.shape[0] // 2 + 1
    p = np.pad(m, r)
    return ndi.binary_closing(p, structure=se)[r:-r, r:-r]


def _fill2d(m: np.ndarray, edges: tuple = ()) -> np.ndarray:
    """Fill holes; the named edges of the image count as enclosed (crop edges)."""
    if not edges:
        return ndi.binary_fill_holes(m)
    p = np.pad(m, 1)
    if "ant" in edges:
        p[0, :] = True
    if "post" in edges:
        p[-1, :] = True
    if "r" in edges:
        p[:, 0] = True
    if "l" in edges:
        p[:, -1] = True
    return ndi.binary_fill_holes(p)[1:-1, 1:-1]


def right_is_low_x(affine: np.ndarray) -> bool:
    """True when a lower x (i) index is more to the patient's right (LPS: +x is Left)."""
    return float(affine[0, 2]) > 0


# ---------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------
def body_mask(hu: np.ndarray, px: float, p: dict) -> np.ndarray:
    se = _disk_px(p["body_open_mm"], px)
    raw = hu > p["body_hu"]
    opened = _per_slice(raw, lambda s: ndi.binary_opening(s, structure=se))
    lab = cc3d.connected_components(opened, connectivity=6)
    if lab.max() == 0:
        return opened
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    body = lab == int(np.argmax(counts))
    edges = tuple(p["open_edges"])
    return _per_slice(body, lambda s: _fill2d(s, edges))


def find_airway_seed(hu: np.ndarray, body: np.ndarray, px: float, mid_x: float):
    nz = hu.shape[0]
    for k in range(nz - 1, max(-1, nz - 1 - max(3, nz // 8)), -1):
        air = (hu[k] < -900) & body[k]
        lab, n = ndi.label(air)
        best = None
        for c in range(1, n + 1):
            comp = lab == c
            area_cm2 = comp.sum() * px * px / 100.0
            if not 0.8 <= area_cm2 <= 8.0:
                continue
            jj, ii = np.nonzero(comp)
            h, w = np.ptp(jj) + 1, np.ptp(ii) + 1
            if max(h, w) > 3.0 * min(h, w):
                continue
            d = abs(ii.mean() - mid_x)
            if d * px > 40:
                continue
            if best is None or d < best[0]:
                best = (d, (k, int(round(jj.mean())), int(round(ii.mean()))))
        if best is not None:
            k0, j0, i0 = best[1]
            if hu[k0, j0, i0] < -900:
                return best[1]
            jj, ii = np.nonzero(lab == lab[j0, i0]) if lab[j0, i0] else np.nonzero(air)
            return (k0, int(jj[0]), int(ii[0]))
    return None


def grow_airway(hu: np.ndarray, body: np.ndarray, seed, vox_cm3: float, p: dict):
    prev = None
    prev_vol = None
    used = None
    for t in np.arange(-960.0, p["airway_max_hu"] + 1, 20.0):
        m = (hu < t) & body
        lab = cc3d.connected_components(m, connectivity=6)
        c = lab[seed]
        if c == 0:
            continue
        comp = lab == c
        vol = comp.sum() * vox_cm3
        if vol > 250 or (prev_vol is not None and prev_vol > 5 and vol > 1.6 * prev_vol):
            break
        prev, prev_vol, used = comp, vol, t
    return prev, used


def _carina(airway: np.ndarray, seed, px: float):
    """The lowest slice where the airway below the seed is still one 2D region."""
    min_px = 0.2 * 100.0 / (px * px)  # 0.2 cm2
    for k in range(seed[0], -1, -1):
        lab, n = ndi.label(airway[k])
        if n == 0:
            return None
        sizes = np.bincount(lab.ravel())[1:]
        if (sizes >= min_px).sum() >= 2:
            return k + 1
    return None


def select_lungs(air: np.ndarray, vox_cm3: float, p: dict, z_of_k: np.ndarray) -> np.ndarray:
    lab = cc3d.connected_components(air, connectivity=6)
    n = int(lab.max())
    if n == 0:
        return np.zeros_like(air)
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    counts[0] = 0
    if p["lung_seeds"] is not None:
        keep = {_label_at(lab, s) for s in p["lung_seeds"]}
        return np.isin(lab, sorted(keep))
    excl = {_label_at(lab, s) for s in p["exclude_seeds"]}
    order = np.argsort(counts)[::-1]
    largest = counts[order[0]]
    big2 = [int(c) for c in order[:2] if counts[c] >= 0.02 * largest and counts[c] > 0]
    # footprint of the main lungs: for each (y, x) column, the lowest slice with lung
    main = np.isin(lab, big2)
    anyz = main.any(axis=0)
    lowest = np.where(anyz, np.argmax(main, axis=0), 10**6)
    keep = []
    slices = ndi.find_objects(lab)
    for c in range(1, n + 1):
        if counts[c] * vox_cm3 < p["min_comp_cm3"] or counts[c] < 0.02 * largest:
            continue
        if c in excl:
            continue
        sl = slices[c - 1]
        if p["z_min"] is not None and sl[0].stop - 1 < p["z_min"]:
            continue
        if c not in big2 and p["roi"] is None:
            kk, jj, ii = np.nonzero(lab[sl] == c)
            kk = kk + sl[0].start
            jj = jj + sl[1].start
            ii = ii + sl[2].start
            under = kk < lowest[jj, ii]
            under &= anyz[jj, ii]
            if under.mean() > 0.5:
                continue
        keep.append(c)
    return np.isin(lab, keep)


def _label_at(lab: np.ndarray, seed, radius: int = 4) -> int:
    """The component at a manual seed, or the nearest one within a few voxels (same slice)."""
    k, j, i = (int(a) for a in seed)
    if lab[k, j, i]:
        return int(lab[k, j, i])
    win = lab[k, max(0, j - radius):j + radius + 1, max(0, i - radius):i + radius + 1]
    jj, ii = np.nonzero(win)
    if len(jj) == 0:
        raise ValueError(f"seed {seed} is not on (or near) any air component")
    n = int(np.argmin((jj - min(j, radius)) ** 2 + (ii - min(i, radius)) ** 2))
    return int(win[jj[n], ii[n]])


def split_sides(lung: np.ndarray, mid_x: float, right_low: bool):
    """Right and left lung masks from the union of lung air."""
    lab = cc3d.connected_components(lung, connectivity=6)
    n = int(lab.max())
    right = np.zeros_like(lung)
    left = np.zeros_like(lung)
    slices = ndi.find_objects(lab)
    for c in range(1, n + 1):
        sl = slices[c - 1]
        comp = lab[sl] == c
        ii = np.nonzero(comp)[2] + sl[2].start
        frac_low = float(np.mean(ii < mid_x))
        pieces = None
        if min(frac_low, 1 - frac_low) >= 0.05 and comp.sum() > 500:
            pieces = _split_component(comp, sl, mid_x)
        if pieces is None:
            low_side = frac_low >= 0.5
            target = right if low_side == right_low else left
            target[sl] |= comp
        else:
            low_piece, high_piece = pieces
            (right if right_low else left)[sl] |= low_piece
            (left if right_low else right)[sl] |= high_piece
    return right, left


def _split_component(comp: np.ndarray, sl, mid_x: float):
    er = comp.copy()
    st = ndi.generate_binary_structure(3, 1)
    for _ in range(25):
        er = ndi.binary_erosion(er, structure=st)
        if not er.any():
            return None
        lab = cc3d.connected_components(er, connectivity=6)
        n = int(lab.max())
        if n < 2:
            continue
        counts = np.bincount(lab.ravel())
        counts[0] = 0
        cents = ndi.center_of_mass(er, lab, range(1, n + 1))
        tot = counts.sum()
        markers = np.zeros(comp.shape, np.int32)
        low_mass = high_mass = 0
        for c in range(1, n + 1):
            if counts[c] < 0.01 * tot:
                continue
            xi = cents[c - 1][2] + sl[2].start
            if xi < mid_x:
                markers[lab == c] = 1
                low_mass += counts[c]
            else:
                markers[lab == c] = 2
                high_mass += counts[c]
        if low_mass > 0.1 * tot and high_mass > 0.1 * tot:
            dist = ndi.distance_transform_edt(comp)
            ws = watershed(-dist, markers, mask=comp)
            return ws == 1, ws == 2
    return None


def close_and_fill(m: np.ndarray, body: np.ndarray, px: float, close_mm: float):
    se = _disk_px(close_mm, px)
    out = _per_slice(m, lambda s: _closing2d(s, se))
    out &= body
    out |= m
    return _per_slice(out, ndi.binary_fill_holes)


def hull_fill(
    hu: np.ndarray, lung: np.ndarray, other: np.ndarray, body: np.ndarray,
    px: float, mid_x: float, p: dict,
) -> np.ndarray:
    out = lung.copy()
    med_px = p["hull_mediastinum_mm"] / px
    near_px = p["hull_max_mm"] / px
    ncol = lung.shape[2]
    xs = np.arange(ncol)[None, :]
    for k in range(lung.shape[0]):
        if lung[k].sum() < 50:
            continue
        hull = convex_hull_image(lung[k])
        add = hull & ~lung[k] & body[k] & (hu[k] < p["hull_max_hu"])
        if not add.any():
            continue
        away = np.abs(xs - mid_x) > med_px
        if other[k].any():
            d_other = ndi.distance_transform_edt(~convex_hull_image(other[k]))
            away = away & (d_other > med_px)
        d_lung = ndi.distance_transform_edt(~lung[k])
        add &= away & (d_lung < near_px)
        out[k] |= add
    return out


def polygon_mask(shape2d, poly) -> np.ndarray:
    img = Image.new("L", (shape2d[1], shape2d[0]), 0)
    ImageDraw.Draw(img).polygon([(float(i), float(j)) for j, i in poly], fill=1)
    return np.array(img, dtype=bool)


def segment(v, p: dict, log=print) -> tuple[np.ndarray, dict]:
    hu = v.hu.astype(np.float32)
    dz, dy, dx = v.spacing_mm
    px = float((dy + dx) / 2)
    vox_cm3 = v.voxel_volume_mm3 / 1000.0
    right_low = right_is_low_x(v.affine)
    info: dict = {}

    body = body_mask(hu, px, p)
    ii = np.nonzero(body.any(axis=(0, 1)))[0]
    # body midline: mean x of the body voxels
    mid_x = float(np.average(np.arange(hu.shape[2]), weights=body.sum(axis=(0, 1)) + 1e-9))
    info["mid_x"] = round(mid_x, 1)
    del ii
    air = (hu < p["air_hu"]) & body

    airway = np.zeros_like(air)
    seed = None
    if p["airway"] is not None:
        seed = (
            find_airway_seed(hu, body, px, mid_x) if p["airway"] == "auto"
            else tuple(p["airway"])
        )
        if seed is not None:
            grown, t = grow_airway(hu, body, seed, vox_cm3, p)
            if grown is not None:
                airway = grown
                info["airway_seed"] = seed
                info["airway_hu"] = t
    cut = ndi.binary_dilation(airway, structure=ndi.generate_binary_structure(3, 1))
    lung_air = air & ~cut
    if p["roi"] is not None:
        roi = np.zeros_like(air)
        for k0, k1, poly in p["roi"]:
            roi[k0:k1 + 1] |= polygon_mask(hu.shape[1:], poly)[None]
        lung_air &= roi
    z_of_k = v.slice_positions_mm()
    lungs = select_lungs(lung_air, vox_cm3, p, z_of_k)
    right, left = split_sides(lungs, mid_x, right_low)

    r_f = close_and_fill(right, body, px, p["close_mm"])
    l_f = close_and_fill(left, body, px, p["close_mm"])
    if p["hull_fill"]:
        r_h = hull_fill(hu, r_f, l_f, body, px, mid_x, p)
        l_h = hull_fill(hu, l_f, r_f, body, px, mid_x, p)
        r_f, l_f = r_h, l_h
    both = r_f & l_f
    if both.any():
        dr = ndi.distance_transform_edt(~right)
        dl = ndi.distance_transform_edt(~left)
        r_f = r_f & ~(both & (dl < dr))
        l_f = l_f & ~(both & (dr <= dl))

    labels = np.zeros(hu.shape, np.uint8)
    labels[r_f] = 1
    labels[l_f] = 2
    for lab_id, k0, k1, poly, op in p["edits"]:
        for k in range(k0, k1 + 1):
            pm = polygon_mask(hu.shape[1:], poly)
            if op == "add":
                labels[k][pm & body[k]] = lab_id
            else:
                labels[k][pm & (labels[k] == lab_id)] = 0

    if airway.any():
        # airway running inside a lung (in-plane lobar bronchi open towards the hilum in
        # their slice) is intrapulmonary: it is enclosed by a larger per-slice closing of
        # that lung, and goes to the lung.
        se = _disk_px(p["airway_in_lung_mm"], px)
        for lab_id in (1, 2):
            big = _per_slice(labels == lab_id, lambda s: _closing2d(s, se))
            inside = big & airway & (labels == 0)
            labels[inside] = lab_id
            labels[_per_slice(labels == lab_id, ndi.binary_fill_holes) & (labels == 0)] = lab_id
        # main bronchi: kept as airway down to a set depth below the carina per side
        # (right main bronchus is short and steep, left is longer); deeper is lung.
        carina_k = _carina(airway, seed, px)
        if carina_k is not None:
            info["carina_k"] = carina_k
            xs = np.arange(hu.shape[2])
            low_side = xs < seed[2]
            r_mm, l_mm = p["main_bronchus_mm"]
            for k in range(carina_k):
                depth = (carina_k - k) * dz
                lim_low = r_mm if right_low else l_mm
                lim_high = l_mm if right_low else r_mm
                cols = np.where(low_side, depth > lim_low, depth > lim_high)
                deep = airway[k] & cols[None, :] & (labels[k] == 0)
                if deep.any():
                    side_lab = np.where(low_side, 1 if right_low else 2, 2 if right_low else 1)
                    labels[k][deep] = np.broadcast_to(side_lab[None, :], deep.shape)[deep]
        rest = airway & (labels == 0)
        lab = cc3d.connected_components(rest, connectivity=26)
        c = lab[seed] if seed is not None else 0
        keep = lab == c if c else np.zeros_like(rest)
        # airway bits not connected to the trachea: give them to the lung they touch
        stray = rest & ~keep
        if stray.any():
            near = ndi.distance_transform_edt(labels == 0, return_distances=False,
                                              return_indices=True)
            filled = labels[tuple(near)]
            labels[stray] = filled[stray]
        labels[keep] = 3
    # diaphragm dome cut across inside a lung (the slice's hole filling took it in):
    # remove the big 2D blobs of dense voxels of that lung in the named slices
    for lab_id, k0, k1, hu_min, min_cm2 in p["remove_dense"]:
        for k in range(k0, k1 + 1):
            dense = (labels[k] == lab_id) & (hu[k] > hu_min)
            lab2, n2 = ndi.label(dense)
            if n2 == 0:
                continue
            area = np.bincount(lab2.ravel()) * px * px / 100.0
            area[0] = 0
            labels[k][np.isin(lab2, np.nonzero(area >= min_cm2)[0])] = 0
    # stomach / bowel gas joined to a lung through a thin diaphragm: remove the big 2D blobs
    # of pure gas of that lung in the named slices, with a rim of `rim_px` pixels
    for lab_id, k0, k1, hu_max, min_cm2, rim_px in p["remove_gas"]:
        for k in range(k0, k1 + 1):
            gas = (labels[k] == lab_id) & (hu[k] < hu_max)
            lab2, n2 = ndi.label(gas)
            if n2 == 0:
                continue
            area = np.bincount(lab2.ravel()) * px * px / 100.0
            area[0] = 0
            big = np.isin(lab2, np.nonzero(area >= min_cm2)[0])
            if not big.any():
                continue
            # their convex hull: the folds between gas pockets and the foam along the wall
            big = convex_hull_image(big)
            if rim_px:
                big = ndi.binary_dilation(big, iterations=int(rim_px))
            labels[k][big & (labels[k] == lab_id)] = 0
    return labels, info


# ---------------------------------------------------------------------------------------
# Montages
# ---------------------------------------------------------------------------------------
COLOURS = {1: (255, 60, 60), 2: (60, 140, 255), 3: (60, 230, 60)}


def _outline(m: np.ndarray) -> np.ndarray:
    return m & ~ndi.binary_erosion(m, border_value=0)


def montage(v, labels: np.ndarray, name: str, out_dir: Path, panel: int = 220,
            cols: int = 6, rows: int = 5) -> list[Path]:
    hu = v.hu
    nz = hu.shape[0]
    step = 2 if nz > 100 else 1
    ks = list(range(nz - 1, -1, -step))  # top (superior) first
    ny, nx = hu.shape[1:]
    if len(ks) <= 4:
        panel = 400
    cols = min(cols, len(ks))
    scale = panel / max(ny, nx)
    right_low = right_is_low_x(v.affine)
    paths = []
    per = cols * rows
    for pi in range(0, len(ks), per):
        chunk = ks[pi:pi + per]
        nrow = (len(chunk) + cols - 1) // cols
        h = int(round(ny * scale))
        w = int(round(nx * scale))
        canvas = Image.new("RGB", (cols * w, nrow * (h + 14) + 22), (0, 0, 0))
        draw = ImageDraw.Draw(canvas)
        title = (f"{name}: {'every 2nd slice' if step == 2 else 'every slice'}, "
                 f"top=superior; red=right lung, blue=left, green=airway; "
                 f"image left = {'patient right' if right_low else 'patient LEFT'}")
        draw.text((4, 4), title, fill=(255, 255, 255))
        for n, k in enumerate(chunk):
            win = np.clip((hu[k].astype(np.float32) + 1350.0) / 1500.0, 0, 1)
            g = (win * 255).astype(np.uint8)
            im = Image.fromarray(g).resize((w, h), Image.BILINEAR)
            rgb = np.stack([np.asarray(im)] * 3, axis=-1).copy()
            lab_small = np.asarray(
                Image.fromarray(labels[k]).resize((w, h), Image.NEAREST))
            for lv, col in COLOURS.items():
                o = _outline(lab_small == lv)
                rgb[o] = col
            x0 = (n % cols) * w
            y0 = 22 + (n // cols) * (h + 14)
            canvas.paste(Image.fromarray(rgb), (x0, y0 + 14))
            draw.text((x0 + 3, y0 + 1), f"k={k}", fill=(255, 255, 0))
        path = out_dir / f"{name}_{pi // per + 1:02d}.png"
        canvas.save(path, optimize=True)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------
def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/real")
    ap.add_argument("--out", default="tests/data/reference_masks")
    ap.add_argument("--montages", default="benchmarks/results/reference_masks")
    ap.add_argument("--only", default=None, help="one series name from the table")
    ap.add_argument("--no-montage", action="store_true")
    ap.add_argument("--montage-only", action="store_true",
                    help="only re-render the montages from the masks already in --out")
    ap.add_argument("--copdgene-check", action="store_true",
                    help="also run the procedure on COPDGene 10002K and compare with CIP")
    args = ap.parse_args(argv)
    data = Path(args.data)
    out = Path(args.out)
    mdir = Path(args.montages)
    out.mkdir(parents=True, exist_ok=True)
    mdir.mkdir(parents=True, exist_ok=True)
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    names = [args.only] if args.only else list(SERIES)
    summary_path = mdir / "summary.txt"
    rows: dict[str, str] = {}
    if summary_path.exists():
        for line in summary_path.read_text().splitlines():
            if line and not line.startswith("#") and "\t" in line:
                rows[line.split("\t")[0]] = line
    for name in names:
        if name == "copdgene":
            continue
        t0 = time.time()
        p = {**DEFAULTS, **SERIES[name]}
        if p["skip"]:
            stale = out / f"{name}.nii.gz"
            if stale.exists():
                stale.unlink()
            print(f"{name}: SKIPPED, no reference written ({p['skip']})", flush=True)
            rows.pop(name, None)
            continue
        v = load_volume(data / p["path"])
        if args.montage_only:
            mpath = out / f"{name}.nii.gz"
            if not mpath.exists():
                print(f"{name}: no mask in {out}, montage not made", flush=True)
                continue
            labels = np.asarray(load_volume(mpath).hu).astype(np.uint8)
            for old in mdir.glob(f"{name}_[0-9][0-9].png"):
                old.unlink()
            montage(v, labels, name, mdir)
            print(f"{name}: montage re-rendered, {time.time() - t0:.1f}s", flush=True)
            continue
        labels, info = segment(v, p)
        path = write_nifti(labels, v.affine, out / f"{name}.nii.gz", dtype="uint8")
        # same NIfTI bytes, gzip level 9 (mtime 0: deterministic) to keep fixtures small
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
        vox = v.voxel_volume_mm3 / 1000.0
        vols = [float((labels == lv).sum() * vox) for lv in (1, 2, 3)]
        kb = path.stat().st_size / 1024
        print(f"{name}: right {vols[0]:.1f} left {vols[1]:.1f} airway {vols[2]:.1f} cm3; "
              f"{kb:.0f} KB; {info}; {time.time() - t0:.1f}s", flush=True)
        if not args.no_montage:
            for old in mdir.glob(f"{name}_[0-9][0-9].png"):
                old.unlink()
            montage(v, labels, name, mdir)
        rows[name] = (f"{name}\tright {vols[0]:.1f}\tleft {vols[1]:.1f}\t"
                      f"airway {vols[2]:.1f}\ttotal lung {vols[0] + vols[1]:.1f} cm3\t"
                      f"{info}\t{cmd}")
    if not args.montage_only and (args.copdgene_check or args.only == "copdgene"):
        p = {**DEFAULTS, **COPDGENE}
        v = load_volume(data / p["path"])
        ref = load_volume(data / p["labels"]).hu.astype(np.int16)
        labels, info = segment(v, p)
        vox = v.voxel_volume_mm3 / 1000.0
        d = dice(np.isin(labels, (1, 2)), np.isin(ref, (1, 2)))
        dr = dice(labels == 1, ref == 1)
        dl = dice(labels == 2, ref == 2)
        da = dice(labels == 3, ref == 3)
        line = (f"copdgene-10002K-check\tDice lung(1|2) {d:.4f}\tright {dr:.4f}\t"
                f"left {dl:.4f}\tairway {da:.4f}\tours: right "
                f"{(labels == 1).sum() * vox:.1f} left {(labels == 2).sum() * vox:.1f} "
                f"airway {(labels == 3).sum() * vox:.1f} cm3; CIP: right "
                f"{(ref == 1).sum() * vox:.1f} left {(ref == 2).sum() * vox:.1f} airway "
                f"{(ref == 3).sum() * vox:.1f} cm3\t{cmd}")
        print(line)
        rows["copdgene-10002K-check"] = line
        if not args.no_montage:
            montage(v, labels, "copdgene-check-ours", mdir)
            montage(v, ref.astype(np.uint8), "copdgene-cip-labels", mdir)
    head = ["# Reference masks: volumes (cm3) per series, the parameters found, the command.",
            "# labels: 1 right lung, 2 left lung, 3 extrapulmonary airway"]
    notes = [f"# note {k}: {t}" for k, t in NOTES.items()]
    summary_path.write_text("\n".join(head + [rows[k] for k in sorted(rows)] + notes) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
