"""`covidct train lung`: the U-Net lung segmentation (background, right lung, left lung).

Loss: cross-entropy + soft Dice of the two lungs against area-share targets (see
`covidct.train.slices.lung_samples`); the seed's lung augmentation
(`covidct.augment.augment_lung_batch`); early stopping on the mean right/left Dice of
the validation cases' slices (at 224x224, nearest labels).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from covidct.augment import augment_lung_batch
from covidct.models.registry import ModelSpec, save_model
from covidct.models.runtime import predict_in_batches, use_bf16
from covidct.preprocess import LUNG_HU_WINDOW, MODEL_INPUT_SIZE
from covidct.train.loop import (
    TrainOptions,
    build_network,
    fit,
    split_train_val,
    training_record,
    validation_key,
)
from covidct.train.slices import build_slice_set

logger = logging.getLogger(__name__)

PREPROCESSING = ("preprocess.lung_model_input: HU clipped to [-1000, 0], scaled to [0, 1], "
                 "resized to 224x224 (bilinear, antialiased when input_antialias); logits "
                 "resized back to the slice grid, arg-max, 3D post-processing (covidct.lung)")


def lung_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    """CE + (1 - soft Dice of right and left lung), after augmentation.

    `labels`: (n,H,W) class indices or (n,3,H,W) class shares (soft targets).
    """
    soft = labels.ndim == 4
    images, labels = augment_lung_batch(images, labels if soft else labels.long(), generator)
    logits = model(images).float()
    ce = F.cross_entropy(logits, labels)
    prob = logits.softmax(dim=1)[:, 1:]
    onehot = labels[:, 1:] if soft else F.one_hot(labels, 3).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (prob * onehot).sum(dim=(0, 2, 3))
    dice = (2 * inter + 1.0) / (prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3)) + 1.0)
    return ce + (1.0 - dice.mean())


def predict_labels(model: nn.Module, images: torch.Tensor, batch_size: int = 32,
                   bf16: bool = False) -> torch.Tensor:
    return predict_in_batches(model, images, lambda logits: logits.argmax(dim=1).to(torch.uint8),
                              batch_size=batch_size, bf16=bf16)


def lung_dice(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Dice of the right lung, the left lung, and of the whole lung, pooled over slices."""
    out = {}
    for name, test in (("right", lambda a: a == 1), ("left", lambda a: a == 2),
                       ("lung", lambda a: a > 0)):
        p, t = test(pred), test(target)
        denom = float(p.sum() + t.sum())
        out[name] = 2.0 * float((p & t).sum()) / denom if denom else 1.0
    return out


def train_lung(options: TrainOptions) -> ModelSpec:
    """Train, keep the best validation epoch, write NAME.safetensors + NAME.json in --out."""
    train, val = split_train_val(options, "lung")
    progress = options.config.progress
    train_set = build_slice_set(train, "lung", max_slices=options.max_slices_per_case,
                                progress=progress, soft_labels=True,
                                empty_share=options.empty_slice_share,
                                antialias=options.train_antialias)
    val_set = build_slice_set(val, "lung", max_slices=options.max_slices_per_case,
                              progress=progress, antialias=options.train_antialias)
    logger.info("Lung slices: %d training, %d validation.", len(train_set), len(val_set))
    model = build_network(options)
    bf16 = use_bf16(options.config.dtype, options.config.device)

    def validate(net: nn.Module) -> float:
        dice = lung_dice(predict_labels(net, val_set.images, bf16=bf16), val_set.targets)
        return (dice["right"] + dice["left"]) / 2.0

    result = fit(model, train_set.images, train_set.targets, lung_loss, validate,
                 options.config, options.out, resume=options.resume, task="lung",
                 val_key=validation_key(val, options.train_antialias),
                 metric_name="dice")
    final = lung_dice(predict_labels(model, val_set.images, bf16=bf16), val_set.targets)
    spec = ModelSpec(
        name=options.model_name("lung"), task="lung", arch=options.arch, width=options.width,
        input_size=MODEL_INPUT_SIZE, hu_window=LUNG_HU_WINDOW, preprocessing=PREPROCESSING,
        input_antialias=options.input_antialias,
        training=training_record(options, train, val, result)
        | {"train_slices": len(train_set), "val_slices": len(val_set),
           "empty_slice_share": options.empty_slice_share},
        metrics={"validation_slice_dice_224": {k: round(v, 4) for k, v in final.items()}},
        description="U-Net lung segmentation (0 background, 1 right lung, 2 left lung).",
    )
    return save_model(model, spec, options.out)
