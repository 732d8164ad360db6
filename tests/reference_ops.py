"""Naive numpy references for the ops whose formulas several test suites check against: the
pass interpreter (tests/passes/ir_reference.py) and the CUDA kernel tests (tests/cuda/sim).
Float64 throughout, written to be obviously right rather than fast."""

from __future__ import annotations

import numpy as np


def act_ref(x, name="none", alpha=0.0, beta=0.0) -> np.ndarray:
    """The fused-activation formulas (kind names as in ``cnnrt.core.ops``), in float64."""
    x = x.astype(np.float64)
    if name == "none":
        return x
    if name == "Relu":
        return np.maximum(x, 0)
    if name == "LeakyRelu":
        return np.where(x >= 0, x, x * alpha)
    if name == "Clip":
        return np.clip(x, alpha, beta)
    if name == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "HardSigmoid":
        return np.clip(alpha * x + beta, 0, 1)
    if name == "HardSwish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Elu":
        return np.where(x >= 0, x, alpha * (np.exp(x) - 1))
    if name == "SiLU":
        return x / (1 + np.exp(-x))
    raise ValueError(name)


def conv_out(size, k, s, d, p0, p1):
    return (size + p0 + p1 - (k - 1) * d - 1) // s + 1


def conv_ref(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1):
    """Direct convolution in float64: one shifted, strided window view per kernel tap."""
    n, c, h, wd = x.shape
    oc, icg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    oh, ow = conv_out(h, kh, sh, dh, pt, pb), conv_out(wd, kw, sw, dw, pl, pr)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    out = np.zeros((n, oc, oh, ow))
    ocg = oc // group
    for g in range(group):
        xs = xp[:, g * icg : (g + 1) * icg]
        ws = w[g * ocg : (g + 1) * ocg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
                out[:, g * ocg : (g + 1) * ocg] += np.einsum("ncij,oc->noij", patch, ws[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def conv_transpose_ref(
    x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, output_padding=(0, 0)
):
    """Scatter form in float64: every input pixel adds its weighted kernel window."""
    n, c, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    fh = (h - 1) * sh + (kh - 1) * dh + 1 + output_padding[0]
    fw = (wd - 1) * sw + (kw - 1) * dw + 1 + output_padding[1]
    full = np.zeros((n, ocg * group, fh, fw))
    icg = c // group
    for g in range(group):
        xs = x[:, g * icg : (g + 1) * icg].astype(np.float64)
        ws = w[g * icg : (g + 1) * icg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("ncij,co->noij", xs, ws[:, :, i, j])
                full[
                    :,
                    g * ocg : (g + 1) * ocg,
                    i * dh : i * dh + sh * (h - 1) + 1 : sh,
                    j * dw : j * dw + sw * (wd - 1) + 1 : sw,
                ] += contrib
    out = full[:, :, pt : fh - pb, pl : fw - pr]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out
