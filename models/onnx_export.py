"""Export zoo nets to ONNX, and a small on-disk cache of the exported files.

The exporter is torch's TorchScript one (``dynamo=False``) with
``training=TrainingMode.PRESERVE`` on an eval-mode model: in EVAL mode it would fold
BatchNormalization into the preceding Conv, and the engine's own folding pass needs
the BN nodes to work on.  The dynamo exporter folds BN too and rewrites LRN and
GlobalAveragePool, so it is not used.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import onnx
import torch

from .factory import build
from .registry import sample_input
from .zoo_cache import cached_path, find_cached, prune_stale

INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"


def export_module(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> bytes:
    """Serialise an eval-mode ``model`` traced on ``x``; returns the ModelProto bytes."""
    if model.training:
        raise ValueError("export_module expects a model in eval mode")
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # Expected and harmless here: the legacy-exporter deprecation notice, the
        # "turn constant folding off in training mode" advice (PRESERVE is not
        # training), and tracer warnings about shapes we deliberately made constant.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                model,
                (x,),
                buf,
                dynamo=False,
                training=torch.onnx.TrainingMode.PRESERVE,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
            )
    return buf.getvalue()


def _export_bytes(name: str, opset: int, batch: int | None, model: torch.nn.Module | None = None) -> bytes:
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive int or None, got {batch!r}")
    model = build(name) if model is None else model
    x = torch.from_numpy(sample_input(name, batch or 1))
    return export_module(model, x, opset=opset, dynamic_batch=batch is None)


def export(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    opset: int = 17,
    batch: int | None = None,
) -> onnx.ModelProto:
    """Export zoo model ``name`` to ONNX and return the ModelProto.

    ``batch=None`` gives a symbolic batch dimension named "batch" on input and output;
    an int fixes it.  The graph input is "input", the output "output".  When ``path``
    is given the model is also written there.
    """
    data = _export_bytes(name, opset, batch)
    if path is not None:
        _write_atomic(Path(path), data)
    return onnx.load_model_from_string(data)


def _write_atomic(path: Path, data: bytes) -> None:
    # Write then rename, so a concurrent reader (pytest-xdist) never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_cached(
    name: str,
    opset: int = 17,
    batch: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    model: torch.nn.Module | None = None,
) -> Path:
    """Path of the exported model, exporting only if the cache lacks this version.

    Files are keyed by name, opset, batch and :func:`zoo_cache.source_hash`, so editing any zoo
    module (or upgrading torch) invalidates old entries; an export deletes the stale ones that
    went unused for a day (zoo_cache.prune_stale).
    ``model``, if given, must be ``build(name)`` already built by the caller: a miss exports
    it instead of building the net again.
    """
    hit = find_cached(name, opset, batch, cache_dir)  # unknown names fail before touching the disk
    if hit is not None:
        return hit
    path = cached_path(name, opset, batch, cache_dir)
    _write_atomic(path, _export_bytes(name, opset, batch, model))
    prune_stale(path.parent)
    return path
