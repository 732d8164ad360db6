"""numpy evaluation of cheap IR ops on known values.

Used by the frontend to resolve shape arithmetic (Shape -> Gather -> Concat -> Reshape) at
import time, and by constant folding. Heavy ops (Conv, pools, ...) have no evaluator
and stay in the graph. Each evaluator takes the node's attributes with defaults filled, the
input arrays and the output Values; the op table (cnnrt.core.ops, field ``evaluate``) says
which op uses which, and ``cnnrt.core.ops.evaluate_node`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def view(a, x, outs):
    return [x[0].reshape(outs[0].shape)]


def shape(a, x, outs):
    return [np.array(x[0].shape[a["start"] : a["end"]], dtype=np.int64)]


def gather(a, x, outs):
    return [np.take(x[0], x[1].astype(np.int64), axis=a["axis"])]


def cast(a, x, outs):
    return [x[0].astype(a["to"])]


def concat(a, x, outs):
    return [np.concatenate(x, axis=a["axis"])]


def slice_index(starts: Sequence[int], ends: Sequence[int], steps: Sequence[int]) -> tuple[slice, ...]:
    """numpy index for IR Slice attrs: a negative step's ``end == -1`` means "through index 0"."""
    return tuple(slice(s, None if e < 0 else e, st) for s, e, st in zip(starts, ends, steps))


def slice_(a, x, outs):
    return [x[0][slice_index(a["starts"], a["ends"], a["steps"])]]


def pad_widths(pads: Sequence[int]) -> list[tuple[int, int]]:
    """IR Pad ``pads`` (begin.., end..) as numpy.pad's per-axis (before, after) pairs."""
    n = len(pads) // 2
    return [(int(pads[i]), int(pads[i + n])) for i in range(n)]


def pad(a, x, outs):
    if a["mode"] == "constant":
        return [np.pad(x[0], pad_widths(a["pads"]), mode="constant", constant_values=a["value"])]
    return [np.pad(x[0], pad_widths(a["pads"]), mode=a["mode"])]


def transpose(a, x, outs):
    return [np.transpose(x[0], a["perm"])]


def constant_of_shape(a, x, outs):
    return [np.full(outs[0].shape, a["value"], dtype=outs[0].dtype)]


def _fold(f):
    """A variadic (or binary) op as a left fold of the numpy ufunc ``f``."""

    def run(a, x, outs):
        acc = x[0]
        for b in x[1:]:
            acc = f(acc, b)
        return [acc]

    return run


add = sum_ = _fold(np.add)
sub = _fold(np.subtract)
mul = _fold(np.multiply)
maximum = _fold(np.maximum)
minimum = _fold(np.minimum)


def div(a, x, outs):
    n, d = x
    if np.issubdtype(n.dtype, np.integer) and np.issubdtype(d.dtype, np.integer):
        # ONNX integer Div truncates toward zero; n - fmod(n, d) divides exactly (no float detour).
        return [(n - np.fmod(n, d)) // d]
    return [n / d]


def split(a, x, outs):
    cuts = np.cumsum(a["sizes"])[:-1]
    return np.split(x[0], cuts, axis=a["axis"])


def relu(a, x, outs):
    return [np.maximum(x[0], 0)]


def sigmoid(a, x, outs):
    """1 / (1 + exp(-x)) in x's dtype (exp overflowing to inf gives 0, the limit)."""
    one = np.ones((), x[0].dtype)
    return [one / (one + np.exp(-x[0]))]


def clip(a, x, outs):
    return [np.clip(x[0], a["min"], a["max"])]


def reduce_mean(a, x, outs):
    return [np.mean(x[0], axis=tuple(a["axes"]), keepdims=bool(a["keepdims"]))]


# -- math, comparison and reduction ops (cnnrt.core.ops.MODERN_OPS)


def unary(f):
    """An elementwise one-input op as the numpy ufunc ``f``."""
    return lambda a, x, outs: [f(x[0])]


def binary(f):
    return lambda a, x, outs: [f(x[0], x[1])]


def where(a, x, outs):
    return [np.where(x[0], x[1], x[2])]


def expand(a, x, outs):
    return [np.broadcast_to(x[0], outs[0].shape)]


def reduction(f):
    """A Reduce* op as the numpy reduction ``f`` over the node's axes."""
    return lambda a, x, outs: [f(x[0], axis=tuple(a["axes"]), keepdims=bool(a["keepdims"]))]


def arg_reduce(f):
    """ArgMax/ArgMin as ``f`` (np.argmax/np.argmin); the last extreme index with select_last_index."""

    def run(a, x, outs):
        axis, keep = int(a["axis"]), bool(a["keepdims"])
        if not a["select_last_index"]:
            return [f(x[0], axis=axis, keepdims=keep).astype(np.int64)]
        flipped = f(np.flip(x[0], axis), axis=axis, keepdims=keep)
        return [(x[0].shape[axis] - 1 - flipped).astype(np.int64)]

    return run


def reduce_l2(a, x, outs):
    return [np.sqrt(np.sum(np.square(x[0]), axis=tuple(a["axes"]), keepdims=bool(a["keepdims"])))]
