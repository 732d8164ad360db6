"""Per-step profiling of an executed plan: time, MACs, GFLOP/s, share, and a Chrome trace.

Each step of the session's executor is timed individually (``perf_counter`` around
``step.run``), run after run, and the median per step is reported. End-to-end time
(``session.run``, which also validates feeds and copies inputs and outputs) and the bare
executor loop (``Executor.run``: input copies, steps, output copies) are measured in separate
runs interleaved with the stepwise ones, so drift on a shared machine hits all alike; the
totals are reported side by side and a disagreement over 10% is flagged. With a native plan
(runtime/native_plan.py) the executor loop is also timed with it off: the difference, per
step, is the Python loop's per-step cost that the plan removes. A step timed alone opens its
own parallel region and wakes the pool, which the plan's steps, sharing one region, do not:
on a many-step net at batch 1 the steps add up to more than the run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cnnrt.errors import CnnrtError
from cnnrt.runtime.native_plan import Segment
from cnnrt.runtime.profiling import metadata_events, phase_events, run_stepwise, step_events
from cnnrt.tools.costs import node_macs

AGREEMENT = 0.10  # per-step sum and end-to-end must agree within this fraction


def _executor(sess):
    ex = sess.executor
    if ex is None or not hasattr(ex, "steps"):
        raise CnnrtError("this session's executor exposes no steps to profile (profile runs on the cpu backend)")
    return ex


def profile_session(
    sess, feeds: dict[str, np.ndarray], runs: int = 20, warmup: int = 2, peak: float | None = None
) -> dict[str, Any]:
    """Profile ``sess`` on ``feeds`` (the session must have run these shapes once already).

    Returns the report described in ``cnnrt profile --help`` (without build timings, which
    the caller adds): total_ms, end_to_end_ms, steps[...] with name, op, origin, ms, macs,
    gflops, share (and pct_of_peak when ``peak`` GFLOP/s is given), plus the raw runs for
    a trace.
    """
    sess.run(None, feeds)  # make the feeds' shapes current
    ex = _executor(sess)
    graph = ex.graph
    feeds_list = [feeds[n] for n in graph.inputs]
    for _ in range(warmup):
        run_stepwise(ex, feeds_list)
        sess.run(None, feeds)
    step_samples = np.empty((runs, len(ex.steps)))
    e2e = np.empty(runs)
    loop = np.empty(runs)
    native = getattr(ex, "native", False)
    python_loop = np.empty(runs)  # the executor loop with the native plan off: its per-step cost
    traces = []
    for r in range(runs):
        start, spans = run_stepwise(ex, feeds_list)
        step_samples[r] = [d for _, d in spans]
        traces.append([(t - start, d) for t, d in spans])
        t0 = time.perf_counter()
        sess.run(None, feeds)
        e2e[r] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ex.run(feeds_list)
        loop[r] = time.perf_counter() - t0
        if native:
            ex.native = False
            try:
                t0 = time.perf_counter()
                ex.run(feeds_list)
                python_loop[r] = time.perf_counter() - t0
            finally:
                ex.native = True
    segments = [part for _, part in ex._schedule() if isinstance(part, Segment)] if native else []
    med = np.median(step_samples, axis=0) * 1e3 if runs else np.zeros(len(ex.steps))
    total_ms = float(med.sum())
    e2e_ms = float(np.median(e2e) * 1e3) if runs else 0.0
    steps = []
    for i, step in enumerate(ex.steps):
        node = step.node
        macs = node_macs(node, graph)
        ms = float(med[i])
        gflops = 2.0 * macs / (ms * 1e-3) / 1e9 if macs and ms > 0 else None
        row = {
            "index": i,
            "name": node.name,
            "op": node.op,
            "origin": list(node.origin),
            "ms": ms,
            "macs": int(macs),
            "gflops": gflops,
            "share": ms / total_ms if total_ms > 0 else 0.0,
            "out_shape": [list(graph.values[o].shape) for o in node.outputs if o],
        }
        if peak:
            row["pct_of_peak"] = None if gflops is None else 100.0 * gflops / peak
        steps.append(row)
    total_macs = sum(s["macs"] for s in steps)
    gap = abs(total_ms - e2e_ms) / e2e_ms if e2e_ms > 0 else 0.0
    return {
        "total_ms": total_ms,
        "end_to_end_ms": e2e_ms,
        "executor_run_ms": float(np.median(loop) * 1e3) if runs else 0.0,
        "python_loop_ms": float(np.median(python_loop) * 1e3) if runs and native else None,
        "native_segments": len(segments),
        "native_steps": sum(part.count for part in segments),
        "steps_vs_end_to_end": gap,
        "agree": gap <= AGREEMENT,
        "runs": runs,
        "total_macs": int(total_macs),
        "gflops": 2.0 * total_macs / (total_ms * 1e-3) / 1e9 if total_ms > 0 and total_macs else None,
        "peak_gflops": peak,
        "steps": steps,
        "_traces": traces,
    }


def chrome_trace(report: dict, max_runs: int = 20) -> dict:
    """A Chrome trace-event document (chrome://tracing, ui.perfetto.dev) of the stepwise runs.

    Build phases come first on their own track, then each profiled run laid out on the
    "steps" track with its real per-step timestamps; step events carry op, origin and MACs.
    """
    events = metadata_events(f"cnnrt {report.get('model', '')}", {1: "build", 2: "steps"})
    build, t = phase_events(report.get("build") or {}, 0.0, 1, "build")
    events += build
    t += 1000.0
    for r, spans in enumerate(report.get("_traces", [])[:max_runs]):
        run, end = step_events(report["steps"], spans, t, r, 2)
        events += run
        t = end + 50.0
    return {"traceEvents": events, "displayTimeUnit": "ms"}
