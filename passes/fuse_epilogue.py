"""fuse_epilogue: merge biases, residual adds and activations into Conv/ConvTranspose/Gemm/ChannelAffine.

Rules (each anchored at the node that disappears):

- ``Conv/ConvTranspose + Add(per-channel constant) -> bias``: the constant joins the bias.
- ``MatMul + Add(constant) -> Gemm``: 2-D A, constant 2-D B, C broadcastable to the output.
- ``Gemm + Add(constant) -> Gemm``: the constant joins C.
- ``Conv + Add -> Conv(residual)``: ``Add(conv_out, other)`` (or a 2-input Sum) where other has
  the output's shape and dtype becomes Conv's 4th input R. If other is defined after the
  Conv, the fused node moves to the Add's position (safe: the Conv's only reader was the Add).
  Of two Conv candidates the one needing no move wins.
- ``X + <activation> -> X(activation)`` for every X the op table (cnnrt.core.ops) gives an
  epilogue (Conv, ConvTranspose, Gemm, ChannelAffine, GroupNormalization; the blocked forms come later) and every
  unary activation; ``X + Mul(x, Sigmoid(x)) -> X(SiLU)`` and
  ``X + Mul(x, HardSigmoid(x; 1/6, 1/2)) -> X(HardSwish)``.

Requires: a verified graph; BN already folded (fold_batchnorm) so Conv+BN+Relu chains
are Conv+Relu here; constants folded.
Guarantees: the fused node computes exactly what the removed nodes did (R is added before
the activation, as cnnrt.core.ops specifies), keeps the last removed node's output name, is named
``<anchor>+<Op>+<Op>`` and its origin is the union of the origins.
Guards (logged when they block): the intermediate has exactly one reader and is not a graph
output; the anchor has no activation yet (and no residual, for residual and bias rules);
bias/weight operands are constants; dtypes match; shapes match without broadcasting for R.
"""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph, Node
from cnnrt.core.ops import ACTIVATIONS, OPS, UNARY_ACTIVATION_OPS, activation_params, attr

from . import PassResult
from .rewrite import (
    Ctx,
    Replacement,
    Rule,
    apply_rules,
    fresh_value_name,
    fused_node,
    is_float,
    sole_use,
    unique_node_name,
)

# block_layout runs after the fusion passes: only NCHW ops are hosts here
ACT_HOSTS = tuple(op for op, d in OPS.items() if d.epilogue and d.blocked != "native")
HARDSWISH_GATE = (1.0 / 6.0, 0.5)


def _fuse(
    ctx: Ctx, anchor: Node, absorbed: list[Node], constants=None, anchor_at: Node | None = None, label=None, **changes
) -> Replacement:
    node = fused_node(anchor, absorbed, label=label, outputs=absorbed[-1].outputs, **changes)
    gone = [anchor, *absorbed]
    node = node.replace(name=unique_node_name(ctx, node.name, ignore=[n.name for n in gone]))
    return Replacement(remove=gone, add=[node], anchor=anchor_at or anchor, constants=constants or {})


def _host_ready(ctx: Ctx, host: Node, value: str, reader: Node) -> str | None:
    """Shared guards: ``value`` (host's output) flows only into ``reader``; host has no activation."""
    why = sole_use(ctx, value, reader)
    if why:
        return why
    if OPS[host.op].epilogue and attr(host, "activation") != "none":
        return f"{host.op} {host.name!r} already has activation {host.attrs['activation']}"
    return None


# ---------------------------------------------------------------------------- activations


def _match_act(ctx: Ctx, act: Node):
    host = ctx.producer(act.inputs[0])
    if host is None or host.op not in ACT_HOSTS:
        return None
    return host, act


def _rewrite_act(ctx: Ctx, m) -> Replacement | str:
    host, act = m
    why = _host_ready(ctx, host, act.inputs[0], act)
    if why:
        return why
    if not is_float(ctx, act.inputs[0]) or ctx.value(act.inputs[0]).dtype != ctx.value(act.outputs[0]).dtype:
        return "activation is not float-to-same-float"
    alpha, beta = activation_params(act.op, act.attrs)
    return _fuse(ctx, host, [act], attrs={**host.attrs, "activation": act.op, "act_alpha": alpha, "act_beta": beta})


def _match_gated(ctx: Ctx, mul: Node):
    """Mul(x, g(x)) with g Sigmoid or HardSigmoid(1/6, 1/2) and x from an activation host."""
    if len(mul.inputs) != 2:
        return None
    for gate_i in (0, 1):
        gate = ctx.producer(mul.inputs[gate_i])
        x = mul.inputs[1 - gate_i]
        if gate is None or gate.op not in ("Sigmoid", "HardSigmoid") or gate.inputs[0] != x:
            continue
        if gate.op == "HardSigmoid" and not np.allclose(activation_params("HardSigmoid", gate.attrs), HARDSWISH_GATE):
            continue
        host = ctx.producer(x)
        if host is None or host.op not in ACT_HOSTS:
            return None
        return host, gate, mul
    return None


def _rewrite_gated(ctx: Ctx, m) -> Replacement | str:
    host, gate, mul = m
    x = gate.inputs[0]
    kind = "SiLU" if gate.op == "Sigmoid" else "HardSwish"
    why = sole_use(ctx, gate.outputs[0], mul)
    if why:
        return why
    if x in ctx.outputs:
        return f"{host.op} output {x!r} is a graph output"
    count = ctx.use_count(x)
    if count != 2 or {n.name for n in ctx.users(x)} != {gate.name, mul.name}:
        return f"{host.op} output {x!r} has {count} consumers besides the {kind} pattern"
    if attr(host, "activation") != "none":
        return f"{host.op} {host.name!r} already has activation {host.attrs['activation']}"
    if ctx.value(mul.outputs[0]).shape != ctx.value(x).shape or not is_float(ctx, x):
        return "Mul broadcasts or is not floating point"
    attrs = {**host.attrs, "activation": kind, "act_alpha": 0.0, "act_beta": 0.0}
    return _fuse(ctx, host, [gate, mul], label=[kind], attrs=attrs)


# ---------------------------------------------------------------------------- Add


def _add_operands(ctx: Ctx, add: Node) -> tuple[str, str] | None:
    if add.op == "Sum" and len(add.inputs) != 2:
        return None
    if len(add.inputs) != 2 or not all(add.inputs):
        return None
    return add.inputs[0], add.inputs[1]


def _match_bias(ctx: Ctx, add: Node):
    ops = _add_operands(ctx, add)
    if ops is None:
        return None
    for i in (0, 1):
        host = ctx.producer(ops[i])
        c = ctx.const(ops[1 - i])
        if host is not None and c is not None and host.op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            return host, add, ops[i], ops[1 - i]
    return None


def _rewrite_bias(ctx: Ctx, m) -> Replacement | str:
    host, add, x, cname = m
    why = _host_ready(ctx, host, x, add)
    if why:
        return why
    c = ctx.const(cname)
    out = ctx.value(add.outputs[0])
    if out.shape != ctx.value(x).shape:
        return f"Add broadcasts {list(ctx.value(x).shape)} to {list(out.shape)}"
    if c.dtype != np.dtype(out.dtype):
        return f"bias dtype {c.dtype} differs from {out.dtype}"
    if host.op == "Conv" and len(host.inputs) > 3 and host.inputs[3]:
        return f"Conv {host.name!r} has a residual input"
    if host.op in ("Conv", "ConvTranspose"):
        m_ch = out.shape[1]
        c4 = c.reshape((1,) * (4 - c.ndim) + c.shape) if c.ndim <= 4 else c
        if c4.ndim != 4 or c4.shape[0] != 1 or c4.shape[2:] != (1, 1) or c4.shape[1] not in (1, m_ch):
            return f"constant {list(c.shape)} is not per-channel"
        vec = np.broadcast_to(c4.reshape(-1), (m_ch,))
        return _absorb_bias(ctx, host, add, vec.astype(np.float64), "b")
    if host.op == "Gemm":
        return _absorb_bias(ctx, host, add, c.astype(np.float64), "c")
    # MatMul + Add -> Gemm
    a_v, b_name = ctx.value(host.inputs[0]), host.inputs[1]
    bw = ctx.const(b_name)
    if len(a_v.shape) != 2 or bw is None or bw.ndim != 2:
        return "MatMul needs a 2-D input and a constant 2-D weight to become Gemm"
    if np.broadcast_shapes(c.shape, out.shape) != out.shape or c.ndim > 2:
        return f"constant {list(c.shape)} does not broadcast to {list(out.shape)}"
    node = fused_node(
        host,
        [add],
        label=["Add->Gemm"],
        op="Gemm",
        outputs=add.outputs,
        inputs=(host.inputs[0], b_name, cname),
        attrs=dict(OPS["Gemm"].attrs),  # alpha = beta = 1, no transposes, no activation
    )
    node = node.replace(name=unique_node_name(ctx, node.name, ignore=[host.name, add.name]))
    return Replacement(remove=[host, add], add=[node], anchor=host)


def _absorb_bias(ctx: Ctx, host: Node, add: Node, extra: np.ndarray, kind: str) -> Replacement | str:
    dtype = np.dtype(ctx.value(add.outputs[0]).dtype)
    old_name = host.inputs[2] if len(host.inputs) > 2 else ""
    old = ctx.const(old_name)
    if old_name and old is None:
        return f"{host.op} bias {old_name!r} is not a constant"
    if kind == "b":
        new = extra if old is None else old.astype(np.float64) + extra
        attrs = dict(host.attrs)
    else:  # Gemm: y = alpha*AB + beta*C + extra -> C' = beta*C + extra, beta' = 1
        beta = float(attr(host, "beta"))
        new = extra if old is None or beta == 0.0 else old.astype(np.float64) * beta + extra
        if new.ndim > 2:
            return "Gemm bias would have rank > 2"
        attrs = {**host.attrs, "beta": 1.0}
    name = fresh_value_name(ctx, (old_name or host.outputs[0] + "_bias") + "_add")
    ins = list(host.inputs) + [""] * max(0, 3 - len(host.inputs))
    ins[2] = name
    return _fuse(ctx, host, [add], constants={name: new.astype(dtype)}, label=["bias"], inputs=tuple(ins), attrs=attrs)


def _match_residual(ctx: Ctx, add: Node):
    ops = _add_operands(ctx, add)
    if ops is None:
        return None
    cands = [(ctx.producer(ops[i]), ops[i], ops[1 - i]) for i in (0, 1)]
    full = ctx.value(add.outputs[0]).shape
    # broadcast constants are the bias rule's business
    cands = [
        c
        for c in cands
        if c[0] is not None and c[0].op == "Conv" and (ctx.const(c[2]) is None or ctx.value(c[2]).shape == full)
    ]
    return (add, cands) if cands else None


def _rewrite_residual(ctx: Ctx, m) -> Replacement | str:
    add, cands = m
    out = ctx.value(add.outputs[0])
    reasons = []
    ok = []
    for conv, x, other in cands:
        why = _host_ready(ctx, conv, x, add)
        if why is None and len(conv.inputs) > 3 and conv.inputs[3]:
            why = f"Conv {conv.name!r} already has a residual input"
        if why is None and other == x:
            why = "Add reads the Conv output twice"
        ov, xv = ctx.value(other), ctx.value(x)
        if why is None and (ov.shape != out.shape or xv.shape != out.shape):
            why = f"Add broadcasts ({list(xv.shape)} + {list(ov.shape)})"
        if why is None and (ov.dtype != out.dtype or xv.dtype != out.dtype):
            why = f"dtypes differ ({xv.dtype} + {ov.dtype})"
        if why:
            reasons.append(why)
        else:
            ok.append((ctx.defined_at(other) > ctx.position[conv.name], conv, x, other))
    if not ok:
        return "; ".join(reasons)
    moved, conv, x, other = min(ok, key=lambda t: t[0])  # prefer no reorder
    ins = list(conv.inputs) + [""] * max(0, 3 - len(conv.inputs))
    ins = ins[:3] + [other]
    return _fuse(
        ctx,
        conv,
        [add],
        label=["residual"],
        inputs=tuple(ins),
        attrs=dict(conv.attrs),
        anchor_at=add if moved else conv,
    )


RULES = [
    Rule("Conv/Gemm + Add(constant) -> bias", ("Add", "Sum"), _match_bias, _rewrite_bias),
    Rule("Conv + Add -> Conv(residual)", ("Add", "Sum"), _match_residual, _rewrite_residual),
    Rule(
        "Conv/ConvTranspose/Gemm/ChannelAffine + activation -> fused activation",
        UNARY_ACTIVATION_OPS,
        _match_act,
        _rewrite_act,
    ),
    Rule("X + Mul(x, Sigmoid|HardSigmoid(x)) -> X(SiLU|HardSwish)", ("Mul",), _match_gated, _rewrite_gated),
]

assert all(k in ACTIVATIONS for k in (*UNARY_ACTIVATION_OPS, "SiLU", "HardSwish"))


def fuse_epilogue(graph: Graph) -> PassResult:
    """Apply the epilogue rules until none fires; see the module docstring."""
    return apply_rules(graph, RULES)
