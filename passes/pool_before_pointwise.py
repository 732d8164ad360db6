"""pool_before_pointwise: an AveragePool after a 1x1 conv runs before it, on the conv's input.

A 1x1 stride-1 conv without padding, activation or residual is the same affine map at every
pixel, y = W x + b, and an AveragePool without padding averages pixels with weights summing
to 1, so pool(conv(x)) = conv(pool(x)): the conv then runs on the pooled pixels. DenseNet's
transition layers (BN -> ReLU -> 1x1 conv -> 2x2 average pool, stride 2) do a quarter of
their multiply-adds that way.

Requires: a verified NCHW graph, after fuse_epilogue (a fused activation or residual on the
conv declines the rewrite). Guarantees: the pool reads the conv's input, the conv the pool's
output and writes the pool's output value; numerics change only in summation order.
Guards (logged): the conv output has one reader (the pool) and is not a graph output; the
conv is 1x1, stride 1, unpadded, without activation or residual; the pool has no padding,
and no window past the input that counts those positions (ceil mode with count_include_pad).
"""

from __future__ import annotations

from cnnrt.core.ir import Value

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules, fresh_value_name, sole_use


def _match(ctx: Ctx, pool):
    conv = ctx.producer(pool.inputs[0])
    if conv is None or conv.op != "Conv" or len(ctx.value(conv.outputs[0]).shape) != 4:
        return None
    return conv, pool


def _declined(ctx: Ctx, conv, pool) -> str | None:
    why = sole_use(ctx, conv.outputs[0], pool)
    if why:
        return why
    a = conv.attrs
    if tuple(ctx.value(conv.inputs[1]).shape[2:]) != (1, 1):
        return "the conv is not 1x1"
    if any(int(s) != 1 for s in a.get("strides", (1, 1))) or any(a.get("pads", (0, 0, 0, 0))):
        return "the conv is strided or padded"
    if a.get("activation", "none") != "none" or (len(conv.inputs) > 3 and conv.inputs[3]):
        return "the conv has a fused activation or residual"
    if any(pool.attrs.get("pads", (0, 0, 0, 0))):
        return "the pool is padded (padding zeros are not the conv's value at 0)"
    if pool.attrs.get("count_include_pad", False) and _overhangs(ctx, pool):
        return "ceil-mode windows that count the positions past the input (weights summing below 1)"
    return None


def _overhangs(ctx: Ctx, pool) -> bool:
    """Whether a window of ``pool`` (ceil mode) reaches past its input."""
    h, w = ctx.value(pool.inputs[0]).shape[2:]
    oh, ow = ctx.value(pool.outputs[0]).shape[2:]
    k, s = pool.attrs["kernel"], pool.attrs.get("strides", (1, 1))
    d = pool.attrs.get("dilations", (1, 1))
    return any(o != (n - (kk - 1) * dd - 1) // ss + 1 for o, n, kk, ss, dd in zip((oh, ow), (h, w), k, s, d))


def _rewrite(ctx: Ctx, m) -> Replacement | str:
    conv, pool = m
    why = _declined(ctx, conv, pool)
    if why:
        return why
    x = ctx.value(conv.inputs[0])
    y = ctx.value(pool.outputs[0])
    pooled = fresh_value_name(ctx, f"{conv.inputs[0]}/pooled")
    ctx.graph.values[pooled] = Value(pooled, (*x.shape[:2], *y.shape[2:]), x.dtype)
    new_pool = pool.replace(inputs=(conv.inputs[0],), outputs=(pooled,))
    new_conv = conv.replace(inputs=(pooled, *conv.inputs[1:]), outputs=pool.outputs)
    return Replacement(remove=[conv, pool], add=[new_pool, new_conv], anchor=conv)


RULES = [Rule("1x1 Conv + AveragePool -> AveragePool + 1x1 Conv", ("AveragePool",), _match, _rewrite)]


def pool_before_pointwise(graph) -> PassResult:
    """Move AveragePools ahead of the 1x1 convs that feed them; see the module docstring."""
    return apply_rules(graph, RULES)
