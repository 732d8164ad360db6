"""Tiered start: the first results on numpy/BLAS while the native kernels compile.

On a machine whose kernel cache lacks a plan's kernels, its first native run waits for Numba
(tens of seconds for a ResNet-50 on two cores). With a tiered start (``CNNRT_TIERED=1``;
``cnnrt run`` turns it on), building the plan also starts a background thread that runs the
native executor once on zero inputs, which compiles every kernel the plan uses and writes
them to the on-disk cache; until that thread is done, runs go through the same model
imported as a plain NCHW graph (no channel-blocked layout) and computed by
kernels/numpy_tier.py. Once it is done, runs switch to the native kernels. Nothing changes
when the kernels are already cached: a plan whose first native run completed once is marked
warm (a file named by a hash of its steps in the kernel cache folder) and starts natively.

The compile thread is not a daemon: a process that ends while it runs waits for it, so the
kernels reach the cache and the next start is a warm one.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from cnnrt.runtime.threads import parallel_guard

ENV = "CNNRT_TIERED"
_TIERS: weakref.WeakSet = weakref.WeakSet()  # the tiers whose thread may still be compiling


def from_env() -> bool:
    """The default of a session's ``tiered`` option: ``CNNRT_TIERED=1`` turns tiering on."""
    return os.environ.get(ENV, "0") not in ("", "0")


def plan_key(graph) -> str:
    """A hash of what the plan's kernels are compiled for: each step's op, algorithm, attributes
    and its values' shapes, dtypes and layouts."""
    h = hashlib.sha256()
    for n in graph.nodes:
        attrs = sorted((k, repr(v)) for k, v in n.attrs.items() if not isinstance(v, np.ndarray))
        vals = [graph.values[v] for v in (*n.inputs, *n.outputs) if v]
        h.update(repr((n.op, attrs, [(v.shape, v.dtype, v.layout) for v in vals])).encode())
    return h.hexdigest()[:24]


def _marker(graph) -> Path:
    from cnnrt.kernels.cache_dir import active_kernel_dir

    return active_kernel_dir() / "warm" / plan_key(graph)


def is_warm(graph) -> bool:
    return _marker(graph).exists()


def mark_warm(graph) -> None:
    """Record that ``graph``'s kernels are in the cache (a plan's first native run finished)."""
    path = _marker(graph)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass  # a read-only cache: the next start is tiered again, which is only slower


class Tier:
    """The numpy tier of one plan and the thread compiling its native kernels."""

    def __init__(self, model, shapes, fed, opts, graph, executor) -> None:
        self.model, self.shapes, self.fed, self.opts = model, shapes, fed, opts
        self.native_graph = graph
        self.executor = executor
        self.graph = None  # the NCHW graph, built on the first run
        self.unsupported: list[str] | None = None
        self.error: BaseException | None = None
        self.compile_s = 0.0
        self.compiled = 0
        self.runs = 0
        self.thread = threading.Thread(target=self._compile, name="cnnrt-compile")
        self.thread.start()
        _TIERS.add(self)

    def _compile(self) -> None:
        from cnnrt.kernels.jit_watch import CompileWatch

        zeros = [np.zeros(a.shape, a.dtype) for a in self.executor.input_arrays]
        try:
            with parallel_guard(), CompileWatch() as w, np.errstate(all="ignore"):
                self.executor.run(zeros)
        except BaseException as e:  # the real run on the native kernels raises it again, named
            self.error = e
            return
        self.compile_s, self.compiled = w.seconds, w.count
        mark_warm(self.native_graph)

    def ready(self) -> bool:
        """Whether the native kernels are compiled (or failed to: the native run says why)."""
        return not self.thread.is_alive()

    def wait(self) -> None:
        self.thread.join()

    def run(self, ins: list[np.ndarray]) -> list[np.ndarray] | None:
        """The outputs computed by the numpy tier, or None when it cannot compute this graph."""
        from cnnrt.kernels import numpy_tier

        if self.graph is None and self.unsupported is None:
            self._build()
        if self.unsupported:
            return None
        env = dict(self.graph.constants)
        env.update(zip(self.native_graph.inputs, ins))
        for node in self.graph.nodes:
            try:
                outs = numpy_tier.run_node(node, self.graph, [env[i] if i else None for i in node.inputs])
            except Exception as e:  # the native kernels answer instead (and name a real error)
                self.unsupported = [f"{node.name} ({node.op}): {type(e).__name__}: {e}"]
                return None
            for name, arr in zip(node.outputs, outs):
                if name:
                    env[name] = arr
        self.runs += 1
        return [np.ascontiguousarray(env[o], dtype=self.graph.values[o].dtype) for o in self.graph.outputs]

    def _build(self) -> None:
        from cnnrt.kernels import numpy_tier
        from cnnrt.passes.pipeline import run_pipeline

        graph = self.model.to_graph(self.shapes, self.fed)
        with np.errstate(all="ignore"):
            graph, _ = run_pipeline(graph, self.opts.opt_level, self.opts.disabled_passes)
        self.unsupported = numpy_tier.missing(graph)
        if graph.outputs != self.native_graph.outputs:
            self.unsupported.append(f"outputs {graph.outputs} differ from {self.native_graph.outputs}")
        self.graph = graph


def wait_for_compiles() -> None:
    """Wait until every tiered start in this process has its native kernels."""
    for tier in list(_TIERS):
        tier.wait()


def start(model, shapes, fed, opts, graph, executor) -> Tier | None:
    """A Tier for this freshly built CPU plan when tiering is on and its kernels are not cached."""
    if opts.backend != "cpu" or not opts.tiered or is_warm(graph):
        return None
    return Tier(model, shapes, fed, opts, graph, executor)


def run_plan(compiled, ins, return_device: bool = False):
    """Run ``compiled`` (a runtime.build.Compiled) on ``ins``: on its numpy tier while its native
    kernels compile, else natively; its first run is timed (timings "first_run", and the Numba
    compiling: "compile" seconds, "compiled" kernels)."""
    tier = compiled.tier
    if tier is not None:
        if not tier.ready():
            t0 = time.perf_counter()
            outs = tier.run(ins)
            if outs is not None:
                compiled.timings.setdefault("first_run", time.perf_counter() - t0)
                compiled.timings["numpy_tier_runs"] = tier.runs
                return outs
            tier.wait()
        compiled.tier = None
        compiled.timings.update(compile=tier.compile_s, compiled=tier.compiled)
    ex = compiled.executor
    if "first_run" in compiled.timings:
        with parallel_guard():
            return ex.run(ins, return_device=True) if return_device else ex.run(ins)
    from cnnrt.kernels.jit_watch import CompileWatch

    t0 = time.perf_counter()
    with parallel_guard(), CompileWatch() as w:
        outs = ex.run(ins, return_device=True) if return_device else ex.run(ins)
    compiled.timings.update(first_run=time.perf_counter() - t0, compile=w.seconds, compiled=w.count)
    if compiled.executor.backend == "cpu":
        mark_warm(compiled.graph)
    return outs
