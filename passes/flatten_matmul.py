"""flatten_matmul: a MatMul of an N-D activation by a constant matrix becomes a 2-D Gemm.

Channels-last linear layers (ConvNeXt's pointwise convs, written as nn.Linear on NHWC maps)
export as ``MatMul(x[..., K], W[K, N])``, then ``Add(bias)`` and often an activation. numpy's
matmul runs such a product as one small GEMM per leading index; this pass rewrites

    MatMul(x, W) [-> Add(·, bias)] [-> activation]
 -> Reshape(x, [M, K]) -> Gemm(·, W, bias) [-> activation] -> Reshape(·, [..., N])

so the product is one M x K x N Gemm (both Reshapes are views) and fuse_epilogue, which runs
next, folds the activation into the Gemm.

Requires: constants folded (W and the bias are constants then).
Guarantees: the last Reshape writes the last matched node's output name; the Gemm's origin
is the MatMul's and the Add's.
Guards (logged): x has rank 3 or more and W is a constant matrix; the bias is a constant of
N elements (shape (N,) or with leading 1s); the MatMul's and the Add's outputs have one
reader each and are not graph outputs; one floating-point dtype.
"""

from __future__ import annotations

import math

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.ops import OPS, UNARY_ACTIVATION_OPS

from . import PassResult
from .fuse_gelu import other_operand
from .rewrite import Ctx, Replacement, Rule, apply_rules, fresh_value_name, is_float, sole_use, unique_node_name


def _only_reader(ctx: Ctx, value: str) -> Node | None:
    users = ctx.users(value)
    return users[0] if len(users) == 1 and value not in ctx.outputs else None


def _match(ctx: Ctx, mm: Node):
    w = ctx.const(mm.inputs[1])
    if w is None or w.ndim != 2 or len(ctx.value(mm.inputs[0]).shape) < 3:
        return None
    chain = [mm]
    add = _only_reader(ctx, mm.outputs[0])
    bias = None
    if add is not None and add.op == "Add":
        bias = other_operand(add, mm.outputs[0])
        if ctx.const(bias or "") is not None and ctx.const(bias).size == w.shape[1]:
            chain.append(add)
        else:
            bias = None
    act = _only_reader(ctx, chain[-1].outputs[0])
    if act is not None and act.op in UNARY_ACTIVATION_OPS:
        chain.append(act)
    return chain, bias


def _rewrite(ctx: Ctx, m) -> Replacement | str:
    chain, bias = m
    mm = chain[0]
    for n in chain[:-1]:
        why = sole_use(ctx, n.outputs[0])
        if why:
            return why
    x, out = ctx.value(mm.inputs[0]), ctx.value(chain[-1].outputs[0])
    if not is_float(ctx, x.name) or len({x.dtype, out.dtype, str(ctx.const(mm.inputs[1]).dtype)}) != 1:
        return "not floating point of one dtype"
    if bias is not None and ctx.const(bias).shape[-1:] != (out.shape[-1],):
        return f"bias {list(ctx.const(bias).shape)} is not one value per output column"
    k, n = ctx.const(mm.inputs[1]).shape
    rows = math.prod(x.shape[:-1])
    a2, g, g_act = (fresh_value_name(ctx, f"{mm.outputs[0]}/{s}") for s in ("rows", "gemm", "act"))
    flat = Node("Reshape", (x.name,), (a2,), {"shape": (rows, k)}, unique_node_name(ctx, f"{mm.name}/rows"), mm.origin)
    gemm = Node(
        "Gemm",
        (a2, mm.inputs[1], *((bias,) if bias else ())),
        (g,),
        dict(OPS["Gemm"].attrs),
        unique_node_name(ctx, f"{mm.name}/gemm", ignore=[mm.name]),
        tuple(o for node in chain[: 2 if bias else 1] for o in node.origin),
    )
    nodes, last = [flat, gemm], g
    if chain[-1].op in UNARY_ACTIVATION_OPS:
        act = chain[-1]
        nodes.append(act.replace(inputs=(g,), outputs=(g_act,)))
        last = g_act
    back = Node(
        "Reshape", (last,), (out.name,), {"shape": out.shape}, unique_node_name(ctx, f"{mm.name}/unflatten"), mm.origin
    )
    # the new intermediate values (the driver's graph is a private copy)
    for name, shape in ((a2, (rows, k)), (g, (rows, n)), (g_act, (rows, n))):
        ctx.graph.values[name] = Value(name, shape, out.dtype)
    return Replacement(remove=chain, add=[*nodes, back], anchor=mm)


RULES = [
    Rule(
        "MatMul(N-D, constant matrix) [+ Add(bias)] [+ activation] -> Reshape, Gemm, Reshape",
        ("MatMul",),
        _match,
        _rewrite,
    )
]


def flatten_matmul(graph: Graph) -> PassResult:
    """Rewrite N-D MatMuls by constant matrices as 2-D Gemms; see the module docstring."""
    return apply_rules(graph, RULES)
