"""One session from many threads, many sessions in one process, long loops, and close()."""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from robust_models import conv_net, group_conv_net, input_for, lenet5, tensor_net

import cnnrt
from cnnrt.errors import CnnrtError, SessionClosedError

THREADS = 4
RUNS = 25


def _feeds(model, n: int, batch_sizes=(1,)):
    return [input_for(model, seed=100 + i, batch=batch_sizes[i % len(batch_sizes)]) for i in range(n)]


def _hammer(sess, feeds_list, threads=THREADS):
    """Run every feed from ``threads`` threads at once (a barrier lines them up)."""
    barrier = threading.Barrier(threads)
    chunks = [feeds_list[t::threads] for t in range(threads)]

    def work(chunk):
        barrier.wait()
        return [sess.run(None, f)[0] for f in chunk]

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(work, chunks))
    out = [None] * len(feeds_list)
    for t, res in enumerate(results):
        out[t::threads] = res
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "make, batches",
    [(lenet5, (1,)), (conv_net, (1,)), (lambda: conv_net(batch="N"), (1, 3, 2))],
    ids=["lenet5", "conv_net", "conv_net-varying-batch"],
)
def test_one_session_from_many_threads_gives_the_serial_answers(make, batches):
    m = make()
    feeds = _feeds(m, THREADS * RUNS, batches)
    sess = cnnrt.InferenceSession(m)
    serial = [sess.run(None, f)[0] for f in feeds]
    assert len({a.tobytes() for a in serial}) == len(serial)  # the inputs really differ
    for _ in range(2):
        parallel = _hammer(sess, feeds)
        for a, b in zip(parallel, serial):
            np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(300)
def test_many_sessions_in_one_process_do_not_interfere():
    makers = [lenet5, conv_net, group_conv_net, tensor_net, lenet5, conv_net]
    models = [mk() for mk in makers]
    sessions = [cnnrt.InferenceSession(m, threads=1 + i % 2) for i, m in enumerate(models)]
    feeds = [_feeds(m, 12) for m in models]
    serial = [[s.run(None, f)[0] for f in fs] for s, fs in zip(sessions, feeds)]
    barrier = threading.Barrier(len(sessions))

    def work(k):
        barrier.wait()
        return [sessions[k].run(None, f)[0] for f in feeds[k]]

    with ThreadPoolExecutor(len(sessions)) as pool:
        results = list(pool.map(work, range(len(sessions))))
    for got, want in zip(results, serial):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    # and a session built while others exist, plus one closed, leave the rest alone
    extra = cnnrt.InferenceSession(models[0])
    sessions[1].close()
    for k in (0, 2, 3):
        np.testing.assert_array_equal(sessions[k].run(None, feeds[k][0])[0], serial[k][0])
    np.testing.assert_array_equal(extra.run(None, feeds[0][0])[0], serial[0][0])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.timeout(300)
def test_ten_thousand_runs_do_not_grow_memory():
    m = conv_net()
    sess = cnnrt.InferenceSession(m)
    feeds = [input_for(m, seed=i) for i in range(8)]
    for i in range(500):  # warm up: allocator pools, numba dispatch caches
        sess.run(None, feeds[i % 8])
    gc.collect()
    before = _rss_bytes()
    for i in range(10_000):
        sess.run(None, feeds[i % 8])
    gc.collect()
    grown = _rss_bytes() - before
    print(f"RSS growth over 10,000 runs: {grown / 1024:.0f} KiB")
    assert grown < 4 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 runs"


@pytest.mark.timeout(300)
def test_new_shapes_do_not_keep_a_plan_each_forever():
    m = conv_net(batch="N")
    sess = cnnrt.InferenceSession(m)
    first = input_for(m, batch=1)
    [want] = sess.run(None, first)
    for b in range(2, 3 * sess.MAX_PLANS):
        assert sess.run(None, input_for(m, batch=b))[0].shape == (b, 5)
        assert len(sess._plans) <= sess.MAX_PLANS
    np.testing.assert_array_equal(sess.run(None, first)[0], want)  # evicted plan rebuilt on demand


def test_cached_plans_stay_within_the_memory_limit():
    m = conv_net(batch="N")
    one = cnnrt.InferenceSession(m).plan.total_bytes
    sess = cnnrt.InferenceSession(m, memory_limit=40 * one)
    for b in (8, 16, 24, 32, 8, 16):
        sess.run(None, input_for(m, batch=b))
        assert sum(c.plan.total_bytes for c in sess._plans.plans()) <= 40 * one


def test_close_frees_the_arena_and_run_after_close_raises():
    m = lenet5()
    x = input_for(m)
    sess = cnnrt.InferenceSession(m)
    [want] = sess.run(None, x)
    arena = weakref.ref(sess._current.executor.arena)
    executor = weakref.ref(sess._current.executor)
    sess.close()
    gc.collect()
    assert arena() is None and executor() is None
    with pytest.raises(SessionClosedError, match="closed"):
        sess.run(None, x)
    for attr in ("graph", "plan", "executor"):
        with pytest.raises(CnnrtError, match="closed"):
            getattr(sess, attr)
    sess.close()  # idempotent
    assert isinstance(SessionClosedError("x"), CnnrtError)
    np.testing.assert_array_equal(cnnrt.InferenceSession(m).run(None, x)[0], want)


def test_context_manager_closes():
    m = conv_net()
    x = input_for(m)
    with cnnrt.InferenceSession(m) as sess:
        [y] = sess.run(None, x)
        arena = weakref.ref(sess._current.executor.arena)
    assert y.shape == (1, 5)
    gc.collect()
    assert arena() is None
    with pytest.raises(SessionClosedError):
        sess.run(None, x)
    with pytest.raises(ValueError):  # an exception inside the block still closes, and propagates
        with cnnrt.InferenceSession(m) as s2:
            raise ValueError("boom")
    with pytest.raises(SessionClosedError):
        s2.run(None, x)


def test_close_releases_memory():
    # tracemalloc sees numpy's data buffers; RSS would not (glibc may keep freed pages mapped)
    m = conv_net(batch="N", hw=64)
    x = input_for(m, batch=256)
    gc.collect()
    tracemalloc.start()
    try:
        sess = cnnrt.InferenceSession(m)
        sess.run(None, x)
        arena = sess.plan.arena_bytes
        assert arena > 20 << 20
        held, _ = tracemalloc.get_traced_memory()
        sess.close()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"arena {arena / 2**20:.1f} MiB; traced {held / 2**20:.1f} MiB before close, {after / 2**20:.1f} MiB after")
    assert held - after > 0.95 * arena


def test_close_during_concurrent_runs_never_crashes():
    m = lenet5()
    sess = cnnrt.InferenceSession(m)
    feeds = _feeds(m, 40)
    outcomes = []

    def work(chunk):
        for f in chunk:
            try:
                outcomes.append(sess.run(None, f)[0].shape)
            except SessionClosedError:
                outcomes.append("closed")

    threads = [threading.Thread(target=work, args=(feeds[t::4],)) for t in range(4)]
    for t in threads:
        t.start()
    sess.close()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 40 and all(o in ("closed", (1, 10)) for o in outcomes)


_WORKQUEUE_SCRIPT = """
import sys, threading
sys.path.insert(0, {here!r})
import numpy as np, cnnrt
from robust_models import conv_net, lenet5, input_for
models = [lenet5(), conv_net(), lenet5()]
sessions = [cnnrt.InferenceSession(m, threads=2) for m in models]
feeds = [input_for(m, seed=3) for m in models]
want = [s.run(None, f)[0] for s, f in zip(sessions, feeds)]
barrier = threading.Barrier(3)
bad = []
def work(k):
    barrier.wait()
    for _ in range(30):
        if not np.array_equal(sessions[k].run(None, feeds[k])[0], want[k]):
            bad.append(k)
ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
[t.start() for t in ts]
[t.join() for t in ts]
import numba
print("layer", numba.threading_layer(), "bad", bad)
sys.exit(1 if bad else 0)
"""


@pytest.mark.timeout(300)
def test_sessions_on_the_workqueue_threading_layer_do_not_abort_the_process():
    # without OpenMP/TBB numba falls back to "workqueue", which aborts the process when two
    # threads run parallel kernels at once: different sessions must then take turns
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run(
        [sys.executable, "-c", _WORKQUEUE_SCRIPT.format(here=here)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "layer workqueue bad []" in r.stdout
