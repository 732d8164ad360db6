"""fold_constants: evaluate nodes whose inputs are all constants; resolve Shape from shapes.

Requires: a verified graph with concrete shapes (the importer guarantees both).
Guarantees: every node whose inputs are all constants and whose op the op table gives a
numpy evaluator (cnnrt.core.ops, field ``evaluate``) is gone; its outputs are constants under the same value names
(so graph outputs keep their names). ``Shape`` nodes become constants whatever their
input, since every shape is concrete. Heavy ops (Conv, pools...) are never evaluated here:
passes do not call kernels, so those stay and are logged as declined. Folding that would
materialise more than ``MAX_FOLDED_BYTES`` of new constant data is declined too, and so is
folding that would take the graph's constants past ``FOLD_LIMIT`` (a share of the session's
memory limit, set around the pipeline by the build): the op then runs at run time, where its output
is an arena tensor that the same limit refuses before anything is allocated.
Run before: nothing; it is cheap and exposes constants to the other passes.
"""

from __future__ import annotations

from contextvars import ContextVar

import numpy as np

from cnnrt.core.ir import Graph
from cnnrt.core.ops import attr, can_evaluate, evaluate_node
from cnnrt.errors import GraphError

from . import PassResult

RULE = "all-constant node -> constant"
SHAPE_RULE = "Shape -> constant"
MAX_FOLDED_BYTES = 64 << 20
FOLD_LIMIT: ContextVar[int | None] = ContextVar("cnnrt_fold_limit", default=None)


def fold_constants(graph: Graph) -> PassResult:
    """Replace all-constant nodes (and every Shape) by constants; see the module docstring."""
    g = graph.copy()
    fired: list[tuple[str, str]] = []
    declined: list[tuple[str, str, str]] = []
    kept = []
    limit = FOLD_LIMIT.get()
    total = sum(a.nbytes for a in g.constants.values())
    for node in g.nodes:
        outs = [o for o in node.outputs if o]
        if node.op == "Shape" and node.inputs[0] not in g.constants:
            shape = g.values[node.inputs[0]].shape
            arr = np.array(shape[attr(node, "start") : attr(node, "end")], dtype=np.int64)
            if arr.shape != g.values[outs[0]].shape:
                raise GraphError(
                    f"Shape node {node.name!r}: its Value says {g.values[outs[0]].shape}, the input gives {arr.shape}"
                )
            g.constants[outs[0]] = arr
            fired.append((SHAPE_RULE, node.name))
            continue
        if not outs or not all(i == "" or i in g.constants for i in node.inputs):
            kept.append(node)
            continue
        if len(outs) != len(node.outputs):
            declined.append((RULE, node.name, "some outputs are omitted"))
            kept.append(node)
            continue
        if not can_evaluate(node.op):
            declined.append((RULE, node.name, f"no numpy evaluator for {node.op} (passes never call kernels)"))
            kept.append(node)
            continue
        new_bytes = sum(g.values[o].nbytes for o in outs)
        if new_bytes > MAX_FOLDED_BYTES:
            declined.append((RULE, node.name, f"result would be {new_bytes} bytes of new constants"))
            kept.append(node)
            continue
        if limit is not None and total + new_bytes > limit:
            why = f"result would take the constants to {total + new_bytes} bytes, past the memory limit of {limit}"
            declined.append((RULE, node.name, why))
            kept.append(node)
            continue
        total += new_bytes
        ins = [g.constants[i] if i else None for i in node.inputs]
        results = evaluate_node(node, ins, [g.values[o] for o in node.outputs if o])
        for o, arr in zip(outs, results):
            g.constants[o] = arr
        fired.append((RULE, node.name))
    g.nodes = kept
    return PassResult(g, bool(fired), fired, declined)
