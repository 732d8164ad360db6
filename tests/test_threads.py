"""Threads: one pool (Numba's), BLAS kept single-threaded, answers independent of the count.

Every GEMM-based kernel cuts its work into blocks fixed at build time and threads claim
them dynamically; a block's result does not depend on which thread computed it, so runs
with 1 and 2 threads, and repeated runs, must agree bit for bit (a race would break that).
"""

from __future__ import annotations

import multiprocessing

import numba
import numpy as np
import pytest
from helpers import make_model
from onnx import helper
from threadpoolctl import threadpool_info

import cnnrt
from cnnrt.kernels.cpu import blas
from cnnrt.runtime.threads import apply_threads, blas_threads_for


def _numpy_blas_threads() -> int | None:
    for info in threadpool_info():
        if info.get("user_api") == "blas" and info.get("filepath") == blas.BLAS_PATH:
            return info["num_threads"]
    return None


def _model():
    """A small net touching every parallel kernel: Winograd, direct (3x3 s2), im2col (1x1 s2),
    pointwise, depthwise, pooling, residual + ReLU epilogues and a Gemm."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    inits = {
        "w1": w(64, 8, 3, 3),
        "b1": w(64),
        "w2": w(64, 64, 3, 3),
        "b2": w(64),
        "w3": w(48, 64, 3, 3),
        "w4": w(48, 1, 3, 3),
        "w5": w(64, 48, 1, 1),
        "b5": w(64),
        "w6": w(64, 64, 1, 1),
        "wf": w(64, 10),
        "bf": w(10),
        "shape": np.array([2, 64], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),  # Winograd
        helper.make_node("Add", ["c2", "r1"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),  # direct
        helper.make_node("Conv", ["c3", "w4"], ["c4"], pads=[1, 1, 1, 1], group=48),  # depthwise
        helper.make_node("Conv", ["c4", "w5", "b5"], ["c5"]),  # pointwise
        helper.make_node("Conv", ["c5", "w6"], ["c6"], strides=[2, 2]),  # im2col
        helper.make_node("MaxPool", ["c6"], ["p5"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p5"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"]),
    ]
    return make_model(nodes, [("x", [2, 8, 32, 32], np.float32)], [("y", None, np.float32)], inits)


@pytest.fixture(scope="module")
def feeds():
    return {"x": np.random.default_rng(1).standard_normal((2, 8, 32, 32)).astype(np.float32)}


# the channel-blocked layout (default on the CPU) and plain NCHW run different conv kernels
LAYOUTS = {"blocked": (), "nchw": ("block_layout",)}
EXPECTED_ALGORITHMS = {
    "blocked": {"BlockedConv/winograd", "BlockedConv/direct", "BlockedConv/depthwise"},
    "nchw": {"Conv/winograd", "Conv/direct", "Conv/im2col", "Conv/pointwise", "Conv/depthwise"},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_model_uses_the_parallel_algorithms(layout):
    sess = cnnrt.InferenceSession(_model(), threads=2, disabled_passes=LAYOUTS[layout])
    algos = {f"{s.node.op}/{s.node.attrs['algorithm']}" for s in sess.executor.steps if "Conv" in s.node.op}
    assert EXPECTED_ALGORITHMS[layout] <= algos


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_threads_1_and_2_give_identical_answers(feeds, layout):
    (y1,) = cnnrt.InferenceSession(_model(), threads=1, disabled_passes=LAYOUTS[layout]).run(None, feeds)
    sess2 = cnnrt.InferenceSession(_model(), threads=2, disabled_passes=LAYOUTS[layout])
    runs = [sess2.run(None, feeds)[0] for _ in range(5)]
    for y2 in runs:
        np.testing.assert_array_equal(y2, y1)  # bit for bit: no thread-count-dependent rounding, no race


@pytest.mark.parametrize("threads", [1, 2])
def test_pools_are_set_as_claimed(feeds, threads):
    if numba.config.NUMBA_NUM_THREADS < threads:
        pytest.skip(f"Numba's pool has {numba.config.NUMBA_NUM_THREADS} thread(s)")
    sess = cnnrt.InferenceSession(_model(), threads=threads)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # something else changed them...
    blas.set_blas_threads(3)
    sess.run(None, feeds)  # ...a run puts them back
    assert numba.get_num_threads() == threads
    if blas.HAVE_BLAS:
        assert blas_threads_for(threads) == 1
        assert blas.blas_threads() == 1
        assert _numpy_blas_threads() == 1  # as threadpoolctl sees numpy's BLAS
    else:
        assert _numpy_blas_threads() in (None, threads)


def test_apply_threads_clips_to_the_pool():
    assert apply_threads(10**6) == numba.config.NUMBA_NUM_THREADS
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    assert apply_threads(1) == 1 and numba.get_num_threads() == 1


def test_blas_claim_and_gemm_tasks():
    """The two intrinsics under every task kernel: the counter hands out each id once, and a
    GEMM cut into claimed column blocks equals numpy's."""
    from cnnrt.kernels._jit import pjit

    @pjit
    def blocked(a, b, c, counter, nthreads, nb, seen):
        m, k = a.shape
        n = b.shape[1]
        for _t in numba.prange(nthreads):
            while True:
                i = blas.claim(counter)
                if i >= (n + nb - 1) // nb:
                    break
                seen[i] += 1
                n0 = i * nb
                blas.gemm(False, m, min(n, n0 + nb) - n0, k, a, 0, k, b, n0, n, 0.0, c, n0, n)

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((37, 53)).astype(np.float32), rng.standard_normal((53, 300)).astype(np.float32)
    c = np.zeros((37, 300), np.float32)
    seen = np.zeros(300 // 16 + 1, np.int64)
    counter = np.zeros(1, np.int64)
    blocked(a, b, c, counter, 2, 16, seen)
    assert (seen == 1).all()
    np.testing.assert_allclose(
        c, a.astype(np.float64) @ b, rtol=0, atol=53 * 2 * 2**-24 * (np.abs(a) @ np.abs(b)).max()
    )


def test_serial_twins_give_identical_answers(feeds, monkeypatch):
    """Small layers run the serial twin of each kernel (no parallel region): the same blocks in
    the same order, so the same bits as the parallel kernel."""
    from cnnrt.kernels import _jit

    (y_default,) = cnnrt.InferenceSession(_model(), threads=2).run(None, feeds)
    monkeypatch.setattr(_jit, "SERIAL_BELOW", 0)  # every kernel parallel
    (y_parallel,) = cnnrt.InferenceSession(_model(), threads=2).run(None, feeds)
    monkeypatch.setattr(_jit, "SERIAL_BELOW", float("inf"))  # every kernel serial
    (y_serial,) = cnnrt.InferenceSession(_model(), threads=2).run(None, feeds)
    np.testing.assert_array_equal(y_parallel, y_default)
    np.testing.assert_array_equal(y_serial, y_default)


_PARENT: dict[str, cnnrt.InferenceSession] = {}


def _run_in_child(conn, model_bytes: bytes, feeds) -> None:
    """In a child process: run the parent's session (forked children have it), then a new one."""
    try:
        outs = []
        if "sess" in _PARENT:
            outs.append(_PARENT["sess"].run(None, feeds)[0])
        outs.append(cnnrt.InferenceSession(model_bytes, threads=2).run(None, feeds)[0])
        conn.send(outs)
    except BaseException as e:  # the test shows what went wrong in the child
        conn.send(f"{type(e).__name__}: {e}")
    conn.close()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_sessions_work_in_child_processes(feeds, method):
    """A session built and run in the parent (its pool running) works in a forked child, and
    children started by spawn and forkserver build and run their own."""
    model = _model()
    sess = cnnrt.InferenceSession(model, threads=2)
    want = sess.run(None, feeds)[0]
    _PARENT["sess"] = sess
    ctx = multiprocessing.get_context(method)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run_in_child, args=(send, model.SerializeToString(), feeds))
    try:
        proc.start()
        send.close()
        try:
            got = recv.recv() if recv.poll(180) else "no answer within 180 s"
        except EOFError:
            got = "the child died without an answer"
        proc.join(60)
    finally:
        _PARENT.clear()
        if proc.is_alive():
            proc.kill()
    assert isinstance(got, list) and proc.exitcode == 0, (proc.exitcode, got)
    assert len(got) == (2 if method == "fork" else 1)
    for y in got:
        np.testing.assert_array_equal(y, want)


def test_a_child_forked_from_a_gnu_openmp_pool_gets_a_clear_error(monkeypatch):
    """A user-chosen GNU OpenMP pool cannot be used after fork(): run raises instead of the
    child being killed."""
    from cnnrt.runtime import threads

    monkeypatch.setattr(threads, "_forked_from_gnu_omp", True)
    with pytest.raises(cnnrt.errors.BackendUnavailableError, match="forked from one whose Numba pool runs on GNU"):
        apply_threads(1)


def test_the_default_layer_is_tbb_when_its_package_is_installed():
    """pip's tbb wheel puts libtbb outside the loader's path; without cnnrt's preload Numba falls
    back to its workqueue, whose parallel regions start ~15x slower (50–60 µs, not 2–4 µs)."""
    import os
    import subprocess
    import sys
    from importlib import metadata

    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed")
    code = (
        "import numpy as np, numba, cnnrt; from helpers import make_model\n"
        "from onnx import helper\n"
        "m = make_model([helper.make_node('Relu', ['x'], ['y'])], [('x', [1, 4])], [('y', [1, 4])])\n"
        "cnnrt.InferenceSession(m).run(None, {'x': np.ones((1, 4), np.float32)})\n"
        "print(numba.threading_layer())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "tbb"
