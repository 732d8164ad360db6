"""One place for Numba flags, so every kernel is compiled the same way.

Threading-layer environment must be set before numba is imported; ``configure_threads``
does that as early as cnnrt is imported (see cnnrt/__init__.py for why).
"""

from __future__ import annotations

import os
import sys

# fastmath is off: it lets LLVM reassociate reductions and drop NaN/Inf semantics, and
# results must propagate NaN/Inf as onnxruntime does. error_model="numpy": a float division
# by zero gives inf/NaN as IEEE says (Numba's default raises ZeroDivisionError), and without
# that check per division LLVM vectorises loops that divide (tanh, AveragePool).
JIT_FLAGS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")
PARALLEL_FLAGS = dict(JIT_FLAGS, parallel=True)


def njit(*args, **kw):
    import numba

    return numba.njit(*args, **{**JIT_FLAGS, **kw})


def pjit(*args, **kw):
    """njit with parallel=True (prange) for kernels whose outer loop is worth splitting."""
    import numba

    return numba.njit(*args, **{**PARALLEL_FLAGS, **kw})


def configure_env_defaults() -> None:
    """Defaults that must precede the first numba / BLAS import; the user's settings win.

    Numba's OpenMP layer and OpenBLAS both spin after a parallel region; on 2 cores they
    fight (several-fold slowdowns). Passive waiting removes the fight.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
    # ...but a short spin (libgomp: iterations before sleeping; GOMP_SPINCOUNT wins over the
    # wait policy) keeps the worker awake across back-to-back layers; a long spin would steal
    # the core from another process on a shared machine, so the default is a short one.
    # BLAS is single-threaded under cnnrt (cnnrt/threads.py), so no second pool spins.
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    if "NUMBA_CACHE_DIR" not in os.environ:
        from cnnrt.kernels import cache_dir

        current = cache_dir.kernel_cache_dir()
        cache_dir.mark_used(current)
        cache_dir.prune_stale_kernel_caches(current)
        os.environ["NUMBA_CACHE_DIR"] = str(current)
        numba_config = sys.modules.get("numba.core.config")
        if numba_config is not None:  # numba was imported first: it read its config already
            numba_config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


def serial_twin(dispatcher):
    """The same kernel compiled without ``parallel``: its prange loops run in the calling
    thread, with no parallel region at all. Tiny layers (LeNet's, late 7x7 ones) and 1-thread
    sessions use it: waking a second thread for a few microseconds of work costs more than the
    work.

    The twin is a copy of the Python function under another qualified name, so Numba's
    on-disk cache (keyed by name and signature, not by the parallel flag) keeps them apart.
    """
    import types

    import numba

    f = dispatcher.py_func
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + "_serial"
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return numba.njit(**JIT_FLAGS)(g)


def pick(parallel, serial, work: float, nthreads: int):
    """``parallel`` when there are threads to use and ``work`` (about MACs or element-ops) is
    worth a parallel region (>= SERIAL_BELOW), else ``serial``."""
    return parallel if nthreads > 1 and work >= SERIAL_BELOW else serial


SERIAL_BELOW = 1 << 19  # about as much work as a parallel region's wake-up costs


_get_num_threads = None


def num_threads() -> int:
    """``numba.get_num_threads()`` (this thread's count) without its per-call pool-launch lock:
    every step's wrapper asks once, so on a small net the lock is a measurable share of the run."""
    global _get_num_threads
    if _get_num_threads is None:
        import numba
        from numba.np.ufunc import parallel

        numba.get_num_threads()  # launches the pool (once); binds parallel._get_num_threads
        fn = getattr(parallel, "_get_num_threads", None)
        if not callable(fn):  # a numba without that private hook: the public (locking) call
            fn = numba.get_num_threads
        _get_num_threads = fn
    return _get_num_threads()
