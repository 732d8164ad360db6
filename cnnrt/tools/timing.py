"""Timing helpers: backends timed alternately in one process (one request at a time, or N
concurrent requests for throughput), percentiles of many runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np


def time_alternating(
    fns: Mapping[str, Callable[[], object]],
    runs: int = 20,
    warmup: int = 2,
    max_seconds: float | None = None,
    block: int = 5,
    settle: int = 1,
) -> dict[str, list[float]]:
    """Call each function ``warmup`` times, then ``runs`` times in rotating blocks of ``block``
    consecutive calls (a×5, b×5, a×5, ...); seconds per call.

    Rotating instead of timing one backend then the other keeps a noisy, shared machine's drift
    from favouring whichever ran during a quiet moment; blocks instead of single calls keep one
    engine's thread pool from taxing the next engine's calls, and each block starts with
    ``settle`` untimed calls: OpenVINO's workers keep spinning after its last run of a block
    and took a core from the next engine's first run (cnnrt's MobileNetV2 at batch 1: 2.8 ms
    on the first run after an OpenVINO block against 2.0 alone, 2.2 over the whole block).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    done = 0
    while done < runs:
        n = min(block, runs - done)
        for k, fn in fns.items():
            for _ in range(settle):
                fn()
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        done += n
        if max_seconds is not None and time.perf_counter() - start > max_seconds and done >= 3:
            break
    return times


def time_concurrent(
    fns: Mapping[str, Sequence[Callable[[], object]]],
    runs: int = 20,
    warmup: int = 2,
    max_seconds: float | None = None,
    rounds: int = 5,
) -> dict[str, tuple[list[float], float]]:
    """Throughput: each name's N callables are called from N threads at once, each thread making
    ``runs`` requests back to back (a closed loop); the requests are split into ``rounds`` and the
    names alternate round by round, as in :func:`time_alternating`.

    Returns per name the latency of every request (seconds) and the summed wall time of its
    rounds, so completed requests / wall time is its throughput. The N callables of a name must be
    independent (one session each): a cnnrt session runs one request at a time.
    """
    n = len(next(iter(fns.values()), ()))
    if n < 1 or any(len(v) != n for v in fns.values()):
        raise ValueError("time_concurrent needs the same number (>= 1) of callables for every name")
    per_round = -(-runs // max(1, min(rounds, runs)))
    barrier = threading.Barrier(n + 1)
    task: list = [None, 0]  # (name, requests per thread) of the round; name None ends the threads
    took: list[list[float]] = [[] for _ in range(n)]
    failed: list[BaseException] = []

    def worker(i: int) -> None:
        while True:
            barrier.wait()  # a round starts
            name, count = task
            if name is None:
                return
            took[i] = []
            try:
                for _ in range(count):
                    t0 = time.perf_counter()
                    fns[name][i]()
                    took[i].append(time.perf_counter() - t0)
            except BaseException as e:  # noqa: BLE001  (re-raised by the main thread after the round)
                failed.append(e)
            barrier.wait()  # the round ends

    def one_round(name: str, count: int) -> tuple[float, list[float]]:
        task[:] = [name, count]
        t0 = time.perf_counter()
        barrier.wait()
        barrier.wait()
        wall = time.perf_counter() - t0
        if failed:
            raise failed[0]
        return wall, [t for ts in took for t in ts]

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for w in workers:
        w.start()
    out: dict[str, tuple[list[float], float]] = {k: ([], 0.0) for k in fns}
    try:
        for name in fns:
            if warmup:
                one_round(name, warmup)
        start, done = time.perf_counter(), 0
        while done < runs:
            count = min(per_round, runs - done)
            for name in fns:
                wall, lat = one_round(name, count)
                out[name] = (out[name][0] + lat, out[name][1] + wall)
            done += count
            if max_seconds is not None and time.perf_counter() - start > max_seconds and done >= 3:
                break
    finally:
        task[:] = [None, 0]
        barrier.wait()
        for w in workers:
            w.join()
    return out


PERCENTILES = {"p10_ms": 10, "median_ms": 50, "p90_ms": 90, "p99_ms": 99}
STAT_KEYS = ("min_ms", *PERCENTILES)


def stats_ms(samples: list[float]) -> dict[str, float]:
    """:data:`STAT_KEYS`: min and percentiles in ms (with fewer than 100 samples, p99 lies near the maximum)."""
    a = np.asarray(samples) * 1e3
    pcts = np.percentile(a, list(PERCENTILES.values()))
    return {"min_ms": float(a.min()), **{k: float(v) for k, v in zip(PERCENTILES, pcts)}}


def ort_session(model_path_or_bytes, threads: int | None = None, optimize: bool | str = True):
    """An onnxruntime CPU session with the given intra-op threads and graph optimizations:
    ``optimize`` True (all), False (none) or "extended" (all but the layout ones: no NCHWc
    transformer, so convs run on plain NCHW as cnnrt's do)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    # onnxruntime's pool otherwise spins after each run and takes a core from whatever runs
    # next (the alternating cnnrt run); turning spinning off costs onnxruntime itself little.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    levels = {True: "ORT_ENABLE_ALL", False: "ORT_DISABLE_ALL", "extended": "ORT_ENABLE_EXTENDED"}
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[optimize])
    src = (
        str(model_path_or_bytes)
        if not isinstance(model_path_or_bytes, (bytes, bytearray))
        else bytes(model_path_or_bytes)
    )
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def max_rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max|got - ref| / max(1, max|ref|): the project's agreement measure."""
    if got.shape != ref.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    scale = max(1.0, float(np.nanmax(np.abs(ref))) if np.isfinite(ref).any() else 1.0)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    nan_mismatch = np.isnan(got) != np.isnan(ref)
    if nan_mismatch.any():
        return float("inf")
    return float(np.nanmax(diff) / scale) if diff.size else 0.0


def geomean(xs) -> float:
    """Geometric mean of positive numbers (nan when there are none)."""
    a = np.asarray([x for x in xs if x is not None and x > 0 and np.isfinite(x)], dtype=np.float64)
    return float(np.exp(np.log(a).mean())) if a.size else float("nan")


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _cache_dir():
    from cnnrt.kernels.cache_dir import cache_root

    return cache_root()


def _machine_key(threads: int) -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()}|{cpu}|numpy {np.__version__}|threads {threads}"


def measure_peak_gflops(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """Best GFLOP/s of an ``n``-cube float32 numpy matmul on ``threads`` BLAS threads.

    A large sgemm in the vendor BLAS is as close to this machine's practical fp32 peak as
    a few lines can get; kernels are reported as a percentage of it.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=c)  # warm up the pool and the pages
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def peak_gflops(threads: int, refresh: bool = False) -> tuple[float, bool]:
    """(GFLOP/s, from_cache): the sgemm probe, cached per machine and thread count.

    The cache is ``$CNNRT_CACHE_DIR/peak.json`` (default ``~/.cache/cnnrt/peak.json``).
    """
    import json

    path = _cache_dir() / "peak.json"
    key = _machine_key(threads)
    data: dict = {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    if not refresh and isinstance(data.get(key), (int, float)):
        return float(data[key]), True
    value = measure_peak_gflops(threads)
    data[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home is not worth failing a profile for
    return value, False
