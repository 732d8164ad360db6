"""Runs the CUDA kernel tests (tests/cuda/sim) on numba's CUDA simulator in a subprocess.

See tests/cuda/conftest.py for why a subprocess: the simulator must be chosen before numba
is first imported. Set CNNRT_CUDA_SIM_PYTEST_ARGS (e.g. "-k conv -x") to narrow the run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cuda_test_env import in_process

import cnnrt
from cnnrt.errors import BackendUnavailableError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.skipif(in_process(), reason="the CUDA tests in tests/cuda/sim are collected in this process")
def test_cuda_kernels_on_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONUNBUFFERED="1")
    extra = shlex.split(os.environ.get("CNNRT_CUDA_SIM_PYTEST_ARGS", ""))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=8", str(HERE / "sim"), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    took = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    print(f"simulator run took {took:.1f} s")
    assert proc.returncode == 0, f"CUDA simulator tests failed (exit {proc.returncode}):\n{out[-12000:]}"


@pytest.mark.skipif(in_process(), reason="CUDA is usable in this process")
def test_cuda_backend_without_gpu_says_why():
    from helpers import make_model
    from onnx import helper

    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 4], "float32")], [("y", [1, 4], "float32")])
    with pytest.raises(BackendUnavailableError, match="cannot run here: .*NUMBA_ENABLE_CUDASIM"):
        cnnrt.InferenceSession(model, backend="cuda")
