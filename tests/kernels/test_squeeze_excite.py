"""SqueezeExcite and BlockedSqueezeExcite (kernels/cpu/squeeze_excite.py) against the naive
float64 reference, NCHW and blocked (B = 16 float32, 8 float64), channel counts that fill the
last block partly (its lanes zero in and out), both SE activation pairs of the zoo nets.

Bound: the pooled mean, the matvecs (float64) and the gate each round once in x's dtype; an
input error grows by the activations' slopes through |W| (the magnitudes m1, m2 of the two
matvecs), then scales x."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import ACT_LIPSCHITZ, assert_within, run_node
from reference import activation_ref, squeeze_excite_reference

from cnnrt.core.layout import block as to_blocked

ACTS = {("Relu", "HardSigmoid"): (0.0, 0.0, 1 / 6, 0.5), ("SiLU", "Sigmoid"): (0.0, 0.0, 0.0, 0.0)}


def _case(n, c, hw, seed=0, dt=np.float32):
    rng = np.random.default_rng(seed)
    r = max(c // 4, 1)
    x = rng.standard_normal((n, c, *hw)).astype(dt) + 0.5  # means away from zero
    w1, w2 = (rng.standard_normal(s).astype(dt) / np.sqrt(s[1]) for s in ((r, c), (c, r)))
    b1, b2 = rng.standard_normal(r).astype(dt) * 0.1, rng.standard_normal(c).astype(dt) * 0.1
    return x, w1, b1, w2, b2


def _bound(x, w1, b1, w2, b2, acts, ref, dt):
    u = np.finfo(dt).eps / 2
    pooled = np.abs(x.astype(np.float64)).mean(axis=(2, 3))
    m1 = pooled @ np.abs(w1.T) + np.abs(b1)
    m2 = activation_ref(m1, "Relu") * ACT_LIPSCHITZ[acts[0]] @ np.abs(w2.T) + np.abs(b2)
    slope = ACT_LIPSCHITZ[acts[1]]
    gate_err = 8 * u * m2 * slope + 4 * np.finfo(np.float32).eps / 2  # + the activations' own ulps
    return np.abs(x) * gate_err[:, :, None, None] + 2 * u * np.abs(ref) + 1e-30


def _attrs(acts):
    p = ACTS[acts]
    return dict(squeeze=acts[0], squeeze_alpha=p[0], squeeze_beta=p[1], gate=acts[1], gate_alpha=p[2], gate_beta=p[3])


def _reference(x, w1, b1, w2, b2, acts):
    p = ACTS[acts]
    return squeeze_excite_reference(x, w1, b1, w2, b2, (acts[0], *p[:2]), (acts[1], *p[2:]))


@pytest.mark.parametrize("acts", list(ACTS), ids="-".join)
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("c", [16, 24, 40, 72])
@pytest.mark.parametrize("blocked", [False, True], ids=["nchw", "blocked"])
def test_squeeze_excite_vs_reference(blocked, c, n, acts):
    x, *ws = _case(n, c, (5, 7))  # 35 pixels: whole 16-lane sums and a tail
    ref = _reference(x, *ws, acts)
    bound = _bound(x, *ws, acts, ref, np.float32)
    if not blocked:
        (y,) = run_node("SqueezeExcite", [x, *ws], _attrs(acts), [x.shape], const=(1, 2, 3, 4))
        assert_within(y, ref, bound, f"SqueezeExcite C={c} N={n}")
        return
    b = 16
    cb = -(-c // b)
    padded = np.zeros((n, cb * b, *x.shape[2:]), np.float32)
    padded[:, :c] = x
    xb = to_blocked(padded, b)
    (yb,) = run_node("BlockedSqueezeExcite", [xb, *ws], _attrs(acts), [xb.shape], const=(1, 2, 3, 4))
    got = yb.transpose(0, 1, 4, 2, 3).reshape(padded.shape)
    assert_within(got[:, :c], ref, bound, f"BlockedSqueezeExcite C={c} N={n}")
    assert np.all(got[:, c:] == 0), "the lanes past C must stay zero"


@pytest.mark.parametrize("blocked", [False, True], ids=["nchw", "blocked"])
def test_squeeze_excite_float64_and_a_large_plane(blocked):
    """float64 (B = 8: the plain-lane path of the blocked mean) on a 40x40 plane."""
    acts = ("SiLU", "Sigmoid")
    x, *ws = _case(2, 24, (40, 40), seed=1, dt=np.float64)
    ref = _reference(x, *ws, acts)
    bound = _bound(x, *ws, acts, ref, np.float64)
    if blocked:
        xb = to_blocked(x, 8)
        (yb,) = run_node("BlockedSqueezeExcite", [xb, *ws], _attrs(acts), [xb.shape], ["float64"], const=(1, 2, 3, 4))
        y = yb.transpose(0, 1, 4, 2, 3).reshape(x.shape)
    else:
        (y,) = run_node("SqueezeExcite", [x, *ws], _attrs(acts), [x.shape], ["float64"], const=(1, 2, 3, 4))
    assert_within(y, ref, bound, "float64")


@pytest.mark.parametrize("acts", list(ACTS), ids="-".join)
def test_blocked_squeeze_excite_bf16_output_is_the_float32_one_rounded(acts):
    """A bf16 output (passes/precision.py: read by bf16 convs only): the float32 result rounded
    to nearest even, bit for bit; a block that is not one float32 vector is refused."""
    import ml_dtypes

    from cnnrt.kernels.cpu.conv_common import block_size

    b = block_size(np.float32)  # one float32 vector
    x, *ws = _case(2, 32, (5, 7), seed=2)
    xb = to_blocked(x, b)
    args = ("BlockedSqueezeExcite", [xb, *ws], _attrs(acts), [xb.shape])
    (f32,) = run_node(*args, ["float32"], const=(1, 2, 3, 4))
    (got,) = run_node(*args, ["bfloat16"], const=(1, 2, 3, 4))
    assert np.array_equal(got.view(np.uint16), f32.astype(ml_dtypes.bfloat16).view(np.uint16))
    xh = to_blocked(x, b // 2)
    with pytest.raises(ValueError, match="float32 vector blocks"):
        run_node("BlockedSqueezeExcite", [xh, *ws], _attrs(acts), [xh.shape], ["bfloat16"], const=(1, 2, 3, 4))
