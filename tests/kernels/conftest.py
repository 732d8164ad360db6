"""Every kernel test runs twice: with the parallel kernels and with their serial twins.

Kernels pick the serial twin (no parallel region) for small work or one thread
(kernels/_jit.py: pick); test shapes are small, so without this the parallel versions would
hardly run here.
"""

from __future__ import annotations

import numba
import pytest

from cnnrt.kernels import _jit


@pytest.fixture(autouse=True, params=["parallel", "serial"])
def kernel_flavour(request, monkeypatch):
    monkeypatch.setattr(_jit, "SERIAL_BELOW", 0 if request.param == "parallel" else float("inf"))
    before = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # the parallel twin needs > 1 thread
    yield request.param
    numba.set_num_threads(before)
