"""Gemm and MatMul: against float64 references, then end to end vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import act_params, assert_within, run_node, sum_bound  # noqa: E402
from onnx import helper
from reference import activation_ref, gemm_reference  # noqa: E402
from vs_onnxruntime import run_both  # noqa: E402

M, K, N = 5, 7, 6
C_SHAPES = {"none": None, "scalar": (), "one": (1,), "row": (N,), "row2d": (1, N), "col": (M, 1), "full": (M, N)}


def _gemm_case(ta, tb, cname, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    cshape = C_SHAPES[cname]
    c = None if cshape is None else rng.standard_normal(cshape).astype(np.float32)
    return a, b, c


def _gemm_expected(a, b, c, alpha, beta, ta, tb, act="none"):
    act_a, act_b = act_params(act)
    pre = gemm_reference(a, b, c, alpha, beta, ta, tb)
    mag = gemm_reference(np.abs(a), np.abs(b), None if c is None else np.abs(c), abs(alpha), abs(beta), ta, tb)
    want = activation_ref(pre, act, act_a, act_b)
    return want, sum_bound(K + 2, mag, want, act, act_a)


@pytest.mark.parametrize("cname", list(C_SHAPES))
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("b_const", [True, False], ids=["B_const", "B_runtime"])
def test_gemm_vs_reference(ta, tb, cname, b_const):
    a, b, c = _gemm_case(ta, tb, cname)
    alpha, beta = 0.75, -1.5
    attrs = dict(alpha=alpha, beta=beta, trans_a=ta, trans_b=tb, activation="none", act_alpha=0.0, act_beta=0.0)
    (got,) = run_node("Gemm", [a, b, c], attrs, [(M, N)], const=(1, 2) if b_const else ())
    want, bound = _gemm_expected(a, b, c, alpha, beta, ta, tb)
    assert_within(got, want, bound, f"ta={ta} tb={tb} C={cname}")


@pytest.mark.parametrize("m,k,n", [(1, 300, 250), (3, 300, 250), (8, 4096, 100)])
@pytest.mark.parametrize("tb", [0, 1])
def test_gemm_few_rows_split_in_column_tasks(m, k, n, tb):
    """Fully connected layers at small batch: B constant and wide enough for many column tasks
    (a partial last block too; 8x4096 takes blocks of 16 columns), each a BLAS call on its own
    columns of B."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal((n,)).astype(np.float32)
    attrs = dict(alpha=1.0, beta=1.0, trans_a=0, trans_b=tb, activation="Relu", act_alpha=0.0, act_beta=0.0)
    (got,) = run_node("Gemm", [a, b, c], attrs, [(m, n)], const=(1, 2))
    pre = gemm_reference(a, b, c, 1.0, 1.0, 0, tb)
    mag = gemm_reference(np.abs(a), np.abs(b), np.abs(c), 1.0, 1.0, 0, tb)
    want = activation_ref(pre, "Relu", 0.0, 0.0)
    assert_within(got, want, sum_bound(k + 2, mag, want, "Relu", 0.0), f"m={m} tb={tb}")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("k,n", [(16, 10), (301, 64), (1023, 1000)])
def test_gemm_one_row_streams_packed_column_blocks(k, n, dt):
    """A batch-1 classifier (one row, B stored (N, K)): column blocks of B packed at build,
    fewer columns than one block, exactly one, and a partial last block (serial and threaded);
    K not a multiple of the partial sums."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((1, k)).astype(dt)
    b = rng.standard_normal((n, k)).astype(dt)
    c = rng.standard_normal((n,)).astype(dt)
    attrs = dict(alpha=1.0, beta=1.0, trans_a=0, trans_b=1, activation="none", act_alpha=0.0, act_beta=0.0)
    (got,) = run_node("Gemm", [a, b, c], attrs, [(1, n)], [np.dtype(dt).name], const=(1, 2))
    want = gemm_reference(a, b, c, 1.0, 1.0, 0, 1)
    mag = gemm_reference(np.abs(a), np.abs(b), np.abs(c), 1.0, 1.0, 0, 1)
    assert got.dtype == dt
    assert_within(got, want, sum_bound(k + 2, mag, want), f"k={k} n={n}")  # float64 held to float32's bound


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSwish", "SiLU"])
def test_gemm_fused_activation(act):
    a, b, c = _gemm_case(0, 1, "row", seed=1)
    alpha_a, beta_a = act_params(act)
    attrs = dict(alpha=1.0, beta=1.0, trans_a=0, trans_b=1, activation=act, act_alpha=alpha_a, act_beta=beta_a)
    (got,) = run_node("Gemm", [a, b, c], attrs, [(M, N)], const=(1, 2))
    want, bound = _gemm_expected(a, b, c, 1.0, 1.0, 0, 1, act)
    assert_within(got, want, bound, act)


def test_gemm_beta_zero_ignores_c():
    """beta=0: C is not read, so inf/NaN in C do not turn into NaN (onnxruntime skips C too)."""
    a, b, _ = _gemm_case(0, 0, "none", seed=2)
    c = np.full((M, N), np.inf, np.float32)
    attrs = dict(alpha=1.0, beta=0.0, trans_a=0, trans_b=0, activation="none", act_alpha=0.0, act_beta=0.0)
    (got,) = run_node("Gemm", [a, b, c], attrs, [(M, N)], const=(1, 2))
    want, bound = _gemm_expected(a, b, None, 1.0, 0.0, 0, 0)
    assert_within(got, want, bound, "beta=0")


MATMUL_SHAPES = [
    ((K,), (K,)),
    ((K,), (K, N)),
    ((M, K), (K,)),
    ((M, K), (K, N)),
    ((3, M, K), (K, N)),
    ((K,), (2, K, N)),
    ((2, 1, M, K), (3, K, N)),
    ((3, M, K), (3, K, N)),
    ((1, M, K), (2, 3, K, N)),
]


@pytest.mark.parametrize("ashape,bshape", MATMUL_SHAPES, ids=[f"{a}x{b}" for a, b in MATMUL_SHAPES])
def test_matmul_vs_reference(ashape, bshape):
    rng = np.random.default_rng(3)
    a = rng.standard_normal(ashape).astype(np.float32)
    b = rng.standard_normal(bshape).astype(np.float32)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    mag = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
    (got,) = run_node("MatMul", [a, b], {}, [want.shape], const=(1,))
    assert_within(got, want, sum_bound(K, mag, want), f"{ashape} x {bshape}")


def test_matmul_int64():
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    b = np.arange(8, dtype=np.int64).reshape(4, 2) - 3
    (got,) = run_node("MatMul", [a, b], {}, [(3, 2)], ["int64"])
    np.testing.assert_array_equal(got, a @ b)


# ----------------------------------------------------------------------------- vs onnxruntime


@pytest.mark.parametrize(
    "opset,ta,tb,cname,alpha,beta",
    [
        (17, 0, 0, "none", 1.0, 1.0),
        (17, 0, 1, "row", 1.0, 1.0),
        (17, 1, 0, "full", 0.5, 2.0),
        (17, 1, 1, "col", -1.0, 0.5),
        (17, 0, 1, "scalar", 2.0, 1.0),
        (9, 0, 1, "row2d", 1.0, 1.0),
        (7, 1, 1, "full", 1.5, -0.5),
    ],
)
@pytest.mark.parametrize("b_init", [True, False], ids=["B_initializer", "B_input"])
def test_gemm_vs_onnxruntime(opset, ta, tb, cname, alpha, beta, b_init):
    from helpers import make_model

    a, b, c = _gemm_case(ta, tb, cname, seed=4)
    names = ["a", "b"] + (["c"] if c is not None else [])
    node = helper.make_node("Gemm", names, ["y"], alpha=alpha, beta=beta, transA=ta, transB=tb)
    inits = {"c": c} if c is not None else {}
    inputs = [("a", list(a.shape), np.float32)]
    if b_init:
        inits["b"] = b
    else:
        inputs.append(("b", list(b.shape), np.float32))
    model = make_model([node], inputs, [("y", None, np.float32)], inits, opset=opset)
    feeds = {"a": a} if b_init else {"a": a, "b": b}
    (got,), (want,) = run_both(model, feeds)
    _, bound = _gemm_expected(a, b, c, alpha, beta, ta, tb)
    assert_within(got, want.astype(np.float64), 2 * bound, f"opset {opset}")


@pytest.mark.parametrize("ashape,bshape", MATMUL_SHAPES, ids=[f"{a}x{b}" for a, b in MATMUL_SHAPES])
def test_matmul_vs_onnxruntime(ashape, bshape):
    from helpers import make_model

    rng = np.random.default_rng(5)
    a = rng.standard_normal(ashape).astype(np.float32)
    b = rng.standard_normal(bshape).astype(np.float32)
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = make_model(
        [node], [("a", list(ashape), np.float32), ("b", list(bshape), np.float32)], [("y", None, np.float32)]
    )
    (got,), (want,) = run_both(model, {"a": a, "b": b})
    mag = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
    assert_within(got, want.astype(np.float64), 2 * sum_bound(K, mag, want), f"{ashape} x {bshape}")
