"""Model definitions (ResNet classifiers, VGG U-Nets) and the weights registry.

Importing this package does not import torch: `covidct.models.registry` describes the
shipped weights without it; `create_model` (in `covidct.models.factory`) builds networks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_model"]


def __getattr__(name: str) -> Any:
    if name == "create_model":
        from covidct.models.factory import create_model

        return create_model
    raise AttributeError(f"module 'covidct.models' has no attribute {name!r}")
