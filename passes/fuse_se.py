"""fuse_se: a squeeze-and-excitation block becomes one SqueezeExcite node.

The exported SE block (MobileNetV3, EfficientNet, MixNet, RegNetY) is, once fuse_epilogue
has folded each conv's activation into it::

    s = GlobalAveragePool(x)              (or ReduceMean over axes (2, 3), keepdims)
    h = Conv1x1(s, W1, B1) + squeeze act  (ReLU, SiLU, ...)
    g = Conv1x1(h, W2, B2) + gate act     (HardSigmoid, Sigmoid, ...)
    y = Mul(x, g)                         (either operand order)

Five steps with tiny parallel regions, and on blocked chains reorders around the Mul; as one
op the kernel pools, runs both matvecs and scales in one call (kernels/cpu/squeeze_excite.py),
and block_layout keeps it on the blocked value (its ``blocked_form``).

Requires: fuse_epilogue run (the activations are conv epilogues); it runs after it in each round.
Guarantees: the SqueezeExcite reads x and the weights as (R, C), (R,), (C, R), (C,) constants
(a missing bias as zeros) and writes the Mul's output; its origin is the union of the four
nodes'. Numerics: the same sums, the pooled mean and the matvecs accumulated in float64.
Guards (logged, for a pool whose output feeds a Conv): x is 4-D floating point; the pooled,
squeezed and gate values each have one reader and are not graph outputs; both convs are 1x1,
ungrouped, unpadded, without a residual or an algorithm override, with constant weights and
bias, R = W1's rows and W2 of shape (C, R, 1, 1); the Mul multiplies x itself by the gate and
gives x's shape and dtype.
"""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph, Node
from cnnrt.core.ops import attr

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules, fresh_value_name, fused_node, sole_use, unique_node_name

POOLS = ("GlobalAveragePool", "ReduceMean")


def _match(ctx: Ctx, pool: Node):
    """The pool and its Conv reader when the pool could start an SE block (structure only)."""
    if pool.op == "ReduceMean" and (tuple(attr(pool, "axes")) != (2, 3) or not attr(pool, "keepdims")):
        return None
    readers = ctx.users(pool.outputs[0])
    return (pool, readers[0]) if readers and readers[0].op == "Conv" else None


def _conv_problem(ctx: Ctx, conv: Node, cin: int) -> str | None:
    """Why ``conv`` is no SE 1x1 conv over ``cin`` channels (None when it is one)."""
    w = ctx.const(conv.inputs[1])
    if w is None or (len(conv.inputs) > 2 and conv.inputs[2] and ctx.const(conv.inputs[2]) is None):
        return f"conv {conv.name!r} has weights or a bias that are not constants"
    if w.ndim != 4 or w.shape[1] != cin or w.shape[2:] != (1, 1):
        return f"conv {conv.name!r} has weights {list(w.shape)}, not (*, {cin}, 1, 1)"
    if attr(conv, "group") != 1 or any(attr(conv, "pads")):
        return f"conv {conv.name!r} is grouped or padded"
    if (len(conv.inputs) > 3 and conv.inputs[3]) or attr(conv, "algorithm") is not None:
        return f"conv {conv.name!r} has a residual input or an algorithm override"
    return None


def _weights(ctx: Ctx, conv: Node, dtype) -> tuple[np.ndarray, np.ndarray]:
    w = ctx.const(conv.inputs[1])
    b = ctx.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
    rows = w.shape[0]
    bias = np.zeros(rows, dtype) if b is None else np.asarray(b, dtype).reshape(rows)
    return np.ascontiguousarray(np.asarray(w, dtype).reshape(rows, -1)), bias


def _rewrite(ctx: Ctx, m) -> Replacement | str:
    pool, squeeze = m
    x = pool.inputs[0]
    xv = ctx.value(x)
    if len(xv.shape) != 4 or np.dtype(xv.dtype).kind != "f":
        return f"{x!r} is not a 4-D floating-point tensor"
    c = xv.shape[1]
    why = sole_use(ctx, pool.outputs[0], squeeze) or _conv_problem(ctx, squeeze, c)
    if why:
        return why
    r = ctx.const(squeeze.inputs[1]).shape[0]
    gate_users = ctx.users(squeeze.outputs[0])
    excite = gate_users[0] if gate_users else None
    if excite is None or excite.op != "Conv":
        return f"the squeeze conv {squeeze.name!r} feeds {[u.op for u in gate_users]}, not one 1x1 Conv"
    why = sole_use(ctx, squeeze.outputs[0], excite) or _conv_problem(ctx, excite, r)
    if why:
        return why
    if ctx.const(excite.inputs[1]).shape[0] != c:
        return f"the excite conv {excite.name!r} gives {ctx.const(excite.inputs[1]).shape[0]} channels, x has {c}"
    mul_users = ctx.users(excite.outputs[0])
    mul = mul_users[0] if mul_users else None
    if mul is None or mul.op != "Mul" or sorted(mul.inputs) != sorted((x, excite.outputs[0])):
        return f"the gate {excite.outputs[0]!r} is not multiplied into {x!r} by one Mul"
    why = sole_use(ctx, excite.outputs[0], mul)
    if why:
        return why
    yv = ctx.value(mul.outputs[0])
    if tuple(yv.shape) != tuple(xv.shape) or yv.dtype != xv.dtype:
        return f"the Mul gives {list(yv.shape)} {yv.dtype}, not x's {list(xv.shape)} {xv.dtype}"
    nodes = [pool, squeeze, excite, mul]
    dt = np.dtype(xv.dtype)
    arrays = (*_weights(ctx, squeeze, dt), *_weights(ctx, excite, dt))
    names, constants = [], {}
    for part, arr in zip(("w1", "b1", "w2", "b2"), arrays):
        name = fresh_value_name(ctx, f"{pool.name}/se_{part}", constants)
        names.append(name)
        constants[name] = arr
    attrs = {}
    for kind, conv in (("squeeze", squeeze), ("gate", excite)):
        attrs[kind] = attr(conv, "activation")
        attrs[f"{kind}_alpha"] = float(attr(conv, "act_alpha"))
        attrs[f"{kind}_beta"] = float(attr(conv, "act_beta"))
    se = fused_node(pool, nodes[1:], label=["SqueezeExcite"])
    se = se.replace(
        op="SqueezeExcite",
        inputs=(x, *names),
        outputs=(mul.outputs[0],),
        attrs=attrs,
        name=unique_node_name(ctx, se.name, ignore=[n.name for n in nodes]),
    )
    return Replacement(remove=nodes, add=[se], anchor=pool, constants=constants)


RULES = [Rule("pool -> 1x1 conv -> 1x1 conv -> Mul -> SqueezeExcite", POOLS, _match, _rewrite)]


def fuse_se(graph: Graph) -> PassResult:
    """Fuse squeeze-and-excitation blocks into SqueezeExcite nodes; see the module docstring."""
    return apply_rules(graph, RULES)
