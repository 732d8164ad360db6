"""The bf16 blocked conv (conv_blocked_bf16.py, microkernel_bf16.py) against float64 numpy on
inputs and weights rounded to bf16 first (ml_dtypes' round-to-nearest-even, as
vcvtne2ps2bf16): the products of bf16 values are exact in float32, so the only error left
is the float32 accumulation, held to reference.sum_bound as the float32 tile is."""

from __future__ import annotations

import re

import ml_dtypes
import numba
import numpy as np
import pytest
from kernel_helpers import act_params, assert_within, sum_bound
from numba import njit
from reference import activation_ref, conv2d_reference, conv_out
from test_conv_blocked import CASES, _data, run_blocked

from cnnrt.core.layout import block as to_blocked
from cnnrt.core.layout import unblock as from_blocked
from cnnrt.errors import BackendUnavailableError
from cnnrt.kernels.conv_spec import ConvSpec
from cnnrt.kernels.cpu import conv_blocked as cb
from cnnrt.kernels.cpu import conv_blocked_bf16
from cnnrt.kernels.cpu.conv_common import block_size
from cnnrt.kernels.cpu.llvm_ir import NATIVE_BF16
from cnnrt.kernels.cpu.microkernel_bf16 import BF16_TILES, bf16_run, from_bf16, tile_blocked4, to_bf16

pytestmark = pytest.mark.skipif(bool(conv_blocked_bf16.bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")


def _bf16(a):
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


@njit
def _vectors_to_bf16(bits, out, start, count):
    bf16_run(bits, start, out, start, count)


@pytest.mark.parametrize("convert", ["numpy", "vectors"])
def test_rounding_matches_round_to_nearest_even(convert):
    """to_bf16 (weights) and bf16_run (the conv input's copy) round as ml_dtypes does; with
    AVX-512 BF16, bf16_run's vcvtneps2bf16 reads a denormal input as a zero of its sign."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_001, dtype=np.uint64).astype(np.uint32)
    bits[1:7] = [0x3F808000, 0x3F818000, 0x7F7FFFFF, 0xFF800000, 0x7FC00001, 0x00008000]  # ties, max, -inf, NaN
    x = bits[1:].view(np.float32)
    if convert == "numpy":
        b16 = to_bf16(x)
    else:  # from element 1 on: whole vectors, then a masked one of 15 lanes; nothing else written
        out = np.full(bits.size + 16, 0x1234, np.uint16)
        _vectors_to_bf16(bits, out, 1, x.size - 1)
        assert out[0] == 0x1234 and (out[x.size :] == 0x1234).all()
        b16 = out[1 : x.size]
        x = x[:-1]
    if convert == "vectors" and NATIVE_BF16:
        denormal = (x.view(np.uint32) & 0x7F800000) == 0
        assert denormal.sum() > 500  # the case has them
        x = np.where(denormal, np.copysign(np.float32(0), x), x)
    with np.errstate(invalid="ignore"):  # NaN bit patterns among the random ones
        got, want = from_bf16(b16), x.astype(ml_dtypes.bfloat16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


@pytest.mark.parametrize("act", ["Relu", "Sigmoid"])
@pytest.mark.parametrize("name", ["3x3", "3x3_long_k", "3x3_s2", "1x1", "3x3_7x7_batch", "7x7_s2_stem"])
def test_bf16_blocked_conv(name, act):
    """Blocked inputs, and a 3-channel NCHW stem (channel pairs, a zero fourth channel)."""
    stem = name.endswith("_stem")
    case = CASES[name.removesuffix("_stem")]
    x, wt, b, r = _data(case, np.float32, seed=len(name), nchw_c=3 if stem else None)
    n, c, h, w, m, k, s, p, d = case
    c = x.shape[1]
    r = r if act == "Relu" else None  # the residual with one epilogue is enough
    got = run_blocked(x, wt, b, r, s, p, d, act, blocked_input=not stem, precision="bf16")
    xb, wb = _bf16(x), _bf16(wt)
    pre = conv2d_reference(xb, wb, b, (s, s), (p,) * 4, (d, d), 1)
    mag = conv2d_reference(np.abs(xb), np.abs(wb), np.abs(b), (s, s), (p,) * 4, (d, d), 1)
    if r is not None:
        pre, mag = pre + r, mag + np.abs(r)
    ref = activation_ref(pre, act)
    assert_within(got, ref, sum_bound(c * k * k + 2, mag, ref, act), f"bf16 {name} {act}")


@pytest.mark.parametrize("name", ["3x3", "3x3_s2", "1x1", "1x1_s2"])
def test_bf16_activation_input_is_read_as_the_float32_inputs_copy(name):
    """A bf16 input (read as it lies without padding, else copied into the zero border as
    it is) gives, bit for bit, what the float32 input holding the same values gives."""
    case = CASES[name]
    x, wt, b, r = _data(case, np.float32, seed=3)
    x = _bf16(x).astype(np.float32)
    n, c, h, w, m, k, s, p, d = case
    want = run_blocked(x, wt, b, r, s, p, d, "Relu", precision="bf16")
    got = run_blocked(x, wt, b, r, s, p, d, "Relu", precision="bf16", bf16_in=True)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("bf16_out", [False, True])
@pytest.mark.parametrize("name", ["3x3", "3x3_long_k", "1x1", "1x1_s2"])
def test_bf16_residual_is_read_as_the_float32_residual_it_holds(name, bf16_out):
    """A bf16 residual (a bf16 activation read by the epilogue) gives, bit for bit, what the
    float32 residual holding the same values gives: its bits are widened exactly as loaded,
    into a float32 or a bf16 output. A float32 conv refuses it."""
    case = CASES[name]
    x, wt, b, r = _data(case, np.float32, seed=6)
    r = _bf16(r).astype(np.float32)
    n, c, h, w, m, k, s, p, d = case
    want = run_blocked(x, wt, b, r, s, p, d, "Relu", precision="bf16", bf16_out=bf16_out)
    got = run_blocked(x, wt, b, r, s, p, d, "Relu", precision="bf16", bf16_out=bf16_out, bf16_res=True)
    assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="residual is read by bf16 convs only"):
        run_blocked(x, wt, b, r, s, p, d, "Relu", bf16_res=True)


@pytest.mark.parametrize("act", ["none", "Relu", "Clip", "Sigmoid", "SiLU", "HardSwish"])
@pytest.mark.parametrize("name", ["3x3", "3x3_long_k", "1x1"])
def test_bf16_output_is_the_float32_result_rounded(name, act):
    """A bf16 output: the whole reduction (never cut into chunks: 3x3_long_k's 27 taps are
    several chunks in float32) with bias, residual and activation, rounded once to nearest even."""
    case = CASES[name]
    x, wt, b, r = _data(case, np.float32, seed=4)
    n, c, h, w, m, k, s, p, d = case
    alpha, beta = act_params(act)
    got = run_blocked(x, wt, b, r, s, p, d, act, alpha, beta, precision="bf16", bf16_out=True)
    xb, wb = _bf16(x), _bf16(wt)
    pre = conv2d_reference(xb, wb, b, (s, s), (p,) * 4, (d, d), 1) + r
    mag = conv2d_reference(np.abs(xb), np.abs(wb), np.abs(b), (s, s), (p,) * 4, (d, d), 1) + np.abs(r)
    ref = activation_ref(pre, act, alpha, beta)
    assert np.array_equal(got, _bf16(got))  # stored as bf16
    bound = sum_bound(c * k * k + 2, mag, ref, act, alpha) + np.abs(ref) * 2.0**-8
    assert_within(got, ref, bound, f"bf16 out {name} {act}")


def test_bf16_output_refuses_what_its_epilogue_cannot_do():
    """Padding lanes to zero (M not whole blocks) or an activation the tile does not apply
    (Gelu runs over a float32 output afterwards): a clear error at build, not a float32 pass
    over bf16 memory."""
    x, wt, b, r = _data(CASES["3x3"], np.float32, seed=5)
    with pytest.raises(ValueError, match="whole blocks"):
        run_blocked(x, wt[:40], b[:40], None, 1, 1, 1, "Relu", precision="bf16", bf16_out=True)
    with pytest.raises(ValueError, match="activation"):
        run_blocked(x, wt, b, None, 1, 1, 1, "Gelu", precision="bf16", bf16_out=True)


def test_bf16_stem_non_finite_inputs_stay_where_float32_has_them():
    """An Inf pixel makes NaN or Inf exactly the outputs whose window holds it: the stem's
    zero channel multiplies zeros, never the Inf."""
    case = CASES["7x7_s2"]
    x, wt, b, _ = _data(case, np.float32, seed=5, nchw_c=3)
    x[0, 2, 9, 9] = np.inf
    _, _, _, _, _, _, s, p, d = case
    got = run_blocked(x, wt, b, None, s, p, d, blocked_input=False, precision="bf16")
    with np.errstate(invalid="ignore"):
        ref = conv2d_reference(_bf16(x), _bf16(wt), b, (s, s), (p,) * 4, (d, d), 1)
    assert np.isfinite(ref).sum() > 0 and not np.isfinite(ref).all()
    assert np.array_equal(np.isfinite(got), np.isfinite(ref))


def test_bf16_refused_without_the_instructions(monkeypatch):
    monkeypatch.setattr(conv_blocked_bf16, "bf16_unsupported_reason", lambda: "the CPU lacks AVX-512 BF16 (test)")
    with pytest.raises(BackendUnavailableError, match="bf16"):
        conv_blocked_bf16.check_bf16_cpu()


_TAPS = np.zeros(1, np.int64)
_MR = BF16_TILES[4][0]  # every row stored, so none of the tile is dead code


@njit
def _one_bf16_tile(a, pix, b, c, bias):
    tile_blocked4(a, 0, pix, 0, 1, _TAPS, 1, b, 0, 0, 64, 16, c, 0, 16, 64, _MR, 0, bias, 0, c, 0, 0.0, 0.0, 1, 16, ())


def test_bf16_tile_is_vdpbf16ps():
    """The bf16 tile of 4 blocks: pixels x 4 vdpbf16ps per step pair in each of its two
    reductions (pixels side by side, pixels by the offset table), nothing scalarised or
    emulated (LLVM unrolls the two differently, so the count is no multiple of a step's)."""
    u16, f32 = numba.uint16[::1], numba.float32[::1]
    _one_bf16_tile.compile((u16, numba.int64[::1], u16, f32, f32))
    asm = _one_bf16_tile.inspect_asm(_one_bf16_tile.signatures[0])
    dots = len(re.findall(r"vdpbf16ps\s+[^\n]*zmm", asm))
    per_step = 4 * _MR
    assert dots >= 2 * per_step, dots


@pytest.mark.parametrize("m,tb,k,n", [(1, 1, 48, 37), (1, 0, 1024, 1000), (3, 0, 48, 37), (3, 1, 48, 37)])
def test_bf16_gemm(m, tb, k, n):
    """A Gemm with constant B in bf16, with alpha, a C row and an activation (its float32
    epilogue): several rows on the bf16 conv (gemm_bf16.py, rows as pixels, N = 37 not whole
    blocks), one row as a stream through B's bf16 bits, widened as read (gemm._gemv_block: A
    and the sums stay float32; 1024 x 1000 splits across threads)."""
    from kernel_helpers import run_node
    from reference import gemm_reference

    rng = np.random.default_rng(m + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal(n).astype(np.float32)
    attrs = dict(alpha=0.5, beta=1.0, trans_a=0, trans_b=tb, activation="Relu", act_alpha=0.0, act_beta=0.0)
    (got,) = run_node("Gemm", [a, b, c], {**attrs, "precision": "bf16"}, [(m, n)], const=(1, 2))
    a_used = a if m == 1 else _bf16(a)
    pre = gemm_reference(a_used, _bf16(b), c, 0.5, 1.0, 0, tb)
    mag = gemm_reference(np.abs(a_used), np.abs(_bf16(b)), np.abs(c), 0.5, 1.0, 0, tb)
    want = activation_ref(pre, "Relu")
    assert_within(got, want, sum_bound(k + 2, mag, want, "Relu"), f"bf16 gemm m={m} tb={tb}")
    f32 = gemm_reference(a, b, c, 0.5, 1.0, 0, tb)
    assert not np.allclose(got, activation_ref(f32, "Relu"), rtol=0, atol=1e-6)  # the bf16 product ran


@pytest.mark.parametrize(("c", "k", "s", "p"), [(24, 1, 1, 0), (40, 3, 1, 1), (8, 3, 2, 1)])
def test_bf16_conv_reduces_over_the_real_input_channels(c, k, s, p):
    """A blocked input whose last block is short (24 channels in two blocks of 16, MobileNetV2's
    narrow stages): told the real C, the bf16 tile reduces the last block's taps over its real
    channel pairs only, never reading the padding lanes (NaN here); the result is, bit for bit,
    the bf16 conv of the input with zero padding lanes, which reduces over all of them."""
    lanes = block_size(np.float32)
    cp = -(-c // lanes) * lanes
    rng = np.random.default_rng(c)
    x = np.zeros((2, cp, 7, 9), np.float32)
    x[:, :c] = rng.standard_normal((2, c, 7, 9))
    wp = np.zeros((40, cp, k, k), np.float32)
    wp[:, :c] = rng.standard_normal((40, c, k, k))
    b = rng.standard_normal(40).astype(np.float32)
    oh, ow = conv_out(7, k, s, 1, p, p), conv_out(9, k, s, 1, p, p)
    spec = ConvSpec(2, cp, 7, 9, 40, oh, ow, k, k, s, s, p, p, p, p, 1, 1, 1, "float32", True, False)
    outs = []
    for real, fill in ((cp, 0.0), (c, np.nan)):
        xp = x.copy()
        xp[:, c:] = fill
        out = np.full((2, -(-40 // lanes), oh, ow, lanes), np.nan, np.float32)
        run = cb.build_blocked_conv(spec, wp, b, True, precision="bf16", in_channels=real)
        run([to_blocked(xp, lanes), wp, b, None], [out])
        outs.append(from_blocked(out))
    assert np.isfinite(outs[1]).all()
    assert np.array_equal(outs[1], outs[0])
