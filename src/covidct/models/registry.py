"""The weights registry: one source of truth for the models covidct ships and loads.

Each weights file `NAME.safetensors` has a JSON model card `NAME.json` beside it whose
fields are those of `ModelSpec` (architecture, input size, HU window, preprocessing,
calibrated thresholds, sha256 of the weights, training data and command, measured
metrics). The default bundle lives in the package (`covidct/models/weights`, read with
importlib.resources); nothing is ever downloaded. This module imports torch only when
weights are actually loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from covidct.errors import ModelError

logger = logging.getLogger(__name__)

TASKS = ("lung", "classifier")
DEFAULT_MODELS = {"lung": "lung-unet-vgg16-w0125", "classifier": "classifier-resnet18-w05"}
# The seed's architectures, kept available by name (`covidct train ... --arch`).
SEED_ARCHITECTURES = {"lung": "unet_vgg16", "classifier": "resnet50"}
CARD_SUFFIX = ".json"
WEIGHTS_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class ModelSpec:
    """What a weights file is and how to use it (the model card)."""

    name: str
    task: str  # 'lung' | 'classifier'
    arch: str  # a key of covidct.models.factory.ARCHITECTURES
    width: float = 1.0
    input_size: int = 224
    hu_window: tuple[float, float] = (-1000.0, 0.0)
    preprocessing: str = ""
    # shrink the input to input_size with an antialiasing filter (preprocess.resize_slices);
    # False for cards written before the field existed
    input_antialias: bool = False
    slice_threshold: float | None = None  # p(abnormal) above which a slice is positive
    case_threshold: float | None = None  # positive-slice ratio above which a case is positive
    weights_file: str = ""
    sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hu_window"] = list(self.hu_window)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        missing = {"name", "task", "arch"} - set(data)
        if missing:
            raise ModelError(f"Model card lacks {sorted(missing)}; got keys {sorted(data)}.")
        if data["task"] not in TASKS:
            raise ModelError(f"Model card {data['name']!r} has task {data['task']!r}; "
                             f"expected one of {TASKS}.")
        kwargs = {k: v for k, v in data.items() if k in known}
        if "hu_window" in kwargs:
            kwargs["hu_window"] = tuple(float(v) for v in kwargs["hu_window"])
        return cls(**kwargs)


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    module: Any  # torch.nn.Module, in eval mode
    sha256: str


@dataclass(frozen=True)
class ModelBundle:
    lung: LoadedModel
    classifier: LoadedModel

    def checksums(self) -> dict[str, str]:
        return {m.spec.name: m.sha256 for m in (self.lung, self.classifier)}


def default_weights_dir() -> Path:
    """The shipped weights folder inside the installed package."""
    return Path(str(resources.files("covidct.models") / "weights"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(path: str | Path) -> ModelSpec:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read model card {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"Model card {path} is not a JSON object.")
    return ModelSpec.from_dict(data)


def write_card(spec: ModelSpec, path: str | Path) -> None:
    Path(path).write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=False) + "\n")


def list_specs(models_dir: str | Path | None = None) -> list[ModelSpec]:
    """Every model card in a folder (default: the shipped weights).

    A card is NAME.json beside NAME.safetensors; other JSON files (an evaluation report
    written into the folder, say) are not cards and are skipped.
    """
    folder = Path(models_dir) if models_dir is not None else default_weights_dir()
    if not folder.is_dir():
        raise ModelError(f"Models folder {folder} does not exist; pass a folder holding "
                         "NAME.safetensors + NAME.json pairs (as written by `covidct train`).")
    return [read_card(p) for p in sorted(folder.glob("*" + CARD_SUFFIX))
            if p.with_suffix(".safetensors").is_file()]


def find_spec(task: str, models_dir: str | Path | None = None,
              name: str | None = None) -> ModelSpec:
    """The card for `task` in a folder: `name` if given, else the default name, else the
    only card of that task."""
    specs = [s for s in list_specs(models_dir) if s.task == task]
    wanted = name or DEFAULT_MODELS[task]
    for spec in specs:
        if spec.name == wanted:
            return spec
    if name is None and len(specs) == 1:
        return specs[0]
    where = models_dir or default_weights_dir()
    found = ", ".join(s.name for s in specs) or "none"
    raise ModelError(f"No {task} model {wanted!r} in {where} (found: {found}). Train one with "
                     f"`covidct train {task} --out DIR` or reinstall covidct.")


def load_model(spec: ModelSpec, models_dir: str | Path | None = None,
               device: str = "cpu") -> LoadedModel:
    """Build the network of a card and load its weights, after checking their sha256."""
    folder = Path(models_dir) if models_dir is not None else default_weights_dir()
    path = folder / (spec.weights_file or spec.name + WEIGHTS_SUFFIX)
    if not path.is_file():
        raise ModelError(f"Weights file {path} for model {spec.name!r} is missing; "
                         "reinstall covidct or retrain with `covidct train`.")
    digest = sha256_file(path)
    if spec.sha256 and digest != spec.sha256:
        raise ModelError(f"Weights file {path} is corrupt or was replaced: sha256 {digest}, "
                         f"the model card expects {spec.sha256}. Restore the file or retrain.")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from covidct.models.factory import create_model

    module = create_model(spec.arch, width=spec.width)
    try:
        state = load_file(str(path), device="cpu")
        module.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise ModelError(f"Weights {path} do not load into {spec.arch} (width {spec.width}): "
                         f"{exc}") from exc
    # channels_last: oneDNN's fast convolution layout; 1.5-1.9x faster lung-network bf16
    # inference here (benchmarks/results/lung_stage_checks.txt).
    import torch

    module.to(device, memory_format=torch.channels_last).eval()
    logger.debug("Loaded %s (%s) from %s", spec.name, spec.arch, path)
    return LoadedModel(spec=spec, module=module, sha256=digest)


def load_bundle(models_dir: str | Path | None = None, device: str = "cpu", *,
                lung: str | None = None, classifier: str | None = None) -> ModelBundle:
    """The lung model and the slice classifier (default: the shipped weights)."""
    return ModelBundle(
        lung=load_model(find_spec("lung", models_dir, lung), models_dir, device),
        classifier=load_model(find_spec("classifier", models_dir, classifier), models_dir,
                              device),
    )


def save_model(module: Any, spec: ModelSpec, out_dir: str | Path, *,
               half: bool = True) -> ModelSpec:
    """Write NAME.safetensors and its card NAME.json (with the file's sha256) into out_dir.

    half: store floating tensors as float16 (half the size; loading casts them back to
    float32, and inference runs in bf16 anyway).
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / (spec.name + WEIGHTS_SUFFIX)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to(dtype).contiguous().cpu() for k, v in module.state_dict().items()
             if v.is_floating_point()}
    state.update({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()
                  if not v.is_floating_point()})
    save_file(state, str(weights), metadata={"name": spec.name, "arch": spec.arch})
    spec = replace(spec, weights_file=weights.name, sha256=sha256_file(weights))
    write_card(spec, out / (spec.name + CARD_SUFFIX))
    return spec
