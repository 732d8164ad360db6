"""fold_affine_concat: a ChannelAffine (+ its activation) after a channel Concat of Convs, into the Convs.

MixNet's mixed depthwise conv is Split → one depthwise Conv per channel group → Concat → BN →
activation: BN has no single producer to fold into (fold_batchnorm leaves a ChannelAffine,
fuse_epilogue gives it the activation), so the affine is a pass of its own over the whole
expanded tensor. Per channel it is y = act(x * k + t), and the Concat's channel c comes from
exactly one Conv's output channel, so each Conv takes its slice: weights scaled by k per
output channel, bias b * k + t, and the activation as its epilogue. The Concat then reads the
finished values and the affine is gone.

Requires: fold_batchnorm and fuse_epilogue have run (the affine carries its activation).
Guarantees: the Concat keeps its inputs' names and takes the affine's output name; each Conv
keeps its output name and gains the affine's origin; folded weights and biases are new
constants (fresh names, float64 arithmetic rounded once), the old arrays are not modified.
Declines, logged: the Concat is not along the channels, its output has other readers or is a
graph output, an input is not a Conv or feeds anything else (or twice), a Conv already has an
activation or a residual, its weight or bias is not a constant, the affine's scale/shift are
not per-channel constants, dtypes differ, or the folded weights would overflow.
Run after: fuse_epilogue. Run before: fuse_se (which reads the affine's output), concat_in_place.
"""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph, Node
from cnnrt.core.ops import attr

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules, fresh_value_name, fused_node, sole_use, unique_node_name


def _match(ctx: Ctx, affine: Node):
    cat = ctx.producer(affine.inputs[0])
    if cat is None or cat.op != "Concat":
        return None
    return affine, cat


def _conv_guard(ctx: Ctx, cat: Node, x: str, dtype: np.dtype) -> Node | str:
    """The Conv producing Concat input ``x``, or why it cannot take its slice of the affine."""
    conv = ctx.producer(x)
    if conv is None or conv.op != "Conv":
        return f"Concat input {x!r} does not come from a Conv"
    why = sole_use(ctx, x, cat)
    if why:
        return why
    if attr(conv, "activation") != "none":
        return f"Conv {conv.name!r} already has activation {conv.attrs['activation']}"
    if len(conv.inputs) > 3 and conv.inputs[3]:
        return f"Conv {conv.name!r} has a residual input"
    w = ctx.const(conv.inputs[1])
    if w is None or w.dtype != dtype:
        return f"Conv {conv.name!r} weight is not a {dtype} constant"
    if len(conv.inputs) > 2 and conv.inputs[2] and ctx.const(conv.inputs[2]) is None:
        return f"Conv {conv.name!r} bias is not a constant"
    return conv


def _rewrite(ctx: Ctx, m) -> Replacement | str:
    affine, cat = m
    y = cat.outputs[0]
    shape = ctx.value(y).shape
    if len(shape) != 4 or int(cat.attrs["axis"]) % 4 != 1:
        return "the Concat is not along the channels of a 4-D tensor"
    why = sole_use(ctx, y, affine)
    if why:
        return why
    if len(set(cat.inputs)) != len(cat.inputs):
        return "the Concat reads one value twice"
    dtype = np.dtype(ctx.value(y).dtype)
    c = shape[1]
    k, t = ctx.const(affine.inputs[1]), ctx.const(affine.inputs[2])
    if k is None or t is None or k.shape != (c,) or t.shape != (c,):
        return "the affine's scale/shift are not per-channel constants"
    convs = []
    for x in cat.inputs:
        conv = _conv_guard(ctx, cat, x, dtype)
        if isinstance(conv, str):
            return conv
        convs.append(conv)
    k64, t64 = k.astype(np.float64), t.astype(np.float64)
    act = {a: affine.attrs[a] for a in ("activation", "act_alpha", "act_beta") if a in affine.attrs}
    new_convs, consts, c0 = [], {}, 0
    taken: list[str] = []
    for conv in convs:
        w = ctx.const(conv.inputs[1])
        mo = w.shape[0]
        ks, ts = k64[c0 : c0 + mo], t64[c0 : c0 + mo]
        c0 += mo
        b_name = conv.inputs[2] if len(conv.inputs) > 2 else ""
        b = np.zeros(mo) if not b_name else ctx.const(b_name).astype(np.float64)
        new_w = np.empty(w.shape, w.dtype)
        np.multiply(w, ks.reshape(mo, 1, 1, 1), out=new_w, dtype=np.float64, casting="unsafe")
        new_b = (b * ks + ts).astype(w.dtype)
        if np.isfinite(w).all() and not (np.isfinite(new_w).all() and np.isfinite(new_b).all()):
            return f"folded weights of Conv {conv.name!r} would overflow {dtype}"
        wn = fresh_value_name(ctx, conv.inputs[1] + "_affine", reserved=taken)
        bn = fresh_value_name(ctx, (b_name or conv.outputs[0] + "_bias") + "_affine", reserved=[*taken, wn])
        taken += [wn, bn]
        consts[wn], consts[bn] = new_w, new_b
        node = fused_node(conv, [affine], inputs=(conv.inputs[0], wn, bn), attrs={**conv.attrs, **act})
        new_convs.append(node.replace(name=unique_node_name(ctx, node.name, ignore=[conv.name])))
    new_cat = cat.replace(outputs=affine.outputs)
    return Replacement(remove=[*convs, cat, affine], add=[*new_convs, new_cat], anchor=cat, constants=consts)


RULES = [Rule("Conv... → Concat → ChannelAffine -> Conv(affine)... → Concat", ("ChannelAffine",), _match, _rewrite)]


def fold_affine_concat(graph: Graph) -> PassResult:
    """Fold each per-channel affine after a Concat of Convs into the Convs; see the module docstring."""
    return apply_rules(graph, RULES)
