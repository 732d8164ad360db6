"""Gemm (``Y = act(alpha * A' @ B' + beta * C)``) and MatMul (numpy matmul semantics).

With a constant B the product is cut into column blocks that Numba's threads claim: for one
row of A with B stored (N, K) (a batch-1 classifier, where streaming B is the whole cost) each
block a stream through B repacked at build into contiguous column blocks (:func:`_gemv_tasks`),
else each a single-threaded BLAS call (one pool: see cnnrt/threads.py) on B as it is, its
transposes views (BLAS takes them as flags). Otherwise the product goes to BLAS through
``np.matmul(..., out=)``. One Numba pass applies alpha, beta*C
(C reshaped to (1|M, 1|N), broadcast by indexing) and the activation, skipped when all are
trivial.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import readonly
from cnnrt.kernels.cpu.conv_gemm import _MIN_TASK_MACS
from cnnrt.kernels.cpu.gemm_bf16 import bf16_gemm_runner
from cnnrt.kernels.cpu.llvm_ir import Vectors, c64, data_pointers, floats, load_bf16
from cnnrt.kernels.cpu.microkernel import pack_a
from cnnrt.kernels.cpu.microkernel_bf16 import to_bf16
from cnnrt.kernels.cpu.native_call import NativeStep
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.prepacked import prepacked
from cnnrt.kernels.registry import register, run_of


@pjit
def _gemm_epilogue(out, c, alpha, beta_c, kind, a, b):
    """out[i, j] = act(alpha * out[i, j] + beta_c * c[i or 0, j or 0]); rows in parallel."""
    m_count, n_count = out.shape
    cm, cn = c.shape
    for i in prange(m_count):
        ci = i % cm  # cm is 1 or M (a conditional here would unify the index with float64)
        if cn > 1:
            for j in range(n_count):
                out[i, j] = alpha * out[i, j] + beta_c * c[ci, j]
        else:
            cv = beta_c * c[ci, 0]
            for j in range(n_count):
                out[i, j] = alpha * out[i, j] + cv
        act_inplace(out[i], kind, a, b)


@pjit
def _gemm_tasks(a, b, out, transb, nb, counter, nthreads):
    """out (M, N) = a (M, K) @ op(b), op(b) = b (K, N) or b (N, K) transposed; column blocks of
    nb claimed by the threads (single-threaded BLAS per block)."""
    m, k = a.shape
    n = out.shape[1]
    ntasks = (n + nb - 1) // nb
    for _t in prange(nthreads):
        while True:
            i = blas.claim(counter)
            if i >= ntasks:
                break
            n0 = i * nb
            n1 = min(n, n0 + nb)
            if transb:
                blas.gemm(True, m, n1 - n0, k, a, 0, k, b, n0 * k, k, 0.0, out, n0, n)
            else:
                blas.gemm(False, m, n1 - n0, k, a, 0, k, b, n0, n, 0.0, out, n0, n)


_gemm_tasks_serial = serial_twin(_gemm_tasks)
_gemm_epilogue_serial = serial_twin(_gemm_epilogue)


_SMALL_BLAS_MNK = 1 << 19
GEMV_COLS = 64  # output columns per task of the batch-1 kernel (8 AVX2 / 4 AVX-512 vectors)


_GEMV_SUMS = 4  # independent partial sums per column: k steps in flight at once


@intrinsic
def _gemv_block(typingctx, x, wp, w_off, k, acc):
    """acc[c] = sum_kk x[kk] * wp[w_off + kk*GEMV_COLS + c] for the GEMV_COLS columns of one
    packed block: the block's vectors of columns summed in registers, ``_GEMV_SUMS`` partial
    sums each (k steps kk = s mod _GEMV_SUMS into sum s), added at the end. Accumulating in
    memory instead chained every k step through a store and a load: one thread streamed W at
    about 64 GB/s (AMD Zen 5, 1280 x 1000), against about 115 summed in registers. ``wp``
    float32 or float64 like x and acc, or (float32 x and acc) bf16 bits (uint16), widened
    exactly as they are loaded: half the bytes streamed."""
    bf16 = isinstance(wp, types.Array) and wp.dtype == types.uint16 and wp.layout == "C"
    if not (floats(x, acc) and x.dtype == types.float32 if bf16 else floats(x, wp, acc)):
        return None
    dt = x.dtype
    sig = types.void(x, wp, types.int64, types.int64, acc)

    def codegen(context, builder, sig, args):
        px, pw, pacc = data_pointers(context, builder, sig, args, 0, 1, 4)
        w_off, k_v = args[2], args[3]
        vec = Vectors(builder, dt)
        nvec = GEMV_COLS // vec.lanes
        sums = [[cgutils.alloca_once_value(builder, vec.zero) for _ in range(nvec)] for _ in range(_GEMV_SUMS)]

        def weights(off):
            if not bf16:
                return vec.load(pw, off)
            return load_bf16(builder, pw, off, vec.lanes)

        def step(kk, s):
            xv = vec.splat(builder.load(builder.gep(px, [kk])))
            base = builder.add(w_off, builder.mul(kk, c64(GEMV_COLS)))
            for v in range(nvec):
                wv = weights(builder.add(base, c64(v * vec.lanes)))
                builder.store(vec.fma(xv, wv, builder.load(sums[s][v])), sums[s][v])

        rounds = builder.sdiv(k_v, c64(_GEMV_SUMS))
        with cgutils.for_range(builder, rounds) as loop:
            k0 = builder.mul(loop.index, c64(_GEMV_SUMS))
            for s in range(_GEMV_SUMS):
                step(builder.add(k0, c64(s)), s)
        done = builder.mul(rounds, c64(_GEMV_SUMS))
        with cgutils.for_range(builder, builder.sub(k_v, done)) as loop:
            step(builder.add(done, loop.index), 0)
        for v in range(nvec):
            total = builder.load(sums[0][v])
            for s in range(1, _GEMV_SUMS):
                total = builder.fadd(total, builder.load(sums[s][v]))
            vec.store(total, pacc, c64(v * vec.lanes))
        return context.get_dummy_value()

    return sig, codegen


@njit
def _gemv_tasks_worker(_t, _nthreads, _form, x, wp, out, n, counter):
    """One thread's share (kernels.cpu.threaded) of out[0, j] = sum_k x[0, k] * w[j, k] for a
    batch-1 fully connected layer, ``wp`` holding W as (blocks, K, GEMV_COLS) column blocks
    packed at build: a task streams one contiguous block through :func:`_gemv_block`."""
    nblk, k, cols = wp.shape
    flat = wp.reshape(-1)
    xr = x.reshape(-1)
    acc = np.empty(cols, out.dtype)
    while True:
        i = blas.claim(counter)
        if i >= nblk:
            break
        _gemv_block(xr, flat, i * k * cols, k, acc)
        j0 = i * cols
        for c in range(min(cols, n - j0)):
            out[0, j0 + c] = acc[c]


_gemv_tasks, _gemv_tasks_serial = threaded(_gemv_tasks_worker)


def _gemv_runner(w_nk: np.ndarray, n: int, k: int, bf16: bool = False):
    """mm(x, out) for one row x: out = x @ w_nk.T by _gemv_tasks. OpenBLAS's sgemm with one row
    packs each column block of W before its kernel reads it; on a Zen 2 a classifier head
    (1 x 1024 @ 1024 x 1280) took 2-4x onnxruntime's time that way, a stream through W. Threads
    share the stream only from SERIAL_BELOW weights (2 MB of float32) on: below, the parallel
    region costs about what it saves (AMD Zen 5, the kernel alone: LeNet-5's 400 x 120 layer
    1.7 us on one thread, 3.4 on two; 576 x 1024 20.7 and 16.7; 1280 x 1000 44.8 and 30.5).
    ``bf16``: W stored as bf16 (``precision="bf16"``), x and the sums float32."""

    def pack(w):
        packed = pack_a(w, GEMV_COLS)
        return to_bf16(packed).reshape(packed.shape) if bf16 else packed

    tag = "bf16" if bf16 else w_nk.dtype.str
    wp = readonly(prepacked(w_nk, ("gemv", tag, GEMV_COLS), pack))
    dt = w_nk.dtype
    counter = np.zeros(1, np.int64)
    import numba

    max_threads = numba.config.NUMBA_NUM_THREADS

    def step(x, out, nthreads):
        if x.dtype != dt or not x.flags.c_contiguous or not out.flags.c_contiguous:
            return None
        nthreads = min(nthreads, max_threads)
        kern = pick(_gemv_tasks, _gemv_tasks_serial, n * k * wp.itemsize // 4, nthreads)
        return NativeStep(kern, (nthreads, (), x, wp, out, n, counter), ((counter, 0, 0),))

    return _runner(step, lambda x, out: np.matmul(x, w_nk.T, out=out))


def _runner(step, fallback):
    """mm(x, out) that runs ``step(x, out, nthreads)`` (a NativeStep, or None for operands its
    kernel does not take: then ``fallback``); the step offered as ``mm.step``."""

    def mm(x, out):
        ns = step(x, out, num_threads())
        if ns is None:
            fallback(x, out)
            return
        ns.run()

    mm.step = step
    return mm


def _gemm_runner(b_stored, transb: bool, m: int, n: int, k: int):
    """mm(x, out): out = x @ op(b_stored) split into column tasks, or None without a CBLAS."""
    if not blas.HAVE_BLAS or b_stored.dtype not in (np.float32, np.float64):
        return None
    import numba

    b_c = readonly(np.ascontiguousarray(b_stored))
    # With few rows (batch-1 fully connected layers) the product is a stream through B, not
    # arithmetic: each element of B costs about what 16 MACs do (counting only MACs gave
    # DenseNet's 1x1024 @ 1024x1000 one task). The serial/parallel choice stays on MACs
    # (LeNet's 400x120 layer is cheaper than a parallel region).
    work = n * k * max(m, 16)
    # blocks of >= 16 columns and ~_MIN_TASK_MACS each, at most 16 tasks
    nb = max(16, blas.split(n, max(1, min(16, work // _MIN_TASK_MACS)), 16))
    if transb and m * k * 16 <= _SMALL_BLAS_MNK:
        # OpenBLAS (SkylakeX) has a no-packing kernel for small products, m * nb * k up to about
        # 1e6: blocks as narrow as keep each product under that run it.
        nb = min(nb, _SMALL_BLAS_MNK // (m * k) // 16 * 16)
    counter = np.zeros(1, np.int64)
    max_threads = numba.config.NUMBA_NUM_THREADS

    def step(x, out, nthreads):
        if x.dtype != b_c.dtype or not x.flags.c_contiguous or not out.flags.c_contiguous:
            return None
        nthreads = min(nthreads, max_threads)
        kern = pick(_gemm_tasks, _gemm_tasks_serial, m * n * k, nthreads)
        return NativeStep(kern, (x, b_c, out, transb, nb, counter, nthreads), ((counter, 0, 0),))

    return _runner(step, lambda x, out: np.matmul(x, b_c.T if transb else b_c, out=out))


def weights_runner(w_nk: np.ndarray, m: int, n: int, k: int):
    """mm(x, out): out = x (M, K) @ w_nk.T for a constant (N, K) weight (Gemm with trans_b, a
    conv covering its input): the packed stream for one row, else column-task BLAS."""
    if m == 1 and w_nk.dtype.kind == "f":
        return _gemv_runner(w_nk, n, k)
    return _gemm_runner(w_nk, True, m, n, k)


def _c_shape(shape, m: int, n: int) -> tuple[int, int]:
    """C's shape as (1|M, 1|N); C broadcasts unidirectionally to (M, N)."""
    if len(shape) > 2 or np.broadcast_shapes(tuple(shape), (m, n)) != (m, n):
        raise ValueError(f"C {list(shape)} does not broadcast to [{m}, {n}]")
    full = (1,) * (2 - len(shape)) + tuple(shape)
    return int(full[0]), int(full[1])


@register("Gemm")
def build_gemm(node, graph):
    a = node.attrs
    av, bv, yv = graph.values[node.inputs[0]], graph.values[node.inputs[1]], graph.values[node.outputs[0]]
    ta, tb = int(a.get("trans_a", 0)), int(a.get("trans_b", 0))
    m, k = (av.shape[1], av.shape[0]) if ta else av.shape
    kb, n = (bv.shape[1], bv.shape[0]) if tb else bv.shape
    if k != kb or tuple(yv.shape) != (m, n):
        raise ValueError(f"A{list(av.shape)} (trans_a={ta}) @ B{list(bv.shape)} (trans_b={tb}) != Y{list(yv.shape)}")
    dt = np.dtype(yv.dtype)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    kind = ACTIVATIONS[a.get("activation", "none")]
    act_a, act_b = dt.type(a.get("act_alpha", 0.0)), dt.type(a.get("act_beta", 0.0))
    has_c = len(node.inputs) > 2 and bool(node.inputs[2]) and beta != 0.0  # beta=0 ignores C (also inf/NaN)
    c_shape = _c_shape(graph.values[node.inputs[2]].shape, m, n) if has_c else (1, 1)
    dummy_c = readonly(np.zeros((1, 1), dt))
    c_const = graph.constants.get(node.inputs[2]) if has_c else None
    c_fixed = None if c_const is None else readonly(np.ascontiguousarray(c_const, dt).reshape(c_shape))
    b_const = graph.constants.get(node.inputs[1])
    b_fixed = None
    mm = None
    if b_const is not None:
        b_fixed = np.ascontiguousarray(b_const, dt)
        if a.get("precision") == "bf16":
            b_nk = b_fixed if tb else np.ascontiguousarray(b_fixed.T)
            # one row: a stream through B, whose bf16 bits are widened as they are read
            mm = _gemv_runner(b_nk, n, k, bf16=True) if m == 1 and not ta else bf16_gemm_runner(b_nk, m, n, k, graph)
        elif not ta:
            mm = weights_runner(b_fixed, m, n, k) if tb else _gemm_runner(b_fixed, False, m, n, k)
        b_fixed = b_fixed.T if tb else b_fixed
    epilogue = has_c or kind != 0 or alpha != 1.0
    alpha_t, beta_t = dt.type(alpha), dt.type(beta if has_c else 0.0)

    def compute(ins, outs):
        x = ins[0].T if ta else ins[0]
        w = b_fixed if b_fixed is not None else (ins[1].T if tb else ins[1])
        out = outs[0]
        if mm is not None:
            mm(x, out)
        else:
            np.matmul(x, w, out=out)
        if epilogue:
            c = c_fixed if c_fixed is not None else (readonly(ins[2].reshape(c_shape)) if has_c else dummy_c)
            kern = pick(_gemm_epilogue, _gemm_epilogue_serial, out.size, num_threads())
            kern(out, c, alpha_t, beta_t, kind, act_a, act_b)

    def bind(ins, outs):
        """The step on these arrays; with a constant B by cnnrt's kernels and a constant or no
        C, offered to a native plan as the product's kernel call and the epilogue's."""
        call = partial(compute, ins, outs)
        c = c_fixed if c_fixed is not None else (None if has_c else dummy_c)
        if getattr(mm, "step", None) is None or ta or c is None:
            return call
        x, out = ins[0], outs[0]

        def native(nthreads):
            product = mm.step(x, out, nthreads)
            if product is None:
                return None
            if not epilogue:
                return (product,)
            kern = pick(_gemm_epilogue, _gemm_epilogue_serial, out.size, nthreads)
            return product, NativeStep(kern, (out, c, alpha_t, beta_t, kind, act_a, act_b))

        call.native = native
        return call

    return run_of(bind)


@register("MatMul")
def build_matmul(node, graph):
    def run(ins, outs):
        np.matmul(ins[0], ins[1], out=outs[0])

    return run
