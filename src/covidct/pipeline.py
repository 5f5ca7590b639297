"""The main job on one volume: lung -> slices -> Grad-CAM -> lesions -> case. No file I/O.

``analyze(volume, config, bundle)`` returns a CaseResult with every array on the input's
voxel grid; covidct.export writes it out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from covidct import case as case_mod
from covidct.config import AnalysisConfig
from covidct.coverage import ChestCoverage, chest_coverage
from covidct.gradcam import fuse_cams, raw_gradcams
from covidct.lesions import GGO, segment_lesions
from covidct.preprocess import CropBox, classifier_input, paste_back
from covidct.slice_evidence import fuse, slice_area_cm2
from covidct.volume import Volume

log = logging.getLogger(__name__)

STAGES = ("lung segmentation", "slice classification", "localization", "lesion segmentation",
          "case measurements")
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class CaseResult:
    """Everything the analysis of one volume found; arrays are on the input's (z, y, x) grid."""

    volume: Volume
    config: AnalysisConfig          # resolved: thresholds filled in from the model cards
    lung_mask: np.ndarray           # uint8, 1 right, 2 left (central airway excluded)
    airway_mask: np.ndarray         # bool: trachea and central bronchi (covidct.anatomy)
    heatmap: np.ndarray             # float32 in [0, 1]: fused Grad-CAM x slice probability
                                    # inside the lung on the explained slices
                                    # (config.explain), else 0
    infection_mask: np.ndarray      # uint8 0/1: lesion_labels > 0 (config.infection_method)
    prob: np.ndarray                # (z,) p(abnormal): classifier and GGO evidence
                                    # (covidct.slice_evidence); 0 where a slice has no lung
    has_lung: np.ndarray            # (z,) bool
    positive: np.ndarray            # (z,) bool: has lung and prob >= slice threshold
    box: CropBox | None
    decision: Any                   # covidct.decision.Decision
    metrics: case_mod.CaseMetrics
    models: dict[str, dict[str, Any]]
    timings_s: dict[str, float] = field(default_factory=dict)
    coverage: ChestCoverage | None = None
    lesion_labels: np.ndarray | None = None  # uint8 0 / 1 GGO / 2 consolidation (covidct.lesions)
    classifier_prob: np.ndarray | None = None  # (z,) the slice classifier's p alone; its
                                               # positive slices are the ones Grad-CAM explains
    ggo_area_cm2: np.ndarray | None = None  # (z,) the lesion measure's GGO area per slice

    @property
    def warnings(self) -> tuple[str, ...]:
        """The input's warnings, then the analysis's (one lung, ...)."""
        extra = self.coverage.warnings if self.coverage is not None else ()
        return tuple(self.volume.warnings) + tuple(extra)

    def save(self, out_dir: Any, *, report: bool = True, dicom_out: bool | None = None,
             overwrite: bool = False) -> dict[str, Any]:
        """Write every output into ``out_dir``; returns the result.json document
        (see covidct.api.save_result)."""
        from covidct.api import save_result

        return save_result(self, out_dir, report=report, dicom_out=dicom_out,
                           overwrite=overwrite)


@contextmanager
def _stage(name: str, timings: dict[str, float], progress: ProgressFn | None) -> Iterator[None]:
    if progress is not None:
        progress(name)
    start = time.perf_counter()
    yield
    timings[name.replace(" ", "_")] = round(time.perf_counter() - start, 3)
    log.debug("%s: %.2f s", name, timings[name.replace(" ", "_")])


def _model_info(loaded: Any) -> dict[str, Any]:
    spec = loaded.spec
    return {"name": spec.name, "arch": getattr(spec, "arch", None), "sha256": loaded.sha256}


def localization_maps(volume: Volume, lung_mask: np.ndarray, prob: np.ndarray,
                      explained: np.ndarray, box: CropBox | None, classifier: Any,
                      config: AnalysisConfig) -> np.ndarray:
    """The fused Grad-CAM of the given slices, weighted by their probability, on the input grid.

    Maps share one scale per case (see covidct.gradcam); other slices, and voxels outside the
    lung, stay 0: every measure uses the map inside the lung only, and the zeros make
    heatmap.nii.gz smaller and faster to write.
    """
    heatmap = np.zeros(volume.shape, dtype=np.float32)
    zs = np.flatnonzero(explained)
    if zs.size == 0 or box is None:
        return heatmap
    from covidct.models.runtime import input_antialias, use_bf16

    module = getattr(classifier, "module", classifier)
    # exactly what classify_slices feeds the model
    x = classifier_input(volume.hu[zs], box, antialias=input_antialias(classifier))
    cams = raw_gradcams(module, x, batch_size=config.batch_size,
                        bf16=use_bf16(config.precision))
    fused = fuse_cams(cams, size=x.shape[-1])
    fused *= prob[zs, None, None].astype(np.float32)
    shape_yx = volume.shape[1:]
    for start in range(0, zs.size, config.batch_size):  # chunks bound the temporaries
        chunk = zs[start:start + config.batch_size]
        heatmap[chunk] = paste_back(fused[start:start + chunk.size], box, shape_yx)
        heatmap[chunk] *= lung_mask[chunk] > 0
    np.clip(heatmap, 0.0, 1.0, out=heatmap)
    return heatmap


def resolve_config(config: AnalysisConfig, bundle: Any) -> AnalysisConfig:
    """The configuration an analysis with `bundle` runs with: thresholds left unset (None)
    take the classifier's model card values. CaseResult.config holds this one."""
    spec = bundle.classifier.spec
    return replace(
        config,
        slice_threshold=(config.slice_threshold if config.slice_threshold is not None
                         else float(spec.slice_threshold)),
        case_threshold=(config.case_threshold if config.case_threshold is not None
                        else float(spec.case_threshold)),
    )


def analyze(volume: Volume, config: AnalysisConfig, bundle: Any,
            progress: ProgressFn | None = None) -> CaseResult:
    """Analyse one CT volume with a loaded ModelBundle (lung, classifier).

    Non-finite voxels are taken as padding (air, with a warning); values that are not
    Hounsfield units raise InputError (covidct.hu_units).
    """
    from covidct.classify import classify_slices
    from covidct.decision import decide
    from covidct.hu_units import replace_nonfinite, require_hounsfield
    from covidct.lung import segment_chest

    volume = replace_nonfinite(volume)
    require_hounsfield(volume)

    config = resolve_config(config, bundle)
    timings: dict[str, float] = {}
    z = volume.shape[0]

    with _stage(STAGES[0], timings, progress):
        chest = segment_chest(volume, bundle.lung, dtype=config.precision)
        lung_mask = chest.lung

    with _stage(STAGES[1], timings, progress):
        if lung_mask.any():
            scores = classify_slices(volume.hu, lung_mask, volume.spacing_mm, bundle.classifier,
                                     batch_size=config.batch_size, dtype=config.precision)
            prob = np.nan_to_num(np.asarray(scores.prob, dtype=np.float32))
            has_lung = np.asarray(scores.has_lung, dtype=bool)
            box = scores.box
        else:  # nothing to classify: the decision says indeterminate
            prob, has_lung, box = np.zeros(z, np.float32), np.zeros(z, bool), None
        prob = np.where(has_lung, prob, 0.0).astype(np.float32)
        positive = has_lung & (prob >= config.slice_threshold)

    with _stage(STAGES[2], timings, progress):
        explained = positive if config.explain == "positive" else has_lung
        heatmap = localization_maps(volume, lung_mask, prob, explained, box,
                                    bundle.classifier, config)

    with _stage(STAGES[3], timings, progress):
        lesion = segment_lesions(volume.hu, lung_mask, chest.airway, heatmap, positive,
                                 volume.affine, volume.spacing_mm)
        if config.infection_method == "heatmap":  # the Gozes et al. thresholded maps
            labels = case_mod.infection_mask(
                heatmap, lung_mask, positive, volume.spacing_mm,
                threshold=config.heatmap_threshold, sigma_mm=config.infection_sigma_mm,
                smooth_threshold=config.infection_smooth_threshold)
        else:
            labels = lesion.labels
        infection = (labels > 0).astype(np.uint8)
        # The Gozes et al. quantities above (Grad-CAM, the lesion gate) and the Corona score
        # below use the classifier's positive slices; the slice probability and the
        # decision use both kinds of evidence.
        classifier_prob, classifier_positive = prob, positive
        ggo_cm2 = slice_area_cm2(lesion.labels == GGO, volume.spacing_mm)
        prob = np.where(has_lung, fuse(classifier_prob, ggo_cm2, config.ggo_evidence_cm2),
                        0.0).astype(np.float32)
        positive = has_lung & (prob >= config.slice_threshold)

    with _stage(STAGES[4], timings, progress):
        _, dy, dx = volume.spacing_mm
        coverage = chest_coverage(lung_mask, has_lung, volume.slice_positions_mm(),
                                  volume.voxel_volume_mm3)
        decision = decide(prob, has_lung, slice_threshold=config.slice_threshold,
                          case_threshold=config.case_threshold,
                          lung_area_mm2=(lung_mask > 0).sum(axis=(1, 2)) * (dy * dx),
                          slice_spacing_mm=volume.spacing_mm[0],
                          lung_extent_mm=coverage.lung_extent_mm,
                          fov_cut_share=coverage.fov_cut_share)
        corona = case_mod.corona_score_cm3(heatmap, lung_mask, classifier_positive,
                                           volume.voxel_volume_mm3)
        # the heatmap mask has no ground glass / consolidation split
        lesion_labels = None if config.infection_method == "heatmap" else labels
        metrics = case_mod.measure_case(lung_mask, infection, volume.slice_positions_mm(),
                                        volume.voxel_volume_mm3, corona,
                                        lesion_labels=lesion_labels, affine=volume.affine,
                                        density=lesion.density)

    return CaseResult(
        volume=volume, config=config, lung_mask=lung_mask, airway_mask=chest.airway,
        heatmap=heatmap, coverage=coverage,
        infection_mask=infection, lesion_labels=lesion_labels, prob=prob, has_lung=has_lung,
        positive=positive, box=box, classifier_prob=classifier_prob, ggo_area_cm2=ggo_cm2,
        decision=decision, metrics=metrics,
        models={"lung": _model_info(bundle.lung), "classifier": _model_info(bundle.classifier)},
        timings_s=timings,
    )
