"""`covidct train classifier`: the ResNet slice classifier (p(abnormal) per lung slice).

Training crops each case's lung ROI with its reference lung mask (inference uses the lung
model's mask); loss: BCE-with-logits (positive class weighted by the class ratio); the
seed's classifier augmentation (rotation, flip, crop); early stopping on the validation
slice AUC. The slice and case thresholds are then calibrated on the validation cases.

Where the training cases have infection masks, two auxiliary 1x1-conv heads on the 28x28
and 14x14 stages (the Grad-CAM layers) learn the infection map during training only
(`AUX_WEIGHT` x BCE against the pooled mask). The dense supervision lets a network trained
from scratch on a CPU find small lesions in a few thousand steps (without it, validation
slice AUC stayed at 0.38-0.62 over the 5 epochs of the first shipped run, recorded in
benchmarks/results/train_classifier.txt at commit b26d60a) and keeps those stages
lesion-selective; the heads are dropped afterwards, so the shipped classifier is the seed's
network.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from covidct.augment import augment_classifier_batch
from covidct.models.registry import (
    LoadedModel,
    ModelBundle,
    ModelSpec,
    find_spec,
    load_model,
    save_model,
)
from covidct.models.runtime import predict_in_batches, use_bf16
from covidct.preprocess import CLASSIFIER_HU_WINDOW, MODEL_INPUT_SIZE
from covidct.train.calibrate import calibrate_models, calibrate_thresholds
from covidct.train.loop import (
    TrainOptions,
    build_network,
    fit,
    split_train_val,
    training_record,
    validation_key,
)
from covidct.train.metrics import roc_auc
from covidct.train.slices import SliceSet, build_slice_set

logger = logging.getLogger(__name__)

PREPROCESSING = ("preprocess.lung_roi_box on the whole-case lung mask (one square box per "
                 "case, 10 mm margin) + preprocess.classifier_input: crop, HU clipped to "
                 "[-1000, 200], scaled to [0, 1], resized to 224x224 (bilinear, antialiased "
                 "when input_antialias); slices with >= 100 mm2 "
                 "of lung are classified")
MAX_POS_WEIGHT = 10.0
AUX_WEIGHT = 1.0


class AuxiliaryHeads(nn.Module):
    """Training-only: the classifier plus infection-map logits at its two Grad-CAM stages."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        c28, c14 = classifier.stage_channels
        self.map28 = nn.Conv2d(c28, 1, 1)
        self.map14 = nn.Conv2d(c14, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat28, feat14, logit = self.classifier.forward_stages(x)
        return logit, self.map28(feat28)[:, 0], self.map14(feat14)[:, 0]


def _map_loss(logits: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    target = F.adaptive_avg_pool2d(maps, logits.shape[-2:])[:, 0]
    return F.binary_cross_entropy_with_logits(logits.float(), target.clamp(0, 1))


def make_loss(pos_weight: float):
    weight = torch.tensor(pos_weight)

    def slice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(),
                                                  pos_weight=weight.to(logits.device))

    def classifier_loss(model: nn.Module, images: torch.Tensor,
                        targets: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                        generator: torch.Generator) -> torch.Tensor:
        if not isinstance(model, AuxiliaryHeads):
            return slice_loss(model(augment_classifier_batch(images, generator)), targets)
        labels, maps = targets
        images, maps = augment_classifier_batch(images, generator, maps)
        logit, map28, map14 = model(images)
        return slice_loss(logit, labels) + AUX_WEIGHT * (_map_loss(map28, maps)
                                                         + _map_loss(map14, maps))

    return classifier_loss


def predict_probs(model: nn.Module, images: torch.Tensor, batch_size: int = 64,
                  bf16: bool = False) -> np.ndarray:
    return predict_in_batches(model, images, torch.sigmoid, batch_size=batch_size,
                              bf16=bf16).numpy()


def calibrate(model: nn.Module, spec: ModelSpec, options: TrainOptions, val: list,
              val_set: SliceSet, probs: np.ndarray) -> tuple[float, float, dict]:
    """Slice and case thresholds on the validation cases.

    With --lung-model the classifier sees the lung model's masks, exactly as at inference
    (`covidct.train.calibrate.calibrate_models`); otherwise the reference lung masks'
    slices (already predicted in `probs`).
    """
    if options.lung_model is not None:
        lung = load_model(find_spec("lung", options.lung_model), options.lung_model)
        bundle = ModelBundle(lung=lung, classifier=LoadedModel(spec, model, ""))
        slice_t, case_t, details = calibrate_models(bundle, val)
        details["lung_masks"] = f"predicted by {lung.spec.name} ({lung.sha256[:12]})"
        return slice_t, case_t, details
    labels = {r.case_id: r.label for r in val}
    per_case = [val_set.case_index == i for i in range(len(val_set.case_ids))]
    targets = val_set.targets.numpy().astype(bool)
    slice_t, case_t, details = calibrate_thresholds(
        [probs[m] for m in per_case], [np.ones(int(m.sum()), bool) for m in per_case],
        [targets[m] for m in per_case], [labels[c] for c in val_set.case_ids])
    details["lung_masks"] = "reference"
    return slice_t, case_t, details


def train_classifier(options: TrainOptions) -> ModelSpec:
    """Train, calibrate thresholds on validation, write NAME.safetensors + NAME.json."""
    train, val = split_train_val(options, "classifier")
    progress = options.config.progress
    train_set = build_slice_set(train, "classifier", max_slices=options.max_slices_per_case,
                                progress=progress, antialias=options.train_antialias)
    val_set = build_slice_set(val, "classifier", max_slices=None, progress=progress,
                              antialias=options.train_antialias)
    positives = float(train_set.targets.sum())
    pos_weight = min(MAX_POS_WEIGHT, (len(train_set) - positives) / max(positives, 1.0))
    logger.info("Classifier slices: %d training (%d positive), %d validation.",
                len(train_set), int(positives), len(val_set))
    model = build_network(options)
    bf16 = use_bf16(options.config.dtype, options.config.device)
    val_labels = val_set.targets.numpy().astype(bool)
    aux = train_set.maps is not None
    trained = AuxiliaryHeads(model) if aux else model
    targets = (train_set.targets, train_set.maps) if aux else train_set.targets
    logger.info("Auxiliary infection-map supervision: %s.",
                "on" if aux else "off (not every training case has an infection mask)")

    def validate(net: nn.Module) -> float:
        net = net.classifier if isinstance(net, AuxiliaryHeads) else net
        return roc_auc(predict_probs(net, val_set.images, bf16=bf16), val_labels)

    result = fit(trained, train_set.images, targets, make_loss(pos_weight), validate,
                 options.config, options.out, resume=options.resume, task="classifier",
                 val_key=validation_key(val, options.train_antialias),
                 metric_name="auc")
    probs = predict_probs(model, val_set.images, bf16=bf16)
    spec = ModelSpec(
        name=options.model_name("classifier"), task="classifier", arch=options.arch,
        width=options.width, input_size=MODEL_INPUT_SIZE, hu_window=CLASSIFIER_HU_WINDOW,
        input_antialias=options.input_antialias,
        preprocessing=PREPROCESSING,
        training=training_record(options, train, val, result)
        | {"train_slices": len(train_set), "train_positive_slices": int(positives),
           "val_slices": len(val_set), "pos_weight": round(pos_weight, 3),
           "auxiliary_infection_maps": aux},
        metrics={"validation_slice_auc": round(roc_auc(probs, val_labels), 4)},
        description="ResNet slice classifier: p(abnormal) per lung slice; the head of "
                    "Gozes et al. 2020 (two dense layers, sigmoid applied at inference).",
    )
    if options.lung_model is None and options.input_antialias != options.train_antialias:
        # thresholds from the reference-mask slices, shrunk as inference will shrink them
        # (with --lung-model, calibrate() runs the inference path itself)
        val_set = build_slice_set(val, "classifier", max_slices=None, progress=progress,
                                  antialias=options.input_antialias)
        probs = predict_probs(model, val_set.images, bf16=bf16)
    slice_t, case_t, calibration = calibrate(model, spec, options, val, val_set, probs)
    spec = replace(spec, slice_threshold=round(slice_t, 6), case_threshold=round(case_t, 6),
                   training=spec.training | {"calibration": calibration})
    return save_model(model, spec, options.out)
