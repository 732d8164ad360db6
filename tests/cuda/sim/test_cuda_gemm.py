"""Gemm and MatMul CUDA kernels (the tiled batched GEMM) against numpy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, rand, run_op, tol_for
from reference import activation_ref

from cnnrt.kernels.cuda import config


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (), (9,), (7, 1), (7, 9)])
def test_gemm_transposes_and_broadcast_c(trans_a, trans_b, c_shape):
    rng = np.random.default_rng(trans_a * 2 + trans_b)
    m, k, n = 7, 11, 9
    a = rand(rng, *((k, m) if trans_a else (m, k)))
    b = rand(rng, *((n, k) if trans_b else (k, n)))
    c = None if c_shape is None else rand(rng, *c_shape)
    alpha, beta = 0.7, -1.3
    attrs = dict(
        alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b, activation="none", act_alpha=0.0, act_beta=0.0
    )
    ref = alpha * ((a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b))
    if c is not None:
        ref = ref + beta * c.astype(np.float64)
    [y] = run_op("Gemm", [a, b, c], [(m, n)], attrs, const=(1, 2))
    assert_close(y, ref, tol_for(k))


@pytest.mark.parametrize(
    "act, alpha, beta",
    [("Relu", 0, 0), ("Clip", -0.5, 0.25), ("Elu", 0.8, 0), ("Tanh", 0, 0), ("HardSigmoid", 0.3, 0.4)],
)
def test_gemm_fused_activation(act, alpha, beta):
    rng = np.random.default_rng(5)
    a, b, c = rand(rng, 5, 13), rand(rng, 6, 13), rand(rng, 6)
    attrs = dict(alpha=1.0, beta=1.0, trans_a=0, trans_b=1, activation=act, act_alpha=alpha, act_beta=beta)
    [y] = run_op("Gemm", [a, b, c], [(5, 6)], attrs, const=(1, 2))
    assert_close(y, activation_ref(a.astype(np.float64) @ b.T + c, act, alpha, beta), tol_for(13))


@pytest.mark.parametrize(
    "ashape, bshape",
    [
        ((6, 10), (10, 7)),
        ((3, 5, 4), (3, 4, 6)),
        ((2, 5, 4), (4, 3)),
        ((2, 1, 3, 4), (1, 3, 4, 5)),
        ((4,), (4, 6)),
        ((2, 5, 4), (4,)),
    ],
)
def test_matmul_batches_and_broadcasting(ashape, bshape):
    rng = np.random.default_rng(len(ashape) * 10 + len(bshape))
    a, b = rand(rng, *ashape), rand(rng, *bshape)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    [y] = run_op("MatMul", [a, b], [ref.shape])
    assert_close(y, ref, tol_for(ashape[-1]))


@pytest.mark.parametrize(
    "geometry",
    [dict(max_tile_blocks=1, tile_threads=3, micro=1, tile_k=4), dataclasses.asdict(config.GPU_DEFAULT)],
    ids=["one-block-odd", "gpu-default"],
)
def test_gemm_other_geometries(geometry):
    """One block looping over every tile; and the real-GPU defaults (64x64 tiles) on 2x2 tiles."""
    rng = np.random.default_rng(9)
    m, k, n = (10, 6, 10) if geometry["tile_threads"] == 3 else (70, 20, 66)
    a, b, c = rand(rng, m, k), rand(rng, n, k), rand(rng, n)
    attrs = dict(alpha=1.0, beta=1.0, trans_a=0, trans_b=1, activation="Relu", act_alpha=0.0, act_beta=0.0)
    with config.override(**geometry):
        [y] = run_op("Gemm", [a, b, c], [(m, n)], attrs, const=(1, 2))
    assert_close(y, activation_ref(a.astype(np.float64) @ b.T + c, "Relu"), tol_for(k))
