"""A small chest phantom written as DICOM with the synthetic writer's quirks, loaded back, and
a CaseResult with known masks on it (no models): the truth for the DICOM output tests."""

from __future__ import annotations

import numpy as np

from analysis_fakes import phantom
from covidct.case import corona_score_cm3, measure_case
from covidct.config import AnalysisConfig
from covidct.coverage import chest_coverage
from covidct.decision import decide
from covidct.io import load_volume
from covidct.pipeline import CaseResult
from covidct.synth.dicom_writer import DicomQuirks, write_ct_series
from covidct.volume import Volume

SHAPE = (16, 48, 64)
SPACING_MM = (6.0, 2.5, 2.5)


def flipped(volume: Volume, axes: tuple[int, ...]) -> Volume:
    """The same voxels in another array order: each axis in ``axes`` reversed, so its
    direction cosine is negated (a DICOM series with negative cosines, or feet-first)."""
    hu = volume.hu
    affine = volume.affine.copy()
    for axis in axes:
        hu = np.flip(hu, axis=axis)
        affine[:3, 3] += (volume.shape[axis] - 1) * affine[:3, axis]
        affine[:3, axis] = -affine[:3, axis]
    return Volume(hu=np.ascontiguousarray(hu), affine=affine, metadata=volume.metadata)


def permuted(volume: Volume, order: tuple[int, int, int]) -> Volume:
    """The same voxels with array axes reordered (new axis t is old axis order[t]): (1, 0, 2)
    makes the writer's slices coronal."""
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, list(order)]
    return Volume(hu=np.ascontiguousarray(np.transpose(volume.hu, order)), affine=affine,
                  metadata=volume.metadata)


def write_phantom_series(folder, axes=(), quirks=DicomQuirks(), seed=0,  # noqa: B008
                         order=(0, 1, 2)):
    """Write the phantom (array axes in ``axes`` reversed, then reordered by ``order``) as a
    CT series; returns paths."""
    volume, _, _ = phantom(lesion=True, shape=SHAPE, spacing=SPACING_MM)
    return write_ct_series(permuted(flipped(volume, axes), order), folder, quirks=quirks,
                           seed=seed, patient_id="DICOMOUT", series_description="phantom")


def known_result(volume: Volume) -> CaseResult:
    """A CaseResult whose masks follow the phantom's HU: lung -850 (right: x < W/2),
    infection the -400 HU sphere, airway one voxel column in the middle of the lungs."""
    hu = np.asarray(volume.hu)
    lung = np.zeros(volume.shape, np.uint8)
    air = hu <= -400
    half = volume.shape[2] // 2
    lung[:, :, :half][air[:, :, :half]] = 1
    lung[:, :, half:][air[:, :, half:]] = 2
    infection = ((hu > -500) & (hu < -300)).astype(np.uint8)
    airway = np.zeros(volume.shape, bool)
    airway[volume.shape[0] // 2:, volume.shape[1] // 2, half] = True
    lung[airway] = 0
    heatmap = np.where(infection > 0, 0.8, 0.0).astype(np.float32)
    has_lung = (lung > 0).any(axis=(1, 2))
    positive = has_lung & (infection > 0).any(axis=(1, 2))
    prob = np.where(positive, 0.9, np.where(has_lung, 0.1, 0.0)).astype(np.float32)
    _, dy, dx = volume.spacing_mm
    coverage = chest_coverage(lung, has_lung, volume.slice_positions_mm(),
                              volume.voxel_volume_mm3)
    decision = decide(prob, has_lung, slice_threshold=0.5, case_threshold=0.1,
                      lung_area_mm2=(lung > 0).sum(axis=(1, 2)) * (dy * dx),
                      slice_spacing_mm=volume.spacing_mm[0],
                      lung_extent_mm=coverage.lung_extent_mm,
                      fov_cut_share=coverage.fov_cut_share)
    corona = corona_score_cm3(heatmap, lung, positive, volume.voxel_volume_mm3)
    metrics = measure_case(lung, infection, volume.slice_positions_mm(),
                           volume.voxel_volume_mm3, corona)
    models = {"lung": {"name": "test-lung", "arch": "threshold", "sha256": "0" * 64},
              "classifier": {"name": "test-classifier", "arch": "bright-spot",
                             "sha256": "1" * 64}}
    return CaseResult(volume=volume, config=AnalysisConfig(slice_threshold=0.5,
                                                           case_threshold=0.1, overlay_count=2),
                      lung_mask=lung, airway_mask=airway, heatmap=heatmap,
                      infection_mask=infection, prob=prob, has_lung=has_lung,
                      positive=positive, box=None, decision=decision, metrics=metrics,
                      models=models, coverage=coverage)


def loaded_case(folder, axes=(), quirks=DicomQuirks(), order=(0, 1, 2)):  # noqa: B008
    """(paths, CaseResult) of the phantom written with these quirks and loaded back."""
    paths = write_phantom_series(folder, axes=axes, quirks=quirks, order=order)
    return paths, known_result(load_volume(folder))
