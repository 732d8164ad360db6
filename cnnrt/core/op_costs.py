"""Arithmetic cost of IR ops: multiply-accumulates (MACs) and accumulation lengths.

MACs count the multiply-adds of the operation as written (not of a fast algorithm such as
Winograd), so GFLOP/s = 2 * MACs / time is comparable across kernels:

====================  ======================================================================
Conv                  N * M * OH * OW * (C / group) * kh * kw   (= out elements * prod(W[1:]))
ConvTranspose         N * C * H * W * (M / group) * kh * kw     (= in elements * prod(W[1:]))
Gemm                  M * N * K
MatMul                prod(out shape) * K
BatchNormalization,   one per output element (a scale and shift)
ChannelAffine
AveragePool           out elements * kh * kw (additions, counted as MACs)
GlobalAveragePool     input elements
SqueezeExcite         2 * input elements (pool, scale) + 2 * N * R * C (the two matvecs)
LRN                   out elements * size (the windowed sum of squares)
GroupNormalization    one per output element (the scale and shift after the statistics)
LayerNormalization    one per output element (a scale and shift)
everything else       0 (elementwise ops, comparisons, data movement)
====================  ======================================================================

Bias, residual and fused activations are elementwise epilogues and add nothing. A
channel-blocked op costs what its NCHW form does: its shapes are read as those of the
logical values (cnnrt.tools.costs), and a conv's zero weights for padding lanes are not
counted (the input's channels bound its C / group).

The accumulation length is the K of the longest sum that forms one output element, which
is what float32 rounding error grows with (``cnnrt compare`` derives tolerances from it).

Each function takes the node's attributes with defaults filled (``cnnrt.core.ops.op_attrs``),
the input shapes (None for an omitted optional input) and the output shapes. Every op of the
table names its :class:`Numerics` (no default): a new op cannot silently count no MACs or get
a tolerance that ignores its sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Attrs = Mapping[str, Any]
Shapes = Sequence[tuple[int, ...] | None]


def _prod(shape) -> int:
    return int(math.prod(int(d) for d in shape))


def _present(ins: Shapes, start: int) -> int:
    """How many of the optional inputs from ``start`` on are given (bias, residual)."""
    return sum(1 for s in ins[start:] if s is not None)


# ---------------------------------------------------------------------------- MACs


def _conv_k(ins: Shapes) -> int:
    """Multiply-adds per conv output element: W's input channels (C / group) times its taps,
    or the input's channels when fewer (a blocked conv's weights have zero columns for the
    padding lanes of its input)."""
    return min(ins[1][1], ins[0][1]) * _prod(ins[1][2:])


def conv_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(outs[0]) * _conv_k(ins)


def conv_transpose_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(ins[0]) * _prod(ins[1][1:])


def gemm_mnk(a: Attrs, ins: Shapes) -> tuple[int, int, int]:
    sa, sb = ins[0], ins[1]
    m, k = (sa[1], sa[0]) if a["trans_a"] else (sa[0], sa[1])
    n = sb[0] if a["trans_b"] else sb[1]
    return m, n, k


def gemm_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    m, n, k = gemm_mnk(a, ins)
    return m * n * k


def matmul_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(outs[0]) * ins[0][-1]


def per_output_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(outs[0])


def average_pool_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(outs[0]) * _prod(a["kernel"])


def global_average_pool_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(ins[0])


def lrn_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(outs[0]) * int(a["size"])


# ---------------------------------------------------------------------------- accumulation


def conv_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _conv_k(ins) + _present(ins, 2)  # + bias, + residual


def conv_transpose_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    w = ins[1]
    taps = _prod(math.ceil(kd / max(int(s), 1)) for kd, s in zip(w[2:], a["strides"]))
    return w[0] // max(int(a["group"]), 1) * taps + _present(ins, 2)


def gemm_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return gemm_mnk(a, ins)[2] + _present(ins, 2)


def matmul_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return ins[0][-1]


def window_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(a["kernel"])


def global_pool_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(ins[0][2:4])  # H, W (not a blocked input's lanes)


def lrn_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return int(a["size"])


def softmax_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    shape = ins[0]
    axis = int(a["axis"])
    if a["coerce_2d"]:
        return _prod(shape[axis % len(shape) :])
    return shape[axis]


def reduce_mean_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    shape = ins[0]
    return _prod(shape[i] for i in (a["axes"] or range(len(shape))))


def group_norm_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(ins[0][1:]) // int(a["num_groups"])  # the mean and variance of one group


def layer_norm_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return _prod(ins[0][int(a["axis"]) :])  # the mean and variance sum every normalised element


def inputs_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    """Sum/Max/Min: one term per input."""
    return _present(ins, 0)


def affine_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return 2  # a scale and a shift


def squeeze_excite_macs(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    """The pooled sum, the two matvecs per image and the scaling multiply."""
    return 2 * _prod(ins[0]) + 2 * ins[0][0] * _prod(ins[1])


def squeeze_excite_accumulation(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    """The chain behind one gate: H*W pixels pooled, C then R terms, two biases."""
    return _prod(ins[0][2:4]) + ins[1][1] + ins[1][0] + 2


def zero(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return 0


def one(a: Attrs, ins: Shapes, outs: Shapes) -> int:
    return 1


@dataclass(frozen=True)
class Numerics:
    """An op's MACs, its accumulation length, and whether it evaluates a transcendental
    function (exp, tanh, pow, interpolation weights: ``cnnrt compare`` widens its tolerance)."""

    macs: Callable[[Attrs, Shapes, Shapes], int]
    accumulation: Callable[[Attrs, Shapes, Shapes], int]
    transcendental: bool = False


NO_SUMS = Numerics(zero, one)  # elementwise arithmetic, comparisons, data movement
TRANSCENDENTAL = Numerics(zero, one, True)
CONV = Numerics(conv_macs, conv_accumulation)
CONV_TRANSPOSE = Numerics(conv_transpose_macs, conv_transpose_accumulation)
GEMM = Numerics(gemm_macs, gemm_accumulation)
MATMUL = Numerics(matmul_macs, matmul_accumulation)
AFFINE = Numerics(per_output_macs, affine_accumulation)
AVERAGE_POOL = Numerics(average_pool_macs, window_accumulation)
GLOBAL_AVERAGE_POOL = Numerics(global_average_pool_macs, global_pool_accumulation)
LRN = Numerics(lrn_macs, lrn_accumulation, True)
SOFTMAX = Numerics(zero, softmax_accumulation, True)
REDUCE_MEAN = Numerics(zero, reduce_mean_accumulation)
GROUP_NORM = Numerics(per_output_macs, group_norm_accumulation)
VARIADIC = Numerics(zero, inputs_accumulation)
REDUCE_L2 = Numerics(zero, reduce_mean_accumulation, True)
LAYER_NORM = Numerics(per_output_macs, layer_norm_accumulation, True)
SQUEEZE_EXCITE = Numerics(squeeze_excite_macs, squeeze_excite_accumulation, True)
