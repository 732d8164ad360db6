"""Naive float64 references for the CPU kernels, error bounds, and a one-node kernel runner.

The references are written for obviousness, not speed: explicit loops over kernel taps or
output pixels, numpy only, everything in float64. They share no code with the kernels.

Error bounds follow from the computation: a float32 sum of K products has error at most
about ``K * u * sum|terms|`` with ``u = 2**-24`` (unit roundoff), so each check computes the
same expression on absolute values (the "magnitude") and allows a small multiple of that.
"""

from __future__ import annotations

import math

import numpy as np
from reference_ops import act_ref

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels import get_builder

U32 = 2.0**-24  # float32 unit roundoff


# ----------------------------------------------------------------------------- running a node


def run_node(op: str, inputs, attrs: dict, out_shapes, out_dtypes=None, const=()):
    """Build ``op`` on a one-node Graph and run it once; returns the output arrays.

    ``inputs``: list of arrays (None for an omitted optional input); ``const``: indices of
    inputs that are graph constants (the builder sees and may prepack them).
    """
    values, constants, names, graph_inputs = {}, {}, [], []
    for i, arr in enumerate(inputs):
        if arr is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        values[name] = Value(name, tuple(arr.shape), str(arr.dtype))
        if i in const:
            # read-only, as the frontend's constants are: kernels must not write them, and
            # Numba types read-only arrays apart (the tests then compile what sessions use)
            arr = arr.copy()
            arr.flags.writeable = False
            constants[name] = arr
        else:
            graph_inputs.append(name)
    while names and names[-1] == "":
        names.pop()
    out_dtypes = out_dtypes or ["float32"] * len(out_shapes)
    outs = [f"out{i}" for i in range(len(out_shapes))]
    for o, s, d in zip(outs, out_shapes, out_dtypes):
        values[o] = Value(o, tuple(s), d)
    node = Node(op, tuple(names), tuple(outs), dict(attrs), name="n0", origin=("n0",))
    graph = Graph([node], values, constants, graph_inputs, outs)
    graph.verify()
    run = get_builder(op)(node, graph)
    out_arrays = [
        np.full(s, np.nan if np.dtype(d).kind == "f" else -7, dtype=d) for s, d in zip(out_shapes, out_dtypes)
    ]
    # like the executor: one entry per node input slot, None for an omitted one
    ins = [
        None if a is None else (constants[n] if n in constants else np.ascontiguousarray(a))
        for a, n in zip(inputs, names)
    ]
    run(ins, out_arrays)
    return out_arrays


def assert_within(got, ref, bound, what=""):
    """|got - ref| <= bound elementwise (bound broadcastable), with a readable failure."""
    got64 = np.asarray(got, np.float64)
    assert got64.shape == np.shape(ref), (got64.shape, np.shape(ref))
    err = np.abs(got64 - ref)
    bad = ~(err <= bound)  # NaN in got fails too
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err, -1)), err.shape)
        b = np.broadcast_to(bound, err.shape)
        raise AssertionError(
            f"{what}: {bad.sum()} of {err.size} elements out of bound; worst at {i}: got {got64[i]!r}, "
            f"ref {ref[i]!r}, err {err[i]:.3e} > bound {b[i]:.3e}"
        )


# ----------------------------------------------------------------------------- activations


def activation_ref(v, kind: str, alpha=0.0, beta=0.0):
    """The ONNX formulas in float64 (one definition for every test suite: tests/reference_ops.py)."""
    return act_ref(np.asarray(v), kind, alpha, beta)


# largest slope of each activation: input errors grow at most by this factor
ACT_LIPSCHITZ = {
    "none": 1,
    "Relu": 1,
    "LeakyRelu": 1,
    "Clip": 1,
    "Sigmoid": 0.25,
    "HardSigmoid": 1,
    "HardSwish": 1.5,
    "Tanh": 1,
    "Elu": 1,
    "SiLU": 1.1,
}
assert set(ACT_LIPSCHITZ) == set(ACTIVATIONS)


def act_params(kind: str) -> tuple[float, float]:
    """(alpha, beta) test values for an activation (HardSigmoid's alpha also scales its slope)."""
    return {"LeakyRelu": (0.1, 0.0), "Clip": (-0.5, 0.8), "HardSigmoid": (0.2, 0.5), "Elu": (0.7, 0.0)}.get(
        kind, (0.0, 0.0)
    )


def sum_bound(k: int, magnitude, result, act: str = "none", alpha: float = 0.0):
    """Bound for ``act(sum of k float32 terms)``: accumulation ``(k+1) u mag`` times the
    activation's slope, plus a few ulps for evaluating the activation itself."""
    slope = max(ACT_LIPSCHITZ[act], abs(alpha) if act in ("HardSigmoid", "Elu") else 0)
    return 2 * (k + 1) * U32 * np.asarray(magnitude) * slope + 4 * U32 * np.abs(result) + 1e-30


# ----------------------------------------------------------------------------- convolution


def conv_out(size, k, s, d, pb, pe):
    return (size + pb + pe - (k - 1) * d - 1) // s + 1


def conv2d_reference(x, w, b, strides, pads, dilations, group):
    """Naive grouped 2-D convolution in float64: one einsum per (group, kernel tap)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    oh, ow = conv_out(h, kh, sh, dh, pt, pb), conv_out(wd, kw, sw, dw, pl, pr)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w64 = np.asarray(w, np.float64)
    out = np.zeros((n, m, oh, ow))
    mg = m // group
    for g in range(group):
        for i in range(kh):
            for j in range(kw):
                patch = xp[
                    :,
                    g * cg : (g + 1) * cg,
                    i * dh : i * dh + (oh - 1) * sh + 1 : sh,
                    j * dw : j * dw + (ow - 1) * sw + 1 : sw,
                ]
                out[:, g * mg : (g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, w64[g * mg : (g + 1) * mg, :, i, j])
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out


def conv_transpose2d_reference(x, w, b, strides, pads, dilations, group, out_hw):
    """Naive transposed convolution: scatter every input pixel times every tap, then crop."""
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    sh, sw = strides
    pt, pl = pads[0], pads[1]
    dh, dw = dilations
    oh, ow = out_hw
    cg = c // group
    x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)
    full = np.zeros(
        (n, mg * group, pt + oh + (h - 1) * sh + (kh - 1) * dh + 1, pl + ow + (wd - 1) * sw + (kw - 1) * dw + 1)
    )
    for g in range(group):
        for ih in range(h):
            for iw in range(wd):
                for i in range(kh):
                    for j in range(kw):
                        contrib = np.einsum(
                            "nc,cm->nm", x64[:, g * cg : (g + 1) * cg, ih, iw], w64[g * cg : (g + 1) * cg, :, i, j]
                        )
                        full[:, g * mg : (g + 1) * mg, ih * sh + i * dh, iw * sw + j * dw] += contrib
    out = full[:, :, pt : pt + oh, pl : pl + ow].copy()
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out


# ----------------------------------------------------------------------------- pooling


def pool_reference(x, kernel, strides, pads, dilations, out_hw, mode, count_include_pad=False, storage_order=0):
    """Max or average pooling by visiting every output pixel's window taps.

    Returns ``y`` (and the flat indices for max). Padding and any part of a ceil_mode window
    past the padded input never contribute; ``count_include_pad`` counts taps inside
    ``[-pad_begin, size + pad_end)``.
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    oh, ow = out_hw
    x64 = np.asarray(x, np.float64)
    y = np.zeros((n, c, oh, ow))
    idx = np.zeros((n, c, oh, ow), np.int64)
    plane = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * h * w
    for a in range(oh):
        for b in range(ow):
            vals, flat, padded = [], [], 0
            for i in range(kh):
                for j in range(kw):
                    ih, iw = a * sh - pt + i * dh, b * sw - pl + j * dw
                    if -pt <= ih < h + pb and -pl <= iw < w + pr:
                        padded += 1
                    if 0 <= ih < h and 0 <= iw < w:
                        vals.append(x64[:, :, ih, iw])
                        flat.append(ih * w + iw if storage_order == 0 else iw * h + ih)
            stack = np.stack(vals, axis=-1)
            if mode == "max":
                k = np.argmax(stack, axis=-1)  # first maximum, as onnxruntime
                y[:, :, a, b] = np.max(stack, axis=-1)
                idx[:, :, a, b] = plane + np.asarray(flat)[k]
            else:
                y[:, :, a, b] = stack.sum(axis=-1) / (padded if count_include_pad else len(vals))
    return (y, idx) if mode == "max" else y


# ----------------------------------------------------------------------------- normalisation


def batchnorm_reference(x, scale, bias, mean, var, eps):
    """(x - mean) / sqrt(var + eps) * scale + bias, parameters per channel or per activation."""
    x64 = np.asarray(x, np.float64)

    def p(a):
        a = np.asarray(a, np.float64)
        return a.reshape((1, -1) + (1,) * (x.ndim - 2)) if a.ndim == 1 else a[None]

    return (x64 - p(mean)) / np.sqrt(p(var) + eps) * p(scale) + p(bias)


def lrn_reference(x, size, alpha, beta, bias):
    """ONNX LRN: channels [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to [0, C)."""
    x64 = np.asarray(x, np.float64)
    c = x.shape[1]
    sq = np.zeros_like(x64)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + math.ceil((size - 1) / 2))
        sq[:, ch] = (x64[:, lo : hi + 1] ** 2).sum(axis=1)
    return x64 / (bias + alpha / size * sq) ** beta


def gemm_reference(a, b, c, alpha, beta, trans_a, trans_b):
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    y = alpha * ((a64.T if trans_a else a64) @ (b64.T if trans_b else b64))
    if c is not None:
        y = y + beta * np.asarray(c, np.float64)
    return y
