"""cnnrt's register-tile GEMM (microkernel.py) and the conv algorithms built on it
(pointwise / im2col in conv_gemm.py, direct in conv_direct.py) on shapes that exercise their
blocking: several row panels with a ragged last one, K longer than a reduction block,
column blocks inside and across images, ragged column panels, groups, float64.

References are float64 numpy; bounds come from reference.sum_bound (accumulation length times
the magnitude of the same sum on absolute values), not tuned.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import act_params, assert_within, sum_bound  # noqa: E402
from numba import njit
from reference import activation_ref, conv2d_reference, conv_out  # noqa: E402

from cnnrt.core.ops import ACTIVATIONS  # noqa: E402
from cnnrt.kernels.activation import CLIP, RELU  # noqa: E402
from cnnrt.kernels.conv_spec import ConvSpec  # noqa: E402
from cnnrt.kernels.cpu import conv as conv_mod  # noqa: E402
from cnnrt.kernels.cpu import conv_direct  # noqa: E402
from cnnrt.kernels.cpu import microkernel as mk  # noqa: E402
from cnnrt.kernels.cpu.conv_algorithm import choose  # noqa: E402


@njit
def _one_tile(a, a_off, a_rs, a_ks, b, b_off, ldb, k, c, c_off, ldc, mr, flags, bias, res, lo, hi):
    mk.tile(a, a_off, a_rs, a_ks, b, b_off, ldb, k, c, c_off, ldc, mr, flags, bias, 0, res, c_off, lo, hi)


@njit
def _one_tile_taps(a, a_ts, b, b_off, ldb, taps, k, c, ldc):
    mk.tile_taps(
        a, 0, 1, mk.MR, a_ts, b, b_off, ldb, taps, taps.shape[0], k, c, 0, ldc, mk.MR, 0, c, 0, c, 0, c[0], c[0]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mr", [mk.MR, 3])
@pytest.mark.parametrize("k", [1, 37])
def test_tile_products_and_epilogue(dtype, mr, k):
    """C = A @ B (+ old C) + bias + res, then Relu or Clip; rows past ``mr`` untouched."""
    nr = mk.nr(dtype)
    rng = np.random.default_rng(k)
    a = rng.standard_normal((mk.MR, k))
    b = rng.standard_normal((k, nr + 5))  # ldb wider than the tile
    old = rng.standard_normal((mk.MR, nr + 3))  # ldc wider than the tile
    bias = rng.standard_normal(mk.MR)
    res = rng.standard_normal((mk.MR, nr + 3))
    packed = mk.pack_a(a.astype(dtype))  # (1, k, MR)
    prod = a @ b[:, :nr]
    for flags, want in [
        (0, prod),
        (mk.ACCUMULATE, prod + old[:, :nr]),
        (mk.BIAS | mk.RESIDUAL, prod + bias[:, None] + res[:, :nr]),
        (mk.BIAS | RELU << mk.ACT_SHIFT, np.maximum(prod + bias[:, None], 0)),
        (CLIP << mk.ACT_SHIFT, np.clip(prod, -0.5, 0.75)),
    ]:
        c = old.astype(dtype)
        _one_tile(
            packed,
            0,
            1,
            mk.MR,
            b.astype(dtype).ravel(),
            0,
            nr + 5,
            k,
            c.ravel(),
            0,
            nr + 3,
            mr,
            flags,
            bias.astype(dtype),
            res.astype(dtype).ravel(),
            dtype(-0.5),
            dtype(0.75),
        )
        mag = np.abs(a) @ np.abs(b[:, :nr]) + np.abs(old[:, :nr]) + np.abs(bias)[:, None] + np.abs(res[:, :nr])
        assert_within(c[:mr, :nr], want[:mr], sum_bound(k + 3, mag[:mr], want[:mr], "none"), f"flags {flags}")
        assert np.array_equal(c[mr:], old[mr:].astype(dtype)), "rows past mr were written"
        assert np.array_equal(c[:, nr:], old[:, nr:].astype(dtype)), "columns past the tile were written"


@pytest.mark.parametrize("mr", [mk.MR, 3])
def test_tile_applies_the_stored_kinds(mr):
    """Float32: the activations the tile applies to its stored results (Sigmoid, SiLU, Elu,
    HardSigmoid, HardSwish, LeakyRelu, Tanh), after bias and residual; rows past ``mr`` and
    columns past the tile untouched. Float64 tiles leave them to the caller (tile_act 0)."""
    nr = mk.nr(np.float32)
    rng = np.random.default_rng(mr)
    k = 5
    a, b = rng.standard_normal((mk.MR, k)), rng.standard_normal((k, nr))
    bias, res = rng.standard_normal(mk.MR), rng.standard_normal((mk.MR, nr + 3))
    old = rng.standard_normal((mk.MR, nr + 3)).astype(np.float32)
    pre = a @ b + bias[:, None] + res[:, :nr]
    mag = np.abs(a) @ np.abs(b) + np.abs(bias)[:, None] + np.abs(res[:, :nr])
    for name in ("Sigmoid", "SiLU", "Elu", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh"):
        kind = ACTIVATIONS[name]
        assert mk.tile_act(kind, np.float32) == kind and mk.tile_act(kind, np.float64) == 0
        alpha, beta = act_params(name)
        c = old.copy()
        _one_tile(
            mk.pack_a(a.astype(np.float32)),
            0,
            1,
            mk.MR,
            b.astype(np.float32).ravel(),
            0,
            nr,
            k,
            c.ravel(),
            0,
            nr + 3,
            mr,
            mk.BIAS | mk.RESIDUAL | kind << mk.ACT_SHIFT,
            bias.astype(np.float32),
            res.astype(np.float32).ravel(),
            np.float32(alpha),
            np.float32(beta),
        )
        want = activation_ref(pre, name, alpha, beta)
        assert_within(c[:mr, :nr], want[:mr], sum_bound(k + 2, mag[:mr], want[:mr], name, alpha), name)
        assert np.array_equal(c[mr:], old[mr:]) and np.array_equal(c[:, nr:], old[:, nr:]), name


def test_tile_activation_keeps_nan_and_maps_minus_inf():
    """Relu: NaN stays NaN, -Inf -> 0; Clip: NaN stays NaN (as onnxruntime)."""
    nr = mk.nr(np.float32)
    a = mk.pack_a(np.ones((mk.MR, 1), np.float32))
    b = np.zeros((1, nr), np.float32)
    b[0, :3] = [np.nan, -np.inf, np.inf]
    for act, want in [(RELU, [np.nan, 0, np.inf]), (CLIP, [np.nan, 0, 6])]:
        c = np.zeros((mk.MR, nr), np.float32)
        _one_tile(
            a,
            0,
            1,
            mk.MR,
            b.ravel(),
            0,
            nr,
            1,
            c.ravel(),
            0,
            nr,
            mk.MR,
            act << mk.ACT_SHIFT,
            np.zeros(mk.MR, np.float32),
            c.ravel(),
            np.float32(0),
            np.float32(6),
        )
        np.testing.assert_array_equal(c[:, :3], np.tile(want, (mk.MR, 1)).astype(np.float32))


def test_tile_reads_a_in_place_and_sums_taps():
    """A read as plain rows (a_rs, a_ks) and a sum over taps (B shifted per tap)."""
    nr = mk.nr(np.float32)
    rng = np.random.default_rng(3)
    k, taps = 20, np.array([0, 1, 7], np.int64)
    rows = rng.standard_normal((mk.MR, k)).astype(np.float32)  # row-major: a_rs = k, a_ks = 1
    c = np.zeros(mk.MR * nr, np.float32)
    b = rng.standard_normal(k * 64 + 16).astype(np.float32)
    _one_tile(
        rows.ravel(),
        0,
        k,
        1,
        b,
        0,
        64,
        k,
        c,
        0,
        nr,
        mk.MR,
        0,
        np.zeros(mk.MR, np.float32),
        c,
        np.float32(0),
        np.float32(0),
    )
    bm = np.stack([b[i * 64 : i * 64 + nr] for i in range(k)]).astype(np.float64)
    want = rows.astype(np.float64) @ bm
    assert_within(c.reshape(mk.MR, nr), want, sum_bound(k, np.abs(rows) @ np.abs(bm), want, "none"), "in place")
    a3 = rng.standard_normal((3, mk.MR, k)).astype(np.float32)  # one A block per tap
    packed = np.concatenate([mk.pack_a(a3[t]).ravel() for t in range(3)])
    c = np.zeros(mk.MR * nr, np.float32)
    _one_tile_taps(packed, k * mk.MR, b, 0, 64, taps, k, c, nr)
    shifted = [np.stack([b[tp + i * 64 : tp + i * 64 + nr] for i in range(k)]).astype(np.float64) for tp in taps]
    want = sum(a3[t].astype(np.float64) @ shifted[t] for t in range(3))
    mag = sum(np.abs(a3[t]) @ np.abs(shifted[t]) for t in range(3))
    assert_within(c.reshape(mk.MR, nr), want, sum_bound(3 * k, mag, want, "none"), "taps")


# (N, C, H, W, M, kh, kw, stride, pad, dilation, group): medium shapes that take several
# tasks, row panels (M not a multiple of MR), K blocks (C*kh*kw > k_block) and ragged panels
MEDIUM = {
    "3x3_k_blocks": (2, 40, 13, 11, 20, 3, 3, 1, 1, 1, 1),
    "5x5_s2_g2": (1, 16, 17, 15, 30, 5, 5, 2, 2, 1, 2),
    "3x3_d2": (3, 8, 9, 9, 13, 3, 3, 1, 2, 2, 1),
    "7x7_s2_stem": (1, 3, 40, 38, 16, 7, 7, 2, 3, 1, 1),
    "1x1_wide": (2, 300, 7, 7, 70, 1, 1, 1, 0, 1, 1),
    "1x1_fold": (5, 24, 3, 3, 50, 1, 1, 1, 0, 1, 1),
    "1x1_s2": (3, 20, 9, 9, 28, 1, 1, 2, 0, 1, 1),
    "covers_input": (3, 16, 5, 4, 120, 5, 4, 1, 0, 1, 1),  # LeNet's last conv: a Gemm ("fc")
}


def _medium_data(case, dtype, seed):
    n, c, h, w, m, kh, kw, s, p, d, g = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((m, c // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    oh, ow = conv_out(h, kh, s, d, p, p), conv_out(w, kw, s, d, p, p)
    r = rng.standard_normal((n, m, oh, ow)).astype(dtype)
    return x, wt, b, r


# every algorithm on every case it computes (pointwise: 1x1 stride 1; fc: kernel == input)
MEDIUM_RUNS = [
    (name, alg)
    for name, case in MEDIUM.items()
    for alg in ("direct", "im2col", "pointwise", "fc")
    if (alg != "pointwise" or (case[5] * case[6], case[7]) == (1, 1)) and (alg != "fc" or case[2:4] == case[5:7])
]


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("act", ["Relu", "Clip", "Sigmoid", "SiLU", "HardSwish"])
@pytest.mark.parametrize("name,algorithm", MEDIUM_RUNS)
def test_medium_convs(name, algorithm, act, residual, monkeypatch):
    case = MEDIUM[name]
    n, c, h, w, m, kh, kw, s, p, d, g = case
    monkeypatch.setattr(conv_direct, "_BLOCK_BUDGET", 16 << 10)  # many small tasks
    x, wt, b, r = _medium_data(case, np.float32, seed=len(name))
    r = r if residual else None
    alpha, beta = {"Clip": (-0.5, 0.5)}.get(act, (0.0, 0.0))
    got = conv_mod.conv2d(
        x,
        wt,
        b,
        r,
        strides=(s, s),
        pads=(p,) * 4,
        dilations=(d, d),
        group=g,
        activation=act,
        act_alpha=alpha,
        act_beta=beta,
        algorithm=algorithm,
    )
    pre = conv2d_reference(x, wt, b, (s, s), (p,) * 4, (d, d), g)
    mag = conv2d_reference(np.abs(x), np.abs(wt), np.abs(b), (s, s), (p,) * 4, (d, d), g)
    if r is not None:
        pre, mag = pre + r, mag + np.abs(r)
    ref = activation_ref(pre, act, alpha, beta)
    assert_within(got, ref, sum_bound(c // g * kh * kw + 2, mag, ref, act, alpha), f"{name}/{algorithm}/{act}")


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_float64_convs(algorithm):
    case = MEDIUM["3x3_k_blocks"]
    n, c, h, w, m, kh, kw, s, p, d, g = case
    x, wt, b, r = _medium_data(case, np.float64, seed=7)
    got = conv_mod.conv2d(x, wt, b, r, pads=(p,) * 4, activation="Relu", algorithm=algorithm)
    assert got.dtype == np.float64
    ref = np.maximum(conv2d_reference(x, wt, b, (1, 1), (p,) * 4, (1, 1), 1) + r, 0)
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)


def test_select_fc_for_kernels_covering_the_input():
    def algo(h, w, kh, kw, p=0, g=1):
        return choose(
            ConvSpec(2, 4, h, w, 8, (h + 2 * p - kh) + 1, (w + 2 * p - kw) + 1, kh, kw, 1, 1, p, p, p, p, 1, 1, g)
        )[0]

    assert algo(5, 5, 5, 5) == "fc"
    assert algo(5, 4, 5, 4) == "fc"
    assert algo(5, 5, 5, 5, p=1) == "direct"  # padded: 3x3 outputs
    assert algo(5, 5, 5, 5, g=2) == "direct"  # grouped
    assert algo(5, 5, 3, 3) == "direct"


def test_direct_geometry_keeps_taps_inside_their_planes():
    """Every tap of every valid output reads inside its phase plane, for strides and dilations."""
    for kh, s, d, p, h in [(3, 1, 1, 1, 7), (3, 2, 1, 1, 8), (7, 2, 1, 3, 15), (3, 3, 2, 2, 11), (2, 2, 1, 0, 5)]:
        oh = conv_out(h, kh, s, d, p, p)
        spec = ConvSpec(1, 1, h, h, 1, oh, oh, kh, kh, s, s, p, p, p, p, d, d, 1)
        geo = conv_direct.Geometry(spec)
        for tap, off in enumerate(geo.tap_offsets):
            within = off % geo.plane
            row, col = divmod(int(within), geo.wq)
            assert row + oh - 1 < geo.hq and col + oh - 1 < geo.wq, (kh, s, d, p, tap)
