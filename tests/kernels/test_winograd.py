"""Winograd F(4x4, 3x3): transforms, a float64 numpy reference, and the float32 kernel's error.

The error bound is derived, not tuned. Every output of the kernel is a sum of products
computed with rounding; along the longest path one term goes through at most

    1  (weight transform, computed in float64 and rounded once to float32)
  + 6  (input transform: two passes, each entry of B^T d at most 3 roundings:
        e.g. ((4*d0 - 5*d2) + d4) rounds 5*d2, the subtraction and the addition;
        multiplications by 2, 4 and 8 are exact)
  + 1  (the product U * V inside the GEMM)
  + C  (accumulation over the C input channels, any summation order)
  + 6  (output transform: two passes, each entry at most 3 roundings:
        (m0 + (m1 + m2)) + (m3 + m4), or ((m1 - m2) + 8*(m3 - m4)) + m5)
  + 2  (bias, residual)
  + 1  (the final rounding to float32)

roundings, so (Higham, Accuracy and Stability, Lemma 3.1 applied term by term) the error is
at most gamma_n = n*u / (1 - n*u) times the SAME computation carried out on absolute values:
|A^T| ( sum_c (|G| |g_c| |G^T|) * (|B^T| |d_c| |B|) ) |A| + |bias| + |residual|.
That magnitude is computed in float64 by the reference below. It is larger than the direct
convolution's sum |w||x| (the transforms' entries reach 8 and 5), which is the price of the
4x fewer multiplications; the test also checks that the bound stays within a modest factor
of the direct one, so a loose bound cannot hide a broken kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import U32  # noqa: E402
from reference import conv2d_reference, conv_out  # noqa: E402

from cnnrt.kernels.conv_spec import ConvSpec  # noqa: E402
from cnnrt.kernels.cpu import conv as conv_mod  # noqa: E402
from cnnrt.kernels.cpu import winograd as wg  # noqa: E402
from cnnrt.kernels.cpu.conv_algorithm import choose  # noqa: E402


def winograd_reference(x, w, pads, absolute=False):
    """F(4x4, 3x3) in float64 numpy: tiles gathered explicitly, transforms as matrices.

    With ``absolute`` every operand (data and transform matrices) is replaced by its absolute
    value: the magnitude that bounds the rounding error."""
    f = np.abs if absolute else (lambda a: a)
    x, w = f(np.asarray(x, np.float64)), f(np.asarray(w, np.float64))
    bt, g, at = f(wg.BT), f(wg.G), f(wg.AT)
    n, c, h, wd = x.shape
    m = w.shape[0]
    pt, pl, pb, pr = pads
    oh, ow = conv_out(h, 3, 1, 1, pt, pb), conv_out(wd, 3, 1, 1, pl, pr)
    th, tw = -(-oh // 4), -(-ow // 4)
    xp = np.zeros((n, c, th * 4 + 2, tw * 4 + 2))
    src = x[:, :, : min(h, th * 4 + 2 - pt), : min(wd, tw * 4 + 2 - pl)]
    xp[:, :, pt : pt + src.shape[2], pl : pl + src.shape[3]] = src
    u = np.einsum("ai,mcij,bj->abmc", g, w, g)  # (6, 6, M, C)
    y = np.zeros((n, m, th * 4, tw * 4))
    for ty in range(th):
        for tx in range(tw):
            d = xp[:, :, ty * 4 : ty * 4 + 6, tx * 4 : tx * 4 + 6]  # (N, C, 6, 6)
            v = np.einsum("ai,ncij,bj->nabc", bt, d, bt)  # (N, 6, 6, C)
            mm = np.einsum("abmc,nabc->nabm", u, v)
            y[:, :, ty * 4 : ty * 4 + 4, tx * 4 : tx * 4 + 4] = np.einsum("ia,nabm,jb->nmij", at, mm, at)
    return y[:, :, :oh, :ow]


def test_transforms_are_winograd_f43():
    """A^T [(G g G^T) * (B^T d B)] A equals the 3x3 correlation of a 6x6 block, exactly in float64."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    y = wg.AT @ ((wg.G @ g @ wg.G.T) * (wg.BT @ d @ wg.BT.T)) @ wg.AT.T
    direct = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(y, direct, rtol=0, atol=1e-12)


# (N, C, H, W, M, pads (t, l, b, r), residual)
CASES = {
    "56x56_pad1": (1, 32, 16, 16, 32, (1, 1, 1, 1), False),
    "odd_tiles_hang_over": (2, 33, 13, 11, 40, (1, 1, 1, 1), True),
    "no_pad": (1, 16, 10, 14, 24, (0, 0, 0, 0), False),
    "asym_pad": (1, 24, 9, 12, 17, (2, 0, 1, 3), True),
    "one_channel": (1, 1, 8, 8, 3, (1, 1, 1, 1), False),
    "deep_c": (1, 256, 6, 6, 20, (1, 1, 1, 1), False),
}


def _gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


@pytest.mark.parametrize("name", list(CASES))
def test_winograd_error_within_derived_bound(name):
    n, c, h, w, m, pads, with_res = CASES[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    oh, ow = conv_out(h, 3, 1, 1, pads[0], pads[2]), conv_out(w, 3, 1, 1, pads[1], pads[3])
    r = rng.standard_normal((n, m, oh, ow)).astype(np.float32) if with_res else None
    got = conv_mod.conv2d(x, wt, b, r, pads=pads, algorithm="winograd").astype(np.float64)

    ref = conv2d_reference(x, wt, b, (1, 1), pads, (1, 1), 1) + (0 if r is None else r)
    # the float64 reference Winograd computes the same values (up to float64 rounding)
    wref = winograd_reference(x, wt, pads) + b[None, :, None, None] + (0 if r is None else r)
    np.testing.assert_allclose(wref, ref, rtol=0, atol=1e-9 * max(1.0, np.abs(ref).max()))

    mag = winograd_reference(x, wt, pads, absolute=True) + np.abs(b)[None, :, None, None]
    mag = mag + (0 if r is None else np.abs(r))
    bound = _gamma(c + 17) * mag
    err = np.abs(got - ref)
    assert (err <= bound).all(), (
        f"{name}: worst err {err.max():.3e}, bound there {bound.flat[np.argmax(err - bound)]:.3e}"
    )

    # the bound is not vacuous: within ~200x the direct convolution's own accumulation bound
    direct_mag = conv2d_reference(np.abs(x), np.abs(wt), np.abs(b), (1, 1), pads, (1, 1), 1)
    direct_bound = _gamma(c * 9 + 3) * (direct_mag + (0 if r is None else np.abs(r)))
    assert bound.max() <= 200 * direct_bound.max()


def test_winograd_matches_im2col_and_activations():
    """The fused epilogue (bias, residual, activation) as the other algorithms apply it."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 32, 12, 12)).astype(np.float32)
    wt = rng.standard_normal((48, 32, 3, 3)).astype(np.float32) / 17
    b = rng.standard_normal(48).astype(np.float32)
    r = rng.standard_normal((2, 48, 12, 12)).astype(np.float32)
    for act in ("none", "Relu", "LeakyRelu", "Tanh", "Sigmoid"):
        kw = dict(pads=(1, 1, 1, 1), activation=act, act_alpha=0.1)
        a = conv_mod.conv2d(x, wt, b, r, algorithm="winograd", **kw)
        d = conv_mod.conv2d(x, wt, b, r, algorithm="im2col", **kw)
        np.testing.assert_allclose(a, d, rtol=0, atol=2e-4 * max(1.0, np.abs(d).max()), err_msg=act)


def test_winograd_runtime_weights_and_blocks(monkeypatch):
    """Weights that are graph inputs (transformed at every run), and small task blocks (one tile
    row, part of the output channels per task) stitched into the output."""
    monkeypatch.setattr(wg, "_V_BUDGET", 1)
    monkeypatch.setattr(wg, "_MIN_TASKS", 64)
    monkeypatch.setattr(wg, "_MIN_TILES", 1)
    n, c, h, w, m, pads = 2, 33, 13, 11, 144, (1, 1, 1, 1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    spec = ConvSpec(n, c, h, w, m, h, w, 3, 3, 1, 1, *pads, 1, 1, 1)
    run = conv_mod.build_conv_spec(spec, None, None, "winograd")
    assert run.blocks[0] == 1 and run.blocks[1] < m  # one tile row, output channels split
    out = np.empty((n, m, h, w), np.float32)
    run([x, wt], [out])
    ref = conv2d_reference(x, wt, None, (1, 1), pads, (1, 1), 1)
    mag = winograd_reference(x, wt, pads, absolute=True)
    assert (np.abs(out - ref) <= _gamma(c + 17) * mag).all()


def test_select_algorithm_winograd_rule():
    def spec(c, h, m, n=1, k=3, s=1, g=1):
        oh = (h + 2 - k) // s + 1
        return ConvSpec(n, c, h, h, m, oh, oh, k, k, s, s, 1, 1, 1, 1, 1, 1, g)

    assert choose(spec(64, 56, 64))[0] == "winograd"
    assert choose(spec(512, 7, 512))[0] == "direct"  # 4 tiles, 38 MB of weights
    assert choose(spec(512, 7, 512, n=4))[0] == "winograd"  # 16 tiles
    assert choose(spec(128, 7, 64))[0] == "direct"  # 4 tiles, narrow
    assert choose(spec(128, 14, 32))[0] == "direct"  # 16 tiles, narrow
    assert choose(spec(128, 7, 32, n=8))[0] == "winograd"  # 32 tiles
    assert choose(spec(512, 14, 512))[0] == "winograd"  # 16 tiles, wide
    assert choose(spec(64, 56, 64, s=2))[0] == "im2col"
    assert choose(spec(256, 14, 512, s=2))[0] == "direct"
    assert choose(spec(3, 224, 64, k=7, s=2))[0] == "direct"
    assert choose(spec(32, 56, 64))[0] == "direct"  # too few input channels
    assert choose(spec(128, 56, 16))[0] == "direct"  # too few output channels
    assert choose(spec(64, 13, 256))[0] == "direct"  # 16 tiles, a third of them unused
    assert choose(spec(256, 14, 256))[0] == "direct"  # 16 tiles, 256 x 256 channels
    assert choose(spec(256, 14, 256, n=2))[0] == "winograd"  # 32 tiles
    assert choose(spec(128, 28, 128))[0] == "winograd"
    assert choose(spec(64, 56, 64, g=2))[0] == "direct"


def test_winograd_blocks_spanning_images(monkeypatch):
    """Small images at batch > 1: one task takes tile rows of several images (8 tile rows of
    3-row images here, blocks starting and ending mid-image), each written to its own image."""
    monkeypatch.setattr(wg, "_V_BUDGET", 1)  # rows from _MIN_TILES alone: 16 tiles = 8 rows
    n, c, h, w, m = 5, 32, 9, 7, 40  # 3 x 2 tiles per image
    spec = ConvSpec(n, c, h, w, m, h, w, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, "float32", False, True, 1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    r = rng.standard_normal((n, m, h, w)).astype(np.float32)
    run = conv_mod.build_conv_spec(spec, wt, None, "winograd")
    rows, _ = run.blocks
    assert rows > 3 and (n * 3) % rows != 0
    out = np.empty((n, m, h, w), np.float32)
    run([x, wt, None, r], [out])
    pre = conv2d_reference(x, wt, None, (1, 1), (1, 1, 1, 1), (1, 1), 1) + r
    mag = winograd_reference(x, wt, (1, 1, 1, 1), absolute=True) + np.abs(r)
    assert (np.abs(out - np.maximum(pre, 0)) <= _gamma(c + 17) * mag).all()
