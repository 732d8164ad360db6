"""A small residual network for the inspector's tests (imported as a plain module: tests/cli is on sys.path).

Small enough to build in a second, rich enough for every picture: BatchNorm folded into convs
and activations fused (nodes with several ONNX origins), a skip edge around two convs, 16
channels so the CPU runs it in the channel-blocked layout (reorders, blocked shapes), a Flatten
that declines the blocked layout (a pass-log decline with its reason) and a Gemm head.
"""

from __future__ import annotations

import numpy as np
import onnx
from helpers import make_model
from onnx import helper

from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES

# small_resnet's stem output in the blocked layout: blocks of this host's vector width
STEM_OUT = f"stem.out/nchw{VECTOR_BYTES // 4}c"


def small_resnet() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    c = 16
    inits: dict[str, np.ndarray] = {}

    def conv_bn(name: str, x: str, y: str, cin: int) -> list:
        inits[f"{name}.w"] = (rng.standard_normal((c, cin, 3, 3)) * 0.2).astype(np.float32)
        for k, v in (("scale", 1 + 0.1 * rng.standard_normal(c)), ("bias", 0.1 * rng.standard_normal(c))):
            inits[f"{name}.bn.{k}"] = v.astype(np.float32)
        inits[f"{name}.bn.mean"] = (0.1 * rng.standard_normal(c)).astype(np.float32)
        inits[f"{name}.bn.var"] = (1 + 0.1 * rng.random(c)).astype(np.float32)
        bn_in = [f"{name}.bn.{k}" for k in ("scale", "bias", "mean", "var")]
        return [
            helper.make_node("Conv", [x, f"{name}.w"], [f"{name}.c"], name=f"{name}/Conv", pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", [f"{name}.c", *bn_in], [y], name=f"{name}/BatchNormalization"),
        ]

    nodes = conv_bn("stem", "x", "stem.bn", 3)
    nodes.append(helper.make_node("Relu", ["stem.bn"], ["stem.out"], name="stem/Relu"))
    nodes += conv_bn("block.a", "stem.out", "block.a.bn", c)
    nodes.append(helper.make_node("Relu", ["block.a.bn"], ["block.a.out"], name="block.a/Relu"))
    nodes += conv_bn("block.b", "block.a.out", "block.b.bn", c)
    nodes.append(helper.make_node("Add", ["block.b.bn", "stem.out"], ["block.sum"], name="block/Add"))
    nodes.append(helper.make_node("Relu", ["block.sum"], ["block.out"], name="block/Relu"))
    nodes.append(
        helper.make_node("MaxPool", ["block.out"], ["pool"], name="pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    )
    nodes.append(helper.make_node("GlobalAveragePool", ["pool"], ["gap"], name="head/GlobalAveragePool"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="head/Flatten"))
    inits["fc.w"] = (rng.standard_normal((10, c)) * 0.2).astype(np.float32)
    inits["fc.b"] = (0.1 * rng.standard_normal(10)).astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="head/Gemm", transB=1))
    return make_model(nodes, [("x", ["N", 3, 16, 16], np.float32)], [("logits", ["N", 10], np.float32)], inits)
