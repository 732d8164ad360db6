"""Shape inference for the IR ops: output shapes from input shapes and attributes.

Each function takes the node's attributes with the table's defaults filled in
(:func:`cnnrt.core.ops.op_attrs`) and the input shapes (None for an omitted optional input),
and returns one shape per output. A dimension the IR does not determine is None and is not
checked: pool outputs (ceil_mode is resolved into the output shape at import), transposed
convolutions (output_padding is whatever the output adds past the pads), Resize from
``sizes`` (the scale is a float32 ratio) and ConstantOfShape (its shape is its Value's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnrt.core.const_eval import slice_index

Shape = tuple[int | None, ...]
Attrs = Mapping[str, Any]


def same(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """Every output has the first input's shape (elementwise, normalisation, views)."""
    return [tuple(x[0])] * nout


def broadcast(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """numpy broadcasting of every input."""
    return [tuple(np.broadcast_shapes(*[tuple(s) for s in x if s is not None]))]


def _window(size: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    return (size + p0 + p1 - (k - 1) * d - 1) // s + 1


def conv(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    n, _, h, w = x[0]
    m, _, kh, kw = x[1]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["strides"], a["dilations"], a["pads"]
    return [(n, m, _window(h, kh, sh, dh, pt, pb), _window(w, kw, sw, dw, pl, pr))]


def conv_transpose(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    return [(x[0][0], x[1][1] * int(a["group"]), None, None)]


def pool(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """N and C kept; spatial size from the import (ceil_mode is not an IR attribute)."""
    return [(*x[0][:2], None, None)] * nout


def global_pool(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    return [(*x[0][:2], *(1,) * (len(x[0]) - 2))]


def gemm(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    ma = x[0][1] if a["trans_a"] else x[0][0]
    nb = x[1][0] if a["trans_b"] else x[1][1]
    return [(ma, nb)]


def matmul(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    sa, sb = tuple(x[0]), tuple(x[1])
    a2 = (1, *sa) if len(sa) == 1 else sa
    b2 = (*sb, 1) if len(sb) == 1 else sb
    out = (*np.broadcast_shapes(a2[:-2], b2[:-2]), a2[-2], b2[-1])
    if len(sa) == 1:
        out = out[:-2] + out[-1:]
    if len(sb) == 1:
        out = out[:-1]
    return [tuple(out)]


def concat(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    axis = int(a["axis"]) % len(x[0])
    out = list(x[0])
    out[axis] = sum(s[axis] for s in x)
    return [tuple(out)]


def split(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    axis = int(a["axis"]) % len(x[0])
    return [tuple(size if i == axis else d for i, d in enumerate(x[0])) for size in a["sizes"]]


def slice_(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    index = slice_index(a["starts"], a["ends"], a["steps"])
    return [tuple(len(range(d)[s]) for d, s in zip(x[0], index)) + tuple(x[0][len(index) :])]


def reshape(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    return [tuple(int(d) for d in a["shape"])]


def transpose(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    return [tuple(x[0][p] for p in a["perm"])]


def pad(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    n = len(a["pads"]) // 2
    return [tuple(d + int(a["pads"][i]) + int(a["pads"][i + n]) for i, d in enumerate(x[0]))]


def resize(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """Axes with scale 1 keep their size; the others come from the import (see the module doc)."""
    return [tuple(d if s == 1.0 else None for d, s in zip(x[0], a["scales"]))]


def depth_to_space(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    n, c, h, w = x[0]
    b = int(a["blocksize"])
    return [(n, c // (b * b), h * b, w * b)]


def space_to_depth(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    n, c, h, w = x[0]
    b = int(a["blocksize"])
    return [(n, c * b * b, h // b, w // b)]


def block_rearrangement(op: str, blocksize: int, mode: str, shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """DepthToSpace / SpaceToDepth as (6-D view of the input, transposition): the output is
    ``x.reshape(view).transpose(perm)`` in row-major order (ONNX's definitions of both modes)."""
    n, c, h, w = (int(d) for d in shape)
    b = int(blocksize)
    if op == "DepthToSpace":
        if mode == "DCR":
            return (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
        return (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
    split = (n, c, h // b, b, w // b, b)
    return split, ((0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4))


def shape(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    return [(len(range(len(x[0]))[a["start"] : a["end"]]),)]


def unknown(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """Outputs whose shape is their Value's (ConstantOfShape)."""
    return [None] * nout


def gather(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    axis = int(a["axis"]) % len(x[0])
    return [(*x[0][:axis], *x[1], *x[0][axis + 1 :])]


def reduce_mean(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    rank = len(x[0])
    axes = {int(i) % rank for i in a["axes"]} if a["axes"] else set(range(rank))
    return [tuple(1 if i in axes else d for i, d in enumerate(x[0]) if a["keepdims"] or i not in axes)]


# -- channel-blocked ops: a blocked value is (N, C/B, H, W, B) (see passes/block_layout.py)


def reorder_to_blocked(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    n, c, h, w = x[0]
    b = int(a["block"])
    return [(n, -(-c // b), h, w, b)]  # the last block zero padded


def blocked_split(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """Each piece of ``sizes`` channels in whole blocks of the input's B."""
    n, _, h, w, b = x[0]
    return [(n, -(-int(c) // b), h, w, b) for c in a["sizes"]]


def blocked_concat(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """The ``sizes`` channels of the inputs, one after another, in whole blocks of B."""
    n, _, h, w, b = x[0]
    return [(n, -(-sum(int(c) for c in a["sizes"]) // b), h, w, b)]


def blocked_channel_shuffle(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """Each piece of ``splits`` channels in whole blocks of the first input's B."""
    n, _, h, w, b = x[0]
    return [(n, -(-int(c) // b), h, w, b) for c in a["splits"]]


def reorder_from_blocked(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """C is at most the blocks' channels: a cropping reorder drops a conv's padding channels."""
    n, _, h, w, _ = x[0]
    return [(n, None, h, w)]


def blocked_conv(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """Whole blocks of the weights' M; B is the input's when it is blocked (a stem reads NCHW)."""
    lanes = x[0][4] if len(x[0]) == 5 else None
    plain = (*x[0][:1], x[0][1] * x[0][4], *x[0][2:4]) if len(x[0]) == 5 else tuple(x[0])
    _, _, oh, ow = conv(a, [plain, x[1]], 1)[0]
    blocks = -(-x[1][0] // lanes) if lanes else None
    return [(x[0][0], blocks, oh, ow, lanes)]


def blocked_pool(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    return [(*x[0][:2], None, None, x[0][4])]


def blocked_global_pool(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    return [(*x[0][:2], 1, 1, x[0][4])]


# -- ops of cnnrt.core.ops.MODERN_OPS


def arg_reduce(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    axis = int(a["axis"]) % len(x[0])
    return [tuple(1 if i == axis else d for i, d in enumerate(x[0]) if a["keepdims"] or i != axis)]


def layer_norm(a: Attrs, x: Sequence, nout: int) -> list[Shape]:
    """Y as X; Mean and InvStdDev keep X's leading axes, the normalised ones as 1."""
    axis = int(a["axis"]) % len(x[0])
    stats = tuple(x[0][:axis]) + (1,) * (len(x[0]) - axis)
    return [tuple(x[0]), stats, stats][:nout]
