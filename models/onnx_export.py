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

from cnnrt.errors import UnsupportedOpError

from .factory import build
from .registry import sample_input
from .zoo_cache import DATA_ALIGN, EXTERNAL_MIN_BYTES, cached_path, data_path, find_cached, prune_stale

INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"
SPATIAL_DIMS = {2: "height", 3: "width"}


def export_module(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    dynamic_spatial: bool = False,
) -> bytes:
    """Serialise an eval-mode ``model`` traced on ``x``; returns the ModelProto bytes.

    ``dynamic_spatial`` makes the input's height and width symbolic ("height", "width"), and the
    output's too when it is an image (a segmentation map) of the input's size."""
    if model.training:
        raise ValueError("export_module expects a model in eval mode")
    dynamic_axes = None
    if dynamic_batch or dynamic_spatial:
        ins: dict[int, str] = {0: BATCH_DIM} if dynamic_batch else {}
        outs = dict(ins)
        if dynamic_spatial:
            ins.update(SPATIAL_DIMS)
            with torch.no_grad():
                y = model(x)
            if y.dim() == 4 and y.shape[2:] == x.shape[2:]:
                outs.update(SPATIAL_DIMS)
        dynamic_axes = {INPUT_NAME: ins, OUTPUT_NAME: outs}
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


def opset_range() -> tuple[int, int]:
    """(lowest, highest) opset a zoo export may use: one torch's TorchScript exporter supports and
    cnnrt's ONNX frontend loads."""
    from torch.onnx import _constants

    from cnnrt.frontends.schema_checks import MAX_OPSET, MIN_OPSET

    lo = max(MIN_OPSET, getattr(_constants, "ONNX_MIN_OPSET", MIN_OPSET))
    hi = min(MAX_OPSET, getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", MAX_OPSET))
    return lo, hi


def _export_bytes(name: str, opset: int, batch: int | None, model: torch.nn.Module | None = None) -> bytes:
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive int or None, got {batch!r}")
    lo, hi = opset_range()
    if not lo <= opset <= hi:
        raise UnsupportedOpError(
            f"opset {opset}: zoo models export to opsets {lo} to {hi} (what both torch and cnnrt support)"
        )
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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the export private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export_cached(
    name: str,
    opset: int = 17,
    batch: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    model: torch.nn.Module | None = None,
    dynamic_spatial: bool = False,
) -> Path:
    """Path of the exported model, exporting only if the cache lacks this version.

    Files are keyed by name, opset, batch and :func:`zoo_cache.source_hash`, so editing any zoo
    module (or upgrading torch) invalidates old entries; an export deletes the stale ones that
    went unused for a day (zoo_cache.prune_stale).
    ``model``, if given, must be ``build(name)`` already built by the caller: a miss exports
    it instead of building the net again. ``dynamic_spatial`` exports symbolic height and width.
    """
    hit = find_cached(name, opset, batch, cache_dir, dynamic_spatial)  # unknown names fail before touching the disk
    if hit is not None:
        return hit
    path = cached_path(name, opset, batch, cache_dir, dynamic_spatial)
    export = _export_dynamic_spatial if dynamic_spatial else _export_bytes
    write_with_external_data(path, onnx.load_model_from_string(export(name, opset, batch, model)))
    prune_stale(path.parent)
    return path


def write_with_external_data(path: Path, proto: onnx.ModelProto) -> None:
    """Write ``proto`` to ``path`` with every initializer of at least ``EXTERNAL_MIN_BYTES`` in one
    external data file beside it (:func:`zoo_cache.data_path`), each at a multiple of
    ``DATA_ALIGN`` bytes. The protobuf left is small, so a load parses kilobytes and maps the
    weights instead of parsing and copying them (a VGG's are 550 MB). The data file is in
    place before the model that names it, so a concurrent reader never finds one without it."""
    data_file = data_path(path)
    chunks: list[bytes] = []
    offset = 0
    for t in proto.graph.initializer:
        if not t.HasField("raw_data") or len(t.raw_data) < EXTERNAL_MIN_BYTES:
            continue
        raw = t.raw_data
        pad = -offset % DATA_ALIGN
        chunks += [b"\0" * pad, raw]
        offset += pad
        del t.external_data[:]
        for key, value in (("location", data_file.name), ("offset", str(offset)), ("length", str(len(raw)))):
            e = t.external_data.add()
            e.key, e.value = key, value
        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        offset += len(raw)
    _write_atomic(data_file, b"".join(chunks))
    _write_atomic(path, proto.SerializeToString())


def _export_dynamic_spatial(name: str, opset: int, batch: int | None, model: torch.nn.Module | None) -> bytes:
    """The export of ``name`` with symbolic height and width (and batch unless ``batch`` fixes it)."""
    model = build(name) if model is None else model
    x = torch.from_numpy(sample_input(name, batch or 1))
    return export_module(model, x, opset=opset, dynamic_batch=batch is None, dynamic_spatial=True)
