"""``optimized_model_filepath``: a session's optimised graph saved as an ONNX file.

The file (format: cnnrt/frontends/ir_onnx.py) is checked by ``onnx.checker`` before it is
written, opens in Netron, and loads back into cnnrt, which runs it as it ran here.
"""

from __future__ import annotations

import os

import onnx

from cnnrt.core.ir import Graph
from cnnrt.errors import CnnrtError
from cnnrt.frontends.ir_onnx import graph_to_onnx


def save_optimised(graph: Graph, model, path: str | os.PathLike) -> None:
    """Write ``graph`` (optimised from ``model``, a frontends.onnx.OnnxModel) to ``path``."""
    proto = graph_to_onnx(graph, model.opset, model.proto)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise CnnrtError(f"the optimised graph does not pass onnx.checker: {e}") from e
    try:
        onnx.save(proto, os.fspath(path))
    except (OSError, ValueError) as e:
        raise CnnrtError(f"cannot write optimized_model_filepath {os.fspath(path)!r}: {e}") from None
