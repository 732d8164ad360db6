"""What a caller sets on a session, in onnxruntime's terms or cnnrt's, and how each setting is honoured.

``SessionOptions``, ``RunOptions`` and the enums mirror onnxruntime's, field for field and with
its defaults, so a script written for onnxruntime runs without it installed; a real
``onnxruntime.SessionOptions`` or ``RunOptions`` is read the same way, by attribute (the
inference path does not import onnxruntime). Every field is either honoured or, when set to
something cnnrt cannot do, rejected with a :class:`~cnnrt.errors.CnnrtError` naming it: nothing
is silently ignored. onnxruntime's session config entries cannot be listed from Python, so
those of a real ``onnxruntime.SessionOptions`` go unread; cnnrt's own class refuses them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnrt.errors import BackendUnavailableError, CnnrtError, InputError


class GraphOptimizationLevel(enum.IntEnum):
    """onnxruntime's levels; cnnrt maps them to ``opt_level`` (see :func:`resolve_session`)."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


def _refuse(what: str, why: str) -> CnnrtError:
    return CnnrtError(f"{what} is not supported by cnnrt: {why}")


class SessionOptions:
    """onnxruntime's SessionOptions fields with its defaults (``help(cnnrt.InferenceSession)``
    and the README say what each one does in cnnrt)."""

    __slots__ = (
        "enable_cpu_mem_arena",
        "enable_mem_pattern",
        "enable_mem_reuse",
        "enable_profiling",
        "execution_mode",
        "execution_order",
        "graph_optimization_level",
        "inter_op_num_threads",
        "intra_op_num_threads",
        "log_severity_level",
        "log_verbosity_level",
        "logid",
        "optimized_model_filepath",
        "profile_file_prefix",
        "use_deterministic_compute",
        "use_per_session_threads",
        "free_dimension_overrides",
    )

    def __init__(self) -> None:
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.enable_profiling = False
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.inter_op_num_threads = 0
        self.intra_op_num_threads = 0
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.optimized_model_filepath = ""
        self.profile_file_prefix = "onnxruntime_profile_"
        self.use_deterministic_compute = False
        self.use_per_session_threads = True
        self.free_dimension_overrides: dict[str, int] = {}

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        """Fix the symbolic input dimension ``dim_name`` to ``dim_value``."""
        if isinstance(dim_value, bool) or not isinstance(dim_value, int) or dim_value < 1:
            raise CnnrtError(f"free dimension {dim_name!r} must be overridden by a positive int, not {dim_value!r}")
        self.free_dimension_overrides[str(dim_name)] = dim_value

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        raise _refuse("add_free_dimension_override_by_denotation", "override dimensions by name instead")

    def add_session_config_entry(self, key: str, value: str) -> None:
        raise _refuse(f"session config entry {key!r}", "cnnrt honours no session config entries")

    def get_session_config_entry(self, key: str) -> str:
        raise _refuse(f"session config entry {key!r}", "cnnrt honours no session config entries")

    def register_custom_ops_library(self, library_path: str) -> None:
        raise _refuse("register_custom_ops_library", "custom op libraries are onnxruntime shared objects")

    def add_initializer(self, name: str, value: Any) -> None:
        raise _refuse("add_initializer", "feed the initializer to run() instead")

    def add_external_initializers(self, names: Any, values: Any) -> None:
        raise _refuse("add_external_initializers", "external data is read from the model's folder")


class RunOptions:
    """onnxruntime's RunOptions fields with its defaults."""

    __slots__ = ("log_severity_level", "log_verbosity_level", "logid", "only_execute_path_to_fetches", "terminate")

    def __init__(self) -> None:
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.only_execute_path_to_fetches = False
        self.terminate = False

    def add_run_config_entry(self, key: str, value: str) -> None:
        raise _refuse(f"run config entry {key!r}", "cnnrt honours no run config entries")


PROVIDERS = {"CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}  # in onnxruntime's order of preference
_PROVIDER_OF = {v: k for k, v in PROVIDERS.items()}
# provider options cnnrt honours, with the only value it can honour
_PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"device_id": "0"}, "CPUExecutionProvider": {}}

# onnxruntime's log severities (0 verbose .. 4 fatal) as Python logging levels
_LOG_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
VERBOSE, INFO, WARNING = 0, 1, 2


def provider_name(backend: str) -> str:
    return _PROVIDER_OF[backend]


@dataclass
class SessionConfig:
    """A session's settings after sess_options, providers and cnnrt's keyword options are merged."""

    backend: str = "cpu"
    threads: int | None = None
    opt_level: int = 2
    disabled_passes: tuple[str, ...] = ()
    precision: str = "f32"
    provider_options: dict[str, str] = field(default_factory=dict)
    optimized_model_filepath: str = ""
    enable_profiling: bool = False
    profile_file_prefix: str = "onnxruntime_profile_"
    log_severity_level: int = WARNING
    logid: str = ""
    free_dims: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[int, str]] = field(default_factory=list)  # (severity, message) to log once logging is up

    def session_options(self) -> SessionOptions:
        """These settings as a SessionOptions (what ``get_session_options`` returns)."""
        so = SessionOptions()
        so.intra_op_num_threads = self.threads or 0
        so.graph_optimization_level = (
            GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            if self.opt_level == 2 and "block_layout" in self.disabled_passes
            else (
                GraphOptimizationLevel.ORT_DISABLE_ALL,
                GraphOptimizationLevel.ORT_ENABLE_BASIC,
                GraphOptimizationLevel.ORT_ENABLE_ALL,
            )[self.opt_level]
        )
        so.optimized_model_filepath = self.optimized_model_filepath
        so.enable_profiling = self.enable_profiling
        so.profile_file_prefix = self.profile_file_prefix
        so.log_severity_level = self.log_severity_level
        so.logid = self.logid
        so.free_dimension_overrides = dict(self.free_dims)
        return so


def _field(opts: Any, name: str, default: Any) -> Any:
    return getattr(opts, name, default)


def _int_field(opts: Any, name: str, default: int) -> int:
    v = _field(opts, name, default)
    try:
        return int(v)  # onnxruntime's enums convert with int() too
    except (TypeError, ValueError):
        raise CnnrtError(f"sess_options.{name} must be an int, not {v!r}") from None


def _read_session_options(so: Any, cfg: SessionConfig) -> dict[str, Any]:
    """The cnnrt settings ``so`` asks for (threads, opt_level, ...) after refusing what cnnrt cannot do."""
    required = {  # field: (the only value cnnrt can honour, why)
        "enable_cpu_mem_arena": (True, "every plan runs in one arena"),
        "enable_mem_pattern": (True, "memory is always planned ahead"),
        "enable_mem_reuse": (True, "the memory planner always reuses buffers"),
        "use_per_session_threads": (True, "the global thread pools of an onnxruntime Env do not exist in cnnrt"),
    }
    for name, (want, why) in required.items():
        if bool(_field(so, name, want)) != want:
            raise _refuse(f"sess_options.{name}={not want}", why)
    if _int_field(so, "execution_mode", 0) != ExecutionMode.ORT_SEQUENTIAL:
        raise _refuse("sess_options.execution_mode=ORT_PARALLEL", "nodes run one after another")
    if _int_field(so, "execution_order", 0) != ExecutionOrder.DEFAULT:
        raise _refuse("a non-default sess_options.execution_order", "cnnrt runs its graph in its own planned order")
    # inter_op_num_threads sizes the pool of ORT_PARALLEL only (refused above): as in onnxruntime, no effect
    if _int_field(so, "inter_op_num_threads", 0) < 0:
        raise CnnrtError("sess_options.inter_op_num_threads must be >= 0")
    # use_deterministic_compute: cnnrt's kernels have no order-dependent (atomic) reductions, so
    # every run is deterministic already; log_verbosity_level: cnnrt's VERBOSE records are all level 0
    out: dict[str, Any] = {}
    intra = _int_field(so, "intra_op_num_threads", 0)
    if intra < 0:
        raise CnnrtError(f"sess_options.intra_op_num_threads must be >= 0 (0: every core), not {intra}")
    if intra:
        out["threads"] = intra
    level = _int_field(so, "graph_optimization_level", GraphOptimizationLevel.ORT_ENABLE_ALL)
    if level not in set(GraphOptimizationLevel):
        raise CnnrtError(f"sess_options.graph_optimization_level {level} is not a GraphOptimizationLevel")
    # ENABLE_EXTENDED is onnxruntime's "everything but layout changes": cnnrt's level 2 without
    # block_layout. The default (ENABLE_ALL) leaves an explicit opt_level keyword in charge.
    if level != GraphOptimizationLevel.ORT_ENABLE_ALL:
        out["opt_level"] = min(level, 2)
    if level == GraphOptimizationLevel.ORT_ENABLE_EXTENDED:
        out["disabled_passes"] = ("block_layout",)
    cfg.optimized_model_filepath = str(_field(so, "optimized_model_filepath", "") or "")
    cfg.enable_profiling = bool(_field(so, "enable_profiling", False))
    cfg.profile_file_prefix = str(_field(so, "profile_file_prefix", cfg.profile_file_prefix))
    severity = _int_field(so, "log_severity_level", -1)
    if not -1 <= severity <= 4:
        raise CnnrtError(f"sess_options.log_severity_level must be -1 (default) or 0..4, not {severity}")
    cfg.log_severity_level = WARNING if severity < 0 else severity
    cfg.logid = str(_field(so, "logid", "") or "")
    cfg.free_dims = dict(_field(so, "free_dimension_overrides", {}) or {})
    return out


def _pick_provider(providers: Any, provider_options: Any, cfg: SessionConfig, cuda_missing) -> str:
    """The backend of the first usable provider; onnxruntime's (name, options) pairs and
    ``provider_options`` lists are both understood."""
    if isinstance(providers, str) or not isinstance(providers, Iterable):
        raise BackendUnavailableError(f"providers must be a list of provider names, not {providers!r}")
    entries = []
    for p in providers:
        name, opts = p if isinstance(p, tuple) and len(p) == 2 else (p, {})
        if not isinstance(name, str) or not isinstance(opts, Mapping):
            raise BackendUnavailableError(f"a provider is a name or a (name, options dict) pair, not {p!r}")
        entries.append((name, dict(opts)))
    if provider_options is not None:
        if not isinstance(provider_options, (list, tuple)) or len(provider_options) != len(entries):
            raise BackendUnavailableError("provider_options must be a list with one options dict per provider")
        entries = [(n, {**o, **dict(po)}) for (n, o), po in zip(entries, provider_options)]
    if not entries:
        raise BackendUnavailableError("providers is empty; cnnrt offers " + ", ".join(PROVIDERS))
    unknown = [n for n, _ in entries if n not in PROVIDERS]
    if unknown:
        raise BackendUnavailableError(f"unknown execution provider(s) {unknown}; cnnrt offers " + ", ".join(PROVIDERS))
    for name, opts in entries:
        allowed = _PROVIDER_OPTIONS[name]
        for k, v in opts.items():
            if k not in allowed or str(v) != allowed[k]:
                raise _refuse(
                    f"provider option {k}={v!r} of {name}",
                    f"it honours {allowed or 'no options'} for this provider",
                )
    for name, opts in entries:
        backend = PROVIDERS[name]
        why = cuda_missing() if backend == "cuda" else ""
        if not why:
            cfg.provider_options = {k: str(v) for k, v in opts.items()}
            return backend
        # as onnxruntime: on to the next provider listed, and the CPU when none is left, with a warning
        cfg.notes.append((WARNING, f"{name} is not available ({why}); trying the next provider"))
    cfg.notes.append((WARNING, "no provider listed can run here: falling back to CPUExecutionProvider"))
    return "cpu"


def resolve_session(
    sess_options: Any, providers: Any, provider_options: Any, explicit: dict[str, Any], cuda_missing
) -> SessionConfig:
    """Merge ``sess_options`` (onnxruntime's or cnnrt's SessionOptions), ``providers`` and cnnrt's
    keyword options given explicitly (``explicit``: those not None); a setting given both ways
    with different values is an error naming both. ``cuda_missing()`` says why CUDA cannot run ("" if it can)."""
    cfg = SessionConfig()
    from_options = _read_session_options(sess_options, cfg) if sess_options is not None else {}
    if providers is not None:
        from_options["backend"] = _pick_provider(providers, provider_options, cfg, cuda_missing)
    elif provider_options is not None:
        raise BackendUnavailableError("provider_options needs providers")
    for key, value in from_options.items():
        if key != "disabled_passes" and key in explicit and explicit[key] != value:
            source = "providers" if key == "backend" else "sess_options"
            raise CnnrtError(f"{key}={explicit[key]!r} contradicts {source}, which asks for {value!r}")
    merged = {**from_options, **explicit}
    cfg.backend = merged.get("backend", "cpu")
    cfg.threads = merged.get("threads")
    cfg.opt_level = merged.get("opt_level", 2)
    cfg.precision = check_precision(merged.get("precision", "f32"), cfg.backend)
    both = (*explicit.get("disabled_passes", ()), *from_options.get("disabled_passes", ()))
    cfg.disabled_passes = tuple(dict.fromkeys(both))
    return cfg


PRECISIONS = ("f32", "bf16")  # what ``precision`` may ask for; passes/precision.py marks the nodes
# Agreement bound with float32 onnxruntime (max|x-ort|/max(1,max|ort|)) of a reduced precision:
# bf16 rounds every conv's inputs and weights to 8 mantissa bits, and over a deep net the
# error grows to several 1e-2 on random inputs (OpenVINO's default bf16 passes 1e-1 on
# GoogLeNet), so the bound is 2e-1; float32 keeps 1e-3.
PRECISION_RTOL = {"bf16": 2e-1}


def check_precision(precision: Any, backend: str) -> str:
    """``precision`` if this backend and CPU can run it, else a CnnrtError naming the option."""
    if precision not in PRECISIONS:
        raise CnnrtError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bf16":
        if backend != "cpu":
            raise BackendUnavailableError(f'precision="bf16" runs on the CPU backend only, not {backend!r}')
        from cnnrt.kernels.cpu.conv_blocked_bf16 import check_bf16_cpu

        check_bf16_cpu()
    return precision


def read_run_options(run_options: Any) -> tuple[int | None, str]:
    """(log severity or None for the session's, logid) of ``run_options``; refuses what cnnrt cannot do."""
    if run_options is None:
        return None, ""
    missing = [f for f in RunOptions.__slots__ if not hasattr(run_options, f)]
    if missing:
        raise InputError(f"run_options must be a RunOptions (it lacks {missing}), not {type(run_options).__name__}")
    if run_options.terminate:
        raise CnnrtError("run refused: run_options.terminate is set")
    if run_options.only_execute_path_to_fetches:
        raise _refuse("run_options.only_execute_path_to_fetches=True", "every run executes the whole plan")
    severity = int(run_options.log_severity_level)
    if not -1 <= severity <= 4:
        raise InputError(f"run_options.log_severity_level must be -1 (the session's) or 0..4, not {severity}")
    return (None if severity < 0 else severity), str(run_options.logid or "")


class SessionLog:
    """A session's log records, onnxruntime-style severities, sent to the ``cnnrt`` Python logger
    when at or above the session's (or the run's) threshold, tagged with the logid."""

    def __init__(self, severity: int, logid: str) -> None:
        self.severity = severity
        self.logid = logid
        self._logger = logging.getLogger("cnnrt")

    def emit(self, severity: int, message: str, threshold: int | None = None, logid: str = "") -> None:
        if severity >= (self.severity if threshold is None else threshold):
            tag = logid or self.logid
            self._logger.log(_LOG_LEVELS[severity], f"[{tag}] {message}" if tag else message)
