"""remove_identity: drop Identity and inference-time Dropout by rewiring their readers.

Requires: a verified graph.
Guarantees: an Identity/Dropout ``Y = op(X)`` is gone and every reader of Y reads X. If
Y is a graph output, X is renamed to Y instead (its producer now writes Y), so graph output
names never change. Declined, and logged: a Dropout whose mask output is read; Y a graph
output while X is a graph input or also a graph output (the node is the copy that makes
the second name exist; the planner turns it into a view). X a constant is left to
fold_constants.
Run before: the fusion passes, which look through nothing.
"""

from __future__ import annotations

from cnnrt.core.ir import Graph, Node

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules


def _match(ctx: Ctx, node: Node):
    return node


def _rewrite(ctx: Ctx, node: Node) -> Replacement | str:
    x, y = node.inputs[0], node.outputs[0]
    if any(o and (o in ctx.outputs or ctx.use_count(o)) for o in node.outputs[1:]):
        return f"{node.op} mask output {node.outputs[1]!r} is used"
    if ctx.graph.values[x].shape != ctx.graph.values[y].shape or ctx.graph.values[x].dtype != ctx.graph.values[y].dtype:
        return f"{x!r} and {y!r} differ in shape or dtype"
    if y not in ctx.outputs:
        return Replacement(remove=[node], add=[], anchor=node, rename={y: x})
    if x in ctx.graph.constants:
        return "output is a graph output and its input a constant (left to fold_constants)"
    if x in ctx.inputs:
        return "output is a graph output and its input a graph input"
    if x in ctx.outputs:
        return "output and input are both graph outputs"
    return Replacement(remove=[node], add=[], anchor=node, rename={x: y})


RULES = [Rule("Identity/Dropout -> (removed)", ("Identity", "Dropout"), _match, _rewrite)]


def remove_identity(graph: Graph) -> PassResult:
    """Remove Identity and Dropout nodes; see the module docstring."""
    return apply_rules(graph, RULES)
