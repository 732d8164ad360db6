"""``cnnrt bench`` percentiles, throughput with --concurrency, CSV beside JSON, error bars, and
``--shape`` on bench / profile / compare."""

from __future__ import annotations

import csv
import threading
import time

import pytest

from cnnrt.tools.timing import stats_ms, time_alternating, time_concurrent


def test_percentiles_of_one_to_hundred_ms():
    # linear interpolation at q/100 * (n - 1) over 1..100: p10 = 10.9, p50 = 50.5, p90 = 90.1, p99 = 99.01
    s = stats_ms([i / 1e3 for i in range(100, 0, -1)])
    assert s == pytest.approx({"min_ms": 1, "p10_ms": 10.9, "median_ms": 50.5, "p90_ms": 90.1, "p99_ms": 99.01})


def test_time_alternating_rotates_blocks_each_after_an_untimed_call():
    """a and b in blocks of 3 timed calls, each block after one untimed call (the previous
    engine's pool may still spin), after one warm-up call each; only timed calls counted."""
    calls = []

    def fn(name):
        def call():
            calls.append(name)
            time.sleep(0.002 if name == "b" else 0)

        return call

    times = time_alternating({"a": fn("a"), "b": fn("b")}, runs=6, warmup=1, block=3, settle=1)
    assert "".join(calls) == "ab" + ("a" * 4 + "b" * 4) * 2
    assert [len(times["a"]), len(times["b"])] == [6, 6]
    assert min(times["b"]) >= 0.002 > max(times["a"])


def test_time_concurrent_runs_streams_at_once_never_one_stream_twice():
    n, runs, nap = 3, 4, 0.02
    busy = [threading.Lock() for _ in range(n)]
    calls = [0] * n

    def stream(i):
        def call():
            assert busy[i].acquire(blocking=False), "one stream's callable ran on two threads at once"
            try:
                calls[i] += 1
                time.sleep(nap)  # releases the GIL, as Numba's nogil kernels and onnxruntime do
            finally:
                busy[i].release()

        return call

    out = time_concurrent({"a": [stream(i) for i in range(n)]}, runs=runs, warmup=1)
    lat, wall = out["a"]
    assert calls == [runs + 1] * n and len(lat) == n * runs
    assert all(t >= nap for t in lat)
    # n streams at once: the wall time is that of about one stream's requests, not n of them
    assert runs * nap <= wall < 0.6 * n * runs * nap


def test_time_concurrent_reraises_a_failing_request():
    def boom():
        raise RuntimeError("request failed")

    with pytest.raises(RuntimeError, match="request failed"):
        time_concurrent({"a": [boom, boom]}, runs=2, warmup=0)


def test_bench_concurrency_csv_json_and_columns(cnnrt_main, tiny_path, tmp_path):
    r = cnnrt_main(
        "bench",
        tiny_path,
        *"--backends cnnrt,onnxruntime --runs 3 --warmup 1 --threads 1 --concurrency 2".split(),
        *"--json b.json --csv b.csv".split(),
    )
    assert r.rc == 0, r.out + r.err
    header = r.out.splitlines()[0].split()
    for col in ("min", "p50", "p90", "p99", "conc", "inf/s"):
        assert col in header
    recs = r.json(tmp_path / "b.json")
    assert {x["backend"] for x in recs} == {"cnnrt", "onnxruntime"}
    for rec in recs:
        assert rec["status"] == "ok" and rec["concurrency"] == 2 and rec["runs"] == 2 * 3
        assert 0 < rec["min_ms"] <= rec["p10_ms"] <= rec["median_ms"] <= rec["p90_ms"] <= rec["p99_ms"]
        # two streams of batch 1 cannot complete more than two requests per fastest latency
        assert 0 < rec["inferences_per_s"] <= 2 * 1e3 / rec["min_ms"]
    with open(tmp_path / "b.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["backend"] for row in rows] == [x["backend"] for x in recs]
    for row, rec in zip(rows, recs):
        assert list(row) == list(rec)
        for key in ("median_ms", "p99_ms", "inferences_per_s"):
            assert float(row[key]) == pytest.approx(rec[key])


def test_bench_shape_sets_the_batch(cnnrt_main, tiny_path, tmp_path):
    r = cnnrt_main("bench", tiny_path, *"--backends cnnrt,onnxruntime --runs 2 --shape x:2x3x8x8 --json b.json".split())
    assert r.rc == 0, r.out + r.err
    recs = r.json(tmp_path / "b.json")
    assert {x["batch"] for x in recs} == {2} and all(x["status"] == "ok" for x in recs)


def test_profile_shape(cnnrt_main, tiny_path, tmp_path):
    r = cnnrt_main("profile", tiny_path, *"--runs 2 --no-peak --shape x:3x3x8x8 --json p.json".split())
    assert r.rc == 0, r.out + r.err
    assert r.json(tmp_path / "p.json")["batch"] == 3


def test_compare_shape(cnnrt_main, tiny_path, monkeypatch):
    import cnnrt.tools.compare as compare

    seen = []
    real = compare.ort_tensors

    def spy(path, feeds):
        seen.append({k: v.shape for k, v in feeds.items()})
        return real(path, feeds)

    monkeypatch.setattr(compare, "ort_tensors", spy)
    r = cnnrt_main("compare", tiny_path, "--shape", "x:2x3x8x8")
    assert r.rc == 0, r.out + r.err
    assert seen == [{"x": (2, 3, 8, 8)}] and "no divergence" in r.out


def test_bench_chart_error_bars_span_p10_to_p90(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer

    from cnnrt.tools.plots import bench_chart

    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    recs = [
        {"model": "m", "batch": 1, "threads": 1, "backend": be, "status": "ok", "ratio_vs_onnxruntime": 1.0, **t}
        for be, t in (
            ("onnxruntime", {"p10_ms": 1.0, "median_ms": 2.0, "p90_ms": 5.0}),
            ("cnnrt", {"p10_ms": 3.0, "median_ms": 4.0, "p90_ms": 4.5}),
        )
    ]
    bench_chart(recs, tmp_path / "b.svg")
    [ax] = figs[0].axes
    spans = []
    for bars in [c for c in ax.containers if isinstance(c, BarContainer)]:
        _, _, (lines,) = bars.errorbar.lines
        spans += [(seg[0][1], seg[1][1]) for seg in lines.get_segments()]
    assert sorted(spans) == [(1.0, 5.0), (3.0, 4.5)]
