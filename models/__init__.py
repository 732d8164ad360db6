"""cnnrt's model zoo: the classic CNNs defined in PyTorch, exported to ONNX.

Importing this package is cheap: torch and onnx are imported only when a net is built
or exported.  Weights are random but deterministic (seeded from the model name), with
calibrated, perturbed BatchNorm statistics, so outputs are reproducible and well scaled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .registry import ZOO, UnknownModelError, input_shape, sample_input

if TYPE_CHECKING:
    import onnx
    import torch

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


def build(name: str) -> torch.nn.Module:
    """The PyTorch module for ``name``: eval mode, deterministic weights."""
    from .factory import build as _build

    return _build(name)


def export(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    opset: int = 17,
    batch: int | None = None,
) -> onnx.ModelProto:
    """Export ``name`` to ONNX (input "input", output "output"); also write to ``path``.

    ``batch=None`` makes the batch dimension symbolic ("batch"); an int fixes it.
    """
    from .onnx_export import export as _export

    return _export(name, path, opset=opset, batch=batch)


def export_cached(
    name: str,
    opset: int = 17,
    batch: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Path to an exported copy of ``name``, re-exported only when the zoo source changed.

    ``cache_dir`` defaults to ``$CNNRT_ZOO_CACHE`` or ``~/.cache/cnnrt/zoo``.
    """
    from .onnx_export import export_cached as _export_cached

    return _export_cached(name, opset=opset, batch=batch, cache_dir=cache_dir)
