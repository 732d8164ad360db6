"""fuse_layernorm: the exported layer-norm decomposition becomes one LayerNormalization node.

Before opset 17 (and in hand-written LayerNorm modules) exporters write

    mean = ReduceMean(x, axes)            d = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2), axes)    (or Mul(d, d))
    y    = Div(d, Sqrt(Add(var, eps)))    [then Mul(y, gamma)] [then Add(·, beta)]

which this pass turns into LayerNormalization(x, gamma, beta) with axis = the first reduced
axis: one pass over the data instead of nine. gamma and beta become constants of exactly
the normalised shape (ones when there is no Mul).

Requires: constants folded (eps, the exponent, gamma and beta are constants then).
Guarantees: the new node reads x and writes the last matched node's output name; its
origin is the union of the removed nodes'.
Guards (logged): both ReduceMeans keep their dims and reduce the same trailing axes (a
channels-first LayerNorm over axis 1 of NCHW is no LayerNormalization); every intermediate
is read only inside the pattern and is not a graph output; eps is a non-negative scalar
constant and the exponent 2; gamma and beta are constants varying only along the
normalised axes; everything floating point of one dtype.
"""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph, Node

from . import PassResult
from .fuse_gelu import other_operand, reader_of, scalar_const
from .rewrite import Ctx, Replacement, Rule, apply_rules, fresh_value_name, fused_node, is_float, unique_node_name


def _square_of(ctx: Ctx, node: Node | None, d: str) -> bool:
    if node is None:
        return False
    if node.op == "Mul":
        return node.inputs[0] == d and node.inputs[1] == d
    return node.op == "Pow" and node.inputs[0] == d and scalar_const(ctx, node.inputs[1], 2.0)


def _match(ctx: Ctx, div: Node):
    d = div.inputs[0]
    sqrt = ctx.producer(div.inputs[1])
    sub = ctx.producer(d)
    if sqrt is None or sqrt.op != "Sqrt" or sub is None or sub.op != "Sub":
        return None
    add = ctx.producer(sqrt.inputs[0])
    if add is None or add.op != "Add":
        return None
    var = next((ctx.producer(i) for i in add.inputs if ctx.const(i) is None), None)
    if var is None or var.op != "ReduceMean" or len(add.inputs) != 2:
        return None
    eps = other_operand(add, var.outputs[0])
    square = ctx.producer(var.inputs[0])
    mean = ctx.producer(sub.inputs[1])
    x = sub.inputs[0]
    if not _square_of(ctx, square, d) or mean is None or mean.op != "ReduceMean" or mean.inputs[0] != x:
        return None
    nodes = [mean, sub, square, var, add, sqrt, div]
    # the optional affine tail: Mul by a constant, then Add of a constant
    tail = reader_of(ctx, div.outputs[0], "Mul")
    gamma = beta = None
    if tail is not None and ctx.const(other_operand(tail, div.outputs[0]) or "") is not None:
        gamma = other_operand(tail, div.outputs[0])
        nodes.append(tail)
        shift = reader_of(ctx, tail.outputs[0], "Add")
        if shift is not None and ctx.const(other_operand(shift, tail.outputs[0]) or "") is not None:
            beta = other_operand(shift, tail.outputs[0])
            nodes.append(shift)
    return x, eps, gamma, beta, nodes


def _param(ctx: Ctx, name: str | None, norm: tuple[int, ...], dtype: str, fill: float) -> np.ndarray | str:
    """The constant as an array of exactly the normalised shape, or why it cannot be one."""
    if name is None:
        return np.full(norm, fill, dtype)
    c = ctx.const(name)
    lead = c.shape[: max(0, c.ndim - len(norm))]
    if any(d != 1 for d in lead):
        return f"constant {name!r} {list(c.shape)} varies outside the normalised axes"
    c = c.reshape(c.shape[len(lead) :])
    try:
        return np.ascontiguousarray(np.broadcast_to(c, norm)).astype(dtype)
    except ValueError:
        return f"constant {name!r} {list(c.shape)} does not broadcast to the normalised shape {list(norm)}"


def _rewrite(ctx: Ctx, m) -> Replacement | str:
    x, eps, gamma, beta, nodes = m
    mean, sub, square, var, add = nodes[:5]
    xv = ctx.value(x)
    rank = len(xv.shape)
    axes = tuple(mean.attrs["axes"])
    if tuple(var.attrs["axes"]) != axes or not (mean.attrs["keepdims"] and var.attrs["keepdims"]):
        return "the two ReduceMeans differ in axes or drop dims"
    if not axes or axes != tuple(range(axes[0], rank)):
        return f"axes {list(axes)} are not the trailing axes of rank {rank}"
    inside = {n.name for n in nodes}
    for n in nodes[:-1]:
        o = n.outputs[0]
        if o in ctx.outputs or any(u.name not in inside for u in ctx.users(o)):
            return f"{n.op} output {o!r} is read outside the pattern"
    e = ctx.const(eps)
    if e is None or e.size != 1 or not float(e.reshape(-1)[0]) >= 0:
        return "epsilon is not a non-negative scalar constant"
    out = nodes[-1].outputs[0]
    if not is_float(ctx, x) or len({xv.dtype, ctx.value(out).dtype, ctx.value(sub.outputs[0]).dtype}) != 1:
        return "not floating point of one dtype"
    if ctx.value(out).shape != xv.shape:
        return f"the pattern broadcasts {list(xv.shape)} to {list(ctx.value(out).shape)}"
    norm = xv.shape[axes[0] :]
    params = [_param(ctx, gamma, norm, xv.dtype, 1.0)] + ([_param(ctx, beta, norm, xv.dtype, 0.0)] if beta else [])
    why = next((p for p in params if isinstance(p, str)), None)
    if why:
        return why
    names = [fresh_value_name(ctx, f"{x}_ln_{k}") for k in ("scale", "bias")[: len(params)]]
    ln = fused_node(nodes[-1], nodes[:-1], label=["LayerNormalization"]).replace(
        op="LayerNormalization",
        inputs=(x, *names),
        outputs=(out,),
        attrs={"axis": axes[0], "epsilon": float(e.reshape(-1)[0])},
        name=unique_node_name(ctx, mean.name + "+LayerNormalization", ignore=list(inside)),
    )
    return Replacement(remove=nodes, add=[ln], anchor=mean, constants=dict(zip(names, params)))


RULES = [Rule("ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div(/Mul/Add) -> LayerNormalization", ("Div",), _match, _rewrite)]


def fuse_layernorm(graph: Graph) -> PassResult:
    """Fuse the layer-norm decomposition into LayerNormalization nodes; see the module docstring."""
    return apply_rules(graph, RULES)
