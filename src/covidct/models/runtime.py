"""Where and in which precision networks run: bf16 autocast on CPUs with native bf16.

On CPUs with AVX512-BF16 / AMX, oneDNN runs bf16 convolutions several times faster
than fp32 (see benchmarks/model_speed.py); elsewhere fp32 is used.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch

from covidct.errors import ConfigError

DTYPES = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when oneDNN reports native bf16 support on this CPU (asked once per process:
    oneDNN's probe takes about 0.2 s)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Device {device!r} was asked for but CUDA is not available here; "
                          "use --device cpu.")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"Unknown device {device!r}; expected 'cpu' or 'cuda[:N]'.")
    return torch.device(device)


def use_bf16(dtype: str | None, device: torch.device | str = "cpu") -> bool:
    """Resolve 'auto' | 'fp32' | 'bf16' (None = 'auto') into whether to autocast to bf16."""
    dtype = dtype or "auto"
    if dtype not in DTYPES:
        raise ConfigError(f"Unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}.")
    if dtype != "auto":
        return dtype == "bf16"
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


@contextlib.contextmanager
def autocast(bf16: bool, device: torch.device | str = "cpu") -> Iterator[None]:
    """bf16 autocast on the device when asked, else nothing."""
    if bf16:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            yield
    else:
        yield


def predict_in_batches(model: torch.nn.Module, images: torch.Tensor,
                       reduce: Callable[[torch.Tensor], torch.Tensor], *,
                       batch_size: int = 32, bf16: bool = False) -> torch.Tensor:
    """`reduce(model(batch))` over `images` in batches, without gradients, concatenated on CPU.

    The model's output is cast to float32 before `reduce` (e.g. a sigmoid or an arg-max).
    """
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            with autocast(bf16, device):
                output = model(images[start:start + batch_size].float().to(device))
            out.append(reduce(output.float()).cpu())
    return torch.cat(out)


def input_antialias(model: object) -> bool:
    """Whether `model` (a LoadedModel; a bare nn.Module has no card) expects inputs shrunk
    with an antialiasing filter: its card's `input_antialias`."""
    return bool(getattr(getattr(model, "spec", None), "input_antialias", False))
