"""The numpy tier: a plain-NCHW graph's ops computed with numpy and BLAS, nothing to compile.

A session's first run on a machine whose kernel cache is cold would wait tens of seconds for
Numba; with a tiered start (runtime/tiered.py) that run goes through these functions instead
while the native kernels compile. They favour few, large numpy calls over speed: convolutions
are im2col + one matmul per group (depthwise ones a pass per tap), pools a pass per tap.
Ops the table gives a numpy evaluator (Reshape, Concat, Transpose, Mul, ...) use it
(cnnrt.core.ops.evaluate_node); any other op makes the tier decline the graph (``missing``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnrt.core.op_shapes import block_rearrangement
from cnnrt.core.ops import (
    ACTIVATIONS,
    UNARY_ACTIVATION_OPS,
    activation_params,
    attr,
    can_evaluate,
    evaluate_node,
    op_attrs,
)
from cnnrt.kernels.activation import GELU_TANH_C, GELU_TANH_K
from cnnrt.kernels.conv_spec import spec_from_node
from cnnrt.kernels.cpu.activation import ERF_P, ERF_Q

_KIND = {v: k for k, v in ACTIVATIONS.items()}


def activate(y: np.ndarray, kind: int, alpha: float, beta: float) -> np.ndarray:
    """``y`` with the fused activation ``kind`` (cnnrt.core.ops.ACTIVATIONS) applied."""
    name = _KIND[kind]
    if name == "none":
        return y
    if name == "Relu":
        return np.maximum(y, 0, out=y)
    if name == "LeakyRelu":
        return np.where(y >= 0, y, y * alpha)
    if name == "Clip":
        return np.clip(y, alpha, beta, out=y)
    if name == "Sigmoid":
        return 1 / (1 + np.exp(-y))
    if name == "HardSigmoid":
        return np.clip(alpha * y + beta, 0, 1)
    if name == "HardSwish":
        return y * np.clip(y / 6 + 0.5, 0, 1)
    if name == "Tanh":
        return np.tanh(y)
    if name == "Elu":
        return np.where(y >= 0, y, alpha * np.expm1(y))
    if name == "SiLU":
        return y / (1 + np.exp(-y))
    if name == "Gelu":  # alpha = 1: the tanh approximation, as x·sigmoid(2z)
        if alpha:
            z = GELU_TANH_K * (y + GELU_TANH_C * y * y * y)
            return y / (1 + np.exp(-2 * z))
        y64 = y.astype(np.float64)  # one rounding, at the end
        return (0.5 * y64 * (1 + erf(y64 * math.sqrt(0.5)))).astype(y.dtype)
    raise ValueError(f"unknown activation kind {kind}")


def erf(x: np.ndarray) -> np.ndarray:
    """erf with the native kernels' rational function (kernels/cpu/activation.py), in float64."""
    t = np.clip(np.asarray(x, np.float64), -4.0, 4.0)
    t2 = t * t
    return (t * np.polyval(ERF_P, t2) / np.polyval(ERF_Q, t2)).astype(x.dtype)


def _epilogue(node, y, bias, res):
    """act(y + bias + residual) with the node's fused epilogue attributes."""
    if bias is not None:
        y += bias.reshape((1, -1) + (1,) * (y.ndim - 2))
    if res is not None:
        y += res
    a = op_attrs(node)
    return activate(y, ACTIVATIONS[a["activation"]], float(a["act_alpha"]), float(a["act_beta"]))


def _taps(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """(N, C, kh, kw, OH, OW) view of padded ``xp``: for every tap, the input pixel each output
    pixel reads there. Copied as (N, C*kh*kw, OH*OW) it is the im2col matrix, rows contiguous."""
    n, c, _, _ = xp.shape
    s = xp.strides
    return as_strided(xp, (n, c, kh, kw, oh, ow), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))


def _pad(x, pt, pl, pb, pr, value=0.0):
    if not any((pt, pl, pb, pr)):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def conv(node, graph, x, w, b=None, r=None):
    s = spec_from_node(node, graph)
    xp = _pad(x, s.pt, s.pl, s.pb, s.pr)
    g = s.group
    if g == s.c and s.cg == 1 and g > 1:  # depthwise: a whole-tensor pass per tap
        mult = s.m // s.c
        xs = np.repeat(xp, mult, axis=1) if mult > 1 else xp
        y = np.zeros((s.n, s.m, s.oh, s.ow), x.dtype)
        for i in range(s.kh):
            for j in range(s.kw):
                tap = xs[:, :, i * s.dh :, j * s.dw :][
                    :, :, : (s.oh - 1) * s.sh + 1 : s.sh, : (s.ow - 1) * s.sw + 1 : s.sw
                ]
                y += w[:, 0, i, j].reshape(1, -1, 1, 1) * tap
    else:
        taps = _taps(xp, s.kh, s.kw, s.sh, s.sw, s.dh, s.dw, s.oh, s.ow)
        y = np.empty((s.n, s.m, s.oh * s.ow), x.dtype)
        for k in range(g):
            cols = taps[:, k * s.cg : (k + 1) * s.cg].reshape(s.n, s.k, s.oh * s.ow)
            np.matmul(w[k * s.mg : (k + 1) * s.mg].reshape(s.mg, s.k), cols, out=y[:, k * s.mg : (k + 1) * s.mg])
        y = y.reshape(s.n, s.m, s.oh, s.ow)
    return _epilogue(node, y, b, r)


def conv_transpose(node, graph, x, w, b=None, r=None):
    """Each input pixel scatters its kh x kw taps into the output (col2im), then the pads crop."""
    a = op_attrs(node)
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    g = int(a["group"])
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pl = a["pads"][0], a["pads"][1]
    oh, ow = graph.values[node.outputs[0]].shape[2:]
    fh = max(pt + oh, (h - 1) * sh + (kh - 1) * dh + 1)
    fw = max(pl + ow, (wd - 1) * sw + (kw - 1) * dw + 1)
    full = np.zeros((n, g * mg, fh, fw), x.dtype)
    cg = c // g
    for k in range(g):
        xk = x[:, k * cg : (k + 1) * cg].reshape(n, cg, h * wd)
        wk = w[k * cg : (k + 1) * cg].reshape(cg, mg * kh * kw)
        cols = (wk.T @ xk).reshape(n, mg, kh, kw, h, wd)
        for i in range(kh):
            for j in range(kw):
                full[
                    :,
                    k * mg : (k + 1) * mg,
                    i * dh : i * dh + (h - 1) * sh + 1 : sh,
                    j * dw : j * dw + (wd - 1) * sw + 1 : sw,
                ] += cols[:, :, i, j]
    y = np.ascontiguousarray(full[:, :, pt : pt + oh, pl : pl + ow])
    return _epilogue(node, y, b, r)


def _pool(node, graph, x, reduce: str):
    a = op_attrs(node)
    kh, kw = a["kernel"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pl, pb, pr = a["pads"]
    oh, ow = graph.values[node.outputs[0]].shape[2:]
    h, w = x.shape[2:]
    # ceil-mode windows may reach past the pads: pad far enough for every tap
    pb = max(pb, (oh - 1) * sh + (kh - 1) * dh + 1 - h - pt)
    pr = max(pr, (ow - 1) * sw + (kw - 1) * dw + 1 - w - pl)
    fill = -np.inf if reduce == "max" else 0.0
    xp = _pad(x, pt, pl, max(pb, 0), max(pr, 0), fill)
    acc = None
    count = None
    if reduce == "avg" and not a["count_include_pad"]:
        ones = _pad(np.ones((1, 1, h, w), x.dtype), pt, pl, max(pb, 0), max(pr, 0), 0.0)
        count = np.zeros((1, 1, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            sl = (slice(None), slice(None), slice(i * dh, i * dh + (oh - 1) * sh + 1, sh))
            sl += (slice(j * dw, j * dw + (ow - 1) * sw + 1, sw),)
            tap = xp[sl]
            if acc is None:
                acc = tap.copy()
            elif reduce == "max":
                np.maximum(acc, tap, out=acc)
            else:
                acc += tap
            if count is not None:
                count += ones[sl]
    if reduce == "avg":
        acc /= count if count is not None else kh * kw
    return acc


def max_pool(node, graph, x):
    return _pool(node, graph, x, "max")


def average_pool(node, graph, x):
    return _pool(node, graph, x, "avg")


def global_average_pool(node, graph, x):
    return x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(x.dtype)


def global_max_pool(node, graph, x):
    return x.max(axis=(2, 3), keepdims=True)


def channel_affine(node, graph, x, scale, shift):
    shape = (1, -1) + (1,) * (x.ndim - 2) if scale.ndim == 1 else (1,) + scale.shape
    y = x * scale.reshape(shape) + shift.reshape(shape)
    return _epilogue(node, y, None, None)


def gemm(node, graph, a_, b_, c_=None):
    at = a_.T if attr(node, "trans_a") else a_
    bt = b_.T if attr(node, "trans_b") else b_
    y = float(attr(node, "alpha")) * (at @ bt)
    if c_ is not None:
        y = y + float(attr(node, "beta")) * c_
    y = np.asarray(y, dtype=a_.dtype)
    return _epilogue(node, y, None, None)


def lrn(node, graph, x):
    """y = x / (bias + alpha / size * sum of squares over the size channels around)^beta."""
    a = op_attrs(node)
    size = int(a["size"])
    sq = np.square(x, dtype=np.float64)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size // 2
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    idx = np.arange(c)
    top, bottom = np.minimum(idx + hi + 1, c), np.maximum(idx - lo, 0)
    window = csum[:, top] - csum[:, bottom]
    return (x / (a["bias"] + a["alpha"] / size * window) ** a["beta"]).astype(x.dtype)


def batch_normalization(node, graph, x, scale, bias, mean, var):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + np.float32(attr(node, "epsilon")))
    return ((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


def matmul(node, graph, a_, b_):
    return np.matmul(a_, b_)


def prelu(node, graph, x, slope):
    return np.where(x >= 0, x, x * slope).astype(x.dtype)


def softmax(node, graph, x):
    a = op_attrs(node)
    axis = a["axis"] % x.ndim
    v = x.reshape(int(np.prod(x.shape[:axis])), -1) if a["coerce_2d"] else x
    ax = -1 if a["coerce_2d"] else axis
    shifted = v - v.max(axis=ax, keepdims=True)
    if a["log"]:
        y = shifted - np.log(np.exp(shifted).sum(axis=ax, keepdims=True))
    else:
        e = np.exp(shifted)
        y = e / e.sum(axis=ax, keepdims=True)
    return y.reshape(x.shape).astype(x.dtype)


def squeeze_excite(node, graph, x, w1, b1, w2, b2):
    a = op_attrs(node)
    pooled = x.mean(axis=(2, 3), dtype=np.float64)  # (N, C)
    hidden = activate(
        pooled @ w1.T.astype(np.float64) + b1, ACTIVATIONS[a["squeeze"]], a["squeeze_alpha"], a["squeeze_beta"]
    )
    gate = activate(hidden @ w2.T.astype(np.float64) + b2, ACTIVATIONS[a["gate"]], a["gate_alpha"], a["gate_beta"])
    return x * gate.astype(x.dtype)[:, :, None, None]


def layer_normalization(node, graph, x, scale, bias=None):
    a = op_attrs(node)
    axes = tuple(range(int(a["axis"]) % x.ndim, x.ndim))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    y = (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + a["epsilon"]) * scale
    return (y if bias is None else y + bias).astype(x.dtype)


def group_normalization(node, graph, x, scale, bias):
    a = op_attrs(node)
    n, c = x.shape[:2]
    g = x.reshape(n, int(a["num_groups"]), -1).astype(np.float64)
    mean = g.mean(axis=2, keepdims=True)
    y = ((g - mean) / np.sqrt(((g - mean) ** 2).mean(axis=2, keepdims=True) + a["epsilon"])).reshape(x.shape)
    per_c = (1, c) + (1,) * (x.ndim - 2)
    y = (y * scale.reshape(per_c) + bias.reshape(per_c)).astype(x.dtype)
    return _epilogue(node, y, None, None)


def _block_rearrange(node, graph, x):
    a = op_attrs(node)
    view, perm = block_rearrangement(node.op, a["blocksize"], a["mode"], x.shape)
    return np.ascontiguousarray(x.reshape(view).transpose(perm)).reshape(graph.values[node.outputs[0]].shape)


def resize(node, graph, x):
    """One pass per resized axis with the native kernel's tables (kernels/cpu/resize.py): the
    same source indices and weights, applied with numpy takes."""
    from cnnrt.kernels.cpu.resize import axis_tables, unchanged_axis

    a = op_attrs(node)
    oshape = graph.values[node.outputs[0]].shape
    y = x
    for axis in range(x.ndim):
        if unchanged_axis(x.shape[axis], oshape[axis], a["scales"][axis]):
            continue
        tab = axis_tables(x.shape[axis], oshape[axis], a["scales"][axis], a)
        bcast = (1,) * axis + (-1,) + (1,) * (x.ndim - axis - 1)
        if a["mode"] == "nearest":
            y = np.take(y, tab[0], axis=axis)
        elif a["mode"] == "linear":
            i0, i1, w0, w1 = tab
            y = np.take(y, i0, axis=axis) * w0.reshape(bcast) + np.take(y, i1, axis=axis) * w1.reshape(bcast)
        else:
            idx, w = tab
            y = sum(np.take(y, idx[:, t], axis=axis) * w[:, t].reshape(bcast) for t in range(4))
    return np.ascontiguousarray(y, dtype=x.dtype)


def _activation_op(op: str):
    def run(node, graph, x):
        return activate(x.copy(), ACTIVATIONS[op], *activation_params(op, op_attrs(node)))

    return run


OPS: dict[str, Callable] = {
    **{op: _activation_op(op) for op in UNARY_ACTIVATION_OPS},
    "BatchNormalization": batch_normalization,
    "MatMul": matmul,
    "PRelu": prelu,
    "Softmax": softmax,
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "GlobalMaxPool": global_max_pool,
    "ChannelAffine": channel_affine,
    "Gemm": gemm,
    "LRN": lrn,
    "Erf": lambda node, graph, x: erf(x),
    "SqueezeExcite": squeeze_excite,
    "LayerNormalization": layer_normalization,
    "GroupNormalization": group_normalization,
    "DepthToSpace": _block_rearrange,
    "SpaceToDepth": _block_rearrange,
    "Resize": resize,
}


def missing(graph) -> list[str]:
    """The graph's nodes this tier cannot compute (names with ops); empty when it runs all."""
    return [f"{n.name} ({n.op})" for n in graph.nodes if not _computes(n)]


def _computes(node) -> bool:
    if node.op in ("MaxPool", "LayerNormalization"):  # their optional extra outputs are not computed here
        return not any(node.outputs[1:])
    return node.op in OPS or can_evaluate(node.op)


def run_node(node, graph, inputs: list) -> list[np.ndarray]:
    """The outputs of ``node`` for these input arrays (None for omitted optional inputs)."""
    fn = OPS.get(node.op)
    if fn is not None:
        while inputs and inputs[-1] is None:
            inputs = inputs[:-1]
        return [fn(node, graph, *inputs)]
    outs = [graph.values[o] for o in node.outputs]
    return evaluate_node(node, inputs, outs)
