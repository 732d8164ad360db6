"""Threads: all of cnnrt's parallelism comes from ONE pool, Numba's.

Kernels split their work (GEMMs included) into tasks that Numba's threads claim
(kernels/cpu/blas.py); conv tasks run cnnrt's own register tile (kernels/cpu/microkernel.py),
Gemm/MatMul tasks a single-threaded BLAS. So a run sets Numba's thread count for the calling
thread (it is per thread in Numba) and keeps the BLAS that the kernels call (numpy's
OpenBLAS) at one thread. Two pools that alternate on two cores fight over them, and
OpenBLAS's static split of a GEMM makes a single descheduled thread stall every call.

Without a CBLAS the kernels can call (``blas.HAVE_BLAS`` False), Gemm/MatMul go through np.matmul
and BLAS gets ``n`` threads instead. Both settings are checked on every run (cheaply), so a user
who changed them in between gets them back.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_blas_threads: int | None = None
_controller = None


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _modules():
    """(numba, kernels._jit.num_threads, kernels.cpu.blas), imported on first use (not at
    ``import cnnrt``) and kept: an import statement on every run is a measurable share of a small
    model's run time."""
    global _mods
    if _mods is None:
        import numba

        from cnnrt.kernels._jit import num_threads
        from cnnrt.kernels.cpu import blas

        _mods = (numba, num_threads, blas)
    return _mods


_mods = None


def blas_threads_for(n: int) -> int:
    """The BLAS thread count cnnrt uses when it runs with ``n`` threads."""
    return 1 if _modules()[2].HAVE_BLAS else n


def apply_threads(n: int) -> int:
    """Make Numba (for this thread) use ``n`` threads and BLAS what :func:`blas_threads_for` says.

    Returns the Numba thread count applied (``n`` clipped to the pool's size)."""
    global _blas_threads, _controller
    numba, num_threads, blas = _modules()
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    if num_threads() != n:  # not numba.get_num_threads(): it takes the pool-launch lock on every run
        numba.set_num_threads(n)
    want = blas_threads_for(n)
    if blas.set_blas_threads(want):
        return n
    if _blas_threads != want:  # no direct handle on this BLAS: go through threadpoolctl
        with _lock:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _controller.limit(limits=want, user_api="blas")
            _blas_threads = want
    return n
