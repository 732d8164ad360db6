"""Memory planning: liveness over the execution order, every intermediate placed in one arena.

Values produced by view ops (Reshape, Identity, Dropout) share their input's bytes; a
buffer lives from its producer's step to the last step that reads it or any of its views.
Graph outputs live to the end. Offsets are assigned greedily, largest buffer first, each at
the lowest offset where it overlaps no already-placed buffer with an overlapping lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Graph
from .ops import VIEW_OPS

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class Buffer:
    """One arena region: the root value that owns it, its bytes and lifetime [first, last]."""

    root: str
    offset: int
    nbytes: int
    first: int  # step that writes it (-1: a graph input, written before step 0)
    last: int  # last step that reads it (len(nodes): a graph output)


@dataclass
class MemoryPlan:
    buffers: dict[str, Buffer]  # root value -> region
    alias_of: dict[str, str]  # every arena value -> its root value
    arena_bytes: int
    peak_live_bytes: int
    naive_bytes: int
    steps: int
    notes: list[str] = field(default_factory=list)

    def region(self, value: str) -> Buffer:
        return self.buffers[self.alias_of[value]]


def plan_memory(graph: Graph) -> MemoryPlan:
    """Place every non-constant value in one arena; see the module docstring."""
    root: dict[str, str] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    nsteps = len(graph.nodes)
    for name in graph.inputs:
        root[name] = name
        first[name] = -1
        last[name] = -1
    for i, node in enumerate(graph.nodes):
        for inp in node.inputs:
            if inp in root:
                r = root[inp]
                last[r] = max(last[r], i)
        view = node.op in VIEW_OPS and node.inputs[0] in root
        for o in node.outputs:
            if not o:
                continue
            if view and o == node.outputs[0]:
                root[o] = root[node.inputs[0]]
                last[root[o]] = max(last[root[o]], i)
            else:
                root[o] = o
                first[o] = i
                last[o] = i  # written even if never read
    for o in graph.outputs:
        if o in root:
            last[root[o]] = nsteps
    sizes = {r: _align(graph.values[r].nbytes) for r in first}
    # peak live: the largest total of bytes live at any one step
    peak = 0
    for step in range(-1, nsteps + 1):
        live = sum(s for r, s in sizes.items() if first[r] <= step <= last[r])
        peak = max(peak, live)
    placed: list[Buffer] = []
    for r in sorted(sizes, key=lambda r: (-sizes[r], first[r], r)):
        conflicts = sorted(
            (b.offset, b.offset + b.nbytes) for b in placed if not (b.last < first[r] or last[r] < b.first)
        )
        offset = 0
        for lo, hi in conflicts:
            if offset + sizes[r] <= lo:
                break
            offset = max(offset, hi)
        placed.append(Buffer(r, offset, sizes[r], first[r], last[r]))
    arena = max((b.offset + b.nbytes for b in placed), default=0)
    return MemoryPlan(
        buffers={b.root: b for b in placed},
        alias_of=root,
        arena_bytes=arena,
        peak_live_bytes=peak,
        naive_bytes=sum(sizes.values()),
        steps=nsteps,
    )
