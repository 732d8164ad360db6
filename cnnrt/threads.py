"""Thread counts for the two pools cnnrt uses: Numba's (prange kernels) and BLAS's (sgemm).

Numba's count is per calling thread, so it is applied at the start of every run; BLAS's is
process-wide and costly to change, so it is changed only when it differs from what was last
applied. With OMP_WAIT_POLICY=PASSIVE (set in kernels/_jit.py before numba loads) neither
pool spins while the other works.
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


def apply_threads(n: int) -> None:
    """Make Numba (for this thread) and BLAS (process-wide) use ``n`` threads."""
    global _blas_threads, _controller
    import numba

    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    if _blas_threads != n:
        with _lock:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _controller.limit(limits=n, user_api="blas")
            _blas_threads = n
