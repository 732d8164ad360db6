"""Single-threaded sgemm/dgemm callable from Numba kernels (the Gemm/MatMul tasks; convs run
cnnrt's own register tile, microkernel.py), plus the two intrinsics every task kernel needs.

cnnrt draws all its parallelism from ONE pool, Numba's: BLAS is kept single-threaded
(:func:`cnnrt.runtime.threads.apply_threads`) and kernels split a GEMM into tasks themselves, each
task calling the BLAS of numpy (its bundled OpenBLAS) on a block. Two pools on two cores
fight (each spins while the other wants the core), and OpenBLAS splits a GEMM statically, so one descheduled thread
stalls the whole call; tasks claimed from a shared counter (:func:`claim`) do not wait for
a late thread: whoever is running takes the next block.

The CBLAS entry points are found in the library that threadpoolctl reports for numpy and
registered with LLVM under fixed names (``cnnrt_sgemm`` / ``cnnrt_dgemm``), so kernels
calling them stay cacheable (``cache=True``): the cached machine code names the symbol, not
an address of this process. ``HAVE_BLAS`` is False when no CBLAS was found; kernels then
fall back to their numpy (np.matmul) paths.
"""

from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import binding as ll
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from cnnrt.kernels._jit import njit

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# (symbol, int width) in order of preference: numpy >= 2 wheels bundle scipy-openblas (ILP64)
_CANDIDATES = (
    ("scipy_cblas_{}gemm64_", 64),
    ("cblas_{}gemm64_", 64),
    ("scipy_cblas_{}gemm", 32),
    ("cblas_{}gemm", 32),
)
_SET_THREADS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET_THREADS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")


def _numpy_blas_path() -> str | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            return info["filepath"]
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return info["filepath"]
    return None


def _find():
    path = _numpy_blas_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for pattern, width in _CANDIDATES:
        names = (pattern.format("s"), pattern.format("d"))
        if all(hasattr(lib, n) for n in names):
            fns = [getattr(lib, n) for n in names]
            return lib, path, fns, width
    return None


_found = _find()
HAVE_BLAS = _found is not None
BLAS_PATH = _found[1] if _found else None
INT_BITS = _found[3] if _found else 64
_lib = _found[0] if _found else None


def _lookup(names):
    for n in names:
        if _lib is not None and hasattr(_lib, n):
            return getattr(_lib, n)
    return None


_set_threads_fn = _lookup(_SET_THREADS)
_get_threads_fn = _lookup(_GET_THREADS)
if _set_threads_fn is not None:
    _set_threads_fn.argtypes = [ctypes.c_int64 if "64" in _set_threads_fn.__name__ else ctypes.c_int]
    _set_threads_fn.restype = None
if _get_threads_fn is not None:
    _get_threads_fn.restype = ctypes.c_int


def blas_threads() -> int | None:
    """The thread count of the BLAS the kernels call (None if unknown)."""
    return None if _get_threads_fn is None else int(_get_threads_fn())


def set_blas_threads(n: int) -> bool:
    """Set that BLAS's thread count directly (cheap); False if it has no such function."""
    if _set_threads_fn is None:
        return False
    if _get_threads_fn is None or _get_threads_fn() != n:
        _set_threads_fn(n)
    return True


_BI = types.int64 if INT_BITS == 64 else types.int32
_GEMM_SIG = {
    dt: types.void(
        types.int32,
        types.int32,
        types.int32,
        _BI,
        _BI,
        _BI,
        dt,
        types.voidptr,
        _BI,
        types.voidptr,
        _BI,
        dt,
        types.voidptr,
        _BI,
    )
    for dt in (types.float32, types.float64)
}
if HAVE_BLAS:
    ll.add_symbol("cnnrt_sgemm", ctypes.cast(_found[2][0], ctypes.c_void_p).value)
    ll.add_symbol("cnnrt_dgemm", ctypes.cast(_found[2][1], ctypes.c_void_p).value)
_sgemm = types.ExternalFunction("cnnrt_sgemm", _GEMM_SIG[types.float32])
_dgemm = types.ExternalFunction("cnnrt_dgemm", _GEMM_SIG[types.float64])


# ----------------------------------------------------------------------------- intrinsics


@intrinsic
def ptr_at(typingctx, arr, offset):
    """void* to element ``offset`` (flat, in elements) of a C-contiguous array's data."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        off = context.cast(builder, args[1], sig.args[1], types.intp)
        p = builder.gep(a.data, [off])
        return builder.bitcast(p, cgutils.voidptr_t)

    return types.voidptr(arr, offset), codegen


@intrinsic
def claim(typingctx, counter):
    """Atomically ``counter[0] += 1`` on an int64 array; returns the old value (a task id)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", a.data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(counter), codegen


@njit(inline="always")
def split_index(t, n):
    """(t // n, t % n) of a non-negative task index, with one division: a task kernel's flat
    prange index split into its coordinates."""
    q = t // n
    return q, t - q * n


@njit(inline="always")
def share(part, parts, total):
    """The tasks [first, end) of ``total`` that part ``part`` of ``parts`` runs: a threaded
    worker's static share (kernels.cpu.threaded)."""
    return part * total // parts, (part + 1) * total // parts


@njit(inline="always")
def band_span(t, bands, band, rows, per_task, planes):
    """Task ``t`` of a split into runs of ``per_task`` whole planes or one plane's bands of
    ``band`` output rows (``bands`` per plane, ``rows`` in all) as (first plane, end plane,
    first row, end row): the depthwise kernels' tasks."""
    q, k = split_index(t, bands)
    r0 = k * band
    return q * per_task, min(planes, q * per_task + per_task), r0, min(rows, r0 + band)


# ----------------------------------------------------------------------------- gemm


def gemm(transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """C[m, n] = A[m, k] @ op(B) + beta * C on row-major blocks of C-contiguous arrays, given by
    flat element offsets and leading dimensions; op(B) is B [k, n] (transb=False) or the
    transpose of B stored as [n, k] (transb=True). Single-threaded: call it from a task.
    Only callable from jitted code (float32 -> sgemm, float64 -> dgemm)."""
    raise NotImplementedError("blas.gemm is called from Numba kernels only")


@overload(gemm, inline="always")
def _ol_gemm(transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    if a.dtype == types.float32:
        fn, one = _sgemm, np.float32(1.0)
        cast = np.float32
    elif a.dtype == types.float64:
        fn, one = _dgemm, 1.0
        cast = np.float64
    else:
        return None

    def impl(transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
        # callers never pass an empty block (CBLAS would return at once anyway); a branch here
        # made Numba warn about a phi node of the inlined overload (so does a conditional expression)
        fn(
            ROW_MAJOR,
            NO_TRANS,
            NO_TRANS + (TRANS - NO_TRANS) * transb,
            m,
            n,
            k,
            one,
            ptr_at(a, a_off),
            lda,
            ptr_at(b, b_off),
            ldb,
            cast(beta),
            ptr_at(c, c_off),
            ldc,
        )

    return impl


def split(total: int, parts: int, align: int = 1) -> int:
    """Block size that cuts ``total`` into about ``parts`` blocks, rounded up to ``align``."""
    b = -(-total // max(1, parts))
    return max(align, -(-b // align) * align)
