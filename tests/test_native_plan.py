"""The native plan (cnnrt/runtime/native_plan.py): runs of steps with a native form become one
compiled call; the results, the failing step and the runs it cannot compile are checked here on
toy kernels, then through a session's executor."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import cnnrt
from cnnrt.errors import KernelError
from cnnrt.kernels.cpu.native_call import native_call
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.runtime.native_plan import Segment, schedule


@numba.njit
def _add(x, k, out):
    for i in range(x.shape[0]):
        out[i] = x[i] + k


@numba.njit
def _sum_of(out, *parts):
    for i in range(out.shape[0]):
        s = 0.0
        for p in parts:
            s += p[i]
        out[i] = s


@numba.njit
def _fill_with_length(out, text):
    out[:] = len(text)


@numba.njit
def _checked_copy(x, out):
    if x[0] < 0:
        raise ValueError("negative first element")
    out[:] = x


@numba.njit
def _doubled_worker(t, nthreads, form, x, out):
    """Task t of nthreads: its share of out = 2x, raising on a negative element."""
    n = x.shape[0]
    for i in range(t * n // nthreads, (t + 1) * n // nthreads):
        if x[i] < 0:
            raise ValueError("negative element")
        out[i] = 2 * x[i]


_doubled, _doubled_in_turn = threaded(_doubled_worker)


@numba.njit(parallel=True)
def _tripled(x, out):
    for i in numba.prange(x.shape[0]):
        out[i] = 3 * x[i]


def _step(kernel, *args, sets=()):
    return native_call(kernel, kernel, 0, lambda nthreads: args, sets)


def test_runs_of_native_steps_become_segments_with_the_python_steps_between():
    x = np.arange(8, dtype=np.float32)
    a, b, c, d = (np.zeros(8, np.float32) for _ in range(4))
    counter = np.full(2, 9, np.int64)
    calls = [
        _step(_add, x, np.float32(1.0), a),
        _step(_add, a, 2.0, b, sets=((counter, 1, 0),)),
        lambda: np.multiply(b, 3, out=c),
        _step(_sum_of, d, x, a, c),  # *parts: the trailing arrays are packed into a tuple
    ]
    parts, declined = schedule(calls, nthreads=1)
    assert declined == []
    assert [first for first, _ in parts] == [0, 2, 3]
    assert [type(p) is Segment for _, p in parts] == [True, False, True]
    assert parts[0][1].count == 2
    for _, part in parts:
        part()
    np.testing.assert_array_equal(a, x + 1)
    np.testing.assert_array_equal(b, x + 3)
    np.testing.assert_array_equal(c, (x + 3) * 3)
    np.testing.assert_array_equal(d, x + (x + 1) + (x + 3) * 3)
    assert list(counter) == [9, 0]


def test_a_kernel_that_raises_ends_its_segment_and_says_which_step():
    x = np.array([-1.0, 2.0])
    out, after = np.zeros(2), np.zeros(2)
    calls = [_step(_add, x, 1.0, out), _step(_checked_copy, x, out), _step(_add, x, 5.0, after)]
    [(first, segment)], _ = schedule(calls, nthreads=1)
    assert first == 0
    assert segment() == 2  # 1 + the index of the raising step
    np.testing.assert_array_equal(after, 0)  # the steps after it did not run
    x[0] = 3.0
    assert segment() == 0
    np.testing.assert_array_equal(after, x + 5)


def test_a_run_with_an_argument_it_cannot_pass_stays_in_python_and_is_reported():
    x, out, filled = np.ones(3), np.zeros(3), np.zeros(3)
    text = native_call(_fill_with_length, _fill_with_length, 0, lambda nthreads: (filled, "four"))
    calls = [_step(_add, x, 1.0, out), text]
    parts, declined = schedule(calls, nthreads=1)
    assert parts == [(0, calls[0]), (1, text)]
    [(index, why)] = declined
    assert index == 0 and "cannot pass 'four'" in why
    for _, part in parts:
        part()
    np.testing.assert_array_equal(out, 2)
    np.testing.assert_array_equal(filled, 4)


def _small_session(**kw):
    """Three 3x3 convs with ReLU and a global pool: enough convs for the channel-blocked layout,
    whose kernels have native forms."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"
    for k, cin in enumerate((16, 32, 32)):
        inits.append(numpy_helper.from_array(rng.standard_normal((32, cin, 3, 3)).astype(np.float32) / 8, f"w{k}"))
        inits.append(numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), f"b{k}"))
        nodes.append(helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [f"c{k}"], name=f"conv{k}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}"))
        x = f"r{k}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["y"], name="pool"))
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return cnnrt.InferenceSession(model.SerializeToString(), **kw)


def test_a_session_runs_natively_by_default_and_matches_its_python_loop():
    sess = _small_session()
    x = np.random.default_rng(1).standard_normal((1, 16, 28, 28)).astype(np.float32)
    [native] = sess.run(None, {"x": x})
    ex = sess.executor
    assert sess.native_plan and ex.native
    assert any(isinstance(p, Segment) for _, p in ex._schedule())
    off = _small_session(native_plan=False)
    [python_loop] = off.run(None, {"x": x})
    assert not off.executor.native
    np.testing.assert_array_equal(native, python_loop)


def test_a_failing_kernel_in_a_segment_names_its_node_and_the_session_stays_usable():
    sess = _small_session()
    x = np.random.default_rng(2).standard_normal((1, 16, 28, 28)).astype(np.float32)
    [want] = sess.run(None, {"x": x})
    ex = sess.executor
    k = next(i for i, s in enumerate(ex.steps) if s.node.op != "Reorder" and hasattr(ex.calls[i], "native"))
    kept = ex.calls[k]
    probe = np.array([-1.0])
    ex.calls[k] = _step(_checked_copy, probe, np.zeros(1))
    ex._schedules.clear()
    with pytest.raises(KernelError, match=rf"node {ex.steps[k].node.name!r}.*negative first element"):
        sess.run(None, {"x": x})
    ex.calls[k] = kept
    ex._schedules.clear()
    [again] = sess.run(None, {"x": x})
    np.testing.assert_array_equal(again, want)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_steps_between_kernels_with_their_own_region_share_one_parallel_region():
    x = np.arange(1000, dtype=np.float64)
    a, b, c, d = (np.zeros(1000) for _ in range(4))
    counter = np.full(1, 7, np.int64)
    big = 1 << 30  # work enough for the parallel kernels
    calls = [
        native_call(_doubled, _doubled_in_turn, big, lambda n: (n, (), x, a)),  # tasks
        _step(_add, a, 1.0, b, sets=((counter, 0, 0),)),  # a serial kernel: one task
        native_call(_tripled, _tripled, big, lambda n: (b, c)),  # its own parallel region
        native_call(_doubled, _doubled_in_turn, big, lambda n: (n, (), c, d)),
    ]
    [(_, segment)], declined = schedule(calls, nthreads=2)
    assert declined == [] and segment.regions == 2
    assert segment() == 0
    np.testing.assert_array_equal(d, 2 * 3 * (2 * x + 1))
    assert counter[0] == 0
    x[700] = -1.0  # in the second task of the first step
    assert segment() == 1  # 1 + the failing step: the steps after it did not run
    c[:] = 0
    x[700] = 5.0
    assert segment() == 0 and d[700] == 2 * 3 * (2 * 5 + 1)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_each_thread_count_gets_its_own_plan():
    sess = _small_session(threads=1)
    x = np.random.default_rng(3).standard_normal((1, 16, 28, 28)).astype(np.float32)
    [one] = sess.run(None, {"x": x})
    sess.threads = 2
    [two] = sess.run(None, {"x": x})
    assert set(sess.executor._schedules) == {1, 2}
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
    sess.threads = 1
    [again] = sess.run(None, {"x": x})
    np.testing.assert_array_equal(again, one)


def test_the_environment_turns_the_plan_off(monkeypatch):
    monkeypatch.setenv("CNNRT_NATIVE_PLAN", "0")
    sess = _small_session()
    assert not sess.native_plan
    x = np.ones((1, 16, 28, 28), np.float32)
    sess.run(None, {"x": x})
    assert not sess.executor.native and not any(isinstance(p, Segment) for _, p in sess.executor._schedule())
    assert _small_session(native_plan=True).native_plan  # the keyword wins over the environment
