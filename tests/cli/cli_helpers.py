"""Model builders shared by the CLI tests (imported as a plain module: tests/cli is on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from helpers import make_model
from onnx import helper, numpy_helper


def tiny_model(scale_w2: float = 1.0) -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> Add(residual) -> Sigmoid on a symbolic batch, 3x8x8 input."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    w2 = (rng.standard_normal((4, 4, 3, 3)) * 0.3 * scale_w2).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Sigmoid", ["a"], ["y"], name="sig"),
    ]
    return make_model(
        nodes, [("x", ["N", 3, 8, 8], np.float32)], [("y", ["N", 4, 8, 8], np.float32)], {"W": w, "B": b, "W2": w2}
    )


def perturb_initializer(src: Path, dst: Path, name: str, factor: float = 1.05) -> None:
    """Copy ``src`` to ``dst`` with initializer ``name`` multiplied by ``factor``."""
    m = onnx.load(str(src))
    for i, t in enumerate(m.graph.initializer):
        if t.name == name:
            m.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), name)
            )
            break
    else:
        raise KeyError(name)
    onnx.save(m, dst)
