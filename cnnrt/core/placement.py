"""Where a value's bytes live relative to another value's: the :class:`Place` of the memory plan,
and the nesting of Concat inputs inside their output.

Both the concat_in_place pass (which marks the Concats whose inputs can be written straight
into the output) and the memory planner (which places them) must agree on the same nesting,
so the rules live here, below both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnrt.core.ir import Graph, Node


@dataclass(frozen=True)
class Place:
    """How a value's array is made: its own ``buffer``, an ``alias`` of ``base``, or a ``slice``
    ``[start, start + len)`` of ``base`` along ``axis``."""

    kind: str
    base: str = ""
    axis: int = 0
    start: int = 0


def concat_axis(graph: Graph, node: Node) -> int:
    return int(node.attrs["axis"]) % len(graph.values[node.outputs[0]].shape)


def concat_layout(graph: Graph, concats: Sequence[Node]) -> tuple[dict[str, Place], dict[str, str]]:
    """Nest the inputs of ``concats`` inside their outputs, latest Concat first.

    Returns the ``slice`` places (member value -> its container) and, per Concat that cannot
    be laid out consistently, the reason. A value can sit in only one place, so a value read
    by several Concats (DenseNet) works only when those Concats nest: then the smaller
    Concat's output is itself placed as a slice of the bigger one, at the same offset as
    its inputs. Values written by real kernels never overlap.
    """
    parent = _Nesting()
    rejected: dict[str, str] = {}
    noop_outputs: set[str] = set()

    def resolve(v: str) -> tuple[str, int, int | None]:
        axis = None
        start = 0
        while v in parent:
            p = parent[v]
            if axis is not None and p.axis != axis:
                return v, -1, None
            axis, start, v = p.axis, start + p.start, p.base
        return v, start, axis

    for node in reversed(concats):
        mark = len(parent.log)
        why = _place_concat(graph, node, parent, resolve)
        if why is None:
            noop_outputs.add(node.outputs[0])
            # only the root now holding this Concat changed: the others were checked before
            why = _check_disjoint(graph, parent, noop_outputs, resolve, resolve(node.outputs[0])[0])
            if why is not None:
                noop_outputs.discard(node.outputs[0])
        if why is not None:
            parent.rollback(mark)
            rejected[node.name] = why
    return dict(parent), rejected


_MISSING = Place("")


class _Nesting(dict):
    """value -> its Place in a container, with an undo log and each container's direct members, so
    that trying a Concat and checking its root cost time in that root's members, not in the
    whole graph's."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, Place]] = []
        self.members: dict[str, set[str]] = {}

    def __setitem__(self, key: str, place: Place) -> None:
        old = self.get(key, _MISSING)
        self.log.append((key, old))
        self._move(key, old, place)
        super().__setitem__(key, place)

    def rollback(self, mark: int) -> None:
        while len(self.log) > mark:
            key, old = self.log.pop()
            self._move(key, self[key], old)
            if old is _MISSING:
                super().__delitem__(key)
            else:
                super().__setitem__(key, old)

    def _move(self, key: str, old: Place, new: Place) -> None:
        if old is not _MISSING:
            self.members[old.base].discard(key)
        if new is not _MISSING:
            self.members.setdefault(new.base, set()).add(key)

    def under(self, root: str) -> list[str]:
        """``root`` and every value nested in it, at any depth."""
        out, todo = [], [root]
        while todo:
            v = todo.pop()
            out.append(v)
            todo.extend(self.members.get(v, ()))
        return out


def _place_concat(graph: Graph, node: Node, parent: dict[str, Place], resolve) -> str | None:
    out = node.outputs[0]
    axis = concat_axis(graph, node)
    shape = graph.values[out].shape
    if len(set(node.inputs)) != len(node.inputs):
        return "an input appears twice"
    offsets = np.concatenate([[0], np.cumsum([graph.values[i].shape[axis] for i in node.inputs])]).tolist()
    for x, o in zip(node.inputs, offsets):
        xr, xs, xa = resolve(x)
        cr, cs, ca = resolve(out)
        if x not in parent:
            if xr == cr:
                return f"{x!r} already contains the Concat output"
            parent[x] = Place("slice", out, axis, int(o))
            continue
        if xa is not None and xa != axis:
            return f"{x!r} is already a slice along axis {xa}"
        if xr == cr:
            if xs != cs + o:
                return f"{x!r} already sits at offset {xs} of {xr!r}, the Concat needs {cs + o}"
            continue
        if out in parent:
            return f"{x!r} is already placed inside {xr!r}, the Concat output inside {cr!r}"
        # move the whole Concat (not yet placed anywhere) inside x's container
        start = xs - o
        if start < 0 or start + shape[axis] > graph.values[xr].shape[axis] or _other_dims(graph, xr, out, axis):
            return f"{x!r} is already placed inside {xr!r} where the Concat does not fit"
        parent[out] = Place("slice", xr, axis, int(start))
    return None


def _other_dims(graph: Graph, a: str, b: str, axis: int) -> bool:
    sa, sb = graph.values[a].shape, graph.values[b].shape
    return len(sa) != len(sb) or any(x != y for i, (x, y) in enumerate(zip(sa, sb)) if i != axis)


def _check_disjoint(graph: Graph, parent: _Nesting, noop_outputs: set[str], resolve, root: str) -> str | None:
    """Values that some kernel writes must not overlap inside ``root``."""
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for v in parent.under(root):
        if v in noop_outputs:
            continue
        r, s, a = resolve(v)
        if a is None and v != r:
            return f"{v!r} is nested along different axes"
        axis = a if a is not None else 0
        spans.setdefault(r, []).append((s, s + graph.values[v].shape[axis] if v != r else 0, v))
    for r, lst in spans.items():
        lst = sorted(x for x in lst if x[1] > x[0])
        for (_, e0, v0), (s1, _, v1) in zip(lst, lst[1:]):
            if s1 < e0:
                return f"{v0!r} and {v1!r} would overlap inside {r!r}"
    return None
