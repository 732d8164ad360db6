"""Which CUDA algorithm computes a convolution: the one place the choice is made.

``implicit_gemm`` is the general case; ``pointwise`` drops the im2col index arithmetic for
1x1 kernels with stride 1 and no padding (X[n] already is the [C, H*W] matrix); ``direct``
(one thread per output) serves convs with one input channel per group (depthwise), where a
GEMM has K = kh*kw only. passes/select_algorithm.py writes the choice on every Conv node as
its ``algorithm`` attribute (one given already is checked instead); kernels/cuda/conv.py
reads it.
"""

from __future__ import annotations

from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.conv_spec import ConvSpec

ALGORITHMS = {"Conv": ("implicit_gemm", "pointwise", "direct")}


def choose(spec: ConvSpec, op: str = "Conv", blocked_input: bool = False) -> tuple[str, str]:
    """(algorithm, reason) for a layer from its shape alone (CUDA runs no blocked layout:
    ``op`` and ``blocked_input`` keep the backends' signatures alike)."""
    if spec.cg == 1:
        return "direct", "one input channel per group: a GEMM would have K = kh*kw"
    if spec.pointwise:
        return "pointwise", "1x1, stride 1, no padding: the input is the GEMM operand"
    return "implicit_gemm", "the general case"


def check(spec: ConvSpec, algorithm: str, node: str = "", op: str = "Conv", blocked_input: bool = False) -> None:
    """Raise UnsupportedOpError naming ``node`` when ``algorithm`` cannot compute ``spec``."""
    where = f"node {node!r} ({op}): " if node else ""
    if algorithm not in ALGORITHMS["Conv"]:
        raise UnsupportedOpError(f"{where}unknown conv algorithm {algorithm!r}; CUDA has {list(ALGORITHMS['Conv'])}")
    if algorithm == "pointwise" and not spec.pointwise:
        raise UnsupportedOpError(f"{where}the pointwise path needs a 1x1 kernel, stride 1, no padding")
