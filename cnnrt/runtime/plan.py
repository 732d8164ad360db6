"""Memory planning: liveness over the execution order, every intermediate placed in one arena.

Each non-constant value gets a :class:`Place`:

- ``buffer``: it owns an arena region (a *root*);
- ``alias``: it is another value's bytes under a new shape. The outputs of view ops are
  aliases, and so is the output of an in-place op when its input's region dies at that op
  (same bytes, same dtype, shapes equal); both facts are the op table's (cnnrt.core.ops);
- ``slice``: it is a range along one axis of a bigger value: the inputs of a Concat marked
  ``in_place`` by the concat_in_place pass live inside the Concat's output, so their
  producers write straight into it and the Concat step does nothing.

A root's lifetime runs from the first step that writes any value placed in it to the last
step that reads any of them (graph outputs: to the end). Offsets are found by several
greedy orderings (by size, by lifetime, by start) with first-fit and best-fit gap choice;
the smallest arena wins. Those orderings cost time in the number of pairs of roots whose
lifetimes overlap, which grows with the square of the graph when many values live at once
(a wide graph with thousands of outputs); past ``MAX_OVERLAP_PAIRS`` per root the planner
places roots in one sweep over time instead (free regions reused first-fit, as an allocator
would), whose cost grows with the number of roots. ``peak_live_bytes`` (the most bytes live
at any one step) is a lower bound on any arena for these lifetimes.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from cnnrt.core.ir import Graph
from cnnrt.core.ops import OPS
from cnnrt.core.placement import Place, concat_layout

ALIGN = 64
MAX_OVERLAP_PAIRS = 32  # per root (plus a floor): beyond it, plan in one sweep


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


def fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


@dataclass
class MemoryPlan:
    """The arena layout, and every byte a built session holds for it, as the memory limit counts them.

    ``constant_bytes``: the model's initializers the graph uses; ``folded_bytes``: constants the
    import and the passes made (folded subgraphs, BatchNorm folded into weights, merged biases);
    ``prepacked_bytes`` and ``winograd_bytes``: weights the kernels repacked (Winograd's
    transformed ones apart); ``scratch_bytes``: kernel scratch. The last three are filled in
    when the executor is built.
    """

    buffers: dict[str, Buffer]  # root value -> region
    alias_of: dict[str, str]  # every arena value -> its root value
    places: dict[str, Place]  # every arena value -> how its array is built
    noop_nodes: frozenset[str]  # nodes whose step does nothing (views, in-place Concat)
    arena_bytes: int
    peak_live_bytes: int
    naive_bytes: int
    steps: int
    notes: list[str] = field(default_factory=list)
    constant_bytes: int = 0
    folded_bytes: int = 0
    prepacked_bytes: int = 0
    winograd_bytes: int = 0
    scratch_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        """Everything the memory limit counts: arena, constants, repacked weights and scratch."""
        return (
            self.arena_bytes
            + self.constant_bytes
            + self.folded_bytes
            + self.prepacked_bytes
            + self.winograd_bytes
            + self.scratch_bytes
        )

    def region(self, value: str) -> Buffer:
        return self.buffers[self.alias_of[value]]

    def dying_after(self) -> list[list[str]]:
        """Per step, the roots whose last reader is that step (graph outputs never die)."""
        out: list[list[str]] = [[] for _ in range(self.steps)]
        for b in self.buffers.values():
            if 0 <= b.last < self.steps:
                out[b.last].append(b.root)
        return out


# ---------------------------------------------------------------------------- planning


def plan_memory(graph: Graph, in_place: bool = True) -> MemoryPlan:
    """Place every non-constant value in one arena; see the module docstring."""
    nsteps = len(graph.nodes)
    notes: list[str] = []
    marked = [n for n in graph.nodes if n.op == "Concat" and n.attrs.get("in_place")]
    slices, rejected = concat_layout(graph, marked)
    for name, why in rejected.items():
        notes.append(f"Concat {name!r} copies: {why}")
    noop = {n.name for n in marked if n.name not in rejected}

    defined_at: dict[str, int] = {v: -1 for v in graph.inputs}
    last_read: dict[str, int] = {v: -1 for v in graph.inputs}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v in last_read:
                last_read[v] = i
        for o in node.outputs:
            if o:
                defined_at[o] = i
                last_read[o] = i  # written even if never read
    for o in graph.outputs:
        if o in last_read:
            last_read[o] = nsteps

    places: dict[str, Place] = {v: Place("buffer") for v in defined_at}
    places.update(slices)
    # value -> (its root, whether its array is one contiguous run of bytes: slices of a leading
    # axis of 1s are). Filled as values are resolved; a value's place is final before anything
    # resolves through it, so a deep chain of aliases costs one step per value, not one per link.
    resolved: dict[str, tuple[str, bool]] = {}

    def resolve(v: str) -> tuple[str, bool]:
        path = []
        while v not in resolved and places[v].kind != "buffer":
            path.append(v)
            v = places[v].base
        root, flat = resolved.get(v, (v, True))
        for u in reversed(path):
            p = places[u]
            flat = flat and (p.kind != "slice" or int(np.prod(graph.values[p.base].shape[: p.axis])) == 1)
            resolved[u] = (root, flat)
        return root, flat

    def find(v: str) -> str:
        return resolve(v)[0]

    sliced = set(slices) | {p.base for p in slices.values()}
    # per root, the last step that reads any value placed in it so far: an in-place output
    # may take a root's bytes only at the step where all of them die
    dies_at = dict(last_read)
    for i, node in enumerate(graph.nodes):
        out = node.outputs[0] if node.outputs else ""
        if not out or out in sliced:
            continue
        x = node.inputs[0] if node.inputs else ""
        # an op outside the table owns its output; it has no kernel either, and the executor
        # reports it with every other node it cannot run
        d = OPS.get(node.op)
        if d is not None and d.view and x in places and resolve(x)[1]:
            places[out] = Place("alias", x)
            if not any(node.outputs[1:]):  # a Dropout mask output still has to be written
                noop.add(node.name)
        elif in_place and d is not None and d.in_place:
            cand = _in_place_input(graph, node, places, find, sliced, dies_at, i)
            if cand:
                places[out] = Place("alias", cand)
        r = find(out)
        dies_at[r] = max(dies_at[r], last_read[out])
    root = {v: find(v) for v in defined_at}

    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for v, r in root.items():
        first[r] = min(first.get(r, nsteps), defined_at[v])
        last[r] = max(last.get(r, -1), last_read[v])
    sizes = {r: _align(graph.values[r].nbytes) for r in first}
    peak = _peak_live(sizes, first, last)
    buffers, arena = _place_best(sizes, first, last)
    return MemoryPlan(
        buffers={r: Buffer(r, buffers[r], sizes[r], first[r], last[r]) for r in sizes},
        alias_of=root,
        places=places,
        noop_nodes=frozenset(noop),
        arena_bytes=arena,
        peak_live_bytes=peak,
        naive_bytes=sum(_align(graph.values[v].nbytes) for v in defined_at),
        steps=nsteps,
        notes=notes,
    )


def _in_place_input(graph, node, places, find, sliced, dies_at, step) -> str | None:
    """An input of ``node`` whose whole region dies here and whose bytes the output can take.

    The kernel reads element i before writing element i and nothing else; an op that
    broadcasts may take any input's bytes, but only when no input broadcasts (numpy ufuncs
    handle exact overlap)."""
    out = graph.values[node.outputs[0]]
    broadcasts = OPS[node.op].broadcasts
    cands = node.inputs if broadcasts else node.inputs[:1]
    if broadcasts and any(graph.values[i].shape != out.shape for i in node.inputs if i):
        return None
    for x in cands:
        if not x or x not in places or x in sliced:
            continue
        r = find(x)
        if r in sliced or places[x].kind == "slice":
            continue
        v = graph.values[x]
        if v.dtype != out.dtype or v.nbytes != out.nbytes or graph.values[r].nbytes != out.nbytes:
            continue
        if dies_at[r] == step:
            return x
    return None


def _peak_live(sizes: dict[str, int], first: dict[str, int], last: dict[str, int]) -> int:
    """Most bytes live at any one step (a root is live on [first, last])."""
    events: dict[int, int] = {}
    for r, s in sizes.items():
        events[first[r]] = events.get(first[r], 0) + s
        events[last[r] + 1] = events.get(last[r] + 1, 0) - s
    live = peak = 0
    for step in sorted(events):
        live += events[step]
        peak = max(peak, live)
    return peak


def _place_best(sizes, first, last) -> tuple[dict[str, int], int]:
    """Try a few greedy orderings x {first-fit, best-fit}; keep the smallest arena."""
    orders = [
        lambda r: (-sizes[r], first[r], r),
        lambda r: (-(last[r] - first[r]), -sizes[r], r),
        lambda r: (first[r], -sizes[r], r),
        lambda r: (-sizes[r] * (last[r] - first[r] + 1), r),
    ]
    if _overlap_pairs(first, last) > MAX_OVERLAP_PAIRS * len(first) + 4096:
        return _place_sweep(sizes, first, last)
    overlaps = _overlaps(first, last)
    best: tuple[dict[str, int], int] | None = None
    for key in orders:
        for best_fit in (False, True):
            res = _place_greedy(sorted(sizes, key=key), sizes, overlaps, best_fit)
            if best is None or res[1] < best[1]:
                best = res
    return best if best is not None else ({}, 0)


def _overlap_pairs(first: dict[str, int], last: dict[str, int]) -> int:
    """How many pairs of roots have intersecting lifetimes (counted, not listed)."""
    ends: list[int] = []
    pairs = 0
    for r in sorted(first, key=first.__getitem__):
        while ends and ends[0] < first[r]:
            heapq.heappop(ends)
        pairs += len(ends)
        heapq.heappush(ends, last[r])
    return pairs


def _place_sweep(sizes, first, last) -> tuple[dict[str, int], int]:
    """Place roots in order of their first step, each in the lowest free gap that fits (the
    arena grows at its end otherwise); a root's region is free again after its last step."""
    offsets: dict[str, int] = {}
    gaps: list[tuple[int, int]] = []  # free (offset, end) inside the arena, sorted, never adjacent
    ends: list[tuple[int, str]] = []
    arena = 0
    for r in sorted(sizes, key=lambda r: (first[r], -sizes[r], r)):
        while ends and ends[0][0] < first[r]:
            q = heapq.heappop(ends)[1]
            _free(gaps, offsets[q], offsets[q] + sizes[q])
        size = sizes[r]
        at = next((i for i, (lo, hi) in enumerate(gaps) if hi - lo >= size), None)
        if at is None:
            if gaps and gaps[-1][1] == arena:  # grow the last gap at the arena's end
                offsets[r] = gaps.pop()[0]
            else:
                offsets[r] = arena
            arena = offsets[r] + size
        else:
            lo, hi = gaps[at]
            offsets[r] = lo
            if hi - lo == size:
                del gaps[at]
            else:
                gaps[at] = (lo + size, hi)
        heapq.heappush(ends, (last[r], r))
    return offsets, arena


def _free(gaps: list[tuple[int, int]], lo: int, hi: int) -> None:
    """Return [lo, hi) to ``gaps``, merged with its neighbours."""
    i = bisect.bisect_left(gaps, (lo, hi))
    if i > 0 and gaps[i - 1][1] == lo:
        i -= 1
        lo = gaps.pop(i)[0]
    if i < len(gaps) and gaps[i][0] == hi:
        hi = gaps.pop(i)[1]
    gaps.insert(i, (lo, hi))


def _overlaps(first: dict[str, int], last: dict[str, int]) -> dict[str, list[str]]:
    """Per root, the roots whose lifetimes intersect its own.

    One sweep in order of first step keeps the roots still live; the cost is the number of
    intersecting pairs, so a long chain (few live at a time) plans in linear time.
    """
    out: dict[str, list[str]] = {r: [] for r in first}
    ends: list[tuple[int, str]] = []  # heap of (last, root) over `live`
    live: set[str] = set()
    for r in sorted(first, key=lambda r: (first[r], r)):
        while ends and ends[0][0] < first[r]:
            live.discard(heapq.heappop(ends)[1])
        for q in live:
            out[q].append(r)
            out[r].append(q)
        live.add(r)
        heapq.heappush(ends, (last[r], r))
    return out


def _place_greedy(order: Iterable[str], sizes, overlaps, best_fit: bool) -> tuple[dict[str, int], int]:
    offsets: dict[str, int] = {}
    arena = 0
    for r in order:
        size = sizes[r]
        busy = sorted((offsets[q], offsets[q] + sizes[q]) for q in overlaps[r] if q in offsets)
        choice = None
        gap_best = None
        cursor = 0
        for lo, hi in busy:
            if lo - cursor >= size:
                if not best_fit:
                    choice = cursor
                    break
                if gap_best is None or lo - cursor < gap_best:
                    gap_best, choice = lo - cursor, cursor
            cursor = max(cursor, hi)
        if choice is None:
            choice = cursor
        offsets[r] = choice
        arena = max(arena, choice + size)
    return offsets, arena
