"""int8 versions of the zoo's exports: static QDQ quantization through onnxruntime's own tool.

The quantized model is what a deployment built with ``onnxruntime.quantization.quantize_static``
ships: QuantizeLinear/DequantizeLinear pairs around every Conv, Gemm and Add, uint8 activations
(asymmetric, zero points calibrated) and int8 weights (symmetric, per output channel by
default). Calibration uses deterministic random inputs (``sample_input`` with fixed seeds), so
the file is reproducible and needs no download. It is cached next to the float32 export under
the same key plus a ``-int8`` tag, so tests and bench quantize once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .registry import sample_input
from .zoo_cache import SUFFIX, cached_path

QUANTIZE_MODES = ("int8",)
CALIBRATION_SEEDS = tuple(range(100, 104))  # four random batches: min/max calibration is cheap


def quantized_path(name: str, opset: int = 17, batch: int | None = None, cache_dir=None, per_channel=True) -> Path:
    """Where the int8 QDQ version of the zoo export is (or will be) cached."""
    f32 = cached_path(name, opset, batch, cache_dir)
    tag = "-int8" + ("" if per_channel else "-pt")
    return f32.with_name(f32.name[: -len(SUFFIX)] + tag + SUFFIX)


def quantize_file(src: Path, dst: Path, name: str, batch: int | None = None, per_channel: bool = True) -> Path:
    """Quantize the ONNX file ``src`` of zoo model ``name`` into ``dst`` (QDQ, u8 activations, s8 weights).

    The model is pre-processed first (onnxruntime's ``quant_pre_process``: shape inference and
    graph optimisation fold BatchNorm leftovers), as onnxruntime's documentation asks.
    """
    import onnx
    import onnxruntime.quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"input": sample_input(name, batch or 1, seed=s)} for s in CALIBRATION_SEEDS])

        def get_next(self):
            return next(self._it, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        # one self-contained copy: the pre-processing moves the model to a folder of its own,
        # without the external data file a zoo export keeps its weights in
        whole = Path(tmp) / "f32.onnx"
        onnx.save_model(onnx.load_model(str(src)), str(whole))
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(whole), str(pre), skip_symbolic_shape=True)
        out = Path(tmp) / "q.onnx"
        q.quantize_static(
            str(pre),
            str(out),
            _Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
        )
        os.replace(out, dst)
    return dst


def quantize_cached(
    name: str, opset: int = 17, batch: int | None = None, cache_dir=None, per_channel: bool = True
) -> Path:
    """Path of the int8 QDQ model of zoo model ``name``, quantizing (and exporting) only on a miss."""
    path = quantized_path(name, opset, batch, cache_dir, per_channel)
    if path.exists():
        os.utime(path)
        return path
    from .onnx_export import export_cached

    src = export_cached(name, opset, batch, cache_dir)
    return quantize_file(src, path, name, batch, per_channel)
