"""Shared machinery for local rewrites: named rules, a driver, graph edits and guard helpers.

A :class:`Rule` has a readable name, the ops it anchors on (the cheapest filter), a
``match`` that only looks at structure and a ``rewrite`` that checks the guards and either
returns a :class:`Replacement` or a string saying why it declines. :func:`apply_rules` runs
rules over a graph until none fires and turns the result into a :class:`PassResult`.

Rewrites never mutate a Node, a constant array or the input graph: the driver works on a
shallow copy and swaps whole nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnrt.core.ir import Graph, Node, Value

from . import PassResult

MAX_SCANS = 64


class Ctx:
    """A graph being rewritten plus its use/def maps, rebuilt after every edit."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.refresh()

    def refresh(self) -> None:
        g = self.graph
        self.producers = g.producers()
        self.consumers = g.consumers()
        self.by_name = {n.name: n for n in g.nodes}
        self.position = {n.name: i for i, n in enumerate(g.nodes)}
        self.outputs = set(g.outputs)

    def producer(self, value: str) -> Node | None:
        return self.producers.get(value)

    def users(self, value: str) -> list[Node]:
        return self.consumers.get(value, [])

    def value(self, name: str) -> Value:
        return self.graph.values[name]

    def const(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name) if name else None

    def defined_at(self, value: str) -> int:
        """Step index that defines ``value``; -1 for graph inputs and constants."""
        p = self.producers.get(value)
        return -1 if p is None else self.position[p.name]


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
    for _ in range(MAX_SCANS):
        progress = False
        for name in [n.name for n in ctx.graph.nodes]:
            node = ctx.by_name.get(name)
            if node is None:
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
    return PassResult(ctx.graph, bool(fired), fired, kept)


def apply_replacement(ctx: Ctx, r: Replacement) -> None:
    """Edit ``ctx.graph`` in place (it is the driver's private copy) and refresh the maps."""
    g = ctx.graph
    gone = {n.name for n in r.remove}
    anchor_pos = ctx.position[r.anchor.name]
    kept = [n for n in g.nodes if n.name not in gone]
    if r.rename:
        kept = [_rename_node(n, r.rename) for n in kept]
        g.outputs = [r.rename.get(o, o) for o in g.outputs]
    for name, arr in r.constants.items():
        g.constants[name] = arr
        g.values[name] = Value(name, tuple(arr.shape), str(arr.dtype))
    # index in `kept` of the anchor's slot, pushed later past the producers of new inputs
    at = sum(1 for n in g.nodes[:anchor_pos] if n.name not in gone)
    produced = {o: i for i, n in enumerate(kept) for o in n.outputs if o}
    for n in r.add:
        for i in n.inputs:
            if i in produced:
                at = max(at, produced[i] + 1)
    new_outputs = {o for n in r.add for o in n.outputs}
    kept[at:at] = list(r.add)
    g.nodes = kept
    used = {i for n in kept for i in n.inputs} | set(g.outputs)
    for n in r.remove:
        for o in n.outputs:
            if o and o not in new_outputs and o not in used:
                g.values.pop(o, None)
    for old in r.rename:
        if old not in used and old not in g.inputs and old not in g.constants:
            g.values.pop(old, None)
    ctx.refresh()


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


def _untaken(base: str, taken: Container[str]) -> str:
    """``base``, else the first of ``base_2``, ``base_3``... not in ``taken``."""
    if base not in taken:
        return base
    k = 2
    while f"{base}_{k}" in taken:
        k += 1
    return f"{base}_{k}"


def unique_node_name(ctx: Ctx, name: str, ignore: Iterable[str] = ()) -> str:
    """``name`` or ``name_2``, ``name_3``... not used by another node (``ignore`` is being removed)."""
    return _untaken(name, set(ctx.by_name) - set(ignore))


def fresh_value_name(ctx: Ctx, base: str, reserved: Iterable[str] = ()) -> str:
    """A value name not yet in the graph (nor in ``reserved``)."""
    return _untaken(base, ctx.graph.values.keys() | set(reserved))


def sole_use(ctx: Ctx, value: str, reader: Node | None = None) -> str | None:
    """Why ``value`` cannot be absorbed into its consumer: None if it has exactly one use
    (by ``reader`` if given) and is not a graph output."""
    p = ctx.producer(value)
    what = f"{p.op} output {value!r}" if p is not None else repr(value)
    if value in ctx.outputs:
        return f"{what} is a graph output"
    users = ctx.users(value)
    if len(users) != 1:
        return f"{what} has {len(users)} consumers"
    if reader is not None and users[0].name != reader.name:
        return f"{what} is read by {users[0].name!r}, not {reader.name!r}"
    return None


def is_float(ctx: Ctx, value: str) -> bool:
    return np.dtype(ctx.value(value).dtype).kind == "f"
