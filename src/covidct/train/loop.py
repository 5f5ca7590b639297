"""The one training loop: seeded, checkpointed every epoch, resumable, early stopping.

A task supplies the loss of a batch and a validation metric (higher is better); the loop
shuffles, augments, runs under bf16 autocast where the device supports it natively,
shows a tqdm bar with the running loss and the last validation metric, writes
`checkpoint-<task>.pt` (model, optimiser, RNG, history) after each epoch, and keeps
the best state. `--resume` continues from that checkpoint, validating on the cases it
validated on (new cases in --data train), unless `--resplit` splits the data afresh.
Also: the options, case split and network construction the two trainings share.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from covidct.errors import ConfigError, DataError
from covidct.models.factory import create_model
from covidct.models.pretrained import load_pretrained
from covidct.models.runtime import autocast, resolve_device, use_bf16
from covidct.train.datasets import CaseRecord, discover_cases, split_cases
from covidct.train.slices import EMPTY_SLICE_SHARE

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint-{task}.pt"  # one per task, so both can train into one folder

# (model, images, targets, generator) -> loss; the task augments inside.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
ValFn = Callable[[nn.Module], float]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    patience: int = 4  # epochs without validation improvement before stopping
    device: str = "cpu"
    dtype: str = "auto"  # 'auto' | 'fp32' | 'bf16' autocast
    steps_per_epoch: int | None = None  # None: one pass over the training slices
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"epochs, batch size and lr must be positive; got {self}.")


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    bf16: bool = False
    resumed_at_epoch: int | None = None  # first epoch this run trained, when resumed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def learning_rate(step: int, total: int, max_lr: float, warmup: float = 0.1) -> float:
    """Linear warm-up over the first `warmup` share of the steps, then cosine decay to 2 %.

    A function of the step alone, so a resumed run (even with more epochs) continues it.
    """
    warm = max(1, int(warmup * total))
    if step < warm:
        return max_lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return max_lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state()}


def _take(targets: torch.Tensor | tuple[torch.Tensor, ...], idx: torch.Tensor,
          device: torch.device) -> torch.Tensor | tuple[torch.Tensor, ...]:
    if isinstance(targets, tuple):
        return tuple(t[idx].to(device) for t in targets)
    return targets[idx].to(device)


def _rescore(model: nn.Module, state: dict[str, torch.Tensor], val_fn: ValFn) -> float:
    """`val_fn` of `state`, leaving the model's own state as it was."""
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        score = float(val_fn(model))
    model.load_state_dict(current)
    return score


def fit(model: nn.Module, images: torch.Tensor,
        targets: torch.Tensor | tuple[torch.Tensor, ...], loss_fn: LossFn,
        val_fn: ValFn, config: TrainConfig, out_dir: Path, *, resume: bool = False,
        metric_name: str = "metric", task: str = "model", val_key: str = "") -> FitResult:
    """Train `model` in place on (images, targets); on return it holds the best state.

    `targets` is a tensor or a tuple of tensors indexed alike (sample first). `val_key`
    names the validation set (e.g. its case ids): when a resumed checkpoint was validated
    on another set, its best state is re-scored on this one, so that the scores compared
    for early stopping and for the kept state come from one validation set.
    """
    n = int(images.shape[0])
    if n == 0:
        raise DataError("No training samples.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    bf16 = use_bf16(config.dtype, device)
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    # channels_last: the layout oneDNN convolves fastest on CPU (benchmarks/train_step_speed.py)
    model.to(device, memory_format=torch.channels_last)
    steps = config.steps_per_epoch or max(1, n // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    start_epoch, best, best_epoch, stale = 0, -math.inf, -1, 0
    history: list[dict[str, float]] = []
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt_path = out_dir / CHECKPOINT.format(task=task)
    if resume:
        if not ckpt_path.is_file():
            raise ConfigError(f"--resume: no {ckpt_path.name} in {out_dir}; start without "
                              "--resume.")
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        generator.set_state(ckpt["rng"]["generator"])
        start_epoch, best, best_epoch = ckpt["epoch"] + 1, ckpt["best"], ckpt["best_epoch"]
        stale, history, best_state = ckpt["stale"], ckpt["history"], ckpt["best_state"]
        if ckpt.get("val_key", "") != val_key:
            best, stale = _rescore(model, best_state, val_fn), 0
            logger.warning("--resume: the checkpoint was validated on other cases or inputs; "
                           "its best state (epoch %d) scores %s %.4f on these.", best_epoch,
                           metric_name, best)
        logger.info("Resumed from %s at epoch %d (best %s %.4f).", ckpt_path, start_epoch,
                    metric_name, best)
    started = time.perf_counter()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.epochs):
        if stale >= config.patience:
            break
        model.train()
        order = torch.randperm(n, generator=generator)
        order = order.repeat(math.ceil(steps * config.batch_size / n) or 1)
        running = 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress, leave=False)
        for step in bar:
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            x = images[idx].to(device, memory_format=torch.channels_last)
            y = _take(targets, idx, device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(epoch * steps + step, config.epochs * steps, config.lr)
            with autocast(bf16, device):
                loss = loss_fn(model, x, y, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = loss.item() if step == 0 else 0.9 * running + 0.1 * loss.item()
            bar.set_postfix(loss=f"{running:.4f}", **{metric_name: f"{best:.4f}"})
        model.eval()
        with torch.no_grad():
            metric = float(val_fn(model))
        history.append({"epoch": epoch + 1, "loss": running, metric_name: metric})
        improved = metric > best
        if improved:
            best, best_epoch, stale = metric, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        logger.info("epoch %d: loss %.4f, val %s %.4f%s", epoch + 1, running, metric_name,
                    metric, " (best)" if improved else "")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(generator),
                    "epoch": epoch, "best": best, "best_epoch": best_epoch, "stale": stale,
                    "history": history, "best_state": best_state, "val_key": val_key,
                    "config": asdict(config)}, ckpt_path)
    model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return FitResult(best_metric=best, best_epoch=best_epoch, epochs_run=epoch + 1,
                     seconds=time.perf_counter() - started, history=history, bf16=bf16,
                     resumed_at_epoch=start_epoch + 1 if resume else None)


# --- shared by covidct.train.lung_training and covidct.train.classifier_training ---


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    out: Path
    arch: str
    width: float = 1.0
    layout: str = "auto"
    name: str | None = None
    val_fraction: float = 0.2
    max_slices_per_case: int | None = 48
    empty_slice_share: float = EMPTY_SLICE_SHARE  # lung: lungless slices per lung slice taken
    pretrained: Path | None = None
    lung_model: Path | None = None  # classifier: calibrate thresholds on this lung model's masks
    input_antialias: bool = True  # how inference shrinks inputs; stored in the model card
    # how training and validation shrink inputs: plain sampling keeps the per-pixel noise,
    # which made the lung model more robust to heavy noise (v4 against v5)
    train_antialias: bool = False
    resume: bool = False
    resplit: bool = False  # with resume: split --data afresh, not keep the checkpoint's split
    command: str = ""  # the command line, recorded in the model card
    config: TrainConfig = field(default_factory=TrainConfig)

    def model_name(self, task: str) -> str:
        if self.name:
            return self.name
        width = "" if self.width == 1.0 else f"-w{str(self.width).replace('.', '')}"
        return f"{task}-{self.arch.replace('_', '-')}{width}"


# truth.json "family" values of synthetic cases that exist to test generalization only
TEST_ONLY_FAMILIES = ("heldout",)


def refuse_test_only(records: list[CaseRecord]) -> None:
    """DataError if a case was written by a test-only synthetic family (truth.json
    'family', e.g. `covidct synth --family heldout`): training on it would void the
    generalization figures it exists to measure."""
    import json

    for record in records:
        if record.truth is None:
            continue
        try:
            family = json.loads(record.truth.read_text()).get("family")
        except (OSError, ValueError):
            continue
        if family in TEST_ONLY_FAMILIES:
            raise DataError(
                f"{record.case_id} ({record.truth}) belongs to the test-only synthetic family "
                f"{family!r}; it must never train a model. Remove it from --data, or "
                "generate training data with `covidct synth` (the training family).")


def split_train_val(options: TrainOptions, task: str) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """Cases of --data split by case (stratified by label) into training and validation.

    A resumed run keeps the checkpoint's validation cases (a fresh split of grown data
    would move cases the network trained on into validation); cases new to --data train.
    """
    records = discover_cases(options.data, options.layout)
    refuse_test_only(records)
    kept = _checkpoint_validation_ids(options, task)
    if kept is not None:
        by_id = {r.case_id: r for r in records}
        missing = sorted(set(kept) - by_id.keys())
        if missing:
            raise ConfigError(
                f"--resume: {len(missing)} of the checkpoint's validation cases are not in "
                f"{options.data} (e.g. {missing[0]}); resume on data that holds them, or pass "
                "--resplit to split the data afresh.")
        kept_ids = set(kept)
        val = [by_id[i] for i in sorted(kept_ids)]
        train = [r for r in records if r.case_id not in kept_ids]
        logger.info("Kept the checkpoint's %d validation cases; %d training cases.",
                    len(val), len(train))
    else:
        train, val = split_cases(records, (1.0 - options.val_fraction, options.val_fraction),
                                 seed=options.config.seed)
    if not train or not val:
        raise DataError(f"{len(records)} cases in {options.data} cannot be split into training "
                        f"and validation ({options.val_fraction:.0%}); add cases.")
    logger.info("%d training cases, %d validation cases.", len(train), len(val))
    return train, val


def _checkpoint_validation_ids(options: TrainOptions, task: str) -> list[str] | None:
    """The validation case ids of the checkpoint a resumed run continues, if it keeps them."""
    path = Path(options.out) / CHECKPOINT.format(task=task)
    if not options.resume or options.resplit or not path.is_file():
        return None  # a missing checkpoint is reported by fit()
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return validation_ids(str(ckpt.get("val_key", "")))


def validation_key(val: list[CaseRecord], antialias: bool) -> str:
    """Names a validation set for `fit(val_key=...)`: the input resize and the case ids.

    A resumed checkpoint scored on another key is re-scored, so a change of either (other
    cases, or inputs shrunk another way) never compares scores from different inputs.
    """
    ids = ",".join(sorted(r.case_id for r in val))
    return f"antialias={int(antialias)};{ids}"


def validation_ids(key: str) -> list[str]:
    """The case ids of a `validation_key` (also of older keys, which held the ids alone)."""
    ids = key.rpartition(";")[2]
    return ids.split(",") if ids else []


def build_network(options: TrainOptions) -> nn.Module:
    model = create_model(options.arch, width=options.width)
    if options.pretrained is not None:
        load_pretrained(model, options.pretrained)
    return model


def training_record(options: TrainOptions, train: list[CaseRecord], val: list[CaseRecord],
                    fit_result: object) -> dict:
    """The model card's `training` field."""
    return {
        "data": str(options.data),
        "layout": options.layout,
        "train_cases": len(train),
        "val_cases": len(val),
        "val_case_ids": [r.case_id for r in val],
        "seed": options.config.seed,
        "epochs_run": getattr(fit_result, "epochs_run", None),
        "best_epoch": getattr(fit_result, "best_epoch", None),
        # when resumed: a best_epoch before this one means the weights are the earlier run's
        # (trained on the data that run named), not this run's
        "resumed_at_epoch": getattr(fit_result, "resumed_at_epoch", None),
        "seconds": round(float(getattr(fit_result, "seconds", 0.0)), 1),
        "bf16_autocast": getattr(fit_result, "bf16", None),
        "pretrained": str(options.pretrained) if options.pretrained else None,
        "lung_model": str(options.lung_model) if options.lung_model else None,
        "train_input_antialias": options.train_antialias,
        "command": options.command,
        "history": getattr(fit_result, "history", []),
    }
