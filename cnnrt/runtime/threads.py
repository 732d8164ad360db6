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

Fork: Numba's pool runs on a threading layer. The GNU OpenMP one ("omp" with libgomp) cannot
survive fork(): a forked child that enters a parallel region is killed. So unless the user
chose a layer (NUMBA_THREADING_LAYER, or numba.config.THREADING_LAYER before the pool
started), cnnrt asks Numba for a fork-safe one ("forksafe": TBB when it loads, else the
built-in workqueue), which makes sessions work in children made by fork (multiprocessing's
default on Linux, gunicorn --preload, data-loader workers), spawn and forkserver alike.
TBB (the ``tbb`` dependency, loaded by :func:`preload_tbb`) starts a parallel region in
2–4 µs on this project's machine, the workqueue in 50–60 µs: a mobile net runs 50–200 steps,
each at least one region, so the layer alone moves MobileNetV3-small at batch 1 from 5.8 to
2.1 ms (medians, 2 threads). The workqueue layer also lets one thread at a time into a parallel region; runs are
serialised for it (:func:`parallel_guard`). A child forked from a process whose pool runs on GNU
OpenMP (the user's choice) gets a BackendUnavailableError from ``run`` instead of being killed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from cnnrt.errors import BackendUnavailableError

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


# pip's ``tbb`` wheel puts libtbb.so.12 in <prefix>/lib, which is not on the loader's path, so
# Numba's tbbpool extension fails to load it and "forksafe" falls back to workqueue. Loading
# the library first (RTLD_GLOBAL) lets the extension bind to it.
_TBB_LIBRARY = "libtbb.so.12"


def preload_tbb() -> bool:
    """Load pip's TBB library if it is installed; True when it is loaded (or needs no help)."""
    import ctypes

    try:
        ctypes.CDLL(_TBB_LIBRARY, mode=ctypes.RTLD_GLOBAL)  # already on the loader's path
        return True
    except OSError:
        pass
    path = os.path.join(sys.prefix, "lib", _TBB_LIBRARY)
    if not os.path.exists(path):  # a user install, or a venv that sees another's packages
        path = _tbb_path_from_metadata()
    if path is None:
        return False
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        return False


def _tbb_path_from_metadata() -> str | None:
    from importlib import metadata

    try:
        files = metadata.distribution("tbb").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == _TBB_LIBRARY:
            return str(f.locate())
    return None


def choose_threading_layer() -> None:
    """Ask Numba for a fork-safe threading layer unless the user chose one (see the module docstring)."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        if os.environ["NUMBA_THREADING_LAYER"] in ("tbb", "safe", "forksafe", "threadsafe", "default"):
            preload_tbb()
        return
    if sys.platform.startswith("linux"):
        preload_tbb()
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is None:  # numba not imported yet: it reads the environment when it is
        os.environ["NUMBA_THREADING_LAYER"] = "forksafe"
    elif numba_config.THREADING_LAYER == "default":
        numba_config.THREADING_LAYER = "forksafe"  # read when the pool starts


_forked_from_gnu_omp = False


def _after_fork_in_child() -> None:
    global _forked_from_gnu_omp
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is None or not getattr(parallel, "_is_initialized", False):
        return  # no pool was running: the child starts its own
    if parallel.threading_layer() == "omp":
        from numba.np.ufunc import omppool

        _forked_from_gnu_omp = getattr(omppool, "openmp_vendor", "") == "GNU"


def check_forked_pool() -> None:
    """BackendUnavailableError in a child forked from a process whose pool runs GNU OpenMP."""
    if _forked_from_gnu_omp:
        raise BackendUnavailableError(
            "this process was forked from one whose Numba pool runs on GNU OpenMP, which cannot be used "
            "after fork(); use multiprocessing's 'spawn' or 'forkserver' start method, or leave "
            "NUMBA_THREADING_LAYER unset so that cnnrt picks a fork-safe layer"
        )


choose_threading_layer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def blas_threads_for(n: int) -> int:
    """The BLAS thread count cnnrt uses when it runs with ``n`` threads."""
    return 1 if _modules()[2].HAVE_BLAS else n


def apply_threads(n: int) -> int:
    """Make Numba (for this thread) use ``n`` threads and BLAS what :func:`blas_threads_for` says.

    Returns the Numba thread count applied (``n`` clipped to the pool's size)."""
    global _blas_threads, _controller
    check_forked_pool()
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


# Numba's "workqueue" threading layer (the fork-safe fallback without TBB) aborts the whole
# process when two threads enter parallel regions at once, so with it every native run, kernel
# build and background compile in the process is serialised. Which layer runs is unknown until
# the first parallel region has run: guard till then.
_PROCESS_LOCK = threading.RLock()
_layer_is_safe: bool | None = None


def parallel_guard():
    """A context manager to hold while running native kernels: the process lock under the
    workqueue layer (or before the layer is known), else nothing."""
    global _layer_is_safe
    if _layer_is_safe is None:
        import numba

        try:
            _layer_is_safe = numba.threading_layer() != "workqueue"
        except ValueError:  # no parallel region has run yet
            return _PROCESS_LOCK
    return contextlib.nullcontext() if _layer_is_safe else _PROCESS_LOCK
