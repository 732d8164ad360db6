"""fuse_qdq: the QDQ groups of a statically quantized model become integer ops.

``DequantizeLinear(x) , DequantizeLinear(W) [, DequantizeLinear(bias)] -> Conv -> QuantizeLinear``
becomes one QConv reading the quantized x and W, with the requantization (and a Conv's fused
Relu/Clip as a narrower output range) in its epilogue; ``DequantizeLinear(a) +
DequantizeLinear(b) -> QuantizeLinear`` becomes one QAdd. This is the grouping onnxruntime's
own QDQ transformer makes (QLinearConv, QLinearAdd), so the integer arithmetic and its
rounding points are the ones onnxruntime runs. Both carry ``precision="int8"``.

A squeeze-excitation between Q/DQ pairs runs on the codes: ``DequantizeLinear(x) ->
GlobalAveragePool -> QuantizeLinear`` becomes QGlobalAveragePool (each plane's exact integer
sum requantized as onnxruntime's QLinearGlobalAveragePool does), and ``DequantizeLinear(x) *
DequantizeLinear(gate) -> QuantizeLinear``, the gate one value per (image, channel), becomes
QMul in the graph's own float32 steps; x's DequantizeLinear then has no reader left.

``DequantizeLinear(x) -> MaxPool -> QuantizeLinear`` with one per-tensor scale (> 0) and zero
point on both ends is MaxPool of x's codes: dequantization is increasing and q(dq(x)) == x, so
the max commutes with it exactly (what onnxruntime runs too: it drops such Q/DQ pairs).

``DequantizeLinear(x_i) -> Concat -> QuantizeLinear`` is the Concat of each input's codes
requantized to the output's parameters, ``q(dq_i(x_i))`` elementwise: x_i itself when the
parameters agree, else a 256-entry table of x_i (a Gather, below), as the QDQ graph rounds.

A QuantizeLinear whose input is an island of elementwise float ops (Sigmoid, Mul, Add,
inner QuantizeLinear -> DequantizeLinear pairs...) over the DequantizeLinear of one 8-bit value
x, every value of the island of x's shape, is a function of x's byte alone: it becomes a
``Gather`` of a 256-entry table by x (the table indexed by x's bits read as uint8), the table
evaluated once here on all 256 codes with the ops' numpy evaluators. A SiLU (x * Sigmoid(x))
with its inner Q/DQ pair is one table: where onnxruntime runs QLinearSigmoid's and
QLinearMul's tables and arithmetic, this rounds once per QuantizeLinear of the island, as the
QDQ graph says.

Requires: a verified NCHW graph, run before fold_constants (which would turn the weight's
DequantizeLinear into a float constant). The DequantizeLinear nodes are left to
eliminate_dead_nodes when nothing else reads them; an unfused QuantizeLinear/DequantizeLinear
still runs as its own op.
Guards (logged): x and the output quantized per tensor with constant parameters; W and bias
constants behind their DequantizeLinear, W per tensor or per output channel; the bias's scale
equal to x_scale * w_scale (how quantizers write it) or the bias a float constant (quantized
here with that scale); the Conv's output read only by the QuantizeLinear, or by one Relu/Clip read only by it, its
own fused activation none, Relu or Clip; QAdd's operands of one shape; a table's island
of one quantized input, scalar constants and no broadcasting, its Q/DQ per tensor.
"""

from __future__ import annotations

import numpy as np

from cnnrt.core import quantization as qnt
from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.ops import can_evaluate, evaluate_node

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules, fresh_value_name, fused_node, sole_use, unique_node_name

PRECISION = "int8"


def _dequantized(ctx: Ctx, value: str, const: bool, channels: int = 1):
    """(quantized value, scale name, zero-point name, why-not) for a value made by DequantizeLinear."""
    dq = ctx.producer(value)
    if dq is None or dq.op != "DequantizeLinear":
        return None, None, None, f"{value!r} is not made by DequantizeLinear"
    params = [dq.inputs[i] if i < len(dq.inputs) else "" for i in (1, 2)]
    for p in params:
        if p and ctx.const(p) is None:
            return None, None, None, f"{dq.name!r} has a runtime scale or zero point"
    size = np.asarray(ctx.const(params[0])).size
    if size not in (1, channels) or (size > 1 and int(dq.attrs.get("axis", 1)) != 0):
        return None, None, None, f"{dq.name!r} is quantized per axis {dq.attrs.get('axis', 1)}, not per tensor"
    if const != (ctx.const(dq.inputs[0]) is not None):
        return None, None, None, f"{dq.name!r} reads a {'runtime value' if const else 'constant'}"
    return dq.inputs[0], params[0], params[1], None


def _quantized_output(ctx: Ctx, node: Node, through_act: bool = False):
    """(QuantizeLinear, activation node or None, why-not): the QuantizeLinear that alone reads
    ``node``'s output, optionally through one Relu/Clip."""
    why = sole_use(ctx, node.outputs[0])
    if why:
        return None, None, why
    q, act = ctx.users(node.outputs[0])[0], None
    if through_act and q.op in ("Relu", "Clip"):
        why = sole_use(ctx, q.outputs[0])
        if why:
            return None, None, why
        act, q = q, ctx.users(q.outputs[0])[0]
    if q.op != "QuantizeLinear":
        return None, None, f"{node.op} output is read by {q.op}, not QuantizeLinear"
    params = [q.inputs[i] if i < len(q.inputs) else "" for i in (1, 2)]
    if any(p and ctx.const(p) is None for p in params) or np.asarray(ctx.const(params[0])).size != 1:
        return None, None, f"{q.name!r} does not quantize per tensor with constant parameters"
    return q, act, None


def _zero_point(ctx: Ctx, name: str) -> int:
    return int(np.asarray(ctx.const(name)).reshape(-1)[0]) if name else 0


def _clamp(ctx: Ctx, conv: Node, act: Node | None, q: Node) -> tuple[int | None, int | None]:
    """The quantized output range a fused (or following) Relu/Clip leaves."""
    if act is not None:
        kind, alpha, beta = act.op, act.attrs.get("min", -np.inf), act.attrs.get("max", np.inf)
    else:
        kind, alpha, beta = (
            conv.attrs.get(k, d) for k, d in (("activation", "none"), ("act_alpha", 0), ("act_beta", 0))
        )
    if kind == "none":
        return None, None
    dtype = ctx.value(q.outputs[0]).dtype
    scale = float(np.asarray(ctx.const(q.inputs[1])).reshape(-1)[0])
    zp = _zero_point(ctx, q.inputs[2] if len(q.inputs) > 2 else "")
    return qnt.clamp_range(kind, alpha, beta, scale, zp, dtype)


def _made_by_dq(ctx: Ctx, value: str) -> bool:
    p = ctx.producer(value)
    return p is not None and p.op == "DequantizeLinear"


def _match_conv(ctx: Ctx, conv: Node):
    """Structure only: a Conv whose input is dequantized (float Convs are no news in the log)."""
    return conv if len(conv.inputs) >= 2 and _made_by_dq(ctx, conv.inputs[0]) else None


def _rewrite_conv(ctx: Ctx, conv: Node) -> Replacement | str:
    if len(conv.inputs) > 3 and conv.inputs[3]:
        return "the Conv has a fused residual input"
    if conv.attrs.get("activation", "none") not in ("none", "Relu", "Clip"):
        return f"the Conv's fused activation {conv.attrs['activation']} has no integer form"
    m = ctx.value(conv.inputs[1]).shape[0]
    xq, xs, xz, why = _dequantized(ctx, conv.inputs[0], const=False)
    if why:
        return why
    wq, ws, wz, why = _dequantized(ctx, conv.inputs[1], const=True, channels=m)
    if why:
        return why
    q, act, why = _quantized_output(ctx, conv, through_act=conv.attrs.get("activation", "none") == "none")
    if why:
        return why
    constants = {}
    bias = conv.inputs[2] if len(conv.inputs) > 2 else ""
    if bias:
        expected = np.float32(ctx.const(xs).reshape(-1)[0]) * np.asarray(ctx.const(ws), np.float32).reshape(-1)
        bq, bs, bz, why = _dequantized(ctx, bias, const=True, channels=m)
        if bq is not None and ctx.value(bq).dtype == "int32" and not _zero_point(ctx, bz):
            if not np.allclose(np.asarray(ctx.const(bs), np.float32).reshape(-1), expected, rtol=1e-6, atol=0):
                return f"the bias scale of {ctx.producer(bias).name!r} is not x_scale * w_scale"
            bias = bq
        elif ctx.const(bias) is not None and ctx.value(bias).dtype == "float32":
            name = fresh_value_name(ctx, bias + "_int32")
            constants[name] = qnt.quantize(ctx.const(bias), expected, None, "int32", axis=0)
            bias = name
        else:
            return why or f"the bias {bias!r} is neither a constant nor an int32 DequantizeLinear"
    ys, yz = q.inputs[1], q.inputs[2] if len(q.inputs) > 2 else ""
    lo, hi = _clamp(ctx, conv, act, q)
    attrs = {k: v for k, v in conv.attrs.items() if k not in ("activation", "act_alpha", "act_beta")}
    node = fused_node(
        conv,
        [n for n in (act, q) if n is not None],
        op="QConv",
        inputs=(xq, xs, xz or "", wq, ws, wz or "", ys, yz, bias),
        outputs=q.outputs,
        attrs={**attrs, "out_lo": lo, "out_hi": hi, "precision": PRECISION},
    )
    removed = [n for n in (conv, act, q) if n is not None]
    return Replacement(remove=removed, add=[node], anchor=conv, constants=constants)


def _per_tensor_operand(ctx: Ctx, v: str, eight_bit: bool = False):
    """(quantized value, scale, zero point, why-not) of a value dequantized per tensor (from 8
    bits, with ``eight_bit``)."""
    vq, vs, vz, why = _dequantized(ctx, v, const=False)
    if why:
        return None, None, None, why
    if np.asarray(ctx.const(vs)).size != 1:
        return None, None, None, f"{v!r} is quantized per channel"
    if eight_bit and ctx.value(vq).dtype not in ("uint8", "int8"):
        return None, None, None, f"{vq!r} is not 8-bit"
    return vq, vs, vz or "", None


def _match_add(ctx: Ctx, add: Node):
    return add if any(_made_by_dq(ctx, i) for i in add.inputs) else None


def _binary_on_codes(ctx: Ctx, node: Node, pair, op: str, attrs: dict, eight_bit: bool) -> Replacement | str:
    """``node``'s two dequantized operands ``pair`` and the QuantizeLinear after it as one
    ``op`` on the codes: inputs (A, a_scale, a_zp, B, b_scale, b_zp, y_scale, y_zp)."""
    operands = []
    for v in pair:
        vq, vs, vz, why = _per_tensor_operand(ctx, v, eight_bit)
        if why:
            return why
        operands += [vq, vs, vz]
    q, _, why = _quantized_output(ctx, node)
    if why:
        return why
    ins = (*operands, q.inputs[1], q.inputs[2] if len(q.inputs) > 2 else "")
    fused = fused_node(node, [q], op=op, inputs=ins, outputs=q.outputs, attrs={**attrs, "precision": PRECISION})
    return Replacement(remove=[node, q], add=[fused], anchor=node)


def _rewrite_add(ctx: Ctx, add: Node) -> Replacement | str:
    if ctx.value(add.inputs[0]).shape != ctx.value(add.inputs[1]).shape:
        return "the operands broadcast"
    return _binary_on_codes(ctx, add, add.inputs, "QAdd", {"out_lo": None, "out_hi": None}, eight_bit=False)


def _match_gate(ctx: Ctx, mul: Node):
    return mul if len(mul.inputs) == 2 and all(_made_by_dq(ctx, i) for i in mul.inputs) else None


def _rewrite_gate(ctx: Ctx, mul: Node) -> Replacement | str:
    """A squeeze-excitation's Mul of a dequantized 4-D tensor by a dequantized value per
    (image, channel): QMul on the codes."""
    shapes = [ctx.value(v).shape for v in mul.inputs]
    full = [k for k, sh in enumerate(shapes) if sh is not None and len(sh) == 4 and sh[2] * sh[3] > 1]
    if len(full) != 1:
        return "not one 4-D operand with a plane"
    a, b = mul.inputs[full[0]], mul.inputs[1 - full[0]]
    n, c = ctx.value(a).shape[:2]
    if tuple(ctx.value(b).shape or ()) != (n, c, 1, 1):
        return "the other operand is not one value per (image, channel)"
    return _binary_on_codes(ctx, mul, (a, b), "QMul", {}, eight_bit=True)


def _match_global_pool(ctx: Ctx, pool: Node):
    return pool if _made_by_dq(ctx, pool.inputs[0]) else None


def _rewrite_global_pool(ctx: Ctx, pool: Node) -> Replacement | str:
    xq, xs, xz, why = _per_tensor_operand(ctx, pool.inputs[0], eight_bit=True)
    if why:
        return why
    if len(ctx.value(xq).shape or ()) != 4:
        return "not a 4-D input"
    q, _, why = _quantized_output(ctx, pool)
    if why:
        return why
    ins = (xq, xs, xz, q.inputs[1], q.inputs[2] if len(q.inputs) > 2 else "")
    node = fused_node(pool, [q], op="QGlobalAveragePool", inputs=ins, outputs=q.outputs, attrs={"precision": PRECISION})
    return Replacement(remove=[pool, q], add=[node], anchor=pool)


TABLE = 256  # codes of an 8-bit value
ELEMENTWISE = frozenset({"Sigmoid", "Relu", "Clip", "Exp", "Neg", "Abs", "Sqrt", "Mul", "Add", "Sub", "Div"})


def _is_table(ctx: Ctx, node: Node | None) -> bool:
    """A Gather of a constant 256-entry table by an 8-bit value (what the table rule makes)."""
    if node is None or node.op != "Gather" or int(node.attrs.get("axis", 0)) != 0:
        return False
    data = ctx.const(node.inputs[0])
    return data is not None and data.shape == (TABLE,) and ctx.value(node.inputs[1]).dtype in ("uint8", "int8")


def _per_tensor_q(ctx: Ctx, node: Node) -> bool:
    params = [node.inputs[i] if i < len(node.inputs) else "" for i in (1, 2)]
    return all(not p or (ctx.const(p) is not None and np.asarray(ctx.const(p)).size == 1) for p in params)


def _match_table(ctx: Ctx, q: Node):
    """Structure only: a QuantizeLinear of an elementwise op's, a DequantizeLinear's or a table's output."""
    p = ctx.producer(q.inputs[0])
    return q if p is not None and (p.op in ELEMENTWISE or p.op == "DequantizeLinear") else None


def _island(ctx: Ctx, q: Node):
    """(the quantized input x, the island's nodes in graph order) or why not (see the module doc)."""
    shape = ctx.value(q.inputs[0]).shape
    nodes: dict[str, Node] = {}
    leaves: set[str] = set()
    stack, seen = [q.inputs[0]], set()
    while stack:
        v = stack.pop()
        if not v or v in seen:
            continue
        seen.add(v)
        if ctx.const(v) is not None:
            if np.asarray(ctx.const(v)).size != 1:
                return f"the island reads the non-scalar constant {v!r}"
            continue
        if ctx.value(v).shape != shape:
            return f"{v!r} has shape {ctx.value(v).shape}, not {shape} (a broadcast)"
        p = ctx.producer(v)
        if p is None:
            return f"the island reads the graph input {v!r}"
        nodes[p.name] = p
        if p.op == "DequantizeLinear" or _is_table(ctx, p):
            if p.op == "DequantizeLinear" and not _per_tensor_q(ctx, p):
                return f"{p.name!r} is not per tensor with constant parameters"
            src = p.inputs[0] if p.op == "DequantizeLinear" else p.inputs[1]
            if _is_table(ctx, ctx.producer(src)):
                stack.append(src)
            else:
                leaves.add(src)
        elif p.op == "QuantizeLinear" and _per_tensor_q(ctx, p) or p.op in ELEMENTWISE and can_evaluate(p.op):
            stack.extend(p.inputs)
        else:
            return f"{p.op} {p.name!r} is not elementwise"
    if len(leaves) != 1:
        return f"the island reads {len(leaves)} quantized values"
    (x,) = leaves
    if ctx.value(x).dtype not in ("uint8", "int8"):
        return f"{x!r} is {ctx.value(x).dtype}, not 8-bit"
    return x, sorted(nodes.values(), key=lambda n: ctx.position[n.name])


def _rewrite_table(ctx: Ctx, q: Node) -> Replacement | str:
    if not _per_tensor_q(ctx, q) or ctx.value(q.outputs[0]).dtype not in ("uint8", "int8"):
        return f"{q.name!r} does not quantize per tensor to 8 bits"
    found = _island(ctx, q)
    if isinstance(found, str):
        return found
    x, island = found
    env = {x: np.arange(TABLE, dtype=np.uint8).view(ctx.value(x).dtype)}  # code i at entry i: x's bits as uint8
    for n in [*island, q]:
        ins = [env[i] if i in env else (ctx.const(i) if i else None) for i in n.inputs]
        outs = [Value(o, (TABLE,), ctx.value(o).dtype) for o in n.outputs]
        env.update(zip(n.outputs, evaluate_node(n, ins, outs)))
    name = fresh_value_name(ctx, q.outputs[0] + "_table")
    node = fused_node(
        q,
        island,
        ["table"],
        op="Gather",
        inputs=(name, x),
        outputs=q.outputs,
        attrs={"axis": 0, "precision": PRECISION},
    )
    return Replacement(remove=[q], add=[node], anchor=q, constants={name: env[q.outputs[0]]})


def _match_max_pool(ctx: Ctx, pool: Node):
    return pool if len(pool.outputs) == 1 and _made_by_dq(ctx, pool.inputs[0]) else None


def _same_params(ctx: Ctx, dq: Node, q: Node) -> bool:
    """Whether q quantizes with dq's per-tensor scale and zero point (q(dq(x)) == x)."""
    if not (_per_tensor_q(ctx, dq) and _per_tensor_q(ctx, q)) or len(dq.inputs) < 2 or len(q.inputs) < 2:
        return False
    zd = _zero_point(ctx, dq.inputs[2] if len(dq.inputs) > 2 else "")
    zq = _zero_point(ctx, q.inputs[2] if len(q.inputs) > 2 else "")
    sd, sq = (float(np.asarray(ctx.const(n.inputs[1])).reshape(-1)[0]) for n in (dq, q))
    return sd == sq > 0 and zd == zq


def _rewrite_max_pool(ctx: Ctx, pool: Node) -> Replacement | str:
    dq = ctx.producer(pool.inputs[0])
    q, _, why = _quantized_output(ctx, pool)
    if why:
        return why
    if ctx.value(dq.inputs[0]).dtype != ctx.value(q.outputs[0]).dtype or not _same_params(ctx, dq, q):
        return f"{q.name!r} does not quantize with {dq.name!r}'s scale, zero point and type"
    node = fused_node(
        pool, [q], inputs=(dq.inputs[0],), outputs=q.outputs, attrs={**pool.attrs, "precision": PRECISION}
    )
    return Replacement(remove=[pool, q], add=[node], anchor=pool)


def _match_concat(ctx: Ctx, concat: Node):
    return concat if all(_made_by_dq(ctx, i) for i in concat.inputs) else None


def _rewrite_concat(ctx: Ctx, concat: Node) -> Replacement | str:
    q, _, why = _quantized_output(ctx, concat)
    if why:
        return why
    dtype = ctx.value(q.outputs[0]).dtype
    if dtype not in ("uint8", "int8"):
        return f"{q.name!r} quantizes to {dtype}"
    scale = np.asarray(ctx.const(q.inputs[1]), np.float32).reshape(())
    zp = np.asarray(ctx.const(q.inputs[2]) if len(q.inputs) > 2 and q.inputs[2] else 0).astype(dtype).reshape(())
    inputs, tables, constants = [], [], {}
    for v in concat.inputs:
        dq = ctx.producer(v)
        x = dq.inputs[0]
        if not _per_tensor_q(ctx, dq) or ctx.value(x).dtype not in ("uint8", "int8"):
            return f"{dq.name!r} does not dequantize 8 bits per tensor with constant parameters"
        if ctx.value(x).dtype == dtype and _same_params(ctx, dq, q):
            inputs.append(x)  # q(dq(x)) == x
            continue
        codes = np.arange(TABLE, dtype=np.uint8).view(ctx.value(x).dtype)
        zx = ctx.const(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] else None
        table = qnt.quantize(qnt.dequantize(codes, ctx.const(dq.inputs[1]), zx), scale, zp, dtype)
        name = fresh_value_name(ctx, x + "_requantized", constants)
        tname = fresh_value_name(ctx, name + "_table", [*constants, name])
        constants[tname] = np.asarray(table, dtype)
        ctx.graph.values[name] = Value(name, ctx.value(x).shape, dtype)
        attrs = {"axis": 0, "precision": PRECISION}
        origin = (*dq.origin, *concat.origin) or (dq.name, concat.name)
        tables.append(Node("Gather", (tname, x), (name,), attrs, name=unique_node_name(ctx, name), origin=origin))
        inputs.append(name)
    node = fused_node(
        concat, [q], inputs=tuple(inputs), outputs=q.outputs, attrs={**concat.attrs, "precision": PRECISION}
    )
    return Replacement(remove=[concat, q], add=[*tables, node], anchor=concat, constants=constants)


RULES = [
    Rule("DequantizeLinear -> Conv -> QuantizeLinear -> QConv", ("Conv",), _match_conv, _rewrite_conv),
    Rule(
        "DequantizeLinear -> Concat -> QuantizeLinear -> Concat of the codes",
        ("Concat",),
        _match_concat,
        _rewrite_concat,
    ),
    Rule("DequantizeLinear -> Add -> QuantizeLinear -> QAdd", ("Add",), _match_add, _rewrite_add),
    Rule("DequantizeLinear -> Mul by a channel gate -> QuantizeLinear -> QMul", ("Mul",), _match_gate, _rewrite_gate),
    Rule(
        "DequantizeLinear -> GlobalAveragePool -> QuantizeLinear -> QGlobalAveragePool",
        ("GlobalAveragePool",),
        _match_global_pool,
        _rewrite_global_pool,
    ),
    Rule(
        "DequantizeLinear -> MaxPool -> QuantizeLinear -> MaxPool of the codes",
        ("MaxPool",),
        _match_max_pool,
        _rewrite_max_pool,
    ),
    Rule(
        "DequantizeLinear -> elementwise -> QuantizeLinear -> table", ("QuantizeLinear",), _match_table, _rewrite_table
    ),
]


def fuse_qdq(graph: Graph) -> PassResult:
    """Fuse the QDQ groups into QConv / QAdd; see the module docstring."""
    return apply_rules(graph, RULES)
