"""``cnnrt demo [MODEL]``: export a zoo model, run it with cnnrt and onnxruntime, compare, time both."""

from __future__ import annotations

import time

from cnnrt.cli import options

DEFAULT_MODEL = "resnet18"


HELP = "export a zoo model, run it with cnnrt, check it against onnxruntime, print both latencies"
EPILOG = "example: cnnrt demo resnet18 --batch 1 --runs 20"


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"{options.MODEL_HELP} (default {DEFAULT_MODEL})")
    p.add_argument("--batch", type=options.positive_int, default=1, help="batch size of the random input (default 1)")
    options.add_runs(p, 20, "timed runs of each, alternating", warmup=None)
    options.add_threads(p)


def run(args) -> int:
    import cnnrt
    from cnnrt.errors import CnnrtError
    from cnnrt.tools.modelsource import random_feeds, resolve_model
    from cnnrt.tools.timing import max_rel_error, ort_session, stats_ms, time_alternating

    t0 = time.perf_counter()
    path = resolve_model(args.model)
    print(f"model       {args.model} -> {path} ({time.perf_counter() - t0:.1f} s to export/load)")
    t0 = time.perf_counter()
    sess = cnnrt.InferenceSession(path, threads=args.threads)
    feeds = random_feeds(sess, batch=args.batch)
    ours = sess.run(None, feeds)
    build = time.perf_counter() - t0
    tm = sess.build_timings
    print(
        f"cnnrt build {build:.2f} s (import {tm['import']:.2f}, passes {tm['passes']:.2f}, "
        f"planning {tm['planning']:.2f}, kernels {tm['kernels']:.2f}, first run incl. JIT)"
    )
    ops = sess.graph.op_counts()
    print(f"graph       {len(sess.graph.nodes)} nodes: " + ", ".join(f"{k}×{v}" for k, v in sorted(ops.items())))
    ort = ort_session(path, threads=args.threads)
    ref = ort.run(None, feeds)
    err = max(max_rel_error(a, b) for a, b in zip(ours, ref))
    ok = err <= 1e-3
    print(f"check       max|cnnrt-ort|/max(1,|ort|) = {err:.2e}  {'OK' if ok else 'MISMATCH'}")
    if not ok:
        raise CnnrtError(f"cnnrt and onnxruntime disagree on {args.model} (relative error {err:.2e} > 1e-3)")
    times = time_alternating(
        {"cnnrt": lambda: sess.run(None, feeds), "onnxruntime": lambda: ort.run(None, feeds)}, runs=args.runs
    )
    c, o = stats_ms(times["cnnrt"]), stats_ms(times["onnxruntime"])
    print(
        f"latency     cnnrt {c['median_ms']:.2f} ms   onnxruntime {o['median_ms']:.2f} ms   "
        f"ratio {c['median_ms'] / o['median_ms']:.2f}  (batch {args.batch}, median of {len(times['cnnrt'])} alternating runs)"
    )
    return 0
