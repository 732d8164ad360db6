"""From an imported model to something that runs, once per set of input shapes: the IR for those shapes, the
pass pipeline, the memory plan and the backend's executor; and the cache that keeps the recent ones."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnrt.core.ir import Graph
from cnnrt.errors import CnnrtError, ResourceLimitError
from cnnrt.kernels.prepacked import PackStore
from cnnrt.runtime import tiered
from cnnrt.runtime.executor import Executor
from cnnrt.runtime.plan import MemoryPlan, fmt_bytes, plan_memory


@dataclass
class Compiled:
    """Everything built for one set of concrete input shapes."""

    graph: Graph
    plan: MemoryPlan
    executor: Executor
    pass_log: Any
    timings: dict[str, float]
    tier: Any = None  # runtime/tiered.py's Tier while the native kernels compile
    cached: bool = False  # the optimised graph came from the plan cache (runtime/plan_cache.py)


@dataclass(frozen=True)
class BuildOptions:
    """The session's settings that shape what gets built."""

    backend: str
    opt_level: int
    disabled_passes: tuple[str, ...]
    poison: bool
    memory_limit: int
    tiered: bool = False  # answer a cold plan's first runs from numpy/BLAS while its kernels compile
    precision: str = "f32"  # "bf16": passes/precision.py marks the convs that run bfloat16
    native_plan: bool = True  # CPU: runs of steps as one compiled call (runtime/native_plan.py)


def default_memory_limit() -> int:
    """Bytes an arena may take: $CNNRT_MEMORY_LIMIT, else half of physical memory."""
    env = os.environ.get("CNNRT_MEMORY_LIMIT")
    if env:
        try:
            limit = int(env)
        except ValueError:
            limit = -1
        if limit <= 0:
            raise CnnrtError(f"CNNRT_MEMORY_LIMIT must be a positive number of bytes, not {env!r}")
        return limit
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


_RAISE_IT = "(InferenceSession(memory_limit=...) or CNNRT_MEMORY_LIMIT bytes raise it)"


@contextlib.contextmanager
def out_of_memory_is(what: str):
    """A MemoryError inside becomes a ResourceLimitError saying ``what`` was being allocated."""
    try:
        yield
    except MemoryError:
        raise ResourceLimitError(f"out of memory {what}") from None


def _vector_bytes(backend: str) -> int | None:
    """The CPU's vector width for the layout pass (None: not a CPU session)."""
    if backend != "cpu":
        return None
    from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES

    return VECTOR_BYTES


def _make_executor(graph: Graph, plan: MemoryPlan, opts: BuildOptions):
    if opts.backend == "cuda":
        from cnnrt.runtime.cuda_executor import CudaExecutor

        return CudaExecutor(graph, plan, poison=opts.poison)
    return Executor(
        graph, plan, opts.backend, poison=opts.poison, memory_limit=opts.memory_limit, native=opts.native_plan
    )


def _count_constants(plan: MemoryPlan, graph: Graph, model) -> None:
    """Split the graph's constants into the model's initializers and the arrays import and passes made."""
    initializers = {id(a) for a in model.initializers.values()}
    for a in graph.constants.values():
        if id(a) in initializers:
            plan.constant_bytes += a.nbytes
        else:
            plan.folded_bytes += a.nbytes


def _check_limit(plan: MemoryPlan, shapes, limit: int) -> None:
    """Refuse, before anything is allocated, a plan whose arena and constants pass ``limit``."""
    if plan.arena_bytes > limit:
        raise ResourceLimitError(
            f"the activations for input shapes {shapes} need a {fmt_bytes(plan.arena_bytes)} arena, "
            f"above the memory limit of {fmt_bytes(limit)} {_RAISE_IT}"
        )
    total = plan.arena_bytes + plan.constant_bytes + plan.folded_bytes
    if total > limit:
        raise ResourceLimitError(
            f"for input shapes {shapes} the {fmt_bytes(plan.arena_bytes)} arena, {fmt_bytes(plan.constant_bytes)} "
            f"of initializers and {fmt_bytes(plan.folded_bytes)} of folded constants need {fmt_bytes(total)}, "
            f"above the memory limit of {fmt_bytes(limit)} {_RAISE_IT}"
        )


def build(model, shapes: dict[str, tuple[int, ...]], fed: frozenset[str], opts: BuildOptions, cache=None) -> Compiled:
    """Import ``model`` (a frontends.onnx.OnnxModel) at ``shapes``, optimise, plan and bind an executor.

    ``fed`` names the initializers the caller feeds (they stay graph inputs). The timings' "import" is the
    graph construction only; the session adds its model load to it. ``cache`` (a runtime.plan_cache
    ModelEntry) gives the optimised graph when it holds one for these shapes and options, and keeps
    the one built here otherwise.
    """
    t0 = time.perf_counter()
    key = cache.plan_key(shapes, fed, opts, _vector_bytes(opts.backend)) if cache is not None else None
    cached = cache.load_plan(key) if cache is not None else None
    if cached is not None:
        graph, log = cached["graph"], cached["log"]
        t1 = t2 = time.perf_counter()
    else:
        graph, log, t1 = _optimised(model, shapes, fed, opts)
        t2 = time.perf_counter()
    try:
        plan = plan_memory(graph)
    except CnnrtError:
        raise
    except MemoryError:
        raise ResourceLimitError(f"out of memory planning the arena of graph {graph.name!r}") from None
    except Exception as e:
        raise CnnrtError(f"memory planning failed for graph {graph.name!r}: {type(e).__name__}: {e}") from e
    if cached is not None:
        plan.constant_bytes, plan.folded_bytes = cached["constant_bytes"], cached["folded_bytes"]
    else:
        _count_constants(plan, graph, model)
    _check_limit(plan, shapes, opts.memory_limit)
    t3 = time.perf_counter()
    # the weights the kernels repack: from the plan cache, else recorded for it
    packs = PackStore(graph.constants, cached["packed"] if cached is not None else ())
    try:
        with packs.active() if cache is not None else contextlib.nullcontext():
            executor = _make_executor(graph, plan, opts)
    except CnnrtError:
        raise
    except MemoryError:
        raise ResourceLimitError(
            f"cannot allocate the {fmt_bytes(plan.arena_bytes)} arena for input shapes {shapes}"
        ) from None
    except Exception as e:  # safety net: binding arrays or building a kernel tripped
        raise CnnrtError(f"building the {opts.backend} executor failed: {type(e).__name__}: {e}") from e
    t4 = time.perf_counter()
    timings = {"import": t1 - t0, "passes": t2 - t1, "planning": t3 - t2, "kernels": t4 - t3}
    tier = tiered.start(model, shapes, fed, opts, graph, executor)
    if cache is not None and cached is None:
        counts = {"constant_bytes": plan.constant_bytes, "folded_bytes": plan.folded_bytes}
        parts = {"graph": graph, "log": log, "packed": packs.records(), **counts}
        cache.store_plan(key, parts, after=tier.thread if tier else None)
    return Compiled(graph, plan, executor, log, timings, tier, cached=cached is not None)


def _optimised(model, shapes, fed: frozenset[str], opts: BuildOptions):
    """(graph, pass log, the time import ended): ``model`` imported at ``shapes`` and run through the passes."""
    from cnnrt.passes.fold_constants import FOLD_LIMIT
    from cnnrt.passes.pipeline import run_pipeline

    with out_of_memory_is(f"importing the graph for input shapes {shapes}"):
        graph = model.to_graph(shapes, fed)
    t1 = time.perf_counter()
    # folded constants may take half the limit: the arena and the kernels' buffers need the rest
    token = FOLD_LIMIT.set(opts.memory_limit // 2)
    try:
        # folding Inf/NaN weights must not trip np.seterr(all="raise")
        with np.errstate(all="ignore"), out_of_memory_is("optimising the graph (folded constants and weights)"):
            graph, log = run_pipeline(
                graph, opts.opt_level, opts.disabled_passes, _vector_bytes(opts.backend), opts.backend, opts.precision
            )
    finally:
        FOLD_LIMIT.reset(token)
    return graph, log, t1


def shape_key(shapes: dict[str, tuple[int, ...]], fed: frozenset[str]) -> tuple:
    return (tuple(sorted(shapes.items())), fed)


class PlanCache:
    """Compiled plans by input shapes, the oldest dropped beyond ``max_plans`` or while together they hold
    more than ``memory_limit`` (MemoryPlan.total_bytes): a stream of new input shapes would otherwise keep
    one arena (and its folded constants and repacked weights) per shape forever."""

    def __init__(self, max_plans: int, memory_limit: int) -> None:
        self.max_plans = max_plans
        self.memory_limit = memory_limit
        self._plans: dict[tuple, Compiled] = {}

    def __len__(self) -> int:
        return len(self._plans)

    def plans(self) -> list[Compiled]:
        return list(self._plans.values())

    def get(self, key: tuple) -> Compiled | None:
        return self._plans.get(key)

    def add(self, key: tuple, compiled: Compiled) -> None:
        """Keep ``compiled`` (the caller makes it current right away), evicting others as needed."""
        self._plans[key] = compiled
        total = sum(c.plan.total_bytes for c in self._plans.values())
        for k in list(self._plans):
            if len(self._plans) <= self.max_plans and total <= self.memory_limit:
                break
            c = self._plans[k]
            if c is compiled:  # the old current plan may go, the new one stays
                continue
            del self._plans[k]
            total -= c.plan.total_bytes

    def clear(self) -> None:
        self._plans.clear()
