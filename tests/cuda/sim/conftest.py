"""Kernel tests on numba's CUDA simulator (or a real GPU): see tests/cuda/conftest.py."""

from __future__ import annotations

import sys

import pytest
from cuda_test_env import SIMULATOR, in_process

if SIMULATOR:
    # The simulator runs each CUDA thread as a Python thread and polls them at every
    # syncthreads(); with the default 5 ms GIL switch interval one barrier costs ~5 ms.
    # (Its shared-array race is fixed by cnnrt.kernels.cuda.device.patch_simulator_shared_arrays.)
    sys.setswitchinterval(1e-4)


@pytest.fixture(autouse=True)
def _needs_cuda_or_simulator():
    """Reached only when these files are named explicitly in a process without CUDA."""
    if not in_process():
        pytest.skip("no GPU and NUMBA_ENABLE_CUDASIM is not 1: run `NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda/sim`")
