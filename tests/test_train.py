"""Training: augmentations, the loop (overfit, checkpoint, resume), `covidct train` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from covidct.augment import (
    augment_classifier_batch,
    augment_lung_batch,
    random_affines,
    swap_right_left,
    warp,
)
from covidct.cli import main
from covidct.models import create_model
from covidct.models.registry import load_bundle, read_card
from covidct.train.loop import TrainConfig, fit
from covidct.train.lung_training import lung_dice, lung_loss, predict_labels
from test_train_data import write_dataset


def test_swap_right_left() -> None:
    labels = torch.tensor([[0, 1, 2, 1]])
    assert swap_right_left(labels).tolist() == [[0, 2, 1, 2]]


def test_flip_mirrors_image_and_swaps_labels() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[..., :4] = 1.0  # the right lung occupies the low-x half
    theta, flip = random_affines(1, torch.Generator().manual_seed(0), scale=(1.0, 1.0),
                                 flip_p=1.0)
    assert flip.all()
    flipped = warp(image, theta)
    torch.testing.assert_close(flipped, image.flip(-1))


def test_lung_augmentation_keeps_labels_on_their_side() -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.zeros(16, 1, 32, 32)
    labels = torch.zeros(16, 32, 32, dtype=torch.long)
    labels[:, 8:24, 4:14], labels[:, 8:24, 18:28] = 1, 2
    images[labels[:, None] > 0] = 0.2
    out_images, out_labels = augment_lung_batch(images, labels, gen)
    for k in range(16):
        xs_right = torch.nonzero(out_labels[k] == 1)[:, 1].float().mean()
        xs_left = torch.nonzero(out_labels[k] == 2)[:, 1].float().mean()
        assert xs_right < xs_left  # a flip moved the image AND swapped the labels
    noise = out_images[:, 0][out_labels > 0] - 0.2
    assert 0.03 < float(noise.std()) < 0.15  # 0.1 * N(0, 0.8) inside the lung
    assert float(out_images[:, 0][out_labels == 0].abs().max()) < 0.21


def test_classifier_augmentation_shape_and_range() -> None:
    x = torch.rand(4, 1, 64, 64)
    out = augment_classifier_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def _tiny_lung_data() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.zeros(8, 64, 64, dtype=torch.uint8)
    labels[:, 16:48, 8:28], labels[:, 16:48, 36:56] = 1, 2
    images = torch.full((8, 1, 64, 64), 0.9)
    images[labels[:, None] > 0] = 0.15
    images += 0.02 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    return images.half(), labels


def test_tiny_unet_overfits_and_resumes(tmp_path: Path) -> None:
    images, labels = _tiny_lung_data()

    def validate(net: torch.nn.Module) -> float:
        dice = lung_dice(predict_labels(net, images), labels)
        return (dice["right"] + dice["left"]) / 2

    config = TrainConfig(epochs=4, batch_size=4, lr=1e-2, steps_per_epoch=8, progress=False,
                         dtype="fp32", patience=10)
    torch.manual_seed(0)
    model = create_model("unet_vgg11", width=0.125)
    result = fit(model, images, labels, lung_loss, validate, config, tmp_path)
    assert result.best_metric > 0.9
    assert (tmp_path / "checkpoint-model.pt").is_file()
    # Resuming a finished run trains no more epochs and restores the best state.
    config_more = TrainConfig(epochs=5, batch_size=4, lr=1e-2, steps_per_epoch=8,
                              progress=False, dtype="fp32", patience=10)
    again = fit(create_model("unet_vgg11", width=0.125), images, labels, lung_loss, validate,
                config_more, tmp_path, resume=True)
    assert again.epochs_run == 5 and len(again.history) == 5
    assert again.best_metric >= result.best_metric



def test_resume_on_other_validation_cases_rescores_the_best_state(tmp_path: Path) -> None:
    """A best score from one validation set is never compared with scores from another."""
    images, labels = _tiny_lung_data()
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-2, steps_per_epoch=4, progress=False,
                         dtype="fp32", patience=10)
    torch.manual_seed(0)
    first = fit(create_model("unet_vgg11", width=0.125), images, labels, lung_loss,
                lambda net: 0.9, config, tmp_path, val_key="a,b")
    assert first.best_metric == 0.9 and first.best_epoch == 1
    scores = iter([0.2, 0.3])  # re-scored best state, then the resumed epoch 3
    more = TrainConfig(epochs=3, batch_size=4, lr=1e-2, steps_per_epoch=4, progress=False,
                       dtype="fp32", patience=10)
    again = fit(create_model("unet_vgg11", width=0.125), images, labels, lung_loss,
                lambda net: next(scores), more, tmp_path, resume=True, val_key="c,d")
    # On the new cases the old best scores 0.2, so epoch 3 (0.3) is the best, not epoch 1.
    assert again.best_epoch == 3 and again.best_metric == 0.3 and again.resumed_at_epoch == 3
    # Same validation set: the stored best (0.3) stands and no re-scoring happens.
    same = TrainConfig(epochs=4, batch_size=4, lr=1e-2, steps_per_epoch=4, progress=False,
                       dtype="fp32", patience=10)
    last = fit(create_model("unet_vgg11", width=0.125), images, labels, lung_loss,
               lambda net: 0.25, same, tmp_path, resume=True, val_key="c,d")
    assert last.best_epoch == 3 and last.best_metric == 0.3


def test_train_commands_end_to_end(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_cases=6)
    out = tmp_path / "models"
    common = ["--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "4",
              "--steps-per-epoch", "2", "--val-fraction", "0.34", "--no-progress"]
    assert main(["train", "lung", *common, "--width", "0.0625"]) == 0
    assert main(["train", "classifier", *common, "--width", "0.125",
                 "--lung-model", str(out)]) == 0
    cards = sorted(out.glob("*.json"))
    assert [c.name for c in cards] == ["classifier-resnet18-w0125.json",
                                       "lung-unet-vgg16-w00625.json"]
    spec = read_card(cards[0])
    assert 0.0 <= spec.slice_threshold <= 1.0 and spec.case_threshold is not None
    assert spec.training["val_cases"] == 2 and spec.training["seed"] == 0
    assert "covidct train classifier" in spec.training["command"]
    # the infection masks supervised the auxiliary heads, which are not shipped
    assert spec.training["auxiliary_infection_maps"] is True
    from safetensors import safe_open
    with safe_open(str(out / spec.weights_file), "pt") as weights:
        assert not [k for k in weights.keys() if k.startswith(("map28", "map14", "classifier."))]
    bundle = load_bundle(out)
    assert bundle.lung.spec.arch == "unet_vgg16" and bundle.classifier.spec.width == 0.125
    assert json.loads(cards[1].read_text())["task"] == "lung"
    # the input resize the weights were trained with is recorded (default: antialiased)
    assert bundle.lung.spec.input_antialias and bundle.classifier.spec.input_antialias
    # ... while training shrank its own inputs plainly (default), keeping the scanner noise
    assert bundle.lung.spec.training["train_input_antialias"] is False
    assert main(["train", "lung", *common, "--width", "0.0625", "--name", "plain",
                 "--no-input-antialias", "--train-antialias"]) == 0
    plain = read_card(out / "plain.json")
    assert plain.input_antialias is False and plain.training["train_input_antialias"] is True
    assert "--no-input-antialias --train-antialias" in plain.training["command"]
    # without --lung-model the thresholds come from the reference masks' slices, shrunk as
    # the card tells inference to (antialiased; training shrank them plainly)
    assert main(["train", "classifier", *common, "--width", "0.125", "--name", "ref"]) == 0
    ref = read_card(out / "ref.json")
    assert ref.training["calibration"]["lung_masks"] == "reference"
    assert 0.0 <= ref.slice_threshold <= 1.0 and ref.case_threshold is not None


def test_resume_keeps_the_checkpoints_validation_cases(tmp_path: Path) -> None:
    """Grown data: the first run's validation cases stay out of training; new cases train."""
    data = write_dataset(tmp_path / "data", n_cases=4)
    out = tmp_path / "models"
    common = ["--data", str(data), "--out", str(out), "--batch-size", "4", "--width", "0.0625",
              "--steps-per-epoch", "1", "--val-fraction", "0.5", "--no-progress",
              "--no-input-antialias"]
    assert main(["train", "lung", *common, "--epochs", "1"]) == 0
    first = read_card(out / "lung-unet-vgg16-w00625.json").training
    assert "--no-input-antialias" in first["command"]
    extra = write_dataset(tmp_path / "extra", n_cases=6)
    for name in ("case_004", "case_005"):
        (extra / name).rename(data / name)
    assert main(["train", "lung", *common, "--epochs", "2", "--resume"]) == 0
    second = read_card(out / "lung-unet-vgg16-w00625.json").training
    assert second["val_case_ids"] == first["val_case_ids"]
    assert second["train_cases"] == first["train_cases"] + 2
    # --resplit splits the six cases afresh, as a first run on them would
    from covidct.train.datasets import discover_cases, split_cases

    fresh = [r.case_id for r in split_cases(discover_cases(data), (0.5, 0.5), seed=0)[1]]
    assert main(["train", "lung", *common, "--epochs", "3", "--resume", "--resplit"]) == 0
    assert read_card(out / "lung-unet-vgg16-w00625.json").training["val_case_ids"] == fresh
    # a checkpoint whose validation cases are gone is refused with a clear error
    for name in first["val_case_ids"]:
        (data / name).rename(tmp_path / name)
    assert main(["train", "lung", *common, "--epochs", "4", "--resume"]) == 2


def test_validation_key_names_the_input_resize() -> None:
    from covidct.train.datasets import CaseRecord
    from covidct.train.loop import validation_ids, validation_key

    records = [CaseRecord(case_id=i, layout="synth", image=Path(i)) for i in ("b", "a")]
    assert validation_key(records, True) != validation_key(records, False)
    assert validation_ids(validation_key(records, True)) == ["a", "b"]
    assert validation_ids("a,b") == ["a", "b"]  # keys written before the resize was named


def test_train_rejects_missing_resume_checkpoint(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", n_cases=4)
    code = main(["train", "lung", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--resume", "--epochs", "1", "--no-progress", "--val-fraction", "0.5"])
    assert code == 2


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet_vgg16", "resnet50"])
def test_seed_architectures_train_and_infer(arch: str) -> None:
    """The seed's full-width models: a few optimisation steps, then inference."""
    torch.manual_seed(0)
    model = create_model(arch)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.rand(2, 1, 64, 64)
    for _ in range(2):
        out = model(x)
        loss = out.float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 224, 224))
    assert out.shape == ((1, 3, 224, 224) if arch.startswith("unet") else (1,))
    assert np.isfinite(out.numpy()).all()


def test_lung_augmentation_with_soft_labels() -> None:
    gen = torch.Generator().manual_seed(5)
    images = torch.zeros(16, 1, 32, 32)
    hard = torch.zeros(16, 32, 32, dtype=torch.long)
    hard[:, 8:24, 4:14], hard[:, 8:24, 18:28] = 1, 2
    soft = torch.nn.functional.one_hot(hard, 3).permute(0, 3, 1, 2).float()
    _, out = augment_lung_batch(images, soft, gen)
    assert out.shape == soft.shape
    assert torch.allclose(out.sum(dim=1), torch.ones(16, 32, 32), atol=1e-5)
    xs = torch.arange(32).float()
    for k in range(16):  # a flip swapped the right and left channels with the image
        right = (out[k, 1].sum(dim=0) * xs).sum() / out[k, 1].sum()
        left = (out[k, 2].sum(dim=0) * xs).sum() / out[k, 2].sum()
        assert right < left
