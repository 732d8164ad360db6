"""The AMX bf16 blocked conv (conv_amx.py, microkernel_amx.py) against float64 numpy on
inputs and weights rounded to bf16 first: the products of bf16 values are exact in float32,
so the only error left is the float32 accumulation, held to reference.sum_bound."""

from __future__ import annotations

import numpy as np
import pytest
from test_conv_blocked import CASES, _check, _data, run_blocked
from test_conv_blocked_bf16 import _bf16

from cnnrt.kernels.cpu.microkernel_amx import amx_unsupported_reason

pytestmark = pytest.mark.skipif(bool(amx_unsupported_reason()), reason="the CPU lacks AMX-BF16")

AMX_CASES = {
    **CASES,
    "3x3_wide": (2, 64, 20, 37, 96, 3, 1, 1, 1),  # several strips per row, two images
    "1x1_c16_m40": (1, 16, 9, 10, 40, 1, 1, 0, 1),  # half of a 32-channel input block; M past 32
    "3x3_s2_c48": (1, 48, 15, 14, 16, 3, 2, 1, 1),  # stride phases, one output block
}


def _check_bf16(x, wt, b, r, s, p, d, act, alpha, beta, got):
    """test_conv_blocked's check on the operands rounded to bf16 (exact in float32): what is left
    is the float32 accumulation."""
    _check(_bf16(x).astype(np.float32), _bf16(wt).astype(np.float32), b, r, s, p, d, act, alpha, beta, got)


@pytest.mark.parametrize("act", ["none", "Relu", "Clip", "SiLU"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("name", [n for n in AMX_CASES if n not in ("1x1_column_blocks",)])
def test_amx_conv(name, residual, act):
    case = AMX_CASES[name]
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, r = _data(case, np.float32, seed=len(name))
    r = r if residual else None
    alpha, beta = {"Clip": (-0.5, 0.5)}.get(act, (0.0, 0.0))
    got = run_blocked(
        x,
        wt,
        b,
        r if r is None else np.pad(r, ((0, 0), (0, -m % 16), (0, 0), (0, 0))),
        s,
        p,
        d,
        act,
        alpha,
        beta,
        amx=True,
    )
    assert (got[:, m:] == 0).all()  # the padding lanes of a last block
    got = got[:, :m]
    _check_bf16(x, wt, b, r, s, p, d, act, alpha, beta, got)


@pytest.mark.parametrize("act", ["none", "Relu"])
@pytest.mark.parametrize("name", ["3x3_s2", "7x7_s2", "1x1_s2", "3x3", "5x5_d2"])
def test_amx_folded_stem(name, act):
    """A 3-channel NCHW input: the kw taps fold into channels (conv_amx.FoldedGeometry)."""
    case = AMX_CASES[name]
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, _ = _data(case, np.float32, seed=7, nchw_c=3)
    if d != 1:
        with pytest.raises(ValueError, match="dilat"):
            run_blocked(x, wt, b, None, s, p, d, act, blocked_input=False, amx=True)
        return
    got = run_blocked(x, wt, b, None, s, p, d, act, blocked_input=False, amx=True)
    _check_bf16(x, wt, b, None, s, p, d, act, 0.0, 0.0, got)


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_amx_conv_writes_a_channel_range_of_a_bigger_buffer(residual):
    """At batch > 1 an in-place Concat hands its producers channel ranges whose images lie apart
    (passes/concat_in_place.py): written in place, or through a scratch when a residual is read
    at the output's offsets; the same values as a contiguous output, nothing else touched."""
    from cnnrt.core.ops import ACTIVATIONS
    from cnnrt.kernels.conv_spec import ConvSpec
    from cnnrt.kernels.cpu.conv_amx import build_amx_conv

    n, c, h, w, m = 2, 32, 9, 10, 32
    spec = ConvSpec(
        n, c, h, w, m, h, w, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, "float32", True, residual, ACTIVATIONS["Relu"], 0.0, 0.0
    )
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c // 16, h, w, 16)).astype(np.float32)
    wt = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    r = rng.standard_normal((n, m // 16, h, w, 16)).astype(np.float32) if residual else None
    run = build_amx_conv(spec, wt, b)
    want = np.empty((n, m // 16, h, w, 16), np.float32)
    run([x, wt, b, r], [want])
    big = np.full((n, 5, h, w, 16), 7.0, np.float32)
    run([x, wt, b, r], [big[:, 1:3]])
    np.testing.assert_array_equal(big[:, 1:3], want)
    assert (big[:, 0] == 7).all() and (big[:, 3:] == 7).all()


@pytest.mark.parametrize("k,s,p", [(3, 2, 2), (7, 2, 3), (5, 1, 4)])
def test_amx_folded_stem_dilated_in_height(k, s, p):
    """Height dilation on a folded stem, whole (3x3x3) and by kernel rows (7x7, 5x5); the
    lanes past M (24 of 32) stored as 0."""
    from kernel_helpers import assert_within, sum_bound
    from reference import conv2d_reference

    from cnnrt.core.layout import unblock
    from cnnrt.core.ops import ACTIVATIONS
    from cnnrt.kernels.conv_spec import ConvSpec
    from cnnrt.kernels.cpu.conv_amx import build_amx_conv

    n, c, h, w, m, dh = 2, 3, 17, 15, 24, 2
    oh, ow = (h + 2 * p - dh * (k - 1) - 1) // s + 1, (w + 2 * p - k) // s + 1
    spec = ConvSpec(
        n, c, h, w, m, oh, ow, k, k, s, s, p, p, p, p, dh, 1, 1, "float32", True, False, ACTIVATIONS["none"], 0.0, 0.0
    )
    rng = np.random.default_rng(k)
    x, wt = rng.standard_normal((n, c, h, w)).astype(np.float32), rng.standard_normal((m, c, k, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    out = np.full((n, 2, oh, ow, 16), np.nan, np.float32)
    build_amx_conv(spec, wt, b, False)([x, wt, b, None], [out])
    got = unblock(out)
    assert (got[:, m:] == 0).all()
    xb, wb = _bf16(x), _bf16(wt)
    ref = conv2d_reference(xb, wb, b, (s, s), (p,) * 4, (dh, 1), 1)
    mag = conv2d_reference(np.abs(xb), np.abs(wb), np.abs(b), (s, s), (p,) * 4, (dh, 1), 1)
    assert_within(got[:, :m], ref, sum_bound(c * k * k + 1, mag, ref, "none"), f"dilated stem {k}")
