"""eliminate_dead_nodes: drop nodes, constants and values nothing uses.

Requires: a verified graph.
Guarantees: every remaining node has at least one output that is read by another node or
is a graph output (ops have no side effects); constants and Value entries that no node or
graph output refers to are gone. Graph inputs are kept even when unused: they are the API.
Run after: the rewriting passes (it sweeps up what they disconnect); it is idempotent.
"""

from __future__ import annotations

from cnnrt.core.ir import Graph

from . import PassResult

RULE = "unused node -> removed"
CONST_RULE = "unused constant -> removed"


def eliminate_dead_nodes(graph: Graph) -> PassResult:
    """Remove unused nodes (in one backward sweep), then unused constants and values."""
    g = graph.copy()
    live = set(g.outputs)
    kept_rev = []
    fired: list[tuple[str, str]] = []
    for node in reversed(g.nodes):
        if any(o and o in live for o in node.outputs):
            kept_rev.append(node)
            live.update(i for i in node.inputs if i)
        else:
            fired.append((RULE, node.name))
    g.nodes = kept_rev[::-1]
    fired.reverse()
    for name in list(g.constants):
        if name not in live:
            del g.constants[name]
            fired.append((CONST_RULE, name))
    referenced = live | set(g.inputs) | {o for n in g.nodes for o in n.outputs if o}
    for name in list(g.values):
        if name not in referenced:
            del g.values[name]
    return PassResult(g, bool(fired), fired, [])
