"""Normalisation: BatchNormalization, ChannelAffine (BN after folding, + activation), LRN,
GroupNormalization (and InstanceNormalization, imported as one group per channel).

BatchNormalization and ChannelAffine share one kernel, ``y = act(x * s + t)`` with ``s``/``t``
per channel ``(C, 1)`` or per activation ``(C, S)`` (BN's spatial=0 form, parameters shaped
like ``x.shape[1:]``). For BN, ``s = scale / sqrt(var + eps)`` and ``t = B - mean * s`` are
computed once at build time when the parameters are constants (in float64, then rounded),
else at every run into preallocated buffers (in the input dtype, as onnxruntime does).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.core.ops import ACTIVATIONS, op_attrs
from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import block_size, readonly
from cnnrt.kernels.cpu.native_call import native_call
from cnnrt.kernels.cpu.vector_ir import LRN_REACH, lrn_window_sums
from cnnrt.kernels.registry import register, run_of


@pjit
def _affine(x, s, t, out, kind, alpha, beta):
    """out[r, i] = act(x[r, i] * s[c, i or 0] + t[c, i or 0]) over rows r = n*C + c, in parallel.

    Rows indexed in place (unsigned offsets) and Relu (DenseNet's pre-activation) inlined: a row
    slice and an act_inplace call per row cost as much as a 7x7 row's work. The rarer
    activations still go through act_inplace, once per row (onnxruntime runs BatchNormalization
    and Relu as two passes)."""
    r_count, s_count = x.shape
    c_count = s.shape[0]
    per_elem = s.shape[1] > 1
    for r in prange(r_count):
        c = r % c_count
        if per_elem:
            for i in range(s_count):
                ui = np.uint64(i)
                out[r, ui] = x[r, ui] * s[c, ui] + t[c, ui]
        elif kind == 1:
            sc = s[c, 0]
            sh = t[c, 0]
            for i in range(s_count):
                ui = np.uint64(i)
                v = x[r, ui] * sc + sh
                out[r, ui] = v if not v < 0 else 0.0  # not max(v, 0): NaN stays NaN, as in act_inplace
            continue
        else:
            sc = s[c, 0]
            sh = t[c, 0]
            for i in range(s_count):
                ui = np.uint64(i)
                out[r, ui] = x[r, ui] * sc + sh
        if kind != 0:  # the rarer activations: act_inplace's vectorised row loops, a slice per row
            act_inplace(out[r], kind, alpha, beta)


@pjit
def _lrn(x, out, lo, hi, alpha_over_size, beta, bias):
    """ONNX LRN: sum of squares over channels [c - lo, c + hi], y = x / (bias + a/size * sum)^beta.

    Per (n, c) row: squares summed into the output row (float32, vectorised), then the power.
    beta = 0.75 (AlexNet, GoogLeNet) takes sqrt(b) * sqrt(sqrt(b)) in the data's precision
    instead of pow (in float64), which does not vectorise.
    """
    n_count, c_count, s_count = x.shape
    for p in prange(n_count * c_count):
        n = p // c_count
        c = p - n * c_count
        orow = out[n, c]
        orow[:] = 0
        for cc in range(max(0, c - lo), min(c_count - 1, c + hi) + 1):
            xr = x[n, cc]
            for i in range(s_count):
                orow[i] += xr[i] * xr[i]
        _lrn_scale(x[n, c], orow, alpha_over_size, beta, bias)


@njit(inline="always")
def _lrn_scale(xc, orow, alpha_over_size, beta, bias):
    """orow (window sums of squares) -> xc / (bias + alpha_over_size * orow)^beta, in place."""
    if beta == 0.75:
        for i in range(orow.size):
            # base in float64, rounded once; the roots and the division in the data's
            # float32 (float64 sqrt and division run at 1/4 the rate); relative error +5u over
            # the sum's, see the test
            base = xc.dtype.type(bias + alpha_over_size * orow[i])
            r = np.sqrt(base)
            orow[i] = xc[i] / (r * np.sqrt(r))
    else:
        for i in range(orow.size):
            orow[i] = xc[i] / math.pow(bias + alpha_over_size * orow[i], beta)


@pjit
def _lrn_blocked(x, out, cb_count, s_count, c_count, lo, hi, alpha_over_size, beta, bias):
    """:func:`_lrn` on blocked float32 x, out (flat (N, CB, S, B), B the vector width) of
    ``c_count`` real channels: per block, its window sums across its lanes and into the
    neighbouring blocks (vector_ir.lrn_window_sums: :func:`_lrn`'s sums, bit for bit), then
    :func:`_lrn_scale` over the block as one flat row. Lanes past ``c_count`` are written 0
    (bias 0 would make them 0/0)."""
    b = _LANES
    per_block = s_count * b
    for q in prange(out.size // per_block):
        cb = q % cb_count
        base = q * per_block
        prev = base - per_block if cb > 0 else -1
        nxt = base + per_block if cb + 1 < cb_count else -1
        lrn_window_sums(x, base, prev, nxt, s_count, out, base, lo, hi)
        _lrn_scale(x[base : base + per_block], out[base : base + per_block], alpha_over_size, beta, bias)
        live = c_count - cb * b
        if live < b:
            for i in range(s_count):
                out[base + i * b + live : base + (i + 1) * b] = 0


_LANES = block_size(np.float32)  # BlockedLRN's blocks: one float32 vector (lrn_window_sums)


_affine_serial = serial_twin(_affine)


def _affine_for(rows):
    """_affine, or its serial twin for small tensors (no parallel region to wake)."""
    return pick(_affine, _affine_serial, rows[0] * rows[1], num_threads())


def _as_rows(shape):
    """(N*C, S) view shape of an (N, C, ...) tensor: one row per (n, c)."""
    return shape[0] * shape[1], int(np.prod(shape[2:], dtype=np.int64))


def _param_shape(pshape, xshape):
    """(C, 1) for per-channel parameters, (C, S) for per-activation ones."""
    c = xshape[1]
    if tuple(pshape) == (c,):
        return (c, 1)
    if tuple(pshape) == tuple(xshape[1:]):
        return (c, int(np.prod(xshape[2:], dtype=np.int64)))
    raise ValueError(f"parameter shape {list(pshape)} fits neither [{c}] nor {list(xshape[1:])}")


@register("BatchNormalization")
def build_batch_norm(node, graph):
    xshape = graph.values[node.inputs[0]].shape
    if len(xshape) < 2:
        raise ValueError(f"BatchNormalization needs rank >= 2, got {list(xshape)}")
    dt = np.dtype(graph.values[node.inputs[0]].dtype)
    eps = float(node.attrs.get("epsilon", 1e-5))
    rows = _as_rows(xshape)
    pshapes = [_param_shape(graph.values[i].shape, xshape) for i in node.inputs[1:5]]
    # scale/B and mean/var may differ in form (one per channel, one per activation)
    pshape = max(pshapes, key=lambda s: s[1])
    consts = [graph.constants.get(i) for i in node.inputs[1:5]]
    no_act = dt.type(0)  # alpha/beta of the 'none' activation (unused)
    if all(cst is not None for cst in consts):
        sc, b, mean, var = (np.asarray(cst, np.float64).reshape(ps) for cst, ps in zip(consts, pshapes))
        s64 = sc / np.sqrt(var + eps)
        s = readonly(np.ascontiguousarray(np.broadcast_to(s64, pshape), dt))
        t = readonly(np.ascontiguousarray(np.broadcast_to(b - mean * s64, pshape), dt))

        def run(ins, outs):
            _affine_for(rows)(ins[0].reshape(rows), s, t, outs[0].reshape(rows), 0, no_act, no_act)

        return run

    s_buf, t_buf = np.empty(pshape, dt), np.empty(pshape, dt)
    s_ro, t_ro = readonly(s_buf), readonly(t_buf)  # what the kernel sees: one signature
    eps_t = dt.type(eps)

    def run_dynamic(ins, outs):
        sc, b, mean, var = (p.reshape(ps) for p, ps in zip(ins[1:5], pshapes))
        np.copyto(s_buf, sc / np.sqrt(var + eps_t))
        np.copyto(t_buf, b - mean * s_buf)
        _affine_for(rows)(ins[0].reshape(rows), s_ro, t_ro, outs[0].reshape(rows), 0, no_act, no_act)

    return run_dynamic


@register("ChannelAffine")
def build_channel_affine(node, graph):
    xshape = graph.values[node.inputs[0]].shape
    dt = np.dtype(graph.values[node.inputs[0]].dtype)
    rows = _as_rows(xshape)
    pshape = _param_shape(graph.values[node.inputs[1]].shape, xshape)
    if _param_shape(graph.values[node.inputs[2]].shape, xshape) != pshape:
        raise ValueError("ChannelAffine scale and shift must have the same shape")
    kind = ACTIVATIONS[node.attrs.get("activation", "none")]
    alpha, beta = dt.type(node.attrs.get("act_alpha", 0.0)), dt.type(node.attrs.get("act_beta", 0.0))
    fixed = [graph.constants.get(i) for i in node.inputs[1:3]]
    fixed = [None if f is None else readonly(np.ascontiguousarray(f, dt).reshape(pshape)) for f in fixed]

    def run(ins, outs):
        s = fixed[0] if fixed[0] is not None else readonly(ins[1].reshape(pshape))
        t = fixed[1] if fixed[1] is not None else readonly(ins[2].reshape(pshape))
        _affine_for(rows)(ins[0].reshape(rows), s, t, outs[0].reshape(rows), kind, alpha, beta)

    return run


@register("BlockedLRN")
def build_blocked_lrn(node, graph):
    """LRN on a blocked float32 X (N, CB, H, W, B), B the vector width, of the logical value's
    C channels; a window of at most vector_ir.LRN_REACH channels either side."""
    xv = graph.values[node.inputs[0]]
    lo, hi, a, beta, bias = _lrn_params(node)
    if len(xv.shape) != 5 or xv.shape[4] != _LANES or xv.dtype != "float32" or max(lo, hi) > LRN_REACH:
        raise ValueError(
            f"BlockedLRN takes float32 (N, C/{_LANES}, H, W, {_LANES}) with size <= {2 * LRN_REACH + 1}: "
            f"{xv.dtype} {list(xv.shape)}, size {node.attrs['size']}"
        )
    n, cb, h, w, _ = xv.shape
    logical = graph.values.get(xv.logical)
    c = logical.shape[1] if logical is not None else cb * _LANES

    def bind(ins, outs):
        args = (ins[0].reshape(-1), outs[0].reshape(-1), cb, h * w, c, lo, hi, a, beta, bias)
        return native_call(_lrn_blocked, _lrn_blocked, 0, lambda nthreads: args)

    return run_of(bind)


@register("LRN")
def build_lrn(node, graph):
    xshape = graph.values[node.inputs[0]].shape
    if len(xshape) < 3:
        raise ValueError(f"LRN needs rank >= 3, got {list(xshape)}")
    rows = xshape[0], xshape[1], int(np.prod(xshape[2:], dtype=np.int64))
    params = _lrn_params(node)

    def run(ins, outs):
        _lrn(ins[0].reshape(rows), outs[0].reshape(rows), *params)

    return run


def _lrn_params(node) -> tuple[int, int, float, float, float]:
    """(channels below, channels above, alpha/size, beta, bias) of an LRN node's window."""
    size = int(node.attrs["size"])
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2  # floor and ceil of (size-1)/2
    a = float(node.attrs.get("alpha", 1e-4)) / size
    return lo, hi, a, float(node.attrs.get("beta", 0.75)), float(node.attrs.get("bias", 1.0))


@njit(inline="always")
def row_mean_rstd(x, r, eps):
    """Mean and 1/std of row ``r`` of a 2-D ``x``: two passes with float64 sums, so a large
    mean does not cancel the variance (a one-pass E[x²] - E[x]² would)."""
    n = x.shape[1]
    total = 0.0
    for i in range(n):
        total += x[r, i]
    mean = total / n
    sq = 0.0
    for i in range(n):
        d = x[r, i] - mean
        sq += d * d
    return mean, 1.0 / math.sqrt(sq / n + eps)


@pjit
def _group_norm(x, scale, bias, out, groups, eps, kind, alpha, beta):
    """Rows r = n*groups + g of (N*groups, S): mean and variance of the row (two passes in
    float64, so a large mean does not cancel the variance), then per channel of the group
    ``y = act(x * a + b)`` with ``a = scale * rstd``, ``b = bias - mean * a``."""
    rows, size = x.shape
    per_group = scale.shape[0] // groups
    inner = size // per_group
    for r in prange(rows):
        g = r % groups
        mean, rstd = row_mean_rstd(x, r, eps)
        for k in range(per_group):
            ch = g * per_group + k
            a = scale[ch] * rstd
            b = bias[ch] - mean * a
            for i in range(k * inner, (k + 1) * inner):
                out[r, i] = x[r, i] * a + b
        if kind != 0:
            act_inplace(out[r], kind, alpha, beta)


_group_norm_serial = serial_twin(_group_norm)


@register("GroupNormalization")
def build_group_norm(node, graph):
    xshape = graph.values[node.inputs[0]].shape
    groups = int(node.attrs["num_groups"])
    rows = (xshape[0] * groups, int(np.prod(xshape[1:], dtype=np.int64)) // groups)
    a = op_attrs(node)
    dt = np.dtype(graph.values[node.inputs[0]].dtype)
    act = ACTIVATIONS[a["activation"]], dt.type(a["act_alpha"]), dt.type(a["act_beta"])
    eps = float(a["epsilon"])
    kernel = pick(_group_norm, _group_norm_serial, rows[0] * rows[1], num_threads())

    def run(ins, outs):
        kernel(ins[0].reshape(rows), readonly(ins[1]), readonly(ins[2]), outs[0].reshape(rows), groups, eps, *act)

    return run
