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

from cnnrt.errors import BackendUnavailableError, CnnrtError, InputError, SessionClosedError
from cnnrt.runtime.build import BuildOptions, Compiled, PlanCache, build, default_memory_limit, shape_key
from cnnrt.runtime.feeds import check_feeds, checked_shape
from cnnrt.runtime.threads import apply_threads, default_threads
from cnnrt.runtime.tiered import run_plan

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


@dataclass(frozen=True)
class NodeArg:
    """Like onnxruntime's NodeArg: name, shape (ints or symbolic names), type string."""

    name: str
    shape: list[int | str | None]
    type: str


def _current(field: str, doc: str) -> property:
    """A read-only property giving ``field`` of the session's current ``Compiled`` plan."""
    return property(lambda self: getattr(self._now(), field), doc=doc)


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
        self._build_options = BuildOptions(backend, opt_level, self.disabled_passes, self.poison, self.memory_limit)
        self._plans = PlanCache(self.MAX_PLANS, self.memory_limit)
        # feed signatures (name, type, dtype, shape per feed) that passed _check_feeds: a run
        # with the same ones skips the checks, a large share of a small model's run time
        self._checked_feeds: dict[tuple, tuple] = {}
        self._inputs = [NodeArg(s.name, list(s.shape), _ORT_TYPES[s.dtype]) for s in self.model.inputs]
        with _parallel_guard():
            self._current = self._compile(dict(self.model.bind_shapes()), frozenset())

    # -- onnxruntime-shaped introspection --

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def _now(self) -> Compiled:
        """The plan of the most recent input shapes (SessionClosedError once closed)."""
        return self._live()._current

    def get_outputs(self) -> list[NodeArg]:
        g = self._now().graph
        return [
            NodeArg(o, list(g.values[o].shape), _ORT_TYPES.get(g.values[o].dtype, g.values[o].dtype)) for o in g.outputs
        ]

    # the current plan's parts, for tools; each raises SessionClosedError once the session is closed
    graph = _current("graph", "The optimised IR graph that executes (for the most recent input shapes).")
    executor = _current("executor", "The executor of the current plan: ``.steps`` (node, kernel, bound arrays).")
    plan = _current("plan", "The current plan's MemoryPlan (arena size, offsets).")
    pass_log = _current("pass_log", "What each pass did while building the current plan.")

    @property
    def build_timings(self) -> dict[str, float]:
        """Seconds spent in import, passes, planning and kernel build for the current plan; after its
        first run also that run ("first_run") and the Numba compiling for it ("compile", seconds;
        "compiled", kernels; see runtime/tiered.py)."""
        return dict(self._now().timings)

    # -- building --

    def _compile(self, shapes: dict[str, tuple[int, ...]], fed: frozenset[str]) -> Compiled:
        """The plan for these input shapes, from the cache or built now."""
        key = shape_key(shapes, fed)
        compiled = self._plans.get(key)
        if compiled is None:
            compiled = build(self.model, shapes, fed, self._build_options)
            compiled.timings["import"] += self._import_s
            self._plans.add(key, compiled)
        return compiled

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
                shapes[spec.name] = checked_shape(spec, input_shapes[spec.name])
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
                outs = run_plan(compiled, ins, return_device)
        if output_names is None:
            return outs
        return [outs[names.index(n)] for n in output_names]

    # -- lifetime --

    def close(self) -> None:
        """Drop every compiled plan and its arena; later calls to ``run`` raise. Idempotent."""
        with self._lock:
            self._closed = True
            self._plans.clear()
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
        feeds, shapes, fed = check_feeds(self.model, self.backend, input_feed)
        if sig is not None and len(self._checked_feeds) < 64:
            self._checked_feeds[sig] = (shapes, fed)
        return feeds, shapes, fed
