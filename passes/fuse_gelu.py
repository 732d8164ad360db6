"""fuse_gelu: the exported GELU formula x·½·(1 + erf(x/√2)) becomes one Gelu node.

Exporters write nn.GELU (and F.gelu) at opsets before 20 as Div(x, √2) (or Mul(x, 1/√2)) →
Erf → Add(·, 1) and then one of the three orders of the two remaining products:

- ``Mul(Mul(x, a), ½)``   (torch.onnx: ``x * (1 + erf) * 0.5``),
- ``Mul(Mul(x, ½), a)``   (``x * 0.5 * (1 + erf)``),
- ``Mul(x, Mul(a, ½))``   (``x * (0.5 * (1 + erf))``),

with a = 1 + erf(x/√2) and every Mul and Add in either operand order. Gelu is an activation
kind, so fuse_epilogue (which runs next) folds it into a Conv/Gemm/ChannelAffine before it.

Requires: constants folded (the √2, 1 and ½ are scalar constants then).
Guarantees: the Gelu reads x and writes the last product's output name; its origin is the
union of the removed nodes'.
Guards (logged): every intermediate has exactly one reader and is not a graph output; the
constants are scalars within 1e-6 (relative) of √2 (1/√2), 1 and ½; x is floating point
and its shape is the output's (no broadcasting).
"""

from __future__ import annotations

import math

from cnnrt.core.ir import Graph, Node

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules, fused_node, is_float, sole_use, unique_node_name

SQRT2 = math.sqrt(2.0)


def scalar_const(ctx: Ctx, name: str, want: float) -> bool:
    """Whether ``name`` is a one-element constant equal to ``want`` within float32 rounding."""
    c = ctx.const(name)
    return c is not None and c.size == 1 and math.isclose(float(c.reshape(-1)[0]), want, rel_tol=1e-6)


def other_operand(node: Node, value: str) -> str | None:
    """The operand of a two-input ``node`` that is not ``value`` (None when neither is)."""
    if len(node.inputs) != 2:
        return None
    if node.inputs[0] == value:
        return node.inputs[1]
    return node.inputs[0] if node.inputs[1] == value else None


def reader_of(ctx: Ctx, value: str, op: str) -> Node | None:
    """The first node of type ``op`` reading ``value`` (the rewrite checks it is the only reader)."""
    return next((u for u in ctx.users(value) if u.op == op), None)


def _scaled_input(ctx: Ctx, erf: Node) -> tuple[Node, str] | None:
    """(the Div/Mul node, x) when the Erf reads x/√2 or x·(1/√2)."""
    t = ctx.producer(erf.inputs[0])
    if t is None or len(t.inputs) != 2:
        return None
    if t.op == "Div" and scalar_const(ctx, t.inputs[1], SQRT2):
        return t, t.inputs[0]
    if t.op == "Mul":
        for i in (0, 1):
            if scalar_const(ctx, t.inputs[1 - i], 1 / SQRT2):
                return t, t.inputs[i]
    return None


def _match(ctx: Ctx, erf: Node):
    scaled = _scaled_input(ctx, erf)
    if scaled is None:
        return None
    scale, x = scaled
    add = reader_of(ctx, erf.outputs[0], "Add")
    if add is None or not scalar_const(ctx, other_operand(add, erf.outputs[0]) or "", 1.0):
        return None
    mul = reader_of(ctx, add.outputs[0], "Mul")
    if mul is None:
        return None
    o = other_operand(mul, add.outputs[0])
    if o == x:  # Mul(Mul(x, a), ½)
        last = reader_of(ctx, mul.outputs[0], "Mul")
        if last is None or not scalar_const(ctx, other_operand(last, mul.outputs[0]) or "", 0.5):
            return None
        return x, [scale, erf, add, mul, last]
    if o is not None and scalar_const(ctx, o, 0.5):  # Mul(x, Mul(a, ½))
        last = reader_of(ctx, mul.outputs[0], "Mul")
        if last is None or other_operand(last, mul.outputs[0]) != x:
            return None
        return x, [scale, erf, add, mul, last]
    half = ctx.producer(o) if o else None  # Mul(Mul(x, ½), a)
    if half is None or half.op != "Mul" or other_operand(half, x) is None:
        return None
    if not scalar_const(ctx, other_operand(half, x), 0.5):
        return None
    return x, [half, scale, erf, add, mul]


def _rewrite(ctx: Ctx, m) -> Replacement | str:
    x, nodes = m
    out = nodes[-1].outputs[0]
    for n in nodes[:-1]:
        why = sole_use(ctx, n.outputs[0])
        if why:
            return why
    if not is_float(ctx, x):
        return f"{x!r} is not floating point"
    if ctx.value(x).shape != ctx.value(out).shape or ctx.value(x).dtype != ctx.value(out).dtype:
        return f"the pattern broadcasts {list(ctx.value(x).shape)} to {list(ctx.value(out).shape)}"
    first = min(nodes, key=lambda n: ctx.position[n.name])
    erf = next(n for n in nodes if n.op == "Erf")
    gelu = fused_node(erf, [n for n in nodes if n is not erf], label=["Gelu"])
    gelu = gelu.replace(
        op="Gelu",
        inputs=(x,),
        outputs=(out,),
        attrs={"tanh_approx": 0.0},
        name=unique_node_name(ctx, erf.name + "+Gelu", ignore=[n.name for n in nodes]),
    )
    return Replacement(remove=nodes, add=[gelu], anchor=first)


RULES = [Rule("x * 0.5 * (1 + erf(x / sqrt 2)) -> Gelu", ("Erf",), _match, _rewrite)]


def fuse_gelu(graph: Graph) -> PassResult:
    """Fuse the exported GELU formula into Gelu nodes; see the module docstring."""
    return apply_rules(graph, RULES)
