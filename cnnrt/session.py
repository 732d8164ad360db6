"""The public API: ``InferenceSession``, shaped like onnxruntime's."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BackendUnavailableError, CnnrtError, InputError
from .executor import Executor
from .ir import Graph
from .plan import MemoryPlan, plan_memory

_ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "float16": "tensor(float16)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "int8": "tensor(int8)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}


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
    all runs share one arena.
    """

    def __init__(
        self,
        model: Any,
        backend: str = "cpu",
        threads: int | None = None,
        opt_level: int = 2,
        disabled_passes: Iterable[str] = (),
        poison: bool | None = None,
    ) -> None:
        from cnnrt.frontends.onnx import OnnxModel

        if backend not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"unknown backend {backend!r}; choose 'cpu' or 'cuda'")
        if opt_level not in (0, 1, 2):
            raise CnnrtError(f"opt_level must be 0, 1 or 2, not {opt_level!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise CnnrtError(f"threads must be a positive int or None, not {threads!r}")
        self.backend = backend
        self.threads = threads
        self.opt_level = opt_level
        self.disabled_passes = tuple(disabled_passes)
        self.poison = bool(int(os.environ.get("CNNRT_POISON", "0"))) if poison is None else poison
        t0 = time.perf_counter()
        self.model = OnnxModel(model)
        self._import_s = time.perf_counter() - t0
        self._lock = threading.Lock()
        self._compiled: dict[tuple, Compiled] = {}
        self._inputs = [NodeArg(s.name, list(s.shape), _ORT_TYPES[s.dtype]) for s in self.model.inputs]
        self._default_key = self._key(self.model.bind_shapes(), frozenset())
        self._current = self._compile(*self._default_key_args())

    # -- onnxruntime-shaped introspection --

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        g = self._current.graph
        return [NodeArg(o, list(g.values[o].shape), _ORT_TYPES.get(g.values[o].dtype, g.values[o].dtype)) for o in g.outputs]

    @property
    def graph(self) -> Graph:
        """The optimised IR graph that executes (for the most recent input shapes)."""
        return self._current.graph

    @property
    def plan(self) -> MemoryPlan:
        return self._current.plan

    @property
    def pass_log(self):
        return self._current.pass_log

    @property
    def build_timings(self) -> dict[str, float]:
        """Seconds spent in import, passes, planning and kernel build for the current plan."""
        return dict(self._current.timings)

    # -- building --

    def _key(self, shapes: Mapping[str, tuple[int, ...]], fed: frozenset[str]) -> tuple:
        return (tuple(sorted(shapes.items())), fed)

    def _default_key_args(self):
        shapes, fed = self._default_key
        return dict(shapes), fed

    def _compile(self, shapes: dict[str, tuple[int, ...]], fed: frozenset[str]) -> Compiled:
        from cnnrt.passes.pipeline import run_pipeline

        key = self._key(shapes, fed)
        hit = self._compiled.get(key)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        graph = self.model.to_graph(shapes, fed)
        t1 = time.perf_counter()
        graph, log = run_pipeline(graph, self.opt_level, self.disabled_passes)
        t2 = time.perf_counter()
        plan = plan_memory(graph)
        t3 = time.perf_counter()
        executor = Executor(graph, plan, self.backend)
        t4 = time.perf_counter()
        timings = {"import": self._import_s + (t1 - t0), "passes": t2 - t1, "planning": t3 - t2, "kernels": t4 - t3}
        compiled = Compiled(graph, plan, executor, log, timings)
        self._compiled[key] = compiled
        return compiled

    # -- running --

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: Any = None,
    ) -> list[np.ndarray]:
        """Run the model; same call shape as ``onnxruntime.InferenceSession.run``."""
        if not isinstance(input_feed, Mapping):
            raise InputError(f"input_feed must be a dict of name -> array, not {type(input_feed).__name__}")
        feeds, shapes, fed = self._check_feeds(input_feed)
        with self._lock:
            compiled = self._compile(shapes, fed)
            self._current = compiled
            outs = compiled.executor.run([feeds[n] for n in compiled.graph.inputs])
        names = compiled.graph.outputs
        if output_names is None:
            return outs
        result = []
        for n in output_names:
            if n not in names:
                raise InputError(f"unknown output name {n!r}; the model's outputs are {names}")
            result.append(outs[names.index(n)])
        return result

    def _check_feeds(self, input_feed: Mapping[str, Any]):
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
            if not isinstance(x, np.ndarray):
                if np.isscalar(x) or isinstance(x, (list, tuple)):
                    raise InputError(f"input {name!r} must be a numpy.ndarray, not {type(x).__name__}")
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
