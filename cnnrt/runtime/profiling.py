"""Timing an executor step by step, and Chrome trace events of what was timed.

The trace events are onnxruntime's profile format (Chrome's trace-event format, opened by
chrome://tracing and ui.perfetto.dev): complete ("X") events in microseconds, a step's event
in category ``Node`` with its op in ``args.op_name``, so scripts that read onnxruntime's
profiles read cnnrt's. ``cnnrt profile --chrome-trace`` and a session's ``end_profiling`` both
build their traces from :func:`phase_events` and :func:`step_events`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnrt.errors import CnnrtError, KernelError


def run_stepwise(
    executor, feeds_list: Sequence[np.ndarray], clock=time.perf_counter
) -> tuple[float, list[tuple[float, float]]]:
    """One run of a CPU executor's plan, step by step: (start time, [(step start, step seconds), ...]).
    Each step runs as the executor runs it, bound to its arrays (kernels.registry.bound)."""
    for dst, src in zip(executor.input_arrays, feeds_list):
        np.copyto(dst, src)
    start = clock()
    spans = []
    for step, call in zip(executor.steps, executor.calls):
        t0 = clock()
        try:
            call()
        except CnnrtError:
            raise
        except Exception as e:  # as in the executor's own loop: the error names the node
            raise KernelError(executor._describe(step.node, f"{type(e).__name__}: {e}")) from e
        spans.append((t0, clock() - t0))
    return start, spans


def metadata_events(process: str, threads: Mapping[int, str]) -> list[dict]:
    """The process's and the tracks' names."""
    events = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": process}}]
    events += [{"ph": "M", "pid": 1, "tid": t, "name": "thread_name", "args": {"name": n}} for t, n in threads.items()]
    return events


def span_event(name: str, cat: str, ts_us: float, dur_us: float, tid: int, args: dict | None = None) -> dict:
    return {"ph": "X", "pid": 1, "tid": tid, "name": name, "cat": cat, "ts": ts_us, "dur": dur_us, "args": args or {}}


def phase_events(phases: Mapping[str, float], t_us: float, tid: int, cat: str) -> tuple[list[dict], float]:
    """Back-to-back events of named phases (seconds) from ``t_us``; returns them and their end."""
    events = []
    for phase, secs in phases.items():
        if isinstance(secs, (int, float)) and secs > 0:
            events.append(span_event(phase, cat, t_us, secs * 1e6, tid))
            t_us += secs * 1e6
    return events, t_us


def step_events(
    rows: Sequence[Mapping[str, Any]], spans: Sequence[tuple[float, float]], t_us: float, run: int, tid: int
) -> tuple[list[dict], float]:
    """One run's step events: ``rows`` describe the steps (name, op, origin, and any of macs,
    provider), ``spans`` are (offset from the run's start, seconds); returns them and the run's end."""
    events = []
    end = t_us
    for (off, dur), row in zip(spans, rows):
        args = {"op_name": row["op"], "origin": list(row["origin"]), "run": run}
        args.update({k: row[k] for k in ("macs", "provider") if k in row})
        events.append(span_event(row["name"], "Node", t_us + off * 1e6, dur * 1e6, tid, args))
        end = t_us + (off + dur) * 1e6
    return events, end


class SessionProfiler:
    """A session's profile (``enable_profiling``): its build phases and every run with its steps,
    written by :meth:`write` as onnxruntime writes its profile (a JSON list of events)."""

    def __init__(self, prefix: str, model_name: str, provider: str, t0: float) -> None:
        """``t0``: the perf_counter time profiling started (the model's load)."""
        self.prefix = prefix
        self.provider = provider
        self.t0 = t0
        self.start_ns = time.time_ns() - int((time.perf_counter() - t0) * 1e9)
        self.started = time.localtime()
        self.events = metadata_events(f"cnnrt {model_name}", {1: "session", 2: "steps"})
        self.runs = 0

    def _us(self, t: float) -> float:
        return (t - self.t0) * 1e6

    def phases(self, phases: Mapping[str, float], end: float) -> None:
        """Build phases (seconds each) that ended at ``end`` (a perf_counter time)."""
        start = self._us(end) - sum(v for v in phases.values() if isinstance(v, (int, float)) and v > 0) * 1e6
        self.events += phase_events(phases, max(start, 0.0), 1, "Session")[0]

    def run(self, executor, feeds_list: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run a CPU executor step by step, recording the run and its steps; returns the outputs."""
        start, spans = run_stepwise(executor, feeds_list)
        outs = [np.array(o, copy=True) for o in executor.output_arrays]
        end = time.perf_counter()
        rows = [
            {"name": s.node.name, "op": s.node.op, "origin": s.node.origin, "provider": self.provider}
            for s in executor.steps
        ]
        self.events += step_events(rows, [(t - start, d) for t, d in spans], self._us(start), self.runs, 2)[0]
        self.events.append(span_event("model_run", "Session", self._us(start), (end - start) * 1e6, 1))
        self.runs += 1
        return outs

    def record_run(self, start: float, end: float) -> None:
        """A run timed as a whole (a backend whose steps cannot be timed one by one)."""
        self.events.append(span_event("model_run", "Session", self._us(start), (end - start) * 1e6, 1))
        self.runs += 1

    def write(self) -> str:
        """Write the profile as ``<prefix>_<start date and time>.json`` (relative to the working
        directory, as onnxruntime names it); returns that path."""
        path = f"{self.prefix}_{time.strftime('%Y-%m-%d_%H-%M-%S', self.started)}.json"
        try:
            with open(path, "w") as f:
                json.dump(self.events, f)
        except OSError as e:
            raise CnnrtError(f"cannot write the profile {path!r}: {e.strerror or e}") from None
        return path
