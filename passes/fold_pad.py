"""fold_pad: a constant-mode Pad on the spatial axes becomes the next Conv's / pool's own padding.

``Pad(X) -> Conv`` and ``Pad(X) -> AveragePool`` fold when the pad value is 0; the
AveragePool must count padding (count_include_pad), or have no padding of its own, in
which case it becomes count_include_pad (the explicit zeros were counted before).
``Pad(X) -> MaxPool`` folds when the pad value is -inf, or when the pad value is 0 and X is
known to be >= 0 (it comes from Relu, Sigmoid, HardSigmoid, Clip(min >= 0) or a node with
such a fused activation, possibly through pools/Pad/Concat/views), because a max over
values >= 0 and zeros equals the max over the values alone.

Requires: a verified NCHW graph. Run before fuse_epilogue? Either order works: Pad reads the
fused node's output, and fold_pad only changes the Pad's reader.
Guarantees: the reader takes X directly and its ``pads`` grow by the Pad's spatial pads.
Guards (logged): Pad output has one reader and is not a graph output; mode is constant;
pads are non-negative and touch only H and W of a rank-4 tensor; the pad value fits the
reader (above); for pools the combined pads stay below the kernel, dilation is 1, and
the output size is what floor division gives (no ceil-mode windows to reinterpret).
"""

from __future__ import annotations

import math

from cnnrt.core.ir import Graph, Node

from . import PassResult
from .rewrite import Ctx, Replacement, Rule, apply_rules, fused_node, sole_use, unique_node_name

READERS = ("Conv", "MaxPool", "AveragePool")
NONNEG_ACTS = ("Relu", "Sigmoid", "HardSigmoid")
PASS_THROUGH = (
    "MaxPool",
    "AveragePool",
    "GlobalMaxPool",
    "GlobalAveragePool",
    "Reshape",
    "Identity",
    "Dropout",
    "Concat",
)


def known_nonnegative(ctx: Ctx, value: str, depth: int = 8) -> bool:
    """Whether ``value`` is >= 0 (or NaN) by construction, looking a few producers back."""
    if depth == 0:
        return False
    p = ctx.producer(value)
    if p is None:
        c = ctx.const(value)
        return c is not None and bool((c >= 0).all())
    act = p.attrs.get("activation", p.op)
    if act in NONNEG_ACTS or (act == "Clip" and _clip_min(p) >= 0):
        return True
    if p.op == "Pad":
        return (
            p.attrs.get("mode", "constant") == "constant"
            and float(p.attrs.get("value", 0.0)) >= 0
            and known_nonnegative(ctx, p.inputs[0], depth - 1)
        )
    if p.op in PASS_THROUGH:
        return all(known_nonnegative(ctx, i, depth - 1) for i in p.inputs if i)
    return False


def _clip_min(p: Node) -> float:
    if p.op == "Clip":
        return float(p.attrs.get("min", -math.inf))
    return float(p.attrs.get("act_alpha", -math.inf))


def _match(ctx: Ctx, pad: Node):
    users = ctx.users(pad.outputs[0])
    if not users or users[0].op not in READERS or users[0].inputs[0] != pad.outputs[0]:
        return None
    return pad, users[0]


def _rewrite(ctx: Ctx, m) -> Replacement | str:
    pad, reader = m
    why = sole_use(ctx, pad.outputs[0], reader)
    if why:
        return why
    mode = pad.attrs.get("mode", "constant")
    if mode != "constant":
        return f"Pad mode is {mode!r}, not constant"
    pads = [int(p) for p in pad.attrs["pads"]]
    rank = len(pads) // 2
    if rank != 4:
        return f"Pad is rank {rank}, not NCHW"
    if any(p < 0 for p in pads):
        return f"Pad crops (negative pads {pads})"
    if any(pads[i] or pads[i + rank] for i in (0, 1)):
        return f"Pad pads the batch or channel axis ({pads})"
    value = float(pad.attrs.get("value", 0.0))
    add = (pads[2], pads[3], pads[6], pads[7])  # top, left, bottom, right
    attrs = dict(reader.attrs)
    if reader.op == "Conv":
        if value != 0.0:
            return f"pad value {value} is not 0"
    else:
        if any(d != 1 for d in attrs.get("dilations", (1, 1))):
            return f"{reader.op} is dilated"
        if reader.op == "AveragePool":
            if value != 0.0:
                return f"pad value {value} is not 0"
            if not attrs.get("count_include_pad", False):
                if any(attrs.get("pads", (0, 0, 0, 0))):
                    return "AveragePool excludes its own padding from the count but the Pad's zeros are counted"
                attrs["count_include_pad"] = True
        elif value != -math.inf and not (value == 0.0 and known_nonnegative(ctx, pad.inputs[0])):
            return f"pad value {value} is neither -inf nor 0 on an input known to be >= 0"
    new_pads = tuple(int(a) + int(b) for a, b in zip(attrs.get("pads", (0, 0, 0, 0)), add))
    if reader.op != "Conv":
        k = attrs["kernel"]
        if max(new_pads[0], new_pads[2]) >= k[0] or max(new_pads[1], new_pads[3]) >= k[1]:
            return f"combined pads {list(new_pads)} would reach the kernel size {list(k)}"
        in_shape = ctx.value(pad.inputs[0]).shape
        out_shape = ctx.value(reader.outputs[0]).shape
        s = attrs["strides"]
        floor_out = tuple((in_shape[2 + i] + new_pads[i] + new_pads[i + 2] - k[i]) // s[i] + 1 for i in (0, 1))
        if floor_out != tuple(out_shape[2:]):
            return f"{reader.op} uses ceil-mode windows ({list(out_shape[2:])} vs floor {list(floor_out)})"
    attrs["pads"] = new_pads
    node = fused_node(reader, [], label=["Pad"], inputs=(pad.inputs[0],) + tuple(reader.inputs[1:]), attrs=attrs)
    node = node.replace(name=unique_node_name(ctx, reader.name + "+Pad", ignore=[pad.name, reader.name]))
    node = node.replace(origin=tuple(dict.fromkeys((pad.origin or (pad.name,)) + node.origin)))
    return Replacement(remove=[pad, reader], add=[node], anchor=pad)


RULES = [Rule("Pad + Conv/MaxPool/AveragePool -> padded reader", ("Pad",), _match, _rewrite)]


def fold_pad(graph: Graph) -> PassResult:
    """Fold Pad nodes into their reader's padding; see the module docstring."""
    return apply_rules(graph, RULES)
