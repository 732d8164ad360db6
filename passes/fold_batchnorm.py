"""fold_batchnorm: BatchNormalization into the preceding Conv/ConvTranspose/Gemm, else ChannelAffine.

With k = scale / sqrt(var + eps) and t = B - mean * k, inference BN is y = x * k + t per
channel (axis 1). Folded into the producer, the producer's weights are scaled per output
channel by k and its bias becomes bias * k + t. Where no foldable producer exists (BN after
Concat, Add, a pool, a fused activation, or on a graph input, as in DenseNet's BN-ReLU-Conv)
BN becomes ``ChannelAffine(X, k, t)``, which fuse_epilogue can then merge with the
following activation.

Requires: a verified graph; BN parameters as constants (run fold_constants first).
Guarantees: every BN with constant per-channel parameters is gone. Folded weights and
biases are *new* constants with fresh names (a weight may be shared by other nodes, so no
array is modified); the arithmetic is done in float64 and cast back to the weight dtype.
Declines, logged: producer output has other consumers or is a graph output; producer
weights/bias not constant; producer already has a fused activation or residual (BN would
apply after them); dtypes differ; per-activation (spatial=0) parameters (those stay BN).
Run after: remove_identity, fold_constants. Run before: fuse_epilogue.
"""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph, Node

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules, fresh_value_name, fused_node, sole_use, unique_node_name

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


def _bn_affine(ctx: Ctx, bn: Node) -> tuple[np.ndarray, np.ndarray] | str:
    """(k, t) in float64, or why BN's parameters cannot be used."""
    params = [ctx.const(p) for p in bn.inputs[1:5]]
    if any(p is None for p in params):
        missing = [p for p in bn.inputs[1:5] if ctx.const(p) is None]
        return f"BN parameter(s) {missing} are not constants"
    c = ctx.value(bn.inputs[0]).shape[1]
    if any(p.shape != (c,) for p in params):
        return f"BN parameters are per-activation {list(params[0].shape)}, not per-channel [{c}]"
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    k = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return k, bias - mean * k


def _match_fold(ctx: Ctx, bn: Node):
    p = ctx.producer(bn.inputs[0])
    if p is None:
        return bn, None
    return bn, p


def _rewrite_fold(ctx: Ctx, m) -> Replacement | str:
    bn, p = m
    x = bn.inputs[0]
    if p is None:
        return "BN input is a graph input" if x in ctx.graph.inputs else "BN input is a constant"
    if p.op not in FOLDABLE:
        return f"BN input comes from {p.op} {p.name!r}, not from Conv/ConvTranspose/Gemm"
    why = sole_use(ctx, x, bn)
    if why:
        return why
    affine = _bn_affine(ctx, bn)
    if isinstance(affine, str):
        return affine
    k, t = affine
    if p.attrs.get("activation", "none") != "none":
        return f"{p.op} {p.name!r} already has activation {p.attrs['activation']}"
    if p.op == "Conv" and len(p.inputs) > 3 and p.inputs[3]:
        return f"Conv {p.name!r} already has a residual input"
    w = ctx.const(p.inputs[1])
    if w is None:
        return f"{p.op} weight {p.inputs[1]!r} is not a constant"
    b_name = p.inputs[2] if len(p.inputs) > 2 else ""
    b = ctx.const(b_name)
    if b_name and b is None:
        return f"{p.op} bias {b_name!r} is not a constant"
    if ctx.value(x).dtype != ctx.value(bn.outputs[0]).dtype or w.dtype != np.dtype(ctx.value(x).dtype):
        return "dtypes of the producer's weight and BN differ"
    if p.op == "Gemm" and p.attrs.get("trans_a", 0) not in (0, 1):
        return "unexpected Gemm trans_a"
    new_w, new_b, extra = _fold(p, w, b, k, t)
    if isinstance(new_w, str):
        return new_w
    if not (np.isfinite(new_w).all() and np.isfinite(new_b).all()) and np.isfinite(w).all():
        # the unfolded graph may stay finite (or saturate differently): never trade an answer for speed
        return "folded weights would overflow float32 (weight x BN scale beyond the float32 range)"
    wn = fresh_value_name(ctx, p.inputs[1] + "_bnfold")
    bname = fresh_value_name(ctx, (b_name or p.outputs[0] + "_bias") + "_bnfold", reserved=[wn])
    inputs = (p.inputs[0], wn, bname) + tuple(p.inputs[3:])
    removed = [p, bn]
    node = fused_node(p, [bn], inputs=inputs, outputs=bn.outputs, attrs={**p.attrs, **extra})
    node = node.replace(name=unique_node_name(ctx, node.name, ignore=[n.name for n in removed]))
    consts = {wn: new_w, bname: new_b.astype(w.dtype)}
    return Replacement(remove=removed, add=[node], anchor=p, constants=consts)


def _scaled(w: np.ndarray, k: np.ndarray) -> np.ndarray:
    """w * k computed in float64 and rounded once to w's dtype (no float64 copy of w)."""
    out = np.empty(w.shape, dtype=w.dtype)
    np.multiply(w, k, out=out, dtype=np.float64, casting="unsafe")
    return out


def _fold(p: Node, w: np.ndarray, b: np.ndarray | None, k: np.ndarray, t: np.ndarray):
    """Folded (weight, bias in float64, attr changes)."""
    if p.op == "Conv":
        m = w.shape[0]
        old_b = np.zeros(m) if b is None else b.astype(np.float64)
        return _scaled(w, k.reshape(m, 1, 1, 1)), old_b * k + t, {}
    if p.op == "ConvTranspose":
        cin, mg = w.shape[0], w.shape[1]
        g = int(p.attrs.get("group", 1))
        # output channel of W[c, j] is (c // (cin/g)) * mg + j
        out_ch = (np.arange(cin)[:, None] // (cin // g)) * mg + np.arange(mg)[None, :]
        old_b = np.zeros(mg * g) if b is None else b.astype(np.float64)
        return _scaled(w, k[out_ch][:, :, None, None]), old_b * k + t, {}
    # Gemm: y = alpha * A' @ B' + beta * C; output channels are B' columns.
    beta = float(p.attrs.get("beta", 1.0))
    new_w = _scaled(w, k[:, None] if p.attrs.get("trans_b", 0) else k[None, :])
    n = k.shape[0]
    if b is None or beta == 0.0:
        return new_w, t.reshape(n), {"beta": 1.0}
    c = b.astype(np.float64) * beta
    if c.ndim == 2 and c.shape[0] != 1:
        new_c = c * k[None, :] + t[None, :]
    else:
        new_c = np.broadcast_to(c.reshape(-1) if c.ndim else c, (n,)) * k + t
    return new_w, new_c, {"beta": 1.0}


def _match_affine(ctx: Ctx, bn: Node):
    return bn


def _rewrite_affine(ctx: Ctx, bn: Node) -> Replacement | str:
    if len(ctx.value(bn.inputs[0]).shape) < 2:
        return "BN input has rank < 2"
    if not np.dtype(ctx.value(bn.inputs[0]).dtype).kind == "f":
        return "BN input is not floating point"
    affine = _bn_affine(ctx, bn)
    if isinstance(affine, str):
        return affine
    k, t = affine
    dtype = np.dtype(ctx.value(bn.inputs[0]).dtype)
    kn = fresh_value_name(ctx, bn.name + "/scale")
    tn = fresh_value_name(ctx, bn.name + "/shift", reserved=[kn])
    node = bn.replace(
        op="ChannelAffine",
        inputs=(bn.inputs[0], kn, tn),
        attrs={"activation": "none", "act_alpha": 0.0, "act_beta": 0.0},
        name=unique_node_name(ctx, bn.name + "->ChannelAffine", ignore=[bn.name]),
        origin=bn.origin or (bn.name,),
    )
    return Replacement(remove=[bn], add=[node], anchor=bn, constants={kn: k.astype(dtype), tn: t.astype(dtype)})


RULES = [
    Rule(
        "Conv/ConvTranspose/Gemm + BatchNormalization -> Conv/ConvTranspose/Gemm",
        ("BatchNormalization",),
        _match_fold,
        _rewrite_fold,
    ),
    Rule("BatchNormalization -> ChannelAffine", ("BatchNormalization",), _match_affine, _rewrite_affine),
]


def fold_batchnorm(graph: Graph) -> PassResult:
    """Fold every BN into its producer or turn it into ChannelAffine; see the module docstring."""
    return apply_rules(graph, RULES)
