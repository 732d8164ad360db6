"""Device queries and transfers: the only module that asks numba.cuda what hardware exists.

numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, read when numba is first imported)
lacks parts of the device API (``cuda.get_current_device``, ``cuda.is_cuda_array``), so
every such question goes through a helper here that knows both worlds.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np


@functools.cache
def _cuda():
    from numba import cuda

    return cuda


def is_simulator() -> bool:
    """True when numba.cuda is the CUDA simulator (all kernels run as Python threads)."""
    return hasattr(_cuda(), "FakeCUDAKernel")


def cuda_unavailable_reason() -> str | None:
    """None when CUDA kernels can run here (a GPU or the simulator); else a one-line reason."""
    try:
        cuda = _cuda()
    except Exception as e:  # a broken numba install
        return f"numba.cuda cannot be imported ({type(e).__name__}: {e})"
    if is_simulator():
        return None
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return (
            "NUMBA_ENABLE_CUDASIM=1 is set, but numba was imported before it was set; "
            "set it before the first import of numba (or cnnrt)"
        )
    try:
        if not cuda.is_available():
            from numba.cuda.cudadrv.driver import driver

            why = " ".join((driver.initialization_error or "no CUDA device found").split())
            return f"no usable CUDA GPU ({why}); to try the CUDA backend without a GPU set NUMBA_ENABLE_CUDASIM=1 before numba is imported"
        from numba.cuda.cudadrv import nvvm

        if not nvvm.is_available():
            return "a CUDA driver is present but libNVVM (the CUDA toolkit's compiler) is not; install the CUDA toolkit / cuda-nvcc"
    except Exception as e:
        return f"CUDA initialisation failed: {' '.join(str(e).split())}"
    return None


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    multiprocessors: int
    max_threads_per_block: int
    simulator: bool


@functools.cache
def device_info() -> DeviceInfo:
    """Facts about the current device (fixed, made-up numbers in the simulator)."""
    if is_simulator():
        return DeviceInfo("numba CUDA simulator", 1, 1024, True)
    dev = _cuda().get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return DeviceInfo(name, int(dev.MULTIPROCESSOR_COUNT), int(dev.MAX_THREADS_PER_BLOCK), False)


def is_device_array(x: Any) -> bool:
    """True for numba device arrays (real or simulated) and other CUDA-array-interface objects."""
    if isinstance(x, np.ndarray):
        return False
    return hasattr(x, "__cuda_array_interface__") or hasattr(x, "copy_to_host")


def to_device(a: np.ndarray):
    """Upload a host array (made C-contiguous) and return the device copy."""
    return _cuda().to_device(np.ascontiguousarray(a))


def device_array(shape, dtype):
    """An uninitialised device array."""
    return _cuda().device_array(shape, dtype=np.dtype(dtype))


def upload_flat(a: np.ndarray):
    """Upload as a 1-D device array: kernels index flat buffers (0-d becomes size 1)."""
    return to_device(np.ascontiguousarray(a).reshape(-1))


@functools.cache
def placeholder(dtype: str = "float32"):
    """A 1-element device array passed where an optional input is absent (never read)."""
    return _cuda().to_device(np.zeros(1, dtype=np.dtype(dtype)))


def synchronize() -> None:
    _cuda().synchronize()


@functools.cache
def patch_simulator_shared_arrays() -> bool:
    """Make the simulator's ``cuda.shared.array`` race-free (no-op on a real GPU).

    numba 0.68's simulator runs each CUDA thread as a Python thread and finds a block's
    shared array with an unlocked check-then-set on a dict, so two threads of one block can
    get *different* "shared" arrays and a tiled kernel then reads half-empty tiles (seen as
    rare wrong answers; widening the window made 9 in 10 tiled GEMMs wrong). This keeps
    the same lookup (one array per source line per launch) under a lock.
    """
    if not is_simulator():
        return False
    import sys
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    lock = threading.Lock()

    def array(self, shape, dtype):
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        if shape == 0:  # dynamic shared memory: one buffer for the whole block, as upstream
            count = self._dynshared_size // np.dtype(dtype).itemsize
            return np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array
    return True
