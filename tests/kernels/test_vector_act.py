"""vector_act's float32 activations (act_inplace's path for contiguous float32 rows) against
float64 numpy: within a few float32 ulps over a wide range (subnormal results, |x| past the
exp overflow and underflow points), ONNX's NaN / Inf results, and every count around the
vector width without touching elements outside the row."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrt.kernels.activation import ELU, HARD_SIGMOID, HARD_SWISH, LEAKY_RELU, SIGMOID, SILU
from cnnrt.kernels.cpu.activation import act_inplace

X64 = np.concatenate(
    [
        np.linspace(-120, 120, 100001),
        np.geomspace(1e-30, 120, 5000),
        -np.geomspace(1e-30, 120, 5000),
        [np.nan, np.inf, -np.inf, 0.0, -0.0, 88.8, -88.8, 103.9, -103.9, 1e30, -1e30],
    ]
).astype(np.float32)

# kind -> (alpha, beta, float64 formula per ONNX)
KINDS = {
    SIGMOID: (0.0, 0.0, lambda x: 1 / (1 + np.exp(-x))),
    SILU: (0.0, 0.0, lambda x: x / (1 + np.exp(-x))),
    ELU: (0.7, 0.0, lambda x: np.where(x >= 0, x, 0.7 * np.expm1(x))),
    HARD_SIGMOID: (0.2, 0.5, lambda x: np.clip(0.2 * x + 0.5, 0, 1)),
    HARD_SWISH: (0.0, 0.0, lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
    LEAKY_RELU: (0.1, 0.0, lambda x: np.where(x >= 0, x, 0.1 * x)),
}
# the exp-based ones: ulps of the result; the piecewise ones round alpha * x + beta in float32,
# so near the clamp's zero their error is measured in ulps of x (cancellation, as in onnxruntime)
ULPS = {SIGMOID: 3, SILU: 3, ELU: 2, HARD_SIGMOID: 1, HARD_SWISH: 2, LEAKY_RELU: 1}


def _ref(kind, x):
    with np.errstate(all="ignore"):
        return KINDS[kind][2](x.astype(np.float64))


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_vectors_within_a_few_ulps_of_float64(kind):
    alpha, beta, _ = KINDS[kind]
    got = X64.copy()
    act_inplace(got, kind, alpha, beta)
    ref = _ref(kind, X64)
    finite = np.isfinite(ref)
    scale = np.abs(ref[finite]).astype(np.float32)
    if kind in (HARD_SIGMOID, HARD_SWISH):
        scale = np.maximum(scale, np.minimum(np.abs(X64[finite]), np.float32(1e38)))
    err = np.abs(got[finite].astype(np.float64) - ref[finite]) / np.spacing(scale).astype(np.float64)
    assert err.max() <= ULPS[kind], f"worst {err.max():.2f} ulps at x={X64[finite][np.argmax(err)]}"
    # NaN in, NaN out; the Inf limits (SiLU(-Inf) = -Inf * 0 = NaN, as the formula says)
    np.testing.assert_array_equal(got[~finite], ref[~finite].astype(np.float32))


@pytest.mark.parametrize("kind", [SIGMOID, SILU, HARD_SWISH])
def test_every_count_around_the_vector_width(kind):
    alpha, beta, _ = KINDS[kind]
    rng = np.random.default_rng(1)
    for count in [0, 1, 7, 15, 16, 17, 31, 33, 100]:
        buf = rng.standard_normal(count + 8).astype(np.float32) * 4
        want = buf.copy()
        row = buf[3 : 3 + count]
        act_inplace(row, kind, alpha, beta)
        whole = want[3 : 3 + count].copy()
        act_inplace(whole, kind, alpha, beta)
        np.testing.assert_array_equal(buf[3 : 3 + count], whole)
        np.testing.assert_array_equal(np.delete(buf, np.s_[3 : 3 + count]), np.delete(want, np.s_[3 : 3 + count]))
        np.testing.assert_allclose(whole, _ref(kind, want[3 : 3 + count]), rtol=1e-6, atol=1e-7)


def _compiled_with(monkeypatch, scalef: bool):
    """act_run in a function of its own, compiled now with vector_act.SCALEF = ``scalef`` (the
    shared act_inplace is left alone: it may be cached on disk)."""
    from numba import njit

    from cnnrt.kernels.cpu import vector_act

    monkeypatch.setattr(vector_act, "SCALEF", scalef)

    @njit
    def run(o, kind, alpha, beta):
        vector_act.act_run(o, 0, o.size, kind, alpha, beta)

    run(np.zeros(1, np.float32), SIGMOID, 0.0, 0.0)
    return run


def test_scale_by_two_multiplications_matches_vscalefps(monkeypatch):
    """Without AVX-512, 2^n is applied as two normal powers of two: the same single rounding,
    so the same bits (on an AVX-512 host this compares the two forms)."""
    from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES

    fast = _compiled_with(monkeypatch, VECTOR_BYTES == 64)
    halves = _compiled_with(monkeypatch, False)
    for kind in (SIGMOID, SILU, ELU):
        alpha, beta, _ = KINDS[kind]
        got, want = X64.copy(), X64.copy()
        halves(got, kind, alpha, beta)
        fast(want, kind, alpha, beta)
        np.testing.assert_array_equal(got, want)


def test_float64_keeps_the_scalar_formula():
    x = np.linspace(-30, 30, 1001)
    got = x.copy()
    act_inplace(got, SIGMOID, 0.0, 0.0)
    np.testing.assert_allclose(got, _ref(SIGMOID, x), rtol=1e-15)
