"""Gemm and MatMul on CUDA: one shared-memory tiled, register-blocked, strided batched GEMM.

Each block of ``tile_threads`` x ``tile_threads`` threads computes a ``tile x tile`` output
tile (``tile = tile_threads * micro``; each thread owns a ``micro x micro`` set of outputs
spaced ``tile_threads`` apart, so a warp reads consecutive shared-memory words and writes
consecutive output columns). K is staged through shared memory ``tile_k`` at a time.
Blocks loop over (batch, tile) pairs, so any grid size covers any problem.

Operands are addressed by strides, which expresses transA/transB and MatMul's broadcast
batches without copies. The epilogue applies ``alpha``, ``beta * C`` (C broadcast through
strides), and the fused activation.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from cnnrt.errors import ShapeError
from cnnrt.kernels.registry import register

from . import config
from .common import (
    act,
    epilogue_params,
    int_array,
    launcher_tiles,
    require_float,
    shape_of,
    stage_tile,
    tile_origin,
    tile_products,
)
from .device import placeholder


@functools.cache
def gemm_kernel(tb: int, micro: int, bk: int, dtype: str):
    """The batched GEMM kernel for one tile geometry and dtype (compiled on first launch)."""
    bm = tb * micro
    bmp = bm + 1  # pad the fast axis: column stores into shared memory avoid bank conflicts
    nbt = numba.from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)
    nthreads = tb * tb

    @cuda.jit
    def kernel(
        A, B, C, Y, aoffs, boffs, yoffs, nbatch, M, N, K, sam, sak, sbk, sbn, scm, scn, alpha, beta, has_c, kind, aa, ab
    ):
        sa = cuda.shared.array((bk, bmp), nbt)
        sb = cuda.shared.array((bk, bmp), nbt)
        acc = cuda.local.array((micro, micro), nbt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * tb + tx
        tiles_m = (M + bm - 1) // bm
        tiles_n = (N + bm - 1) // bm
        per_batch = tiles_m * tiles_n
        for t in range(cuda.blockIdx.x, nbatch * per_batch, cuda.gridDim.x):
            bt, m0, n0 = tile_origin(t, per_batch, tiles_n, bm)
            aoff = aoffs[bt]
            boff = boffs[bt]
            for i in range(micro):
                for j in range(micro):
                    acc[i, j] = zero
            for k0 in range(0, K, bk):
                # A[m0:m0+bm, k0:k0+bk] as sa[k, m], B[k0:k0+bk, n0:n0+bm] as sb[k, n]
                stage_tile(sa, A, aoff, m0, M, sam, k0, K, sak, tid, nthreads, bm, bk, sak == 1, zero)
                stage_tile(sb, B, boff, n0, N, sbn, k0, K, sbk, tid, nthreads, bm, bk, sbn != 1, zero)
                cuda.syncthreads()
                tile_products(acc, sa, sb, bk, micro, tb, tx, ty)
                cuda.syncthreads()
            yoff = yoffs[bt]
            for i in range(micro):
                m = m0 + ty + i * tb
                if m < M:
                    for j in range(micro):
                        n = n0 + tx + j * tb
                        if n < N:
                            v = alpha * acc[i, j]
                            if has_c:
                                v += beta * C[m * scm + n * scn]
                            Y[yoff + m * N + n] = act(v, kind, aa, ab)

    return kernel


def gemm_launcher(nbatch: int, m: int, n: int, dtype):
    """The configured GEMM kernel for ``nbatch`` problems of m x n outputs (geometry from config)."""
    cfg = config.current()
    tiles = nbatch * -(-m // cfg.tile) * -(-n // cfg.tile)
    return launcher_tiles(gemm_kernel(cfg.tile_threads, cfg.micro, cfg.tile_k, np.dtype(dtype).name), tiles)


@register("Gemm", backend="cuda")
def build_gemm(node, graph):
    a, b = node.inputs[:2]
    c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    dtype = require_float(node, graph, *[x for x in (a, b, c) if x])
    ta, tb = int(node.attrs.get("trans_a", 0)), int(node.attrs.get("trans_b", 0))
    (a0, a1), (b0, b1) = shape_of(graph, a), shape_of(graph, b)
    m, k = (a1, a0) if ta else (a0, a1)
    n = b0 if tb else b1
    sam, sak = (1, m) if ta else (k, 1)
    sbk, sbn = (1, k) if tb else (n, 1)
    scm = scn = 0
    if c is not None:
        cshape = (1, 1) + shape_of(graph, c)
        cm, cn = cshape[-2:]
        if (cm not in (1, m)) or (cn not in (1, n)):
            raise ShapeError(f"node {node.name!r} (Gemm): C{list(shape_of(graph, c))} does not broadcast to [{m}, {n}]")
        scm, scn = (cn if cm != 1 else 0), (1 if cn != 1 else 0)
    kind, aa, ab = epilogue_params(node, dtype)
    t = dtype.type
    alpha, beta = t(node.attrs.get("alpha", 1.0)), t(node.attrs.get("beta", 1.0))
    zeros = int_array([0])
    launch = gemm_launcher(1, m, n, dtype)
    dummy = placeholder(dtype.name)
    has_c = 1 if c is not None else 0

    dims = (zeros, zeros, zeros, 1, m, n, k, sam, sak, sbk, sbn, scm, scn, alpha, beta, has_c, kind, aa, ab)

    def run(ins, outs):
        launch(ins[0], ins[1], ins[2] if has_c else dummy, outs[0], *dims)

    return run


def matmul_plan(ashape, bshape):
    """(M, N, K, a_offsets, b_offsets, y_offsets) of numpy.matmul over broadcast batch dims."""
    a2 = (1,) + tuple(ashape) if len(ashape) == 1 else tuple(ashape)
    b2 = tuple(bshape) + (1,) if len(bshape) == 1 else tuple(bshape)
    m, k = a2[-2:]
    k2, n = b2[-2:]
    if k != k2:
        raise ShapeError(f"MatMul: inner dimensions differ in {list(ashape)} x {list(bshape)}")
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    nb = int(np.prod(batch, dtype=np.int64))

    def offsets(bdims, step):
        idx = np.arange(int(np.prod(bdims, dtype=np.int64)), dtype=np.int64).reshape(bdims)
        return (np.broadcast_to(idx, batch).reshape(-1) * step).tolist() if nb else []

    return m, n, k, offsets(a2[:-2], m * k), offsets(b2[:-2], k * n), [i * m * n for i in range(nb)]


@register("MatMul", backend="cuda")
def build_matmul(node, graph):
    a, b = node.inputs[:2]
    dtype = require_float(node, graph, a, b)
    m, n, k, ao, bo, yo = matmul_plan(shape_of(graph, a), shape_of(graph, b))
    nb = len(yo)
    da, db, dy = int_array(ao), int_array(bo), int_array(yo)
    launch = gemm_launcher(nb, m, n, dtype)
    dummy = placeholder(dtype.name)
    one, zero = dtype.type(1), dtype.type(0)

    def run(ins, outs):
        launch(ins[0], ins[1], dummy, outs[0], da, db, dy, nb, m, n, k, k, 1, n, 1, 0, 0, one, zero, 0, 0, zero, zero)

    return run
