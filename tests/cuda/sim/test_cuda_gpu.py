"""Checks that need a real CUDA GPU (skipped in the simulator and without one).

They run the real-GPU launch geometry on shapes too big for the simulator, and time a
model so regressions in launch overhead show up.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, conv_attrs, rand, run_op, tol_for
from helpers import ort_run
from reference import conv2d_reference
from test_cuda_end_to_end import mixed

import cnnrt

pytestmark = pytest.mark.gpu


def test_large_conv_on_gpu():
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, 4, 64, 56, 56), rand(rng, 128, 32, 3, 3), rand(rng, 128)
    attrs = conv_attrs((3, 3), pads=(1, 1, 1, 1), group=2)
    [y] = run_op("Conv", [x, w, b], [(4, 128, 56, 56)], attrs, const=(1, 2))
    assert_close(y, conv2d_reference(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 2), tol_for(32 * 9))


def test_model_on_gpu_matches_onnxruntime_and_keeps_data_on_device():
    from numba import cuda

    model = mixed()
    sess = cnnrt.InferenceSession(model, backend="cuda")
    x = np.random.default_rng(1).standard_normal((16, 3, 10, 10)).astype(np.float32)
    [got] = sess.run(None, {"x": x})
    [want] = ort_run(model, {"x": x})
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    ex = sess._current.executor
    [dev] = ex.run([cuda.to_device(x)], return_device=True)
    np.testing.assert_array_equal(dev.copy_to_host(), got)
    t = time.perf_counter()
    for _ in range(20):
        ex.run([x])
    print(f"mixed model, batch 16: {(time.perf_counter() - t) / 20 * 1e3:.2f} ms per run")
