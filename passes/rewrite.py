"""Shared machinery for local rewrites: named rules, a driver, graph edits and guard helpers.

A :class:`Rule` has a readable name, the ops it anchors on (the cheapest filter), a
``match`` that only looks at structure and a ``rewrite`` that checks the guards and either
returns a :class:`Replacement` or a string saying why it declines. :func:`apply_rules` runs
rules over a graph until none fires and turns the result into a :class:`PassResult`.

Rewrites never mutate a Node, a constant array or the input graph: the driver works on a
shallow copy and swaps whole nodes.

An edit costs time in proportion to what it touches (the removed and added nodes and the
readers of renamed values), never to the size of the graph: the use/def maps and the node
order are updated in place, so a pass over a graph of n nodes stays near-linear in n.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnrt.core.ir import Graph, Node, Value

from . import PassResult

MAX_SCANS = 64
_BEFORE_ALL = (float("-inf"),)  # order key of graph inputs and constants


class Ctx:
    """A graph being rewritten plus its use/def maps and node order, kept current by every edit.

    The order is a linked list of node names; ``position`` gives each node an order key
    (a tuple: comparable, not an index) so that "is defined before" stays a dict lookup while
    nodes come and go. ``graph.nodes`` is written back by :meth:`finish`.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.outputs = set(graph.outputs)
        self.inputs = set(graph.inputs)
        self.producers: dict[str, Node] = {}
        self._readers: dict[str, dict[str, int]] = {}  # value -> {reader node name: input slots}
        self.by_name: dict[str, Node] = {}
        self.position: dict[str, tuple] = {}
        self._prev: dict[str, str | None] = {}
        self._next: dict[str, str | None] = {}
        self._head: str | None = None
        self._inserts = 0
        last = None
        for i, n in enumerate(graph.nodes):
            self._link(n, (i,), last)
            last = n.name

    # -- queries --

    def producer(self, value: str) -> Node | None:
        return self.producers.get(value)

    def users(self, value: str) -> list[Node]:
        """Nodes reading ``value``, one entry per input slot."""
        return [self.by_name[r] for r, k in self._readers.get(value, {}).items() for _ in range(k)]

    def use_count(self, value: str) -> int:
        return sum(self._readers.get(value, {}).values())

    def value(self, name: str) -> Value:
        return self.graph.values[name]

    def const(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name) if name else None

    def defined_at(self, value: str) -> tuple:
        """Order key of the node that defines ``value`` (before every node for inputs and constants)."""
        p = self.producers.get(value)
        return _BEFORE_ALL if p is None else self.position[p.name]

    def names(self) -> list[str]:
        """Node names in execution order."""
        out, n = [], self._head
        while n is not None:
            out.append(n)
            n = self._next[n]
        return out

    def finish(self) -> Graph:
        self.graph.nodes = [self.by_name[n] for n in self.names()]
        return self.graph

    # -- edits (the maps and the order follow every one) --

    def _link(self, node: Node, key: tuple, after: str | None) -> None:
        """Add ``node`` right after node ``after`` (None: first) with order key ``key``."""
        name = node.name
        nxt = self._head if after is None else self._next[after]
        self._prev[name], self._next[name] = after, nxt
        if after is None:
            self._head = name
        else:
            self._next[after] = name
        if nxt is not None:
            self._prev[nxt] = name
        self.position[name] = key
        self._index(node)

    def _index(self, node: Node) -> None:
        self.by_name[node.name] = node
        for o in node.outputs:
            if o:
                self.producers[o] = node
        for i in node.inputs:
            if i:
                r = self._readers.setdefault(i, {})
                r[node.name] = r.get(node.name, 0) + 1

    def _unindex(self, node: Node) -> None:
        for o in node.outputs:
            if o and self.producers.get(o) is node:
                del self.producers[o]
        for i in node.inputs:
            r = self._readers.get(i) if i else None
            if r is not None and node.name in r:
                del r[node.name]
                if not r:
                    del self._readers[i]

    def _unlink(self, node: Node) -> None:
        name = node.name
        self._unindex(node)
        prev, nxt = self._prev.pop(name), self._next.pop(name)
        if prev is None:
            self._head = nxt
        else:
            self._next[prev] = nxt
        if nxt is not None:
            self._prev[nxt] = prev
        del self.by_name[name], self.position[name]

    def _swap(self, old: Node, new: Node) -> None:
        """Replace ``old`` by ``new`` (same name) in place."""
        self._unindex(old)
        self._index(new)

    def _key_after(self, after: str | None) -> tuple:
        """An order key between ``after`` (None: the start) and every node now following it.

        Later insertions right after the same node come first, so each takes a smaller last
        component: keys extending ``after``'s key sort after it and before anything that
        followed it."""
        self._inserts += 1
        return (*(() if after is None else self.position[after]), -self._inserts)


@dataclass
class Replacement:
    """Remove ``remove``, insert ``add`` in their place, register new constants.

    The new nodes go at the anchor's position, or later if an input is defined later
    (a safe reorder: everything they feed is consumed after the last removed node).
    ``rename`` maps value names to new names across the remaining graph.
    """

    remove: Sequence[Node]
    add: Sequence[Node]
    anchor: Node
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """``match(ctx, node) -> m | None`` (structure only); ``rewrite(ctx, m) -> Replacement | str``."""

    name: str
    ops: tuple[str, ...]
    match: Callable[[Ctx, Node], Any]
    rewrite: Callable[[Ctx, Any], Replacement | str]


def apply_rules(graph: Graph, rules: Sequence[Rule]) -> PassResult:
    """Rewrite until no rule fires.

    ``declined`` lists each (rule, anchor node, reason) once, unless the same rule later
    fired at that anchor, or the anchor was swallowed by a bigger pattern anchored
    elsewhere (a Sigmoid declined alone but fused as part of SiLU is no news).
    """
    ctx = Ctx(graph.copy())
    fired: list[tuple[str, str]] = []
    declined: dict[tuple[str, str, str], None] = {}
    fired_at: set[tuple[str, str]] = set()
    swallowed: set[str] = set()
    anchored = {op for rule in rules for op in rule.ops}
    for _ in range(MAX_SCANS):
        progress = False
        for name in ctx.names():
            node = ctx.by_name.get(name)
            if node is None or node.op not in anchored:
                continue
            for rule in rules:
                if node.op not in rule.ops:
                    continue
                m = rule.match(ctx, node)
                if m is None:
                    continue
                res = rule.rewrite(ctx, m)
                if isinstance(res, str):
                    declined[(rule.name, node.name, res)] = None
                    continue
                apply_replacement(ctx, res)
                fired_at.add((rule.name, node.name))
                swallowed.update(n.name for n in res.remove if n.name != node.name)
                fired.append(
                    (rule.name, " + ".join(n.name for n in res.remove) + " -> " + ", ".join(n.name for n in res.add))
                )
                progress = True
                break
        if not progress:
            break
    kept = [d for d in declined if (d[0], d[1]) not in fired_at and d[1] not in swallowed]
    return PassResult(ctx.finish(), bool(fired), fired, kept)


def apply_replacement(ctx: Ctx, r: Replacement) -> None:
    """Edit ``ctx.graph`` (the driver's private copy) and its maps in place."""
    g = ctx.graph
    gone = {n.name for n in r.remove}
    after = ctx._prev[r.anchor.name]  # the slot: after the last node before the anchor that stays
    while after is not None and after in gone:
        after = ctx._prev[after]
    anchor_key = ctx.position[r.anchor.name]
    for n in r.remove:
        ctx._unlink(n)
    if r.rename:
        touched = {p.name for p in (ctx.producers.get(v) for v in r.rename) if p is not None}
        touched.update(u for v in r.rename for u in ctx._readers.get(v, ()))
        for name in touched:
            node = ctx.by_name[name]
            ctx._swap(node, _rename_node(node, r.rename))
        if any(o in ctx.outputs for o in r.rename):
            g.outputs = [r.rename.get(o, o) for o in g.outputs]
            ctx.outputs = set(g.outputs)
    for name, arr in r.constants.items():
        g.constants[name] = arr
        g.values[name] = Value(name, tuple(arr.shape), str(arr.dtype))
    pushed = False  # past the producers of the new nodes' inputs, if they come later
    for n in r.add:
        for i in n.inputs:
            p = ctx.producers.get(i)
            if p is not None and (after is None or ctx.position[p.name] > ctx.position[after]):
                after, pushed = p.name, True
    # the anchor's key lies between its kept neighbours: reusing it keeps keys short
    key = anchor_key if r.anchor.name in gone and not pushed else ctx._key_after(after)
    for n in r.add:
        ctx._link(n, key, after)
        after = n.name
        key = ctx._key_after(after)
    new_outputs = {o for n in r.add for o in n.outputs}
    for n in r.remove:
        for o in n.outputs:
            if o and o not in new_outputs and not ctx.use_count(o) and o not in ctx.outputs:
                g.values.pop(o, None)
    for old in r.rename:
        if not ctx.use_count(old) and old not in ctx.outputs and old not in ctx.inputs and old not in g.constants:
            g.values.pop(old, None)


def _rename_node(n: Node, rename: dict[str, str]) -> Node:
    ins = tuple(rename.get(i, i) for i in n.inputs)
    outs = tuple(rename.get(o, o) for o in n.outputs)
    if ins == n.inputs and outs == n.outputs:
        return n
    return n.replace(inputs=ins, outputs=outs)


# ---------------------------------------------------------------------------- helpers


def fused_node(anchor: Node, absorbed: Iterable[Node], label: Sequence[str] | None = None, **changes: Any) -> Node:
    """``anchor`` with ``changes``, named ``anchor+Op+Op`` (or ``anchor+label``), with the union of the origins."""
    absorbed = list(absorbed)
    origin: list[str] = []
    for n in [anchor, *absorbed]:
        for o in n.origin or (n.name,):
            if o not in origin:
                origin.append(o)
    name = anchor.name + "".join("+" + s for s in (label if label is not None else [n.op for n in absorbed]))
    return anchor.replace(name=name, origin=tuple(origin), **changes)


def _untaken(base: str, taken: Callable[[str], bool]) -> str:
    """``base``, else the first of ``base_2``, ``base_3``... for which ``taken`` is false."""
    if not taken(base):
        return base
    k = 2
    while taken(f"{base}_{k}"):
        k += 1
    return f"{base}_{k}"


def unique_node_name(ctx: Ctx, name: str, ignore: Iterable[str] = ()) -> str:
    """``name`` or ``name_2``, ``name_3``... not used by another node (``ignore`` is being removed)."""
    ignore = set(ignore)
    return _untaken(name, lambda s: s in ctx.by_name and s not in ignore)


def fresh_value_name(ctx: Ctx, base: str, reserved: Iterable[str] = ()) -> str:
    """A value name not yet in the graph (nor in ``reserved``)."""
    reserved = set(reserved)
    return _untaken(base, lambda s: s in ctx.graph.values or s in reserved)


def sole_use(ctx: Ctx, value: str, reader: Node | None = None) -> str | None:
    """Why ``value`` cannot be absorbed into its consumer: None if it has exactly one use
    (by ``reader`` if given) and is not a graph output."""
    p = ctx.producer(value)
    what = f"{p.op} output {value!r}" if p is not None else repr(value)
    if value in ctx.outputs:
        return f"{what} is a graph output"
    count = ctx.use_count(value)
    if count != 1:
        return f"{what} has {count} consumers"
    user = ctx.users(value)[0]
    if reader is not None and user.name != reader.name:
        return f"{what} is read by {user.name!r}, not {reader.name!r}"
    return None


def is_float(ctx: Ctx, value: str) -> bool:
    return np.dtype(ctx.value(value).dtype).kind == "f"
