"""The ordered list of passes and the manager that runs them.

opt_level 0 runs the graph as imported; 1 adds the cleanups (identity removal, constant
folding, dead-node elimination); 2 adds every rewrite. The passes repeat, in order, until a
round changes nothing (at most ``MAX_ROUNDS``). Last, for a session's backend and at every
opt_level, select_algorithm records on each conv node the algorithm its kernel runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cnnrt.core.ir import Graph
from cnnrt.errors import CnnrtError, PassError

from . import PassResult
from .block_layout import block_layout
from .concat_in_place import concat_in_place
from .eliminate_dead_nodes import eliminate_dead_nodes
from .flatten_matmul import flatten_matmul
from .fold_affine_concat import fold_affine_concat
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .fold_pad import fold_pad
from .fuse_epilogue import fuse_epilogue
from .fuse_gelu import fuse_gelu
from .fuse_layernorm import fuse_layernorm
from .fuse_qdq import fuse_qdq
from .fuse_se import fuse_se
from .pool_before_pointwise import pool_before_pointwise
from .precision import mark_precision
from .remove_identity import remove_identity
from .select_algorithm import select_algorithm

PassFn = Callable[[Graph], PassResult]

# (name, function, minimum opt_level). Order matters: cleanups expose patterns, BN folds
# before the epilogue fusion sees Conv+Relu, and concat_in_place looks at final producers.
PASSES: list[tuple[str, PassFn, int]] = [
    ("remove_identity", remove_identity, 1),
    ("fuse_qdq", fuse_qdq, 2),  # before fold_constants, which would dequantize the weights
    ("fold_constants", fold_constants, 1),
    ("fold_batchnorm", fold_batchnorm, 2),
    ("fold_pad", fold_pad, 2),
    ("fuse_layernorm", fuse_layernorm, 2),
    ("fuse_gelu", fuse_gelu, 2),  # before fuse_epilogue, which takes Gelu as an activation
    ("flatten_matmul", flatten_matmul, 2),  # before fuse_epilogue, which fuses the Gemm's activation
    ("fuse_epilogue", fuse_epilogue, 2),
    ("fold_affine_concat", fold_affine_concat, 2),  # after fuse_epilogue: the affine carries its activation
    ("fuse_se", fuse_se, 2),  # after fuse_epilogue: the SE convs carry their activations
    ("pool_before_pointwise", pool_before_pointwise, 2),  # after fuse_epilogue: an activation stops it
    ("eliminate_dead_nodes", eliminate_dead_nodes, 1),
    ("concat_in_place", concat_in_place, 2),
]

# Target-specific passes, run once after the fixed point (the rules above match NCHW ops):
# the blocked layout for a CPU with ``vector_bytes``-wide vectors, then the in-place Concat
# decision again for the Concats it rewrote.
LAYOUT_PASSES: list[tuple[str, int]] = [("block_layout", 2)]

MAX_ROUNDS = 8


@dataclass
class PipelineLog:
    """Per pass: what fired (rule, node) and what was declined (rule, node, reason).

    Both accumulate over the rounds; a decline repeated in later rounds is listed once.
    """

    fired: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    declined: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    rounds: int = 0
    order: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.rounds} round(s); passes: {', '.join(self.order) or '(none)'}"]
        for name in self.order:
            for rule, node in self.fired.get(name, []):
                out.append(f"[{name}] fired {rule}: {node}")
            for rule, node, why in self.declined.get(name, []):
                out.append(f"[{name}] declined {rule} at {node}: {why}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def pass_names() -> list[str]:
    return [n for n, _, _ in PASSES] + [n for n, _ in LAYOUT_PASSES]


def run_pipeline(
    graph: Graph,
    opt_level: int = 2,
    disabled: Iterable[str] = (),
    vector_bytes: int | None = None,
    backend: str | None = None,
    precision: str = "f32",
) -> tuple[Graph, PipelineLog]:
    """Run the enabled passes in order, repeating until nothing changes (at most MAX_ROUNDS);
    then, for a CPU target (``vector_bytes`` given), the layout passes once; then, for a
    ``backend``, select_algorithm (not a rewrite: the kernels need it, so it cannot be
    disabled, and an override it rejects raises its UnsupportedOpError unwrapped); then, for
    a reduced ``precision``, the precision pass (it reads the algorithms)."""
    disabled = set(disabled)
    unknown = disabled - set(pass_names())
    if unknown:
        raise PassError(f"unknown pass name(s) {sorted(unknown)}; passes are {pass_names()}")
    active = [(n, f) for n, f, lvl in PASSES if lvl <= opt_level and n not in disabled]
    layout = []
    if vector_bytes is not None:
        layout = [(n, lvl) for n, lvl in LAYOUT_PASSES if lvl <= opt_level and n not in disabled]
    select = ["select_algorithm"] if backend is not None else []
    select += ["precision"] if backend is not None and precision != "f32" else []
    log = PipelineLog(order=[n for n, _ in active] + [n for n, _ in layout] + select)
    for rnd in range(MAX_ROUNDS if active else 0):
        log.rounds = rnd + 1
        changed = False
        for i, (name, fn) in enumerate(active):
            graph, did = _run_one(graph, name, fn, log, f"in round {rnd + 1} (after {[n for n, _ in active[:i]]})")
            changed |= did
        if not changed:
            break
    if layout:
        graph, did = _run_one(graph, "block_layout", lambda g: block_layout(g, vector_bytes), log, "(layout)")
        if did and "concat_in_place" in dict(active):
            graph, _ = _run_one(graph, "concat_in_place", concat_in_place, log, "(after block_layout)")
    if backend is not None:
        graph = _record(select_algorithm(graph, backend), "select_algorithm", log).graph
        graph = _record(mark_precision(graph, precision), "precision", log).graph
    return graph, log


def _run_one(graph: Graph, name: str, fn: PassFn, log: PipelineLog, where: str) -> tuple[Graph, bool]:
    try:
        res = fn(graph)
        res.graph.verify()
    except MemoryError:
        raise  # the build says what was being allocated
    except Exception as e:
        what = str(e) if isinstance(e, CnnrtError) else f"{type(e).__name__}: {e}"
        raise PassError(f"pass {name!r} failed {where}: {what}") from e
    _record(res, name, log)
    return res.graph, res.changed


def _record(res: PassResult, name: str, log: PipelineLog) -> PassResult:
    log.fired.setdefault(name, []).extend(res.fired)
    seen = log.declined.setdefault(name, [])
    seen.extend(d for d in res.declined if d not in seen)
    return res
