"""Channel-blocked (NCHWc) kernels of kernels/cpu/blocked.py against the naive float64
references, the layouts converted with plain numpy.

B = 16 (float32) and 8 (float64) are AVX-512's vector widths: those, and 32, run the vector
kernel (_lane_taps); 4, and 8 with float32, its plain-Numba twin (_lane_taps_any). Numba
compiles per dtype, not per B, so B is swept freely and float64 on a few cases only.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import ACT_LIPSCHITZ, act_params, assert_within, bind_node, run_node  # noqa: E402
from reference import activation_ref, conv2d_reference, conv_out, pool_reference  # noqa: E402

from cnnrt.core.layout import block as to_blocked  # noqa: E402
from cnnrt.core.layout import unblock as from_blocked  # noqa: E402
from cnnrt.core.ops import ACTIVATIONS  # noqa: E402
from cnnrt.errors import GraphError  # noqa: E402
from cnnrt.kernels.conv_spec import ConvSpec  # noqa: E402
from cnnrt.kernels.cpu.blocked import build_blocked_depthwise  # noqa: E402
from cnnrt.kernels.cpu.conv_common import block_size as lanes  # noqa: E402

F32, F64 = np.dtype("float32"), np.dtype("float64")


def unit(dt) -> float:
    """Unit roundoff of dt."""
    return float(np.finfo(dt).eps) / 2


def bound(k, magnitude, result, dt, act="none", alpha=0.0):
    """act(a sum of k terms in dt): accumulation (k+1) u mag times the activation's slope, plus
    a few ulps (of float32: the rational tanh is float32-accurate) for the activation."""
    slope = max(ACT_LIPSCHITZ[act], abs(alpha) if act in ("HardSigmoid", "Elu") else 0)
    u = unit(dt)
    act_u = u if act in ("none", "Relu", "Clip", "LeakyRelu") else unit(F32)
    return 2 * (k + 1) * u * np.asarray(magnitude) * slope + 4 * act_u * np.abs(result) + 1e-300


def test_b_grid_reaches_both_lane_kernels():
    assert 16 % lanes(F32) == 0 and 8 % lanes(F64) == 0 and 4 % lanes(F32) != 0


# ----------------------------------------------------------------------------- reorders


@pytest.mark.parametrize("shape", [(2, 32, 5, 7), (1, 16, 1, 1), (3, 16, 13, 11), (1, 32, 40, 40)])
@pytest.mark.parametrize("b", [16, 8, 4])
@pytest.mark.parametrize("dt", [F32, F64], ids=str)
def test_reorder_round_trip(shape, b, dt):
    x = np.random.default_rng(0).standard_normal(shape).astype(dt)
    n, c, h, w = shape
    (y,) = run_node("ReorderToBlocked", [x], dict(block=b), [(n, c // b, h, w, b)], [dt.name])
    np.testing.assert_array_equal(y, to_blocked(x, b))
    (back,) = run_node("ReorderFromBlocked", [y], {}, [shape], [dt.name])
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("c", [1, 5, 7, 8])
def test_reorder_from_blocked_crops_to_the_channel_count(c):
    """A conv with C not whole blocks writes a last partial block; the reorder keeps its first
    C channels only (the rest, past the output array, are never written)."""
    x = np.random.default_rng(c).standard_normal((2, 2, 3, 5, 8)).astype(F32)
    (y,) = run_node("ReorderFromBlocked", [x], {}, [(2, 8 + c, 3, 5)], ["float32"])
    np.testing.assert_array_equal(y, from_blocked(x)[:, : 8 + c])
    with pytest.raises(ValueError, match="cannot give"):
        run_node("ReorderFromBlocked", [x], {}, [(2, c, 3, 5)], ["float32"])


@pytest.mark.parametrize("c", [1, 8, 17, 24, 40])
def test_reorder_pads_a_last_partial_block_with_zeros_and_crops_it_back(c):
    """C not whole blocks: ReorderToBlocked writes the padding lanes zero (the layout's
    invariant, cnnrt.core.layout), ReorderFromBlocked drops them."""
    x = np.random.default_rng(c).standard_normal((2, c, 3, 5)).astype(F32)
    cb = -(-c // 16)
    (y,) = run_node("ReorderToBlocked", [x], dict(block=16), [(2, cb, 3, 5, 16)], ["float32"])
    lanes_out = y.transpose(0, 1, 4, 2, 3).reshape(2, cb * 16, 3, 5)
    np.testing.assert_array_equal(lanes_out[:, :c], x)
    assert not np.any(lanes_out[:, c:])
    (back,) = run_node("ReorderFromBlocked", [y], {}, [x.shape], ["float32"])
    np.testing.assert_array_equal(back, x)
    with pytest.raises(GraphError, match="give"):
        run_node("ReorderToBlocked", [x], dict(block=16), [(2, cb + 1, 3, 5, 16)], ["float32"])


# ----------------------------------------------------------------------------- pools


def pool_out(size, k, s, d, pb, pe, ceil_mode):
    """ONNX's output length; a ceil_mode window must start inside the input or leading pad."""
    avail = size + pb + pe - ((k - 1) * d + 1)
    n = (-(-avail // s) if ceil_mode else avail // s) + 1
    return n - 1 if ceil_mode and (n - 1) * s >= size + pb else n


# (N, H, W, kernel, strides, pads (t, l, b, r), dilations, ceil_mode); C = 32
POOL_CASES = {
    "k3s2": (2, 7, 7, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), False),
    "k3s2_p1_ceil": (1, 7, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
    "asym_ceil": (1, 8, 7, (2, 3), (2, 1), (1, 0, 0, 2), (1, 1), True),
    "dil2_p2": (1, 9, 9, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), False),
    "hanging_ceil_dil": (1, 5, 8, (3, 2), (3, 3), (1, 1, 1, 1), (1, 2), True),
    "whole_plane": (2, 4, 4, (4, 4), (1, 1), (0, 0, 0, 0), (1, 1), False),
    "k3s1_p1": (2, 6, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),
    "k5s1_p2": (1, 6, 7, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), False),
    "k2s2_ceil_padend": (1, 5, 5, (2, 2), (2, 2), (0, 0, 1, 1), (1, 1), True),
    "bands_k3s1_p1": (1, 40, 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),  # several tasks per plane
}


def _pool(name, op, b, dt, x=None, **extra):
    """(blocked result as NCHW, float64 reference, reference on |x|, tap count)."""
    n, h, w, kernel, strides, pads, dil, ceil = POOL_CASES[name]
    oh = pool_out(h, kernel[0], strides[0], dil[0], pads[0], pads[2], ceil)
    ow = pool_out(w, kernel[1], strides[1], dil[1], pads[1], pads[3], ceil)
    if x is None:
        x = np.random.default_rng(1).standard_normal((n, 32, h, w)).astype(dt)
    attrs = dict(kernel=kernel, strides=strides, pads=pads, dilations=dil, **extra)
    (got,) = run_node(op, [to_blocked(x, b)], attrs, [(n, 32 // b, oh, ow, b)], [dt.name])
    mode, cip = ("max", False) if op == "BlockedMaxPool" else ("avg", extra.get("count_include_pad", False))
    args = (kernel, strides, pads, dil, (oh, ow), mode, cip)
    with np.errstate(invalid="ignore"):
        want = pool_reference(np.where(np.isnan(x), -np.inf, x) if mode == "max" else x, *args)
    mag = None if mode == "max" else pool_reference(np.abs(np.where(np.isfinite(x), x, 0)), *args)
    return from_blocked(got), want[0] if mode == "max" else want, mag, kernel[0] * kernel[1]


@pytest.mark.parametrize("name", list(POOL_CASES))
@pytest.mark.parametrize("b", [16, 8, 4])
def test_blocked_max_pool_vs_reference(name, b):
    got, want, _, _ = _pool(name, "BlockedMaxPool", b, F32)
    np.testing.assert_array_equal(got, want.astype(F32))  # a max is exact


@pytest.mark.parametrize("op", ["BlockedMaxPool", "BlockedAveragePool"])
@pytest.mark.parametrize("name", ["k3s2_p1_ceil", "k3s1_p1", "bands_k3s1_p1"])
def test_blocked_pool_bf16_activations(name, op):
    """bf16 activations in and out (passes/precision.py) in float32 lanes: a bf16 input gives,
    bit for bit, what the float32 input holding the same values gives, and a bf16 output is
    the float32 result rounded to nearest even (for MaxPool, one of the inputs: exact)."""
    import ml_dtypes

    n, h, w, kernel, strides, pads, dil, ceil = POOL_CASES[name]
    oh = pool_out(h, kernel[0], strides[0], dil[0], pads[0], pads[2], ceil)
    ow = pool_out(w, kernel[1], strides[1], dil[1], pads[1], pads[3], ceil)
    b = lanes(F32)
    x = np.random.default_rng(2).standard_normal((n, 32, h, w)).astype(ml_dtypes.bfloat16)
    attrs = dict(kernel=kernel, strides=strides, pads=pads, dilations=dil)
    shape = [(n, 32 // b, oh, ow, b)]
    outs = {}
    for bf16_in in (False, True):
        xin = to_blocked(x.astype(F32), b)
        for dtype in ("float32", "bfloat16"):
            (outs[bf16_in, dtype],) = run_node(op, [xin.astype(x.dtype) if bf16_in else xin], attrs, shape, [dtype])
    f32 = outs[False, "float32"]
    assert np.array_equal(outs[True, "float32"], f32)
    rounded = f32.astype(ml_dtypes.bfloat16).view(np.uint16)
    for bf16_in in (False, True):
        assert np.array_equal(outs[bf16_in, "bfloat16"].view(np.uint16), rounded)


@pytest.mark.parametrize("name", list(POOL_CASES))
@pytest.mark.parametrize("b", [16, 4])
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_blocked_average_pool_vs_reference(name, b, count_include_pad):
    got, want, mag, k = _pool(name, "BlockedAveragePool", b, F32, count_include_pad=count_include_pad)
    assert_within(got, want, bound(k, mag, want, F32), name)


@pytest.mark.parametrize("name", ["k3s2_p1_ceil", "dil2_p2", "hanging_ceil_dil"])
@pytest.mark.parametrize("op", ["BlockedMaxPool", "BlockedAveragePool"])
def test_blocked_pool_float64(name, op):
    got, want, mag, k = _pool(name, op, 8, F64)
    if mag is None:
        np.testing.assert_array_equal(got, want)
    else:
        assert_within(got, want, bound(k, mag, want, F64), name)


@pytest.mark.parametrize("name", ["k3s2_p1_ceil", "k3s1_p1", "asym_ceil"])
@pytest.mark.parametrize("b", [16, 4])
@pytest.mark.parametrize("op", ["BlockedMaxPool", "BlockedAveragePool"])
def test_blocked_pool_nan_and_inf(name, b, op):
    """MaxPool skips NaN (a window of only NaN gives -inf, as pool.py); an average with a NaN or
    opposite infinities in its window is NaN, with one infinity +-Inf."""
    n, h, w = POOL_CASES[name][:3]
    rng = np.random.default_rng(9)
    x = rng.standard_normal((n, 32, h, w)).astype(F32)
    for value in (np.nan, np.inf, -np.inf):
        x[rng.random(x.shape) < 0.05] = value
    x[0, 5] = np.nan  # a whole plane of NaN
    got, want, mag, k = _pool(name, op, b, F32, x=x)
    special = ~np.isfinite(want)
    np.testing.assert_array_equal(got[special], want[special].astype(F32))
    if mag is not None:
        assert_within(got[~special], want[~special], bound(k, mag, want, F32)[~special], name)
    else:
        np.testing.assert_array_equal(got, want.astype(F32))


@pytest.mark.parametrize("shape", [(2, 32, 5, 7), (1, 16, 1, 1), (1, 48, 13, 13)])
@pytest.mark.parametrize("b", [16, 8, 4])
@pytest.mark.parametrize("dt", [F32, F64], ids=str)
def test_blocked_global_pools(shape, b, dt):
    """The mean accumulates in float64 (only the final rounding in float32); the max skips NaN."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dt)
    n, c, h, w = shape
    oshape = (n, c // b, 1, 1, b)
    (avg,) = run_node("BlockedGlobalAveragePool", [to_blocked(x, b)], {}, [oshape], [dt.name])
    x64 = x.astype(F64)
    mean_abs = np.abs(x64).mean(axis=(2, 3), keepdims=True)
    assert_within(
        from_blocked(avg), x64.mean(axis=(2, 3), keepdims=True), (2 * unit(dt) + h * w * unit(F64)) * mean_abs
    )
    x[rng.random(x.shape) < 0.1] = np.nan
    x[0, 1] = np.nan  # all NaN: -inf
    (mx,) = run_node("BlockedGlobalMaxPool", [to_blocked(x, b)], {}, [oshape], [dt.name])
    np.testing.assert_array_equal(from_blocked(mx), np.where(np.isnan(x), -np.inf, x).max(axis=(2, 3), keepdims=True))


# ----------------------------------------------------------------------------- ChannelAffine


def _affine(x, s, t, b, act, const=(1, 2)):
    alpha, beta = act_params(act)
    attrs = dict(activation=act, act_alpha=alpha, act_beta=beta)
    (got,) = run_node(
        "BlockedChannelAffine", [to_blocked(x, b), s, t], attrs, [to_blocked(x, b).shape], [x.dtype.name], const=const
    )
    s64, t64 = (a.astype(F64).reshape(1, -1, 1, 1) for a in (s, t))
    want = activation_ref(x.astype(F64) * s64 + t64, act, alpha, beta)
    mag = np.abs(np.where(np.isfinite(x), x, 0)) * np.abs(s64) + np.abs(t64)
    return from_blocked(got), want, bound(1, mag, want, x.dtype, act, alpha)


def _affine_data(dt, shape=(2, 32, 5, 7), seed=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dt) * 2 for s in (shape, shape[1:2], shape[1:2])]


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_blocked_channel_affine_activations(act):
    x, s, t = _affine_data(F32)
    got, want, bnd = _affine(x, s, t, 16, act)
    assert_within(got, want, bnd, act)


@pytest.mark.parametrize("shape", [(1, 32, 1, 1), (1, 32, 40, 40), (3, 32, 3, 2)])
@pytest.mark.parametrize("b", [32, 16, 8, 4])
@pytest.mark.parametrize("const", [True, False], ids=["const", "runtime"])
def test_blocked_channel_affine_shapes_and_runtime_params(shape, b, const):
    x, s, t = _affine_data(F32, shape)
    got, want, bnd = _affine(x, s, t, b, "Clip", const=(1, 2) if const else ())
    assert_within(got, want, bnd, f"{shape}/{b}")


@pytest.mark.parametrize("b", [8, 4])
def test_blocked_channel_affine_float64(b):
    x, s, t = _affine_data(F64)
    got, want, bnd = _affine(x, s, t, b, "Relu")
    assert_within(got, want, bnd)


@pytest.mark.parametrize("act", ["none", "Relu", "Clip"])
@pytest.mark.parametrize("b", [16, 4])
def test_blocked_channel_affine_nan_and_inf(act, b):
    """NaN stays NaN through the map, Relu and Clip; -Inf after the map gives 0 under Relu."""
    x, s, t = _affine_data(F32, seed=4)
    rng = np.random.default_rng(5)
    for value in (np.nan, np.inf, -np.inf):
        x[rng.random(x.shape) < 0.1] = value
    got, want, bnd = _affine(x, s, t, b, act)
    special = ~np.isfinite(want)
    np.testing.assert_array_equal(got[special], want[special].astype(F32))
    assert_within(got[~special], want[~special], bnd[~special], act)


@pytest.mark.parametrize("b", [16, 4])  # vector blocks, lane by lane
def test_blocked_channel_affine_reads_a_channel_range_of_a_bigger_buffer(b):
    """x a channel range of a bigger blocked buffer at batch 3 (DenseNet's growing Concat, read
    in place by the next layer's BN + ReLU): each image contiguous, the images a bigger
    buffer's image apart; the channels around it (NaN) are not read. Bound once, the step
    reads the buffer's current contents on every call (a copy made at binding would not)."""
    attrs = dict(activation="Relu", act_alpha=0.0, act_beta=0.0)
    _, s, t = _affine_data(F32, (3, 32, 5, 7))
    first, cb = 48 // b, 32 // b  # x starts 48 channels into the buffer, 32 channels after it
    big = np.full((3, first + cb + 32 // b, 5, 7, b), np.nan, F32)
    view = big[:, first : first + cb]
    assert not view.flags.c_contiguous
    call, (got,) = bind_node("BlockedChannelAffine", [view, s, t], attrs, [view.shape], ["float32"], const=(1, 2))
    for seed in (3, 4):
        x = _affine_data(F32, (3, 32, 5, 7), seed=seed)[0]
        view[...] = to_blocked(x, b)
        call()
        _, want, bnd = _affine(x, s, t, b, "Relu")
        assert_within(from_blocked(got), want, bnd, f"seed {seed}")


# ----------------------------------------------------------------------------- depthwise

# (N, C, H, W, k, strides, pads (t, l, b, r), dilations)
DW_CASES = {
    "s1_8x8": (2, 32, 8, 8, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    "s2_8x8": (2, 32, 8, 8, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    "s2_odd": (1, 32, 9, 7, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    "s1_14x14": (1, 32, 14, 14, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    "s1_nopad": (1, 16, 8, 9, 3, (1, 1), (0, 0, 0, 0), (1, 1)),
    "s1_asym": (1, 16, 8, 9, 3, (1, 1), (1, 2, 0, 1), (1, 1)),
    "k5_p2": (2, 16, 9, 9, 5, (1, 1), (2, 2, 2, 2), (1, 1)),
    "k5_s2": (1, 16, 12, 11, 5, (2, 2), (2, 2, 2, 2), (1, 1)),
    "s3_s21": (1, 16, 13, 11, 3, (3, 2), (1, 1, 1, 1), (1, 1)),
    "dil2": (1, 16, 10, 9, 3, (1, 1), (2, 2, 2, 2), (2, 2)),
    "dil23_s2_asym": (1, 32, 11, 12, 3, (2, 2), (1, 2, 2, 1), (2, 3)),
    "plane_1x1": (2, 16, 1, 1, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    "wide": (1, 16, 3, 17, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    "tall": (1, 16, 19, 2, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    "k1": (1, 16, 5, 5, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    "pad_past_kernel": (1, 16, 4, 4, 3, (1, 1), (3, 3, 3, 3), (1, 1)),  # border windows: bias only
    "bands": (1, 16, 40, 40, 3, (1, 1), (1, 1, 1, 1), (1, 1)),  # several tasks per plane
    "wide_pad": (1, 16, 5, 30, 3, (1, 1), (1, 11, 2, 10), (1, 1)),  # left edge past a group of 8
    "small_planes": (1, 160, 7, 7, 3, (1, 1), (1, 1, 1, 1), (1, 1)),  # several planes per task
}


def _dw_spec(case, dt, act="none", res=False, mult=1):
    n, c, h, w, k, (sh, sw), pads, (dh, dw) = case
    oh, ow = conv_out(h, k, sh, dh, pads[0], pads[2]), conv_out(w, k, sw, dw, pads[1], pads[3])
    alpha, beta = act_params(act)
    return ConvSpec(
        n, c, h, w, c * mult, oh, ow, k, k, sh, sw, *pads, dh, dw, c, dt.name, True, res, ACTIVATIONS[act], alpha, beta
    )


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False  # as the frontend's constants
    return a


def _dw(name, b, dt=F32, act="none", residual=False, const=True, bias=True, x=None, seed=0):
    """(blocked result as NCHW, float64 reference, error bound); ``name`` a DW_CASES key or a case."""
    case = DW_CASES[name] if isinstance(name, str) else name
    spec = _dw_spec(case, dt, act, residual)
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal(case[:4]).astype(dt)
    w = rng.standard_normal((spec.m, 1, spec.kh, spec.kw)).astype(dt)
    bv = rng.standard_normal(spec.m).astype(dt) if bias else None
    r = rng.standard_normal((spec.n, spec.m, spec.oh, spec.ow)).astype(dt) if residual else None
    run = build_blocked_depthwise(spec, _readonly(w) if const else None, _readonly(bv) if const and bias else None, b)
    y = np.full((spec.n, spec.m // b, spec.oh, spec.ow, b), np.nan, dt)
    run([to_blocked(x, b), w, bv, None if r is None else to_blocked(r, b)], [y])
    pre = conv2d_reference(
        x, w, bv, (spec.sh, spec.sw), (spec.pt, spec.pl, spec.pb, spec.pr), (spec.dh, spec.dw), spec.c
    )
    fin = np.where(np.isfinite(x), x, 0)
    mag = conv2d_reference(
        np.abs(fin),
        np.abs(w),
        None if bv is None else np.abs(bv),
        (spec.sh, spec.sw),
        (spec.pt, spec.pl, spec.pb, spec.pr),
        (spec.dh, spec.dw),
        spec.c,
    )
    if r is not None:
        pre, mag = pre + r, mag + np.abs(r)
    want = activation_ref(pre, act, spec.alpha, spec.beta)
    return from_blocked(y), want, bound(spec.kh * spec.kw + 2, mag, want, dt, act, spec.alpha)


@pytest.mark.parametrize("name", list(DW_CASES))
@pytest.mark.parametrize("b", [16, 8, 4])
def test_blocked_depthwise_vs_reference(name, b):
    got, want, bnd = _dw(name, b)
    assert_within(got, want, bnd, name)


@pytest.mark.parametrize("width", [*range(1, 18), 23, 56])
@pytest.mark.parametrize("kernel", [(3, 1, 1), (5, 2, 2), (7, 1, 3)], ids=["k3", "k5_s2", "k7_p3"])
def test_blocked_depthwise_row_widths(width, kernel):
    """Every split of a row into the kernel's pixel groups: the left edge, the interior, whole
    groups past it and one group of the remainder (1-7 pixels), the edges reading zeros."""
    k, s, p = kernel
    case = (1, 16, 6, width, k, (s, s), (p, p, p, p), (1, 1))
    got, want, bnd = _dw(case, lanes(F32), act="Relu", residual=True, seed=width)
    assert_within(got, want, bnd, f"w{width}/k{k}")


@pytest.mark.parametrize("act", ["Relu", "Clip", "LeakyRelu", "HardSwish", "Sigmoid", "Tanh"])
@pytest.mark.parametrize("name", ["s1_8x8", "s2_odd", "k5_p2"])
@pytest.mark.parametrize("b", [16, 4])
def test_blocked_depthwise_residual_and_activation(name, act, b):
    """act(conv + bias + residual): the residual goes in before the activation."""
    got, want, bnd = _dw(name, b, act=act, residual=True, seed=1)
    assert_within(got, want, bnd, f"{name}/{act}")


@pytest.mark.parametrize("name", ["s1_14x14", "s2_odd", "dil23_s2_asym"])
@pytest.mark.parametrize("b", [32, 16, 4])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_blocked_depthwise_runtime_weights(name, b, bias):
    """Weights (and bias) as run-time inputs, packed at every run; or no bias at all."""
    got, want, bnd = _dw(name, b, const=False, bias=bias, seed=2)
    assert_within(got, want, bnd, name)


@pytest.mark.parametrize("name", ["s1_8x8", "s2_odd", "k5_s2", "pad_past_kernel", "wide_pad", "small_planes"])
@pytest.mark.parametrize("b", [8, 4])
def test_blocked_depthwise_float64(name, b):
    got, want, bnd = _dw(name, b, dt=F64, act="Clip", residual=True, seed=3)
    assert_within(got, want, bnd, name)


@pytest.mark.parametrize("act", ["none", "Relu", "Clip"])
@pytest.mark.parametrize("name", ["s1_8x8", "s2_odd", "wide"])
@pytest.mark.parametrize("b", [16, 4])
def test_blocked_depthwise_nan_and_inf_stay_in_their_windows(name, act, b):
    """NaN and Inf at the borders reach exactly the outputs whose window holds them; Relu and
    Clip keep NaN."""
    case = DW_CASES[name]
    x = np.random.default_rng(5).standard_normal(case[:4]).astype(F32)
    x[0, 0, 1, 0] = x[-1, -1, 0, 0] = x[0, 3, -1, 2] = np.nan
    x[0, 0, 2, -1] = np.inf
    x[-1, -1, -1, -1] = -np.inf
    got, want, bnd = _dw(name, b, act=act, x=x, seed=5)
    got = got.astype(F64)
    assert np.array_equal(np.isnan(got), np.isnan(want)), name
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), name
    fin = np.isfinite(want)
    assert_within(got[fin], want[fin], bnd[fin], name)


def test_blocked_depthwise_rejects_multiplier_and_off_block_channels():
    with pytest.raises(ValueError, match="group == C == M"):
        build_blocked_depthwise(_dw_spec(DW_CASES["s1_8x8"], F32, mult=2), None, None, 16)
    with pytest.raises(ValueError, match="multiple of the block"):
        build_blocked_depthwise(_dw_spec(DW_CASES["s1_8x8"], F32), None, None, 64)


# ----------------------------------------------------------------------------- BlockedSplit


@pytest.mark.parametrize("b", [16, 8])
@pytest.mark.parametrize("sizes", [(48, 48, 48), (58, 58), (24, 21, 31)])
def test_blocked_split_vs_numpy(sizes, b):
    """Whole-block and shifted pieces (58 = 3 blocks + 10: the second piece starts mid-block),
    each blocked with zero padding lanes, against numpy's split of the logical channels; the
    block of one vector (16 with AVX-512, 8 with AVX2) takes the vector permutes, the other
    the lane-by-lane copy."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, sum(sizes), 3, 5)).astype(np.float32)
    shapes = [to_blocked(x[:, :c], b).shape for c in sizes]
    got = run_node("BlockedSplit", [to_blocked(x, b)], {"axis": 1, "sizes": list(sizes)}, shapes)
    bounds = np.cumsum([0, *sizes])
    for k, piece in enumerate(got):
        np.testing.assert_array_equal(piece, to_blocked(x[:, bounds[k] : bounds[k + 1]], b))


@pytest.mark.parametrize("b", [16, 8])
@pytest.mark.parametrize("sizes", [(58, 58), (24, 16, 31)])
def test_blocked_concat_vs_numpy(sizes, b):
    """Inputs that are not whole blocks placed lane by lane; the output's padding lanes zero
    even where the output array held garbage (run_node fills it with NaN)."""
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((2, c, 3, 5)).astype(np.float32) for c in sizes]
    want = to_blocked(np.concatenate(xs, axis=1), b)
    (got,) = run_node("BlockedConcat", [to_blocked(x, b) for x in xs], {"axis": 1, "sizes": list(sizes)}, [want.shape])
    np.testing.assert_array_equal(got, want)


def _shuffle_reference(xs, groups, splits):
    """torchvision's channel_shuffle of the concatenation, split: by numpy reshapes."""
    x = np.concatenate(xs, axis=1)
    n, c, h, w = x.shape
    y = x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    return np.split(y, np.cumsum(splits)[:-1], axis=1)


@pytest.mark.parametrize("b", [16, 8])
@pytest.mark.parametrize(
    "sizes,groups,splits",
    [((58, 58), 2, (58, 58)), ((24, 24), 2, (48,)), ((20, 13, 15), 3, (17, 31))],
)
def test_blocked_channel_shuffle_vs_numpy(sizes, groups, splits, b):
    """ShuffleNet's unit boundary (58 + 58 -> shuffle -> 58 + 58: pieces that start mid-block),
    a stage's last shuffle without a Split, and three inputs in three groups: each piece
    blocked with its padding lanes zero (run_node fills outputs with NaN first)."""
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((2, c, 3, 5)).astype(np.float32) for c in sizes]
    want = [to_blocked(y, b) for y in _shuffle_reference(xs, groups, splits)]
    attrs = {"sizes": list(sizes), "groups": groups, "splits": list(splits)}
    got = run_node("BlockedChannelShuffle", [to_blocked(x, b) for x in xs], attrs, [y.shape for y in want])
    for g, y in zip(got, want):
        np.testing.assert_array_equal(g, y)


def test_blocked_channel_shuffle_rejects_bad_groups():
    x = to_blocked(np.zeros((1, 10, 2, 2), np.float32), 16)
    with pytest.raises(ValueError, match="groups"):
        run_node("BlockedChannelShuffle", [x], {"sizes": [10], "groups": 3, "splits": [10]}, [x.shape])


@pytest.mark.parametrize(
    "c,hw,k,stride,dil,act",
    [(32, 24, 5, 2, 1, "HardSwish"), (16, 21, 3, 1, 2, "Relu"), (32, 9, 7, 1, 1, "HardSwish")],
    ids=["k5_s2_wide", "k3_dil2_wide", "k7_narrow"],
)
def test_blocked_depthwise_in_a_session_vs_onnxruntime(c, hw, k, stride, dil, act):
    """1x1 conv -> depthwise conv -> activation -> 1x1 conv through a full session: the
    depthwise conv runs blocked (the row-blocked kernel when B is one vector) and the result
    matches onnxruntime's."""
    from helpers import make_model, ort_run
    from onnx import helper

    import cnnrt

    rng = np.random.default_rng(11)
    pad = dil * (k - 1) // 2
    x = rng.standard_normal((1, c, hw, hw)).astype(F32)
    inits = {
        "w1": (rng.standard_normal((c, c, 1, 1)) / np.sqrt(c)).astype(F32),
        "wd": rng.standard_normal((c, 1, k, k)).astype(F32) / k,
        "bd": rng.standard_normal(c).astype(F32),
        "w2": (rng.standard_normal((c, c, 1, 1)) / np.sqrt(c)).astype(F32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node(
            "Conv",
            ["a", "wd", "bd"],
            ["d"],
            group=c,
            kernel_shape=[k, k],
            pads=[pad] * 4,
            strides=[stride] * 2,
            dilations=[dil] * 2,
        ),
        helper.make_node(act, ["d"], ["e"]),
        helper.make_node("Conv", ["e", "w2"], ["y"]),
    ]
    model = make_model(nodes, [("x", list(x.shape), np.float32)], [("y", None, np.float32)], inits)
    sess = cnnrt.InferenceSession(model)
    assert any(n.op == "BlockedConv" and int(n.attrs.get("group", 1)) > 1 for n in sess.graph.nodes)
    (got,) = sess.run(None, {"x": x})
    (want,) = ort_run(model, {"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


DW_CASES_S2_WIDE = (1, 16, 9, 44, 3, (2, 2), (1, 1, 1, 1), (1, 1))  # 22-wide output: split rows


@pytest.mark.parametrize("name", ["s2_8x8", "s2_odd", "k5_s2", "s3_s21", "dil23_s2_asym", "s2_wide"])
def test_row_blocked_depthwise_strided_vs_reference(name):
    """The row-blocked kernel called directly on strided cases, with a residual and an
    activation it applies after the clamp."""
    from cnnrt.kernels.cpu.depthwise_blocked import RowBlockedDepthwise

    case = DW_CASES_S2_WIDE if name == "s2_wide" else DW_CASES[name]
    spec = _dw_spec(case, F32, "HardSwish", True)
    rng = np.random.default_rng(9)
    x = rng.standard_normal(case[:4]).astype(F32)
    w = rng.standard_normal((spec.m, 1, spec.kh, spec.kw)).astype(F32)
    bv = rng.standard_normal(spec.m).astype(F32)
    r = rng.standard_normal((spec.n, spec.m, spec.oh, spec.ow)).astype(F32)
    b = lanes(F32)  # the kernel's block is one vector
    wp = np.ascontiguousarray(w.reshape(spec.m // b, b, -1).transpose(0, 2, 1)).reshape(-1)
    y = np.full((spec.n, spec.m // b, spec.oh, spec.ow, b), np.nan, F32)
    RowBlockedDepthwise(spec, b)(to_blocked(x, b), y, wp, bv, to_blocked(r, b))
    pads = (spec.pt, spec.pl, spec.pb, spec.pr)
    pre = conv2d_reference(x, w, bv, (spec.sh, spec.sw), pads, (spec.dh, spec.dw), spec.c) + r
    mag = conv2d_reference(np.abs(x), np.abs(w), np.abs(bv), (spec.sh, spec.sw), pads, (spec.dh, spec.dw), spec.c)
    want = activation_ref(pre, "HardSwish", spec.alpha, spec.beta)
    assert_within(from_blocked(y), want, bound(spec.kh * spec.kw + 2, mag + np.abs(r), want, F32, "HardSwish"), name)


@pytest.mark.parametrize("act", ["Relu", "Clip"])
@pytest.mark.parametrize("name", ["s1_8x8", "s1_asym", "k5_p2", "bands", "dil2", "wide_pad", "s2_odd"])
def test_row_blocked_depthwise_bf16_activations(name, act):
    """A bf16 input is widened exactly (the float32 input of the same values gives the same
    result, bit for bit), a bf16 output is the float32 result rounded to nearest even, once;
    the residual stays float32 (passes/precision.py: MobileNetV2's expanded tensors)."""
    import ml_dtypes

    case = DW_CASES[name]
    b = lanes(F32)
    spec = _dw_spec(case, F32, act, True)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(case[:4]).astype(ml_dtypes.bfloat16).astype(F32)
    w = _readonly(rng.standard_normal((spec.m, 1, spec.kh, spec.kw)).astype(F32))
    bv = _readonly(rng.standard_normal(spec.m).astype(F32))
    r = to_blocked(rng.standard_normal((spec.n, spec.m, spec.oh, spec.ow)).astype(F32), b)
    xb = to_blocked(x, b)
    oshape = (spec.n, spec.m // b, spec.oh, spec.ow, b)
    outs = {}
    for bf16_in, bf16_out in [(False, False), (True, False), (False, True), (True, True)]:
        run = build_blocked_depthwise(spec, w, bv, b, bf16_in, bf16_out)
        y = np.full(oshape, np.nan, ml_dtypes.bfloat16 if bf16_out else F32)
        run([xb.astype(ml_dtypes.bfloat16) if bf16_in else xb, w, bv, r], [y])
        outs[bf16_in, bf16_out] = y
    f32 = outs[False, False]
    assert np.array_equal(outs[True, False], f32)
    rounded = f32.astype(ml_dtypes.bfloat16)
    assert np.array_equal(outs[False, True].view(np.uint16), rounded.view(np.uint16))
    assert np.array_equal(outs[True, True].view(np.uint16), rounded.view(np.uint16))


def test_depthwise_bf16_output_refuses_other_activations():
    spec = _dw_spec(DW_CASES["s1_8x8"], F32, "HardSwish")
    w = _readonly(np.ones((spec.m, 1, 3, 3), F32))
    with pytest.raises(ValueError, match="Relu/Clip"):
        build_blocked_depthwise(spec, w, None, lanes(F32), bf16_out=True)


@pytest.mark.parametrize("act", ["none", "Relu", "Clip"])
def test_blocked_channel_affine_bf16_output_is_the_float32_one_rounded(act):
    """A bf16 output (passes/precision.py: DenseNet's BN + ReLU read by a bf16 conv): the
    float32 result rounded to nearest even, bit for bit, NaN kept NaN."""
    import ml_dtypes

    x, s, t = _affine_data(F32)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    b = lanes(F32)
    alpha, beta = act_params(act)
    attrs = dict(activation=act, act_alpha=alpha, act_beta=beta)
    args = ("BlockedChannelAffine", [to_blocked(x, b), s, t], attrs, [to_blocked(x, b).shape])
    (f32,) = run_node(*args, ["float32"], const=(1, 2))
    (got,) = run_node(*args, ["bfloat16"], const=(1, 2))
    want = f32.astype(ml_dtypes.bfloat16)
    nan = np.isnan(f32)
    assert np.array_equal(np.isnan(got.astype(F32)), nan)
    assert np.array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])


def test_blocked_channel_affine_bf16_output_refuses_other_activations():
    x, s, t = _affine_data(F32)
    b = lanes(F32)
    with pytest.raises(ValueError, match="Relu/Clip"):
        run_node(
            "BlockedChannelAffine",
            [to_blocked(x, b), s, t],
            dict(activation="Sigmoid"),
            [to_blocked(x, b).shape],
            ["bfloat16"],
            const=(1, 2),
        )
