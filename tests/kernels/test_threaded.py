"""kernels.cpu.threaded: the parallel and serial wrappers call the worker by address, once per
thread index, with the arguments they were given, for any argument types."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrt.kernels._jit import njit
from cnnrt.kernels.cpu.threaded import threaded


@njit
def _record(t, nthreads, form, out, k):
    out[t] = out[t] * 1000 + t * 10 + nthreads + k + len(form)


@njit
def _raise_on_one(t, nthreads, form, out):
    if t == 1:
        raise ValueError("thread one failed")
    out[t] = 1


_record_parallel, _record_serial = threaded(_record)
_raise_parallel, _raise_serial = threaded(_raise_on_one)


@pytest.mark.parametrize("which", ["parallel", "serial"])
@pytest.mark.parametrize("nthreads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_every_thread_index_runs_once_with_the_arguments(which, nthreads, dtype):
    kern = _record_parallel if which == "parallel" else _record_serial
    out = np.ones(4, dtype)
    kern(nthreads, (0, 0), out, 5)
    want = np.ones(4, dtype)
    want[:nthreads] = 1000 + np.arange(nthreads) * 10 + nthreads + 5 + 2
    np.testing.assert_array_equal(out, want)


def test_the_serial_wrapper_raises_what_its_worker_raised():
    out = np.zeros(2)
    with pytest.raises(ValueError, match="thread one failed"):
        _raise_serial(2, (), out)
    assert out[0] == 1  # thread 0 ran before thread 1 raised
    _raise_parallel(1, (), out)  # and the kernels stay usable
