"""Benchmark sweeps: cnnrt against onnxruntime (and PyTorch) on one machine, in one process.

For every model and (batch, threads) setting each backend's outputs are first checked
against onnxruntime's; a backend that disagrees is marked ``WRONG`` and never timed (a fast
wrong answer is not a result). The rest are warmed up and timed in rotating blocks
(:func:`cnnrt.tools.timing.time_alternating`), and reported as min / p50 / p90 / p99, the ratio
of medians to onnxruntime, the ratio of medians to the fastest float32 peer (see
:func:`is_float32_peer`) and the throughput (inferences, i.e. batch items, per second). With a
concurrency N, each backend runs N sessions from N threads at once
(:func:`cnnrt.tools.timing.time_concurrent`): the percentiles are those of the requests, and the
throughput is what N concurrent clients get.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnrt.tools import peers
from cnnrt.tools.timing import (
    STAT_KEYS,
    geomean,
    max_rel_error,
    ort_providers,
    ort_session,
    stats_ms,
    time_alternating,
    time_concurrent,
)

REFERENCE = "onnxruntime"
# onnxruntime-nchw: onnxruntime without its layout optimisations (ORT_ENABLE_EXTENDED), i.e.
# its convs on plain NCHW tensors as cnnrt's are; the reference stays the fully optimised one
BACKENDS = ("cnnrt", "cnnrt-cuda", "onnxruntime", "onnxruntime-nchw", "onnxruntime-cuda", "torch")
DEFAULT_BACKENDS = ("cnnrt", "onnxruntime", "torch")
BACKENDS += peers.BACKENDS  # openvino (float32 forced), openvino-bf16, openvino-f16

# --precision: per reduced precision, the backend that computes it for each float32 one; a
# precision adds its variants of the backends asked for (and, with the default backends,
# every variant it has). Each variant is held to its precision's agreement bound.
PRECISION_VARIANTS: dict[str, dict[str, str]] = {"bf16": {"cnnrt": "cnnrt-bf16", "openvino": "openvino-bf16"}}
BACKEND_PRECISION = {v: p for p, variants in PRECISION_VARIANTS.items() for v in variants.values()}
BACKENDS += tuple(v for v in BACKEND_PRECISION if v not in BACKENDS)

Runner = Callable[[], Sequence[np.ndarray]]


def with_precisions(backends: list[str], precisions: list[str], explicit: bool) -> list[str]:
    """``backends`` and, after each, its variant for every reduced precision in ``precisions``;
    with the default backends (``explicit`` False) a precision adds all of its variants."""
    out = []
    for b in backends:
        out.append(b)
        out += [PRECISION_VARIANTS[p][b] for p in precisions if b in PRECISION_VARIANTS.get(p, {})]
    if not explicit:
        out += [v for p in precisions for v in PRECISION_VARIANTS.get(p, {}).values()]
    return list(dict.fromkeys(out))


def tolerance(backend: str, rtol: float | None) -> float:
    """The agreement bound of ``backend``: ``rtol`` if given, else its precision's (1e-3 float32)."""
    from cnnrt.runtime.session_options import PRECISION_RTOL

    return rtol if rtol is not None else PRECISION_RTOL.get(BACKEND_PRECISION.get(backend, "f32"), 1e-3)


class Skip(Exception):
    """A backend that cannot run this case here; the message is the one-line reason."""


@dataclass
class BackendResult:
    """One backend in one case: ``status`` is ok, WRONG, skipped or error."""

    backend: str
    status: str
    max_rel_error: float | None = None
    times: list[float] = field(default_factory=list)
    note: str = ""
    wall_s: float = 0.0  # wall time of the timed runs (their sum, unless requests ran concurrently)


def _as_numpy_list(out: Any) -> list[np.ndarray]:
    if isinstance(out, (list, tuple)):
        return [_as_numpy_list(o)[0] if not isinstance(o, np.ndarray) else o for o in out]
    if hasattr(out, "detach"):  # a torch tensor
        return [out.detach().cpu().numpy()]
    return [np.asarray(out)]


def bench_case(
    runners: dict[str, Runner],
    reference: str = REFERENCE,
    runs: int = 20,
    warmup: int = 2,
    rtol: float | None = None,
    max_seconds: float | None = None,
    copies: dict[str, list[Runner]] | None = None,
) -> dict[str, BackendResult]:
    """Check every runner against ``runners[reference]``, then time those that agree.

    Agreement is :func:`cnnrt.tools.timing.max_rel_error` <= ``rtol`` on every output (None:
    each backend's precision's bound, :func:`tolerance`). A runner
    that raises is an ``error``; one that disagrees is ``WRONG``; neither is timed. ``copies``
    (per backend, N independent runners, the checked one first) times N concurrent requests.
    """
    if reference not in runners:
        raise ValueError(f"the reference backend {reference!r} is not among {list(runners)}")
    results: dict[str, BackendResult] = {}
    ref = _as_numpy_list(runners[reference]())
    ok: dict[str, Runner] = {}
    for name, fn in runners.items():
        try:
            got = ref if name == reference else _as_numpy_list(fn())
        except Exception as e:  # noqa: BLE001  (any backend failure is reported, not raised)
            results[name] = BackendResult(name, "error", note=f"{type(e).__name__}: {e}".splitlines()[0])
            continue
        if len(got) != len(ref):
            results[name] = BackendResult(name, "WRONG", math.inf, note=f"{len(got)} outputs, reference has {len(ref)}")
            continue
        err = max((max_rel_error(np.asarray(g), r) for g, r in zip(got, ref)), default=0.0)
        bound = tolerance(name, rtol)
        if not err <= bound:
            results[name] = BackendResult(name, "WRONG", err, note=f"max rel error {err:.2e} > {bound:g}")
            continue
        results[name] = BackendResult(name, "ok", err)
        ok[name] = fn
    if copies is None:
        for name, ts in time_alternating(ok, runs=runs, warmup=warmup, max_seconds=max_seconds).items():
            results[name].times, results[name].wall_s = ts, sum(ts)
    elif ok:
        timed = time_concurrent({k: copies[k] for k in ok}, runs=runs, warmup=warmup, max_seconds=max_seconds)
        for name, (ts, wall) in timed.items():
            results[name].times, results[name].wall_s = ts, wall
    return results


def is_float32_peer(backend: str) -> bool:
    """Whether ``backend`` is another engine computing in float32, which cnnrt is measured
    against: not one of cnnrt's own backends, and not a reduced-precision OpenVINO."""
    return not backend.startswith("cnnrt") and peers.OPENVINO_PRECISIONS.get(backend, "f32") == "f32"


def _fastest_peers(records: list[dict]) -> None:
    """Fill each timed record's ratio of medians to the fastest float32 peer of its row other than itself."""
    timed = [r for r in records if r["median_ms"] is not None and is_float32_peer(r["backend"])]
    for rec in records:
        others = [r for r in timed if r["backend"] != rec["backend"]]
        if rec["median_ms"] is not None and others:
            best = min(others, key=lambda r: r["median_ms"])
            rec["ratio_vs_fastest_peer"] = rec["median_ms"] / best["median_ms"]
            rec["fastest_peer"] = best["backend"]


def records_for(
    model: str, batch: int, threads: int, results: dict[str, BackendResult], concurrency: int = 1
) -> list[dict]:
    """JSON-ready records, one per backend, with the ratios of medians to onnxruntime and to the
    fastest float32 peer, and the throughput."""
    ref = results.get(REFERENCE)
    ref_med = stats_ms(ref.times)["median_ms"] if ref is not None and ref.times else None
    out = []
    for name, r in results.items():
        rec: dict[str, Any] = {
            "model": model,
            "backend": name,
            "batch": batch,
            "threads": threads,
            "concurrency": concurrency,
            "status": r.status,
            **dict.fromkeys(STAT_KEYS),
            "ratio_vs_onnxruntime": None,
            "inferences_per_s": None,
            "max_rel_error": None if r.max_rel_error is None or not math.isfinite(r.max_rel_error) else r.max_rel_error,
            "runs": len(r.times),
            "note": r.note,
            "ratio_vs_fastest_peer": None,
            "fastest_peer": None,
        }
        if r.status == "ok" and r.times:
            rec.update(stats_ms(r.times))
            rec["inferences_per_s"] = len(r.times) * batch / r.wall_s if r.wall_s > 0 else None
            if ref_med:
                rec["ratio_vs_onnxruntime"] = rec["median_ms"] / ref_med
        out.append(rec)
    _fastest_peers(out)
    return out


# ---------------------------------------------------------------------------- backends


def _cuda_reason() -> str | None:
    try:
        from cnnrt.kernels.cuda.device import cuda_unavailable_reason
    except Exception as e:  # noqa: BLE001  (the module may be missing or broken)
        return f"cnnrt's CUDA backend is not available ({type(e).__name__}: {e})"
    try:
        return cuda_unavailable_reason()
    except Exception as e:  # noqa: BLE001
        return f"cannot probe CUDA ({type(e).__name__}: {e})"


def _precision_reason(precision: str) -> str:
    """Why cnnrt cannot compute ``precision`` here ("" if it can)."""
    from cnnrt.errors import CnnrtError
    from cnnrt.runtime.session_options import check_precision

    try:
        check_precision(precision, "cpu")
    except CnnrtError as e:
        return str(e)
    return ""


def make_runner(
    backend: str, path, zoo_name: str | None, feeds: dict[str, np.ndarray], threads: int, cache: dict | None = None
) -> Runner:
    """A zero-argument callable running ``backend`` on ``feeds``; raises :class:`Skip`.

    ``cache`` (keyed by backend) lets sessions be reused across batch sizes of one model and
    thread count, since cnnrt and onnxruntime both accept a new batch without a rebuild.
    """
    cache = {} if cache is None else cache
    if backend in ("cnnrt", "cnnrt-cuda", "cnnrt-bf16"):
        import cnnrt

        dev, precision = "cpu", BACKEND_PRECISION.get(backend, "f32")
        if backend == "cnnrt-cuda":
            why = _cuda_reason()
            if why:
                raise Skip(why)
            dev = "cuda"
        if precision != "f32" and (why := _precision_reason(precision)):
            raise Skip(why)
        sess = cache.get(backend) or cnnrt.InferenceSession(path, backend=dev, threads=threads, precision=precision)
        cache[backend] = sess
        return lambda: sess.run(None, feeds)
    if backend in ("onnxruntime", "onnxruntime-nchw", "onnxruntime-cuda"):
        if backend == "onnxruntime-cuda":
            if "CUDAExecutionProvider" not in ort_providers():
                raise Skip("onnxruntime has no CUDAExecutionProvider here")
            sess = cache.get(backend)
            if sess is None:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                sess = ort.InferenceSession(str(path), so, providers=["CUDAExecutionProvider"])
        else:
            optimize = "extended" if backend == "onnxruntime-nchw" else True
            sess = cache.get(backend) or ort_session(path, threads=threads, optimize=optimize)
        cache[backend] = sess
        return lambda: sess.run(None, feeds)
    if backend in peers.BACKENDS:
        try:
            return peers.openvino_runner(backend, path, feeds, threads, cache)
        except peers.PeerMissing as e:
            raise Skip(str(e)) from None
    if backend == "torch":
        if zoo_name is None:
            raise Skip("torch runs zoo models only (it needs the PyTorch definition)")
        try:
            import torch
        except ImportError as e:
            raise Skip(f"torch is not installed ({e})") from None
        from cnnrt import models

        module = cache.get(backend) or models.build(zoo_name)
        cache[backend] = module
        torch.set_num_threads(threads)
        if len(feeds) != 1:
            raise Skip(f"zoo model with {len(feeds)} inputs")
        x = torch.from_numpy(next(iter(feeds.values())))

        def run_torch():
            with torch.inference_mode():
                return module(x)

        return run_torch
    raise Skip(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


# ---------------------------------------------------------------------------- reporting


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


# the table's time columns: record key -> heading
_TIME_COLUMNS = {"min_ms": "min ms", "median_ms": "p50 ms", "p90_ms": "p90 ms", "p99_ms": "p99 ms"}
HEADER = (
    f"{'model':16s} {'batch':>5s} {'thr':>3s} {'conc':>4s} {'backend':16s} "
    + " ".join(f"{h:>9s}" for h in _TIME_COLUMNS.values())
    + f" {'vs ort':>7s} {'inf/s':>9s} {'vs peer':>8s}"
)


def format_rows(records: list[dict]) -> list[str]:
    """Table rows (see HEADER); WRONG / skipped / error rows show no time, only the reason."""
    rows = []
    for r in records:
        head = f"{r['model'][:16]:16s} {r['batch']:5d} {r['threads']:3d} {r['concurrency']:4d} {r['backend']:16s}"
        if r["status"] == "ok":
            ratio = "-" if r["ratio_vs_onnxruntime"] is None else f"{r['ratio_vs_onnxruntime']:.2f}x"
            times = " ".join(f"{_fmt(r[k]):>9s}" for k in _TIME_COLUMNS)
            peer = r.get("ratio_vs_fastest_peer")
            peer = "-" if peer is None else f"{peer:.2f}x"
            rows.append(f"{head} {times} {ratio:>7s} {_fmt(r['inferences_per_s'], '.1f'):>9s} {peer:>8s}")
        else:
            label = r["status"] if r["status"] != "skipped" else "skip"
            rows.append(f"{head} {label:>9s}  {r['note']}")
    return rows


def geomean_summary(records: list[dict]) -> list[dict]:
    """Per (batch, threads, backend): geometric mean over models of the ratio to onnxruntime."""
    groups: dict[tuple[int, int, str], list[float]] = {}
    for r in records:
        if r["backend"] == REFERENCE or r["ratio_vs_onnxruntime"] is None:
            continue
        groups.setdefault((r["batch"], r["threads"], r["backend"]), []).append(r["ratio_vs_onnxruntime"])
    return [
        {"batch": b, "threads": t, "backend": be, "geomean_ratio_vs_onnxruntime": geomean(v), "models": len(v)}
        for (b, t, be), v in sorted(groups.items())
    ]


def peer_geomean_summary(records: list[dict]) -> list[dict]:
    """Per backend: geometric mean of the ratio to the fastest float32 peer, over every timed
    row (model, batch, threads) of that backend, and per (batch, threads) setting. A setting
    is None in the ``batch``/``threads`` of the all-rows entry."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        if r.get("ratio_vs_fastest_peer") is None:
            continue
        for key in ((r["batch"], r["threads"], r["backend"]), (None, None, r["backend"])):
            groups.setdefault(key, []).append(r["ratio_vs_fastest_peer"])
    return [
        {"batch": b, "threads": t, "backend": be, "geomean_ratio_vs_fastest_peer": geomean(v), "rows": len(v)}
        for (b, t, be), v in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0] is None, kv[0][:2]))
    ]


def write_csv(records: list[dict], path) -> None:
    """The records as CSV, one row each, the JSON keys as columns (empty where a value is null)."""
    import csv

    fields = list(dict.fromkeys(k for r in records for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(records)
