"""The activations as the fused epilogue other CPU kernels call (the ops are elementwise.py's).

``act_scalar`` is the CPU instance of kernels/activation.py's formulas (shared with the CUDA
kernels). Fused kernels (Conv, Gemm, ChannelAffine, ...) apply the activation to a finished
row with ``act_inplace``, which dispatches the kind once per row: ReLU and Clip as loops LLVM
vectorises, tanh and (on float32) the exp-based and piecewise kinds as explicit vectors
(vector_ir.tanh_run, vector_act.act_run); float64 rows of the latter keep ``act_scalar``.
"""

from __future__ import annotations

from numba import types
from numba.extending import overload

from cnnrt.kernels._jit import njit
from cnnrt.kernels.activation import CLIP, GELU, NONE, RELU, TANH, activation_formula
from cnnrt.kernels.cpu.vector_act import act_run
from cnnrt.kernels.cpu.vector_ir import TANH_CLAMP, TANH_P, TANH_Q, TANH_SMALL, fma, tanh_run


@njit(inline="always")
def tanh_rational(v):
    """tanh as Eigen's float rational approximation (vector_ir.TANH_*: a 13/6 odd/even
    polynomial pair, clamped where float32 tanh is +-1 within an ulp), evaluated in float64
    (in float32 the worst error grew from 3.5 to 6.6 ulps). libm's tanh is a call per element.
    Relative error <= 4 float32 ulps (measured on 4M points over [-12, 12] and 1e-8..10
    geometric: the worst is at the clamp). This is the scalar twin of vector_ir.tanh_run."""
    x = min(max(v, -TANH_CLAMP), TANH_CLAMP)
    x2 = x * x
    p = fma(x2, TANH_P[0], TANH_P[1])
    p = fma(p, x2, TANH_P[2])
    p = fma(p, x2, TANH_P[3])
    p = fma(p, x2, TANH_P[4])
    p = fma(p, x2, TANH_P[5])
    p = fma(p, x2, TANH_P[6])
    q = fma(x2, TANH_Q[0], TANH_Q[1])
    q = fma(q, x2, TANH_Q[2])
    q = fma(q, x2, TANH_Q[3])
    r = p * x / q
    # tiny |v|: tanh(v) = v to float32 precision; NaN stays NaN (min/max would have clamped it)
    r = v if abs(v) < TANH_SMALL else r
    return r if v == v else v


def tanh_inplace(o):
    """o[:] = tanh_rational(o[:]). Jitted callers get :func:`_tanh_inplace`'s choice:
    vector_ir.tanh_run on contiguous arrays (LLVM leaves the scalar loop scalar), else the
    loop; from Python, the loop."""
    for q in range(o.shape[0]):
        o[q] = tanh_rational(o[q])


@overload(tanh_inplace)
def _tanh_inplace(o):
    if isinstance(o, types.Array) and o.layout == "C" and o.dtype in (types.float32, types.float64):
        return lambda o: tanh_run(o, 0, o.shape[0])

    def loop(o):
        for q in range(o.shape[0]):
            o[q] = tanh_rational(o[q])

    return loop


# erf(x) = x P(x²) / Q(x²) on [-4, 4] (±1 to float32 precision outside): Eigen's float erf
ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)


@njit(inline="always")
def horner(x, coeffs):
    """coeffs[0] x^n + ... + coeffs[n], with fused multiply-adds."""
    p = coeffs[0]
    for i in range(1, len(coeffs)):
        p = fma(p, x, coeffs[i])
    return p


@njit(inline="always")
def erf_rational(v):
    """erf as a 13/8 odd/even rational function, evaluated in float64: absolute error below
    7e-8 (2M points over [-6, 6] and 1e-30..3 geometric), where libm's erf is a call per
    element. The clamp is written as selects (min/max kept LLVM from vectorising a loop of
    these); NaN fails both comparisons and stays NaN."""
    x = 4.0 if v > 4.0 else v
    x = -4.0 if x < -4.0 else x
    x2 = x * x
    return x * horner(x2, ERF_P) / horner(x2, ERF_Q)


# one value; the formulas are kernels/activation.py's, with Python-float constants
act_scalar = activation_formula(0.0, 1.0, 6.0, 0.5, tanh_rational, erf_rational)


@njit
def act_row(o, b, r, has_res, kind, alpha, beta):
    """o[q] = act(o[q] + b (+ r[q])) along a row, with the activation's kind decided once per
    row (a per-element dispatch kept LLVM from vectorising the loop)."""
    n = o.shape[0]
    if has_res:
        for q in range(n):
            o[q] = o[q] + b + r[q]
    else:
        for q in range(n):
            o[q] = o[q] + b
    act_inplace(o, kind, alpha, beta)


@njit
def act_inplace(o, kind, alpha, beta):
    """o[q] = act(o[q]) along a row; the kind is dispatched once, the common ones vectorise."""
    n = o.shape[0]
    if kind == NONE:
        return
    if kind == RELU:
        for q in range(n):
            v = o[q]
            o[q] = v if not v < 0 else 0.0  # not 0 * v: Relu(-Inf) is 0, not NaN
    elif kind == CLIP:  # Clip (ReLU6): selects, NaN propagates
        for q in range(n):
            v = o[q]
            v = alpha if v < alpha else v
            o[q] = beta if v > beta else v
    elif kind == TANH:
        tanh_inplace(o)
    elif kind == GELU:  # the kind a constant: the loop inlines the formula alone and vectorises
        for q in range(n):
            o[q] = act_scalar(o[q], GELU, alpha, beta)
    else:
        other_inplace(o, kind, alpha, beta)


def other_inplace(o, kind, alpha, beta):
    """o[:] = act_scalar(o[:]) for the kinds act_inplace does not write out. Jitted callers get
    :func:`_other_inplace`'s choice: vector_act.act_run on contiguous float32, else the loop."""
    for q in range(o.shape[0]):
        o[q] = act_scalar(o[q], kind, alpha, beta)


@overload(other_inplace)
def _other_inplace(o, kind, alpha, beta):
    if isinstance(o, types.Array) and o.layout == "C" and o.dtype == types.float32:
        return lambda o, kind, alpha, beta: act_run(o, 0, o.shape[0], kind, alpha, beta)

    def loop(o, kind, alpha, beta):
        for q in range(o.shape[0]):
            o[q] = act_scalar(o[q], kind, alpha, beta)

    return loop
