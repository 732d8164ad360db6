"""Naive float64 references for the IR ops, shared by every test suite: the kernel tests
(tests/kernels), the CUDA tests (tests/cuda) and the pass interpreter (tests/passes/ir_reference.py).

Written for obviousness, not speed: explicit loops over kernel taps or output pixels, numpy
only, everything in float64. They share no code with the kernels. Resize is checked against
onnx's own reference implementation (onnx.reference), one resized axis at a time.
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------- activations


def activation_ref(x, name="none", alpha=0.0, beta=0.0) -> np.ndarray:
    """The fused-activation formulas (kind names as in ``cnnrt.core.ops``), in float64."""
    x = np.asarray(x, np.float64)
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
    if name == "Gelu":
        return gelu_reference(x, alpha)
    raise ValueError(name)


# ----------------------------------------------------------------------------- convolution


def conv_out(size, k, s, d, pb, pe):
    return (size + pb + pe - (k - 1) * d - 1) // s + 1


def conv2d_reference(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1):
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


def conv_transpose2d_reference(
    x, w, b, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, out_hw=None, output_padding=(0, 0)
):
    """Naive transposed convolution: scatter every input pixel times every tap, then crop to
    ``out_hw`` (default: the full output plus ``output_padding`` minus the pads)."""
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    sh, sw = strides
    pt, pl = pads[0], pads[1]
    dh, dw = dilations
    if out_hw is None:
        out_hw = [
            (size - 1) * s + (k - 1) * d + 1 + op - p0 - p1
            for size, s, k, d, op, p0, p1 in zip(
                (h, wd), strides, (kh, kw), dilations, output_padding, pads[:2], pads[2:]
            )
        ]
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


def pool_windows(x, kernel, strides, pads, dilations, out_hw, fill):
    """(windows [n, c, oh, ow, kh*kw], in_input mask, in_padded mask) for pooling refs."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dilations
    oh, ow = out_hw
    win = np.full((n, c, oh, ow, kh * kw), fill, np.float64)
    inside = np.zeros((oh, ow, kh * kw), bool)
    padded = np.zeros((oh, ow, kh * kw), bool)
    index = np.full((n, c, oh, ow, kh * kw), -1, np.int64)
    for a in range(oh):
        for bcol in range(ow):
            for i in range(kh):
                for j in range(kw):
                    ih, iw = a * sh - pt + i * dh, bcol * sw - pl + j * dw
                    t = i * kw + j
                    padded[a, bcol, t] = -pt <= ih < h + pb and -pl <= iw < w + pr
                    if 0 <= ih < h and 0 <= iw < w:
                        inside[a, bcol, t] = True
                        win[:, :, a, bcol, t] = x[:, :, ih, iw]
                        index[:, :, a, bcol, t] = ih * w + iw
    return win, inside, padded, index


def pool_out(size, k, s, d, p0, p1, ceil_mode):
    span = (k - 1) * d + 1
    avail = size + p0 + p1 - span
    out = (-(-avail // s) if ceil_mode else avail // s) + 1
    if ceil_mode and (out - 1) * s >= size + p0:
        out -= 1
    return out


# ----------------------------------------------------------------------------- normalisation, linear, tensor


def softmax_reference(x, axis=-1, coerce_2d=False, log=False):
    """Softmax over ``axis`` (over all axes from ``axis`` on with ``coerce_2d``, ONNX before 13)."""
    x64 = np.asarray(x, np.float64)
    axes = tuple(range(axis % x.ndim, x.ndim)) if coerce_2d else (axis,)
    z = x64 - x64.max(axis=axes, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axes, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def resize_reference(x, scales, mode, coord_mode, nearest_mode, cubic_coeff_a=-0.75, exclude_outside=False):
    """onnx.reference's Resize applied one resized axis at a time (interpolation is separable,
    so this is exact); opset 10's "simple" nearest rule is ceil when shrinking, else floor."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    y = np.asarray(x, np.float64)
    for axis, s in enumerate(scales):
        if s == 1.0:
            continue
        nearest = ("ceil" if s < 1 else "floor") if nearest_mode == "simple" else nearest_mode
        per_axis = np.ones(y.ndim, np.float32)
        per_axis[axis] = s
        node = helper.make_node(
            "Resize",
            ["X", "", "S"],
            ["Y"],
            mode=mode,
            coordinate_transformation_mode=coord_mode,
            nearest_mode=nearest,
            cubic_coeff_a=cubic_coeff_a,
            exclude_outside=int(exclude_outside),
        )
        io = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in ("X", "Y")]
        scale_init = helper.make_tensor("S", TensorProto.FLOAT, [y.ndim], per_axis)
        model = helper.make_model(
            helper.make_graph([node], "resize", io[:1], io[1:], [scale_init]),
            opset_imports=[helper.make_opsetid("", 19)],
        )
        y = ReferenceEvaluator(model).run(None, {"X": y})[0]
    return y


def group_norm_reference(x, scale, bias, groups, eps):
    """(x - mean) / sqrt(var + eps) * scale + bias, statistics per (n, group of channels)."""
    x64 = np.asarray(x, np.float64)
    xg = x64.reshape(x.shape[0], groups, -1)
    y = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + eps)).reshape(x.shape)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    return y * np.asarray(scale, np.float64).reshape(per_channel) + np.asarray(bias, np.float64).reshape(per_channel)


def _block_channel(i, j, ch, b, channels, mode):
    """The deep-side channel of pixel (i, j) of a b x b block of channel ``ch`` (of ``channels``)."""
    return (i * b + j) * channels + ch if mode == "DCR" else ch * b * b + i * b + j


def depth_to_space_reference(x, b, mode):
    """Channel ``_block_channel(i, j, ch)`` becomes pixels (i::b, j::b) of output channel ch."""
    n, c, h, w = x.shape
    oc = c // (b * b)
    y = np.empty((n, oc, h * b, w * b), x.dtype)
    for ch in range(oc):
        for i in range(b):
            for j in range(b):
                y[:, ch, i::b, j::b] = x[:, _block_channel(i, j, ch, b, oc, mode)]
    return y


def space_to_depth_reference(x, b, mode):
    """The inverse of depth_to_space_reference."""
    n, c, h, w = x.shape
    y = np.empty((n, c * b * b, h // b, w // b), x.dtype)
    for ch in range(c):
        for i in range(b):
            for j in range(b):
                y[:, _block_channel(i, j, ch, b, c, mode)] = x[:, ch, i::b, j::b]
    return y


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


# ----------------------------------------------------------------------------- math, reductions, LayerNormalization


def gelu_reference(x, tanh_approx=0.0):
    """x * Phi(x) with Phi(x) = erfc(-x/√2)/2 the normal CDF, or the tanh approximation
    x * (1 + tanh(z))/2 = x / (1 + e^-2z). Neither form subtracts nearly equal numbers for
    negative x, as 1 + erf and 1 + tanh would."""
    x64 = np.asarray(x, np.float64)
    if tanh_approx:
        z = math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)
        with np.errstate(over="ignore"):  # e^-2z = inf: the quotient is 0
            return x64 / (1 + np.exp(-2 * z))
    return 0.5 * x64 * np.vectorize(math.erfc, otypes=[np.float64])(-x64 / math.sqrt(2))


def erf_reference(x):
    return np.vectorize(math.erf, otypes=[np.float64])(np.asarray(x, np.float64))


# float64 formulas of the one-input math ops (x a float64 array)
MATH_REFERENCES = {
    "Erf": erf_reference,
    "Sqrt": lambda x: x**0.5,
    "Reciprocal": lambda x: 1.0 / x,
    "Exp": lambda x: np.e**x,
    "Log": np.log,
    "Abs": lambda x: np.where(x < 0, -x, x),
    "Neg": lambda x: -x,
    "Floor": np.floor,
    "Ceil": lambda x: -np.floor(-x),
}


def reduce_reference(x, op, axes, keepdims):
    """ReduceSum/Max/Min/L2/Mean by looping over the kept positions, each reduced in float64."""
    x64 = np.asarray(x, np.float64)
    axes = tuple(axes) if axes else tuple(range(x.ndim))
    moved = np.moveaxis(x64, axes, tuple(range(x.ndim - len(axes), x.ndim)))
    kept_shape = moved.shape[: x.ndim - len(axes)]
    flat = moved.reshape(*kept_shape, -1)
    out = np.empty(kept_shape)
    for idx in np.ndindex(*kept_shape):
        row = flat[idx]
        out[idx] = {
            "ReduceSum": lambda r: math.fsum(r),
            "ReduceMean": lambda r: math.fsum(r) / len(r),
            "ReduceMax": max,
            "ReduceMin": min,
            "ReduceL2": lambda r: math.sqrt(math.fsum(v * v for v in r)),
        }[op](list(row))
    if keepdims:
        out = out.reshape([1 if i in axes else d for i, d in enumerate(x.shape)])
    return out


def arg_reduce_reference(x, op, axis, keepdims, select_last_index=False):
    """Index of the first (or last) maximum / minimum along ``axis``, by scanning."""
    moved = np.moveaxis(np.asarray(x), axis, -1)
    out = np.empty(moved.shape[:-1], np.int64)
    better = (lambda a, b: a > b) if op == "ArgMax" else (lambda a, b: a < b)
    for idx in np.ndindex(*moved.shape[:-1]):
        row = moved[idx]
        best = 0
        for k in range(1, len(row)):
            if better(row[k], row[best]) or (select_last_index and row[k] == row[best]):
                best = k
        out[idx] = best
    return np.expand_dims(out, axis) if keepdims else out


def layer_norm_reference(x, scale, bias, axis, epsilon):
    """(Y, Mean, InvStdDev) over the axes from ``axis`` on, in float64."""
    x64 = np.asarray(x, np.float64)
    axes = tuple(range(axis, x.ndim))
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(var + epsilon)
    y = (x64 - mean) * inv * np.asarray(scale, np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y, mean, inv


def squeeze_excite_reference(x, w1, b1, w2, b2, squeeze, gate) -> np.ndarray:
    """x (N, C, H, W) scaled per (n, c) by gate(W2 squeeze(W1 mean_hw(x) + b1) + b2);
    squeeze and gate are (kind, alpha, beta) as activation_ref takes them; W1 (R, C), W2 (C, R)."""
    x = np.asarray(x, np.float64)
    n, c = x.shape[:2]
    y = np.empty_like(x)
    for i in range(n):
        pooled = np.array([x[i, k].sum() / x[i, k].size for k in range(c)])
        hidden = activation_ref(np.asarray(w1, np.float64) @ pooled + b1, *squeeze)
        g = activation_ref(np.asarray(w2, np.float64) @ hidden + b2, *gate)
        for k in range(c):
            y[i, k] = x[i, k] * g[k]
    return y


# ---------------------------------------------------------------------------- int8 (QDQ / QLinear)

QUANT_RANGE = {"uint8": (0, 255), "int8": (-128, 127), "int32": (-(2**31), 2**31 - 1)}


def _per_axis(v, axis, ndim):
    v = np.asarray(v).reshape(-1)
    if v.size == 1:
        return v[0]
    shape = [1] * ndim
    shape[axis] = v.size
    return v.reshape(shape)


def quantize_reference(x, scale, zp, dtype, axis=1):
    """ONNX QuantizeLinear: round(x / scale) half to even (float32 division), + zp, saturated."""
    s = _per_axis(np.float32(scale) if np.ndim(scale) == 0 else np.asarray(scale, np.float32), axis, np.ndim(x))
    z = _per_axis(0 if zp is None else zp, axis, np.ndim(x))
    lo, hi = QUANT_RANGE[dtype]
    q = np.round((np.asarray(x, np.float32) / s).astype(np.float32)).astype(np.int64) + np.asarray(z, np.int64)
    return np.clip(q, lo, hi).astype(dtype)


def dequantize_reference(q, scale, zp, axis=1):
    """ONNX DequantizeLinear: (q - zp) * scale, in float32 as onnxruntime computes it."""
    s = _per_axis(np.asarray(scale, np.float32), axis, np.ndim(q))
    z = _per_axis(0 if zp is None else zp, axis, np.ndim(q))
    return ((np.asarray(q, np.int64) - np.asarray(z, np.int64)).astype(np.float32) * s).astype(np.float32)


def requantize_reference(acc, x_scale, w_scale, y_scale, y_zp, dtype, lo=None, hi=None):
    """onnxruntime's (MLAS) requantization of an int32 accumulator (N, M, ...): float32
    multiplier x_scale * w_scale[m] / y_scale, float32 product, clamp, round half to even, + zp."""
    qlo, qhi = QUANT_RANGE[dtype]
    lo, hi = (qlo if lo is None else max(lo, qlo)), (qhi if hi is None else min(hi, qhi))
    mult = (np.float32(x_scale) * np.asarray(w_scale, np.float32).reshape(-1)) / np.float32(y_scale)
    mult = mult.astype(np.float32).reshape((1, -1) + (1,) * (np.ndim(acc) - 2))
    f = (np.asarray(acc).astype(np.float32) * mult).astype(np.float32)
    f = np.minimum(np.maximum(f, np.float32(lo - y_zp)), np.float32(hi - y_zp))
    return (np.round(f).astype(np.int64) + y_zp).astype(dtype)


def qconv_accumulator_reference(x, x_zp, w, w_zp, b=None, **geometry):
    """The exact int32 accumulator of an integer conv: sum((x - x_zp)(w - w_zp)) + b."""
    m = np.shape(w)[0]
    wz = np.broadcast_to(np.asarray(0 if w_zp is None else w_zp, np.int64).reshape(-1), (m,)).reshape(m, 1, 1, 1)
    xs = np.asarray(x, np.int64) - (0 if x_zp is None else int(np.asarray(x_zp).reshape(-1)[0]))
    acc = np.rint(conv2d_reference(xs, np.asarray(w, np.int64) - wz, None, **geometry)).astype(np.int64)
    if b is not None:
        acc += np.asarray(b, np.int64).reshape(1, -1, 1, 1)
    return acc.astype(np.int32)


# onnxruntime's u8 x s8 products on CPUs without VNNI. MLAS's u8s8 GEMM kernels for AVX2 and
# AVX-512BW multiply the raw codes with vpmaddubsw, which adds the products of reduction steps
# 2i and 2i+1 in int16 with saturation (255 * -128 * 2 = -65280 does not fit), then widens and
# sums the pairs exactly; zero points come out afterwards through row and column sums. So
# QLinearConv (non-depthwise), QLinearMatMul and MatMulInteger with uint8 inputs and int8
# weights are not the exact accumulator there. With VNNI (vpdpbusd) MLAS sums in int32 and is
# exact, as are its u8u8 and s8s8 kernels and its depthwise and ConvInteger paths.


def mlas_u8s8_matmul_reference(a, a_zp, b, b_zp=0):
    """``sum_k (a - a_zp)(b - b_zp)`` over the last axis of ``a`` (..., K) and the first of ``b``
    (K, J) as MLAS's vpmaddubsw kernels form it: the raw products summed pairwise in int16 with
    saturation, then ``- a_zp * sum_k b - b_zp * sum_k a + K * a_zp * b_zp``."""
    a64, b64 = np.asarray(a, np.int64), np.asarray(b, np.int64)
    k = a64.shape[-1]
    if k % 2:  # the packed reduction is zero-padded: the last step pairs with a zero
        a64 = np.concatenate([a64, np.zeros(a64.shape[:-1] + (1,), np.int64)], axis=-1)
        b64 = np.concatenate([b64, np.zeros((1,) + b64.shape[1:], np.int64)], axis=0)
    pairs = a64[..., 0::2, None] * b64[0::2] + a64[..., 1::2, None] * b64[1::2]  # (..., K/2, J)
    raw = np.clip(pairs, -(2**15), 2**15 - 1).sum(axis=-2)
    az, bz = int(np.asarray(a_zp).reshape(-1)[0]), np.asarray(b_zp, np.int64).reshape(-1)
    return raw - az * b64.sum(axis=0) - bz * a64.sum(axis=-1, keepdims=True) + k * az * bz


def mlas_u8s8_conv_accumulator_reference(
    x, x_zp, w, w_zp, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1
):
    """QLinearConv's int32 accumulator as onnxruntime forms it for uint8 x, int8 W with MLAS's
    vpmaddubsw kernels: per group, an im2col of the channels-last input (reduction order kernel
    row, kernel column, channel; padding filled with ``x_zp``) times W in that order, as
    :func:`mlas_u8s8_matmul_reference`. Not for depthwise convs (MLAS's depthwise kernel is exact)."""
    x64, w64 = np.asarray(x, np.int64), np.asarray(w, np.int64)
    n, _, h, wd = x64.shape
    m, cg, kh, kw = w64.shape
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = strides, pads, dilations
    oh, ow = conv_out(h, kh, sh, dh, pt, pb), conv_out(wd, kw, sw, dw, pl, pr)
    xz = int(np.asarray(x_zp).reshape(-1)[0])
    wz = np.broadcast_to(np.asarray(w_zp, np.int64).reshape(-1), (m,))
    xp = np.pad(x64, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=xz)
    mg = m // group
    acc = np.zeros((n, oh * ow, m), np.int64)
    for g in range(group):
        taps = [
            xp[
                :,
                g * cg : (g + 1) * cg,
                i * dh : i * dh + (oh - 1) * sh + 1 : sh,
                j * dw : j * dw + (ow - 1) * sw + 1 : sw,
            ]
            for i in range(kh)
            for j in range(kw)
        ]
        cols = np.stack(taps, axis=1).reshape(n, kh * kw * cg, oh * ow).transpose(0, 2, 1)  # (N, P, K)
        wg = w64[g * mg : (g + 1) * mg].transpose(2, 3, 1, 0).reshape(kh * kw * cg, mg)  # (K, Mg)
        acc[..., g * mg : (g + 1) * mg] = mlas_u8s8_matmul_reference(cols, xz, wg, wz[g * mg : (g + 1) * mg])
    acc = acc.transpose(0, 2, 1).reshape(n, m, oh, ow)
    if b is not None:
        acc += np.asarray(b, np.int64).reshape(1, -1, 1, 1)
    return acc.astype(np.int32)
