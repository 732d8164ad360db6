"""numpy evaluation of cheap IR ops on known values.

Used by the frontend to resolve shape arithmetic (Shape -> Gather -> Concat -> Reshape) at
import time, and by constant folding. Heavy ops (Conv, pools, ...) are not evaluated here:
``evaluate_node`` returns None and the node stays in the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cnnrt.core.ir import Node, Value

_EVAL: dict[str, Callable[[Node, list[np.ndarray], list[Value]], list[np.ndarray]]] = {}


def _ev(*ops: str):
    def deco(fn):
        for op in ops:
            _EVAL[op] = fn
        return fn

    return deco


def can_evaluate(op: str) -> bool:
    return op in _EVAL


def evaluate_node(node: Node, inputs: Sequence[np.ndarray | None], outs: Sequence[Value]) -> list[np.ndarray] | None:
    """Outputs of ``node`` for these input values, or None when not evaluable here."""
    fn = _EVAL.get(node.op)
    if fn is None:
        return None
    with np.errstate(all="ignore"):
        res = fn(node, list(inputs), list(outs))
    # np.asarray(order="C"), not ascontiguousarray: the latter turns 0-d results into shape (1,)
    return [
        np.asarray(np.asarray(r).astype(v.dtype, copy=False).reshape(v.shape), order="C") for r, v in zip(res, outs)
    ]


@_ev("Identity", "Dropout", "Reshape")
def _view(node, x, outs):
    return [x[0].reshape(outs[0].shape)]


@_ev("Shape")
def _shape(node, x, outs):
    return [np.array(x[0].shape[node.attrs.get("start", 0) : node.attrs.get("end")], dtype=np.int64)]


@_ev("Gather")
def _gather(node, x, outs):
    return [np.take(x[0], x[1].astype(np.int64), axis=node.attrs["axis"])]


@_ev("Cast")
def _cast(node, x, outs):
    return [x[0].astype(node.attrs["to"])]


@_ev("Concat")
def _concat(node, x, outs):
    return [np.concatenate([a for a in x], axis=node.attrs["axis"])]


def slice_index(starts: Sequence[int], ends: Sequence[int], steps: Sequence[int]) -> tuple[slice, ...]:
    """numpy index for IR Slice attrs: a negative step's ``end == -1`` means "through index 0"."""
    return tuple(slice(s, None if e < 0 else e, st) for s, e, st in zip(starts, ends, steps))


@_ev("Slice")
def _slice(node, x, outs):
    a = node.attrs
    return [x[0][slice_index(a["starts"], a["ends"], a["steps"])]]


def pad_widths(pads: Sequence[int]) -> list[tuple[int, int]]:
    """IR Pad ``pads`` (begin.., end..) as numpy.pad's per-axis (before, after) pairs."""
    n = len(pads) // 2
    return [(int(pads[i]), int(pads[i + n])) for i in range(n)]


@_ev("Pad")
def _pad(node, x, outs):
    a = node.attrs
    if a["mode"] == "constant":
        return [np.pad(x[0], pad_widths(a["pads"]), mode="constant", constant_values=a["value"])]
    return [np.pad(x[0], pad_widths(a["pads"]), mode=a["mode"])]


@_ev("Transpose")
def _transpose(node, x, outs):
    return [np.transpose(x[0], node.attrs["perm"])]


@_ev("ConstantOfShape")
def _cos(node, x, outs):
    return [np.full(outs[0].shape, node.attrs["value"], dtype=outs[0].dtype)]


_BIN = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum, "Min": np.minimum, "Sum": np.add}


@_ev("Add", "Sub", "Mul", "Sum", "Max", "Min")
def _binary(node, x, outs):
    f = _BIN[node.op]
    acc = x[0]
    for b in x[1:]:
        acc = f(acc, b)
    return [acc]


@_ev("Div")
def _div(node, x, outs):
    a, b = x
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        # ONNX integer Div truncates toward zero; a - fmod(a, b) divides exactly (no float detour).
        return [(a - np.fmod(a, b)) // b]
    return [a / b]


@_ev("Split")
def _split(node, x, outs):
    cuts = np.cumsum(node.attrs["sizes"])[:-1]
    return np.split(x[0], cuts, axis=node.attrs["axis"])


@_ev("Relu")
def _relu(node, x, outs):
    return [np.maximum(x[0], 0)]


@_ev("Clip")
def _clip(node, x, outs):
    return [np.clip(x[0], node.attrs["min"], node.attrs["max"])]


@_ev("ReduceMean")
def _reduce_mean(node, x, outs):
    return [np.mean(x[0], axis=tuple(node.attrs["axes"]), keepdims=bool(node.attrs["keepdims"]))]
