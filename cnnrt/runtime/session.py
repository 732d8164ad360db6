"""The public API: ``InferenceSession``, shaped like onnxruntime's."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnrt.core.ir import Graph
from cnnrt.errors import BackendUnavailableError, CnnrtError, InputError, ResourceLimitError, SessionClosedError
from cnnrt.runtime.executor import Executor
from cnnrt.runtime.plan import MemoryPlan, plan_memory
from cnnrt.runtime.threads import apply_threads, default_threads

_ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "float16": "tensor(float16)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "int16": "tensor(int16)",
    "uint16": "tensor(uint16)",
    "uint32": "tensor(uint32)",
    "uint64": "tensor(uint64)",
    "int8": "tensor(int8)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}


def _is_device_array(x: Any) -> bool:
    from cnnrt.kernels.cuda.device import is_device_array

    return is_device_array(x)


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


def _checked_shape(spec, shape) -> tuple[int, ...]:
    """A shape given to ``prepare`` for input ``spec``: positive ints, the right rank, fixed dims kept."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise InputError(f"shape for input {spec.name!r} must be a sequence of ints, not {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims):
        raise InputError(f"shape for input {spec.name!r} must hold positive ints, got {list(dims)}")
    if spec.shape and len(dims) != len(spec.shape):
        raise InputError(
            f"input {spec.name!r} has rank {len(spec.shape)} (shape {list(spec.shape)}), got shape {list(dims)}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, dims)):
        if isinstance(want, int) and want != got:
            raise InputError(
                f"input {spec.name!r} dimension {axis} must be {want} (shape {list(spec.shape)}), got {list(dims)}"
            )
    return tuple(int(d) for d in dims)


# Numba's "workqueue" threading layer (the fallback without OpenMP or TBB) aborts the whole
# process when two threads enter parallel regions at once, so with it, runs of *different*
# sessions are serialised too. Unknown until the first parallel region has run: guard till then.
_PROCESS_LOCK = threading.RLock()
_layer_is_safe: bool | None = None


def _parallel_guard():
    global _layer_is_safe
    if _layer_is_safe is None:
        import numba

        try:
            _layer_is_safe = numba.threading_layer() != "workqueue"
        except ValueError:  # no parallel region has run yet
            return _PROCESS_LOCK
    return contextlib.nullcontext() if _layer_is_safe else _PROCESS_LOCK


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


@dataclass(frozen=True)
class NodeArg:
    """Like onnxruntime's NodeArg: name, shape (ints or symbolic names), type string."""

    name: str
    shape: list[int | str | None]
    type: str


@dataclass
class Compiled:
    """Everything built for one set of concrete input shapes."""

    graph: Graph
    plan: MemoryPlan
    executor: Executor
    pass_log: Any
    timings: dict[str, float]


class InferenceSession:
    """Import an ONNX model, optimise it, plan memory and run it on a backend.

    ``model`` is a path, bytes or ``onnx.ModelProto``. ``threads=None`` uses every core.
    A session may be used from several threads: runs are serialised by a lock, because
    all runs share one arena. ``close()`` (or leaving a ``with`` block) frees the plans.
    """

    MAX_PLANS = 8  # compiled plans (one per input-shape set) kept before the oldest goes

    def __init__(
        self,
        model: Any,
        backend: str = "cpu",
        threads: int | None = None,
        opt_level: int = 2,
        disabled_passes: Iterable[str] = (),
        poison: bool | None = None,
        memory_limit: int | None = None,
    ) -> None:
        from cnnrt.frontends.onnx import OnnxModel

        if backend not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"unknown backend {backend!r}; choose 'cpu' or 'cuda'")
        if backend == "cuda":
            from cnnrt.kernels.cuda.device import cuda_unavailable_reason

            why = cuda_unavailable_reason()
            if why:
                raise BackendUnavailableError(f"backend='cuda' cannot run here: {why}")
        if opt_level not in (0, 1, 2):
            raise CnnrtError(f"opt_level must be 0, 1 or 2, not {opt_level!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise CnnrtError(f"threads must be a positive int or None, not {threads!r}")
        self.backend = backend
        self.threads = threads if threads is not None else default_threads()
        self.opt_level = opt_level
        if isinstance(disabled_passes, str) or not isinstance(disabled_passes, Iterable):
            raise CnnrtError(f"disabled_passes must be a list of pass names, not {disabled_passes!r}")
        self.disabled_passes = tuple(disabled_passes)
        if memory_limit is not None and (
            isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit < 1
        ):
            raise CnnrtError(f"memory_limit must be a positive int (bytes) or None, not {memory_limit!r}")
        self.memory_limit = memory_limit if memory_limit is not None else default_memory_limit()
        self.poison = bool(int(os.environ.get("CNNRT_POISON", "0"))) if poison is None else poison
        t0 = time.perf_counter()
        self.model = OnnxModel(model)
        self._import_s = time.perf_counter() - t0
        self._lock = threading.Lock()
        self._closed = False
        self._compiled: dict[tuple, Compiled] = {}
        # feed signatures (name, type, dtype, shape per feed) that passed _check_feeds: a run
        # with the same ones skips the checks (13 us of LeNet-5's ~100 us run)
        self._checked_feeds: dict[tuple, tuple] = {}
        self._inputs = [NodeArg(s.name, list(s.shape), _ORT_TYPES[s.dtype]) for s in self.model.inputs]
        self._default_key = self._key(self.model.bind_shapes(), frozenset())
        with _parallel_guard():
            self._current = self._compile(*self._default_key_args())

    # -- onnxruntime-shaped introspection --

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        g = self._live()._current.graph
        return [
            NodeArg(o, list(g.values[o].shape), _ORT_TYPES.get(g.values[o].dtype, g.values[o].dtype)) for o in g.outputs
        ]

    @property
    def graph(self) -> Graph:
        """The optimised IR graph that executes (for the most recent input shapes)."""
        return self._live()._current.graph

    @property
    def executor(self):
        """The executor of the current plan: ``.steps`` (node, kernel, bound arrays) for tools."""
        return self._live()._current.executor

    @property
    def plan(self) -> MemoryPlan:
        return self._live()._current.plan

    @property
    def pass_log(self):
        return self._live()._current.pass_log

    @property
    def build_timings(self) -> dict[str, float]:
        """Seconds spent in import, passes, planning and kernel build for the current plan."""
        return dict(self._live()._current.timings)

    # -- building --

    def _vector_bytes(self) -> int | None:
        """The CPU's vector width for the layout pass (None: not a CPU session)."""
        if self.backend != "cpu":
            return None
        from cnnrt.kernels.cpu.microkernel import VECTOR_BYTES

        return VECTOR_BYTES

    def _key(self, shapes: Mapping[str, tuple[int, ...]], fed: frozenset[str]) -> tuple:
        return (tuple(sorted(shapes.items())), fed)

    def _default_key_args(self):
        shapes, fed = self._default_key
        return dict(shapes), fed

    def _compile(self, shapes: dict[str, tuple[int, ...]], fed: frozenset[str]) -> Compiled:
        key = self._key(shapes, fed)
        hit = self._compiled.get(key)
        if hit is not None:
            return hit
        from cnnrt.passes.pipeline import run_pipeline

        t0 = time.perf_counter()
        graph = self.model.to_graph(shapes, fed)
        t1 = time.perf_counter()
        with np.errstate(all="ignore"):  # folding Inf/NaN weights must not trip np.seterr(all="raise")
            graph, log = run_pipeline(graph, self.opt_level, self.disabled_passes, self._vector_bytes(), self.backend)
        t2 = time.perf_counter()
        try:
            plan = plan_memory(graph)
        except CnnrtError:
            raise
        except Exception as e:
            raise CnnrtError(f"memory planning failed for graph {graph.name!r}: {type(e).__name__}: {e}") from e
        if plan.arena_bytes > self.memory_limit:
            raise ResourceLimitError(
                f"the activations for input shapes {shapes} need a {_fmt_bytes(plan.arena_bytes)} arena, "
                f"above the memory limit of {_fmt_bytes(self.memory_limit)} "
                "(InferenceSession(memory_limit=...) or CNNRT_MEMORY_LIMIT bytes raise it)"
            )
        t3 = time.perf_counter()
        try:
            if self.backend == "cuda":
                from cnnrt.runtime.cuda_executor import CudaExecutor

                executor = CudaExecutor(graph, plan, poison=self.poison)
            else:
                executor = Executor(graph, plan, self.backend, poison=self.poison)
        except CnnrtError:
            raise
        except MemoryError:
            raise ResourceLimitError(
                f"cannot allocate the {_fmt_bytes(plan.arena_bytes)} arena for input shapes {shapes}"
            ) from None
        except Exception as e:  # safety net: binding arrays or building a kernel tripped
            raise CnnrtError(f"building the {self.backend} executor failed: {type(e).__name__}: {e}") from e
        t4 = time.perf_counter()
        timings = {"import": self._import_s + (t1 - t0), "passes": t2 - t1, "planning": t3 - t2, "kernels": t4 - t3}
        compiled = Compiled(graph, plan, executor, log, timings)
        self._compiled[key] = compiled
        self._evict(keep=compiled)
        return compiled

    def _evict(self, keep: Compiled) -> None:
        """Drop the oldest plans beyond MAX_PLANS, or while their arenas together pass the limit.

        A stream of new input shapes would otherwise keep one arena per shape forever.
        """
        total = sum(c.plan.arena_bytes for c in self._compiled.values())
        for key in list(self._compiled):
            if len(self._compiled) <= self.MAX_PLANS and total <= self.memory_limit:
                break
            c = self._compiled[key]
            if c is keep:  # the caller makes it current right away; the old current may go
                continue
            del self._compiled[key]
            total -= c.plan.arena_bytes

    def prepare(self, input_shapes: Mapping[str, Sequence[int]] | None = None, batch: int | None = None) -> None:
        """Build (or reuse) the plan for these input shapes and make it current.

        ``batch`` fills every symbolic dimension 0; ``input_shapes`` names shapes per input.
        """
        if input_shapes is not None and not isinstance(input_shapes, Mapping):
            raise InputError(f"input_shapes must be a dict of name -> shape, not {type(input_shapes).__name__}")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise InputError(f"batch must be a positive int or None, not {batch!r}")
        known = {s.name: s for s in self.model.inputs}
        unknown = [k for k in (input_shapes or {}) if k not in known]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {list(known)}")
        shapes = {}
        for spec in self.model.inputs:
            if input_shapes and spec.name in input_shapes:
                shapes[spec.name] = _checked_shape(spec, input_shapes[spec.name])
            else:
                shapes[spec.name] = tuple(
                    d if isinstance(d, int) else (batch if batch and axis == 0 else 1)
                    for axis, d in enumerate(spec.shape)
                )
        with self._lock, _parallel_guard():
            self._live()
            self._current = self._compile(shapes, frozenset())

    # -- running --

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: Any = None,
        return_device: bool = False,
    ) -> list[np.ndarray]:
        """Run the model; same call shape as ``onnxruntime.InferenceSession.run``.

        With ``backend="cuda"``, feeds may also be numba device arrays, and
        ``return_device=True`` returns device arrays so data can stay on the GPU.
        """
        self._live()
        if return_device and self.backend != "cuda":
            raise InputError("return_device=True needs backend='cuda'")
        if not isinstance(input_feed, Mapping):
            raise InputError(f"input_feed must be a dict of name -> array, not {type(input_feed).__name__}")
        names = list(self.model.outputs)
        if output_names is not None:
            if isinstance(output_names, (str, bytes)) or not isinstance(output_names, Iterable):
                raise InputError(f"output_names must be a list of output names or None, not {output_names!r}")
            output_names = list(output_names)
            unknown = [n for n in output_names if not isinstance(n, str) or n not in names]
            if unknown:
                raise InputError(f"unknown output name(s) {unknown}; the model's outputs are {names}")
        feeds, shapes, fed = self._check_feeds(input_feed)
        with self._lock, _parallel_guard():
            self._live()
            if self.backend == "cpu":
                apply_threads(self.threads)
            compiled = self._compile(shapes, fed)
            self._current = compiled
            # NaN/Inf inputs must propagate (as in onnxruntime), whatever np.seterr or the
            # warnings filters of the caller say: no FloatingPointError, no RuntimeWarning.
            with np.errstate(all="ignore"):
                ins = [feeds[n] for n in compiled.graph.inputs]
                outs = compiled.executor.run(ins, return_device=True) if return_device else compiled.executor.run(ins)
        if output_names is None:
            return outs
        return [outs[names.index(n)] for n in output_names]

    # -- lifetime --

    def close(self) -> None:
        """Drop every compiled plan and its arena; later calls to ``run`` raise. Idempotent."""
        with self._lock:
            self._closed = True
            self._compiled.clear()
            self._current = None

    def __enter__(self) -> InferenceSession:
        return self._live()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> InferenceSession:
        if self._closed:
            raise SessionClosedError("this InferenceSession is closed (close() or the end of its 'with' block)")
        return self

    def _check_feeds(self, input_feed: Mapping[str, Any]):
        try:
            sig = tuple((k, type(x), x.dtype, x.shape) for k, x in input_feed.items())
        except AttributeError:  # not array-like: the full check says what is wrong
            sig = None
        hit = self._checked_feeds.get(sig) if sig is not None else None
        if hit is not None:
            return dict(input_feed), hit[0], hit[1]
        feeds, shapes, fed = self._check_feeds_fully(input_feed)
        if sig is not None and len(self._checked_feeds) < 64:
            self._checked_feeds[sig] = (shapes, fed)
        return feeds, shapes, fed

    def _check_feeds_fully(self, input_feed: Mapping[str, Any]):
        known = {s.name: s for s in self.model.inputs}
        overridable = {s.name: s for s in self.model.overridable}
        unknown = [k for k in input_feed if k not in known and k not in overridable]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {list(known)}")
        missing = [k for k in known if k not in input_feed]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {list(known)}")
        feeds: dict[str, np.ndarray] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        bound: dict[str, int] = {}
        for name, x in input_feed.items():
            spec = known.get(name) or overridable[name]
            if self.backend == "cuda" and not isinstance(x, np.ndarray) and _is_device_array(x):
                pass  # a device array stays on the device: shape and dtype are checked below
            elif not isinstance(x, np.ndarray):
                raise InputError(f"input {name!r} must be a numpy.ndarray, not {type(x).__name__}")
            if x.dtype != np.dtype(spec.dtype):
                raise InputError(f"input {name!r} must have dtype {spec.dtype}, got {x.dtype}")
            if len(x.shape) != len(spec.shape) and spec.shape:
                raise InputError(
                    f"input {name!r} must have rank {len(spec.shape)} (shape {list(spec.shape)}), got shape {list(x.shape)}"
                )
            for axis, (want, got) in enumerate(zip(spec.shape, x.shape)):
                if isinstance(want, int) and want != got:
                    raise InputError(
                        f"input {name!r} dimension {axis} must be {want} (shape {list(spec.shape)}), got shape {list(x.shape)}"
                    )
                if got <= 0:
                    raise InputError(f"input {name!r} has an empty dimension {axis}: shape {list(x.shape)}")
                if isinstance(want, str):
                    if bound.setdefault(want, got) != got:
                        raise InputError(
                            f"symbolic dimension {want!r} is {bound[want]} in one input but {got} in {name!r}"
                        )
            feeds[name] = x
            if name in known:
                shapes[name] = tuple(x.shape)
        fed = frozenset(n for n in input_feed if n in overridable)
        return feeds, shapes, fed
