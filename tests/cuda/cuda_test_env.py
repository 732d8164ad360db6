"""Where the CUDA tests can run in this process (shared by tests/cuda's conftest and launcher)."""

from __future__ import annotations

import functools
import os

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@functools.cache
def real_gpu() -> bool:
    """A real CUDA GPU is usable from this process (never true in the simulator)."""
    if SIMULATOR:
        return False
    from cnnrt.kernels.cuda.device import cuda_unavailable_reason, is_simulator

    return cuda_unavailable_reason() is None and not is_simulator()


def in_process() -> bool:
    """The kernel tests in tests/cuda/sim can run in this process (simulator on, or a GPU)."""
    return SIMULATOR or real_gpu()
