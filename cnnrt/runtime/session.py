"""The public API: ``InferenceSession``, shaped like onnxruntime's."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from cnnrt.errors import BackendUnavailableError, CnnrtError, InputError, SessionClosedError
from cnnrt.runtime.build import BuildOptions, Compiled, PlanCache, build, default_memory_limit, shape_key
from cnnrt.runtime.feeds import check_feeds, checked_shape
from cnnrt.runtime.model_info import ModelMetadata, NodeArg, model_metadata, node_args
from cnnrt.runtime.native_plan import from_env as native_plan_from_env
from cnnrt.runtime.plan_cache import from_env, open_model
from cnnrt.runtime.profiling import SessionProfiler
from cnnrt.runtime.session_options import (
    INFO,
    VERBOSE,
    SessionLog,
    SessionOptions,
    provider_name,
    read_run_options,
    resolve_session,
)
from cnnrt.runtime.threads import apply_threads, default_threads, parallel_guard
from cnnrt.runtime.tiered import from_env as tiered_from_env
from cnnrt.runtime.tiered import run_plan


def _current(field: str, doc: str) -> property:
    """A read-only property giving ``field`` of the session's current ``Compiled`` plan."""
    return property(lambda self: getattr(self._now(), field), doc=doc)


def _cuda_missing() -> str:
    """Why backend='cuda' cannot run here ("" when it can)."""
    from cnnrt.kernels.cuda.device import cuda_unavailable_reason

    return cuda_unavailable_reason() or ""


class InferenceSession:
    """Import an ONNX model, optimise it, plan memory and run it on a backend; onnxruntime's API.

    ``path_or_bytes`` is a path, bytes or ``onnx.ModelProto``. ``sess_options`` (cnnrt's or
    onnxruntime's SessionOptions), ``providers`` and ``provider_options`` are onnxruntime's
    (cnnrt/runtime/session_options.py says how each field is honoured); cnnrt's own options are
    keywords: ``backend`` ("cpu" | "cuda"), ``threads`` (None: every core), ``opt_level``
    (0, 1, 2), ``disabled_passes``, ``poison``, ``memory_limit``, ``tiered``, ``plan_cache`` (keep the
    optimised graph on disk for the next session: runtime/plan_cache.py), ``precision`` ("f32" | "bf16":
    convolutions on bfloat16 dot products, passes/precision.py), ``native_plan`` (CPU: run
    consecutive kernels as one compiled call, runtime/native_plan.py; default on,
    ``CNNRT_NATIVE_PLAN=0`` turns it off). A setting given both ways must agree.
    Inputs with symbolic dims beyond the first are planned on the first run (or ``prepare``) with
    concrete shapes; others are planned here with batch 1. A session may be used from several
    threads: runs are serialised by a lock, because all runs share one arena. ``close()`` (or
    leaving a ``with`` block) frees the plans.
    """

    MAX_PLANS = 8  # compiled plans (one per input-shape set) kept before the oldest goes

    def __init__(
        self,
        path_or_bytes: Any,
        sess_options: Any = None,
        providers: Any = None,
        provider_options: Any = None,
        *,
        backend: str | None = None,
        threads: int | None = None,
        opt_level: int | None = None,
        disabled_passes: Iterable[str] | None = None,
        poison: bool | None = None,
        memory_limit: int | None = None,
        tiered: bool | None = None,
        precision: str | None = None,
        plan_cache: bool | None = None,
        native_plan: bool | None = None,
    ) -> None:
        if sess_options is not None and not all(
            hasattr(sess_options, f) for f in ("graph_optimization_level", "intra_op_num_threads")
        ):
            raise CnnrtError(
                f"sess_options must be a SessionOptions (cnnrt's or onnxruntime's), not {sess_options!r}; "
                "cnnrt's own options are keywords (backend='cpu', threads=..., ...)"
            )
        if disabled_passes is not None and (
            isinstance(disabled_passes, str) or not isinstance(disabled_passes, Iterable)
        ):
            raise CnnrtError(f"disabled_passes must be a list of pass names, not {disabled_passes!r}")
        if backend is not None and backend not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"unknown backend {backend!r}; choose 'cpu' or 'cuda'")
        given = {"backend": backend, "threads": threads, "opt_level": opt_level, "disabled_passes": disabled_passes}
        given["precision"] = precision
        explicit = {k: tuple(v) if k == "disabled_passes" else v for k, v in given.items() if v is not None}
        cfg = resolve_session(sess_options, providers, provider_options, explicit, _cuda_missing)
        if cfg.backend == "cuda" and (why := _cuda_missing()):
            raise BackendUnavailableError(f"backend='cuda' cannot run here: {why}")
        if cfg.opt_level not in (0, 1, 2):
            raise CnnrtError(f"opt_level must be 0, 1 or 2, not {cfg.opt_level!r}")
        t = cfg.threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise CnnrtError(f"threads must be a positive int or None, not {t!r}")
        if memory_limit is not None and (
            isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit < 1
        ):
            raise CnnrtError(f"memory_limit must be a positive int (bytes) or None, not {memory_limit!r}")
        if cfg.optimized_model_filepath.endswith(".ort"):
            raise CnnrtError("optimized_model_filepath: cnnrt writes ONNX files, not onnxruntime's .ort format")
        self._config = cfg
        self._log = SessionLog(cfg.log_severity_level, cfg.logid)
        for severity, message in cfg.notes:
            self._log.emit(severity, message)
        self.backend = cfg.backend
        self.threads = t if t is not None else default_threads()
        self.disabled_passes = cfg.disabled_passes
        self.precision = cfg.precision
        self.memory_limit = memory_limit if memory_limit is not None else default_memory_limit()
        self.poison = bool(int(os.environ.get("CNNRT_POISON", "0"))) if poison is None else poison
        self.tiered = tiered_from_env() if tiered is None else bool(tiered)
        self.native_plan = native_plan_from_env() if native_plan is None else bool(native_plan)
        t0 = time.perf_counter()
        # the plan cache knows a model file it built before: then onnx is not even imported
        self.model, self._plan_entry = open_model(path_or_bytes, from_env() if plan_cache is None else plan_cache)
        self._import_s = time.perf_counter() - t0
        self._profiler = (
            SessionProfiler(cfg.profile_file_prefix, self.model.proto.graph.name, provider_name(self.backend), t0)
            if cfg.enable_profiling
            else None
        )
        self._apply_free_dims(cfg.free_dims)
        self.opt_level = cfg.opt_level
        if self.model.optimised is not None and self.opt_level:
            self._log.emit(INFO, "the model is a graph cnnrt optimised already: it runs as written (opt_level 0)")
            self.opt_level = 0
        self._lock = threading.Lock()
        self._closed = False
        self._first_plan = True  # the model's load is profiled, and its graph saved, with the first plan
        self._build_options = BuildOptions(
            self.backend,
            self.opt_level,
            self.disabled_passes,
            self.poison,
            self.memory_limit,
            self.tiered,
            cfg.precision,
            self.native_plan,
        )
        self._plans = PlanCache(self.MAX_PLANS, self.memory_limit)
        # feed signatures (name, type, dtype, shape per feed) that passed _check_feeds: a run
        # with the same ones skips the checks, a large share of a small model's run time
        self._checked_feeds: dict[tuple, tuple] = {}
        self._inputs = node_args(self.model.inputs)
        self._current: Compiled | None = None
        deferred = self.model.symbolic_beyond_batch()
        if deferred:
            self._log.emit(INFO, f"inputs with symbolic dims {deferred} are planned on the first run's shapes")
        else:
            self._current = self._compile(self.model.default_shapes(), frozenset())

    def _apply_free_dims(self, free_dims: Mapping[str, int]) -> None:
        """SessionOptions' free dimension overrides: those symbolic dims become fixed."""
        if not free_dims:
            return
        named = {d for s in self.model.inputs for d in s.shape if isinstance(d, str)}
        unknown = sorted(set(free_dims) - named)
        if unknown:
            raise InputError(
                f"free dimension override(s) {unknown} name no symbolic input dim; the inputs have {sorted(named)}"
            )
        self.model.inputs = [
            replace(s, shape=tuple(free_dims.get(d, d) if isinstance(d, str) else d for d in s.shape))
            for s in self.model.inputs
        ]

    # -- onnxruntime-shaped introspection --

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        """The model's outputs as declared, symbolic names included (onnxruntime's answer)."""
        return node_args(self.model.output_specs())

    def get_overridable_initializers(self) -> list[NodeArg]:
        return node_args(self.model.overridable)

    def get_modelmeta(self) -> ModelMetadata:
        return model_metadata(self.model.proto)

    def get_providers(self) -> list[str]:
        return [provider_name(self.backend)]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {provider_name(self.backend): dict(self._config.provider_options)}

    def get_session_options(self) -> SessionOptions:
        """The settings this session runs with, as a SessionOptions."""
        return self._config.session_options()

    def end_profiling(self) -> str:
        """Stop profiling and write the Chrome trace; returns its path ("" when not profiling)."""
        if self._profiler is None:
            return ""
        with self._lock:
            path = self._profiler.write()
            self._profiler = None
        return path

    def get_profiling_start_time_ns(self) -> int:
        return 0 if self._profiler is None else self._profiler.start_ns

    def _now(self) -> Compiled:
        """The plan of the most recent input shapes (SessionClosedError once closed)."""
        compiled = self._live()._current
        if compiled is None:
            raise InputError(
                f"no plan yet: inputs {self.model.symbolic_beyond_batch()} have symbolic dims; "
                "run() or prepare(input_shapes=...) gives them concrete shapes"
            )
        return compiled

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

    def _compile(
        self, shapes: dict[str, tuple[int, ...]], fed: frozenset[str], log_threshold: int | None = None, logid: str = ""
    ) -> Compiled:
        """The plan for these input shapes, from the cache or built now."""
        key = shape_key(shapes, fed)
        compiled = self._plans.get(key)
        if compiled is None:
            with parallel_guard():  # building runs kernels (weight packing)
                compiled = build(self.model, shapes, fed, self._build_options, self._plan_entry)
            compiled.timings["import"] += self._import_s
            self._plans.add(key, compiled)
            self._built(compiled, shapes, log_threshold, logid)
        return compiled

    def _built(self, compiled: Compiled, shapes: dict, log_threshold: int | None, logid: str) -> None:
        """Log, profile and (the first time) write out a plan just built."""
        timings = compiled.timings
        for line in compiled.pass_log.lines():
            self._log.emit(VERBOSE, line, log_threshold, logid)
        self._log.emit(
            INFO,
            f"planned input shapes {shapes}: {len(compiled.graph.nodes)} nodes, arena "
            f"{compiled.plan.arena_bytes} bytes, built in {sum(timings.values()):.3f} s",
            log_threshold,
            logid,
        )
        if self._profiler is not None:
            phases = {"model_loading": self._import_s} if self._first_plan else {}
            phases["session_initialization"] = sum(timings.values()) - self._import_s
            self._profiler.phases(phases, time.perf_counter())
        if self._config.optimized_model_filepath and self._first_plan:
            from cnnrt.runtime.optimised_model import save_optimised  # loads onnx: only when asked for

            save_optimised(compiled.graph, self.model, self._config.optimized_model_filepath)
            self._log.emit(
                INFO, f"wrote the optimised graph to {self._config.optimized_model_filepath}", log_threshold, logid
            )
        self._first_plan = False

    def prepare(self, input_shapes: Mapping[str, Sequence[int]] | None = None, batch: int | None = None) -> None:
        """Build (or reuse) the plan for these input shapes and make it current.

        ``batch`` fills every symbolic dimension 0; ``input_shapes`` names shapes per input
        (needed for inputs with other symbolic dims).
        """
        if input_shapes is not None and not isinstance(input_shapes, Mapping):
            raise InputError(f"input_shapes must be a dict of name -> shape, not {type(input_shapes).__name__}")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise InputError(f"batch must be a positive int or None, not {batch!r}")
        known = {s.name: s for s in self.model.inputs}
        input_shapes = dict(input_shapes or {})
        unknown = [k for k in input_shapes if k not in known]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {list(known)}")
        unshaped = {k: v for k, v in self.model.symbolic_beyond_batch().items() if k not in input_shapes}
        if unshaped:
            raise InputError(
                f"inputs {unshaped} have symbolic dims beyond the batch: give their shapes in input_shapes"
            )
        shapes = self.model.default_shapes(batch or 1)
        shapes.update({name: checked_shape(known[name], shape) for name, shape in input_shapes.items()})
        with self._lock:
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

        ``run_options`` is a RunOptions (cnnrt's or onnxruntime's): its log severity and logid
        apply to this run's records; ``terminate`` and ``only_execute_path_to_fetches`` are refused.
        With ``backend="cuda"``, feeds may also be numba device arrays, and
        ``return_device=True`` returns device arrays so data can stay on the GPU.
        """
        self._live()
        threshold, logid = read_run_options(run_options)
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
        with self._lock:
            self._live()
            if self.backend == "cpu":
                apply_threads(self.threads)
            compiled = self._compile(shapes, fed, threshold, logid)
            self._current = compiled
            # NaN/Inf inputs must propagate (as in onnxruntime), whatever np.seterr or the
            # warnings filters of the caller say: no FloatingPointError, no RuntimeWarning.
            with np.errstate(all="ignore"):
                ins = [feeds[n] for n in compiled.graph.inputs]
                outs = self._execute(compiled, ins, return_device)
        if output_names is None:
            return outs
        return [outs[names.index(n)] for n in output_names]

    def _execute(self, compiled: Compiled, ins: list, return_device: bool) -> list:
        if self._profiler is None:
            return run_plan(compiled, ins, return_device)
        executor = compiled.executor
        if self.backend == "cpu":
            with parallel_guard():
                return self._profiler.run(executor, ins)
        start = time.perf_counter()  # CUDA steps are asynchronous: the run is timed as a whole
        with parallel_guard():
            outs = executor.run(ins, return_device=return_device)
        self._profiler.record_run(start, time.perf_counter())
        return outs

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
