"""``cnnrt profile MODEL``: where the time goes, step by step of the executed plan.

Per step: median time over --runs, op and name, the ONNX nodes it came from, MACs, achieved
GFLOP/s (2*MACs/time), % of this machine's peak (a large numpy sgemm on the same number of
threads, measured once and cached in ~/.cache/cnnrt/peak.json) and share of the total.
The sum of the steps is checked against a separately measured end-to-end run (within 10%).
Session build time is split into import, passes, planning, kernels and the first run (JIT)."""

from __future__ import annotations

import json
import sys
import time

from cnnrt.cli import options

EPILOG = """examples:
  cnnrt profile resnet18 --runs 20
  cnnrt profile model.onnx --batch 8 --json prof.json --chrome-trace trace.json --plot steps.png
  (open trace.json in https://ui.perfetto.dev or chrome://tracing)"""


HELP = "per-step time, MACs, GFLOP/s and %% of peak of the executed plan"


def add_arguments(p) -> None:
    options.add_model(p)
    options.add_runs(p, 20, "profiled runs; medians are reported")
    options.add_batch(p)
    options.add_shape(p)
    options.add_threads(p)
    options.add_precision(p)
    p.add_argument(
        "--top", type=options.nonnegative_int, default=0, help="print only the N slowest steps (default: all, in order)"
    )
    p.add_argument("--no-peak", action="store_true", help="skip the machine-peak probe")
    p.add_argument("--refresh-peak", action="store_true", help="re-measure the peak instead of using the cache")
    options.add_json(p, "the report")
    p.add_argument(
        "--chrome-trace", type=options.output_path, metavar="PATH", help="write a Chrome trace JSON (Perfetto)"
    )
    options.add_plot(p, "bar chart of the 30 slowest steps")


def run(args) -> int:
    import cnnrt
    from cnnrt.tools.modelsource import random_feeds, resolve_model
    from cnnrt.tools.profile import AGREEMENT, chrome_trace, profile_session
    from cnnrt.tools.progress import Spinner
    from cnnrt.tools.timing import cpu_count, peak_gflops

    path = resolve_model(args.model)
    shapes = options.check_shapes(args.shape, path, args.batch)
    with Spinner(f"building {args.model}"):
        sess = cnnrt.InferenceSession(path, threads=args.threads, precision=args.precision)
    build = dict(sess.build_timings)
    feeds = random_feeds(sess, batch=args.batch, shapes=shapes)
    t0 = time.perf_counter()
    with Spinner("first run (JIT)"):
        sess.run(None, feeds)
    build = dict(sess.build_timings)  # a new batch re-plans: report the plan that runs
    build["first_run_jit"] = time.perf_counter() - t0
    threads = args.threads or cpu_count()
    peak, cached = (None, False)
    if not args.no_peak:
        with Spinner("measuring peak (sgemm probe)"):
            peak, cached = peak_gflops(threads, refresh=args.refresh_peak)
    with Spinner(f"profiling {args.runs} runs"):
        rep = profile_session(sess, feeds, runs=args.runs, warmup=args.warmup, peak=peak)
    rep = {
        "model": args.model,
        "path": str(path),
        "batch": next(iter(feeds.values())).shape[0] if feeds else None,
        "threads": threads,
        "precision": args.precision,
        "build": build,
        **rep,
    }

    _print(rep, args.top, cached)
    if not rep["agree"]:
        why = (
            "each step timed alone opens its own parallel region, where the native plan's steps share one "
            "(cnnrt/runtime/native_plan.py), or a noisy machine"
            if rep["total_ms"] > rep["end_to_end_ms"]
            else "time outside the kernels (feed checks, input/output copies, Python dispatch) or a noisy machine"
        )
        print(
            f"warning: the steps add up to {rep['total_ms']:.3f} ms but end-to-end takes {rep['end_to_end_ms']:.3f} ms "
            f"({rep['steps_vs_end_to_end'] * 100:.0f}% apart, more than {AGREEMENT * 100:.0f}%): {why}",
            file=sys.stderr,
        )
    out = {k: v for k, v in rep.items() if not k.startswith("_")}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.chrome_trace:
        with open(args.chrome_trace, "w") as f:
            json.dump(chrome_trace(rep), f)
        print(f"wrote {args.chrome_trace}")
    if args.plot:
        from cnnrt.tools.plots import profile_chart

        profile_chart(
            rep["steps"], args.plot, title=f"cnnrt profile {args.model} (batch {rep['batch']}, {threads} threads)"
        )
        print(f"wrote {args.plot}")
    return 0


def _print(rep: dict, top: int, cached: bool) -> None:
    b = rep["build"]
    print(
        f"model    {rep['model']} ({rep['path']}), batch {rep['batch']}, {rep['threads']} threads, {rep['runs']} runs"
        + (f", precision {rep['precision']}" if rep.get("precision", "f32") != "f32" else "")
    )
    print(
        f"build    import {b['import']:.2f} s, passes {b['passes']:.2f} s, planning {b['planning']:.2f} s, "
        f"kernels {b['kernels']:.2f} s, first run (JIT) {b['first_run_jit']:.2f} s"
    )
    peak = rep.get("peak_gflops")
    if peak:
        print(f"peak     {peak:.1f} GFLOP/s (numpy sgemm, {rep['threads']} threads{', cached' if cached else ''})")
    steps = rep["steps"]
    if top:
        steps = sorted(steps, key=lambda s: s["ms"], reverse=True)[:top]
    w = max([len(s["name"]) for s in steps] + [4])
    w = min(w, 36)
    print(
        f"{'#':>3s} {'step':{w}s} {'op':18s} {'ms':>8s} {'share':>6s} {'MMACs':>9s} {'GFLOP/s':>8s} {'%peak':>6s}  origin"
    )
    for s in steps:
        gf = "-" if s["gflops"] is None else f"{s['gflops']:.2f}"
        pk = "-" if s.get("pct_of_peak") is None else f"{s['pct_of_peak']:.1f}"
        origin = ",".join(s["origin"])
        if len(origin) > 60:
            origin = origin[:57] + "..."
        print(
            f"{s['index']:3d} {s['name'][:w]:{w}s} {s['op'][:18]:18s} {s['ms']:8.4f} {s['share'] * 100:5.1f}% "
            f"{s['macs'] / 1e6:9.2f} {gf:>8s} {pk:>6s}  {origin}"
        )
    gf = rep.get("gflops")
    print(
        f"total    steps {rep['total_ms']:.3f} ms, end-to-end {rep['end_to_end_ms']:.3f} ms "
        f"({rep['steps_vs_end_to_end'] * 100:.1f}% apart; executor loop alone {rep['executor_run_ms']:.3f} ms), "
        f"{rep['total_macs'] / 1e6:.1f} MMACs"
        + (f", {gf:.2f} GFLOP/s" if gf else "")
        + (f" = {100 * gf / peak:.1f}% of peak" if gf and peak else "")
    )
    py = rep.get("python_loop_ms")
    if py is not None:
        saved = py - rep["executor_run_ms"]
        print(
            f"native   {rep['native_steps']} of {len(rep['steps'])} steps in {rep['native_segments']} compiled "
            f"segment(s): executor loop "
            f"{rep['executor_run_ms']:.3f} ms, {py:.3f} ms as a Python loop ({saved * 1e3 / len(rep['steps']):.2f} us per step)"
        )
