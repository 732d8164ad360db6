"""Dependency order of an ONNX graph's nodes."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import onnx

from cnnrt.errors import ModelLoadError


def topological_order(nodes: Sequence[onnx.NodeProto], defined: set[str]) -> list[int]:
    """Node indices in a dependency order (the file's order when it already is one).

    ONNX requires sorted graphs but onnxruntime sorts unsorted ones itself, so we do too.
    Raises ModelLoadError naming the value for an undefined input, the nodes for a cycle.
    """
    producer: dict[str, int] = {}
    for k, n in enumerate(nodes):
        for o in n.output:
            if o and o not in defined:
                producer.setdefault(o, k)
    deps: list[set[int]] = []
    for k, n in enumerate(nodes):
        d = set()
        for i in n.input:
            if not i or i in defined:
                continue
            if i not in producer:
                raise ModelLoadError(
                    f"node {n.name or f'#{k}'!r} ({n.op_type}) reads {i!r}, which no node, graph input or initializer defines"
                )
            d.add(producer[i])
        deps.append(d)
    users: dict[int, list[int]] = {}
    for k, d in enumerate(deps):
        for p in d:
            users.setdefault(p, []).append(k)
    waiting = [len(d) for d in deps]
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for u in users.get(k, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        # walk back along unfinished dependencies until a node repeats: that is a cycle
        left = {k for k, w in enumerate(waiting) if w > 0}
        path, k = [], min(left)
        while k not in path:
            path.append(k)
            k = min(p for p in deps[k] if p in left)
        cycle = path[path.index(k) :]
        names = [f"{nodes[j].name or f'#{j}'} ({nodes[j].op_type})" for j in reversed(cycle)]
        raise ModelLoadError(f"the graph has a cycle: {' -> '.join(names + names[:1])}")
    return order
