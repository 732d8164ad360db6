"""cnnrt's model zoo: the classic CNNs defined in PyTorch, exported to ONNX.

Importing this package is cheap: torch and onnx are imported only when a net is built
or exported.  Weights are random but deterministic (seeded from the model name), with
calibrated, perturbed BatchNorm statistics, so outputs are reproducible and well scaled.
"""

from __future__ import annotations

from .registry import ZOO, UnknownModelError, input_shape, sample_input

__all__ = [
    "UnknownModelError",
    "build",
    "export",
    "export_cached",
    "input_shape",
    "names",
    "sample_input",
]


def names() -> list[str]:
    """Sorted list of the zoo's model names."""
    return sorted(ZOO)


# build and the exports live in modules that import torch (and onnx): loaded on first use, so that
# `names()` and the shapes cost no torch import.
_LAZY = {"build": ".factory", "export": ".onnx_export", "export_cached": ".onnx_export"}


def __getattr__(attr: str):
    if attr in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[attr], __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
