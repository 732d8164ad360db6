"""A layered drawing of a DAG, shared by the graph pictures (matplotlib) and the HTML inspector.

The classic Sugiyama steps, kept small: layers by longest path from the sources (sources are
pulled down next to their first consumer); an edge that spans several layers gets a dummy
point in every layer it crosses, so it takes a slot of its own there and never runs behind a
box (a ResNet skip edge stays visible beside the chain it bypasses); the order inside each
layer comes from barycentric sweeps, keeping the order with the fewest crossings; x positions
are the closest to the mean of each box's neighbours that keeps the order and the gaps (an
isotonic regression per layer, solved by pooling adjacent violators). Coordinates are in
pixels of an 11 px monospace font (``CHAR_W`` per character), y grows downwards.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

CHAR_W = 6.6  # advance of an 11 px monospace character (DejaVu Sans Mono: 0.602 em)
LINE_H = 14.0
PAD_X, PAD_Y = 10.0, 6.0
GAP_X, GAP_Y = 24.0, 46.0  # between boxes in a layer / between layers (room for edge labels)
EDGE_LABEL_DY = 11.0  # a tensor's shape is written this far below its producer, on its edges
DUMMY_W = 10.0  # the slot a passing edge takes in a layer
SWEEPS = 12
_STRAIGHTEN = 10


def box_size(lines: list[str]) -> tuple[float, float]:
    """Width and height of a box holding these text lines."""
    return max((len(s) for s in lines), default=1) * CHAR_W + 2 * PAD_X, len(lines) * LINE_H + 2 * PAD_Y


@dataclass
class Layout:
    """Box centres, each edge's route (a polyline from the source's bottom to the target's top) and the extent."""

    pos: dict[str, tuple[float, float]]
    routes: list[list[tuple[float, float]]]
    width: float
    height: float
    layer: dict[str, int] = field(default_factory=dict)


def _layers(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for u, v in edges:
        preds[v].append(u)
        succs[u].append(v)
    order = _topological(ids, preds, succs)
    layer: dict[str, int] = {}
    for v in order:
        layer[v] = max((layer[p] + 1 for p in preds[v]), default=0)
    for v in reversed(order):  # a source sits just above its first consumer
        if not preds[v] and succs[v]:
            layer[v] = max(0, min(layer[s] for s in succs[v]) - 1)
    return layer


def _topological(ids, preds, succs) -> list[str]:
    indeg = {i: len(preds[i]) for i in ids}
    ready = deque(i for i in ids if indeg[i] == 0)
    out = []
    while ready:
        v = ready.popleft()
        out.append(v)
        for s in succs[v]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    if len(out) != len(ids):
        raise ValueError("graph_layout: the graph has a cycle")
    return out


def _crossings(upper: list[str], lower_pos: dict[str, int], down: dict[str, list[str]]) -> int:
    """Edge crossings between two adjacent layers (inversions, counted with a Fenwick tree)."""
    ends = [lower_pos[w] for v in upper for w in sorted(down[v], key=lower_pos.__getitem__)]
    tree = [0] * (len(lower_pos) + 1)
    total = 0
    for seen, p in enumerate(ends):
        k, below = p + 1, 0
        while k > 0:
            below += tree[k]
            k -= k & -k
        total += seen - below
        k = p + 1
        while k < len(tree):
            tree[k] += 1
            k += k & -k
    return total


def _order(rows: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]]) -> list[list[str]]:
    def total(rs):
        return sum(_crossings(rs[i], {v: k for k, v in enumerate(rs[i + 1])}, down) for i in range(len(rs) - 1))

    best, best_n = [list(r) for r in rows], total(rows)
    for sweep in range(SWEEPS):
        rng = range(1, len(rows)) if sweep % 2 == 0 else range(len(rows) - 2, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for i in rng:
            ref = {v: k for k, v in enumerate(rows[i - 1 if sweep % 2 == 0 else i + 1])}
            now = {v: k for k, v in enumerate(rows[i])}

            def key(v, ref=ref, now=now, nbrs=nbrs):
                ks = [ref[n] for n in nbrs[v]]
                return sum(ks) / len(ks) if ks else now[v]

            rows[i] = sorted(rows[i], key=key)
        n = total(rows)
        if n < best_n:
            best, best_n = [list(r) for r in rows], n
    return best


def _place_row(row: list[str], want: dict[str, float], width: dict[str, float]) -> dict[str, float]:
    """x per box, in order, gaps kept, closest (least squares) to ``want``: pool adjacent violators."""
    offset, acc = [], 0.0
    for k, v in enumerate(row):
        if k:
            acc += (width[row[k - 1]] + width[v]) / 2 + GAP_X
        offset.append(acc)
    blocks: list[list[float]] = []  # [sum of targets, count]
    for k, v in enumerate(row):
        blocks.append([want[v] - offset[k], 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out, k = {}, 0
    for s, c in blocks:
        for _ in range(int(c)):
            out[row[k]] = s / c + offset[k]
            k += 1
    return out


def layered_layout(sizes: dict[str, tuple[float, float]], edges: list[tuple[str, str]]) -> Layout:
    """Lay out the DAG whose boxes are ``sizes`` (id -> width, height) joined by ``edges`` (source, target).

    The insertion order of ``sizes`` is the first order of every layer, so a graph given in
    execution order starts from a sensible drawing."""
    ids = list(sizes)
    layer = _layers(ids, edges)
    width = {v: sizes[v][0] for v in ids}
    up: dict[str, list[str]] = {v: [] for v in ids}
    down: dict[str, list[str]] = {v: [] for v in ids}
    chains = []
    for k, (u, v) in enumerate(edges):
        chain = [u] + [f"\0{k}:{j}" for j in range(layer[u] + 1, layer[v])] + [v]
        for j, d in enumerate(chain[1:-1], start=layer[u] + 1):
            layer[d], width[d], up[d], down[d] = j, DUMMY_W, [], []
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)
        chains.append(chain)
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for v in layer:
        rows[layer[v]].append(v)
    rows = _order(rows, up, down)
    x: dict[str, float] = {}
    for row in rows:
        x.update(_place_row(row, {v: 0.0 for v in row}, width))
    for it in range(_STRAIGHTEN):
        seq = rows if it % 2 == 0 else rows[::-1]
        for row in seq:
            want = {}
            for v in row:
                ns = up[v] + down[v]
                want[v] = sum(x[n] for n in ns) / len(ns) if ns else x[v]
            x.update(_place_row(row, want, width))
    left = min((x[v] - width[v] / 2 for v in x), default=0.0)
    heights = [max((sizes[v][1] for v in row if v in sizes), default=LINE_H) for row in rows]
    y_top, top = [], 0.0
    for h in heights:
        y_top.append(top)
        top += h + GAP_Y
    pos = {v: (x[v] - left, y_top[layer[v]] + heights[layer[v]] / 2) for v in x}
    routes = []
    for chain in chains:
        (x0, y0), (x1, y1) = pos[chain[0]], pos[chain[-1]]
        pts = [(x0, y0 + sizes[chain[0]][1] / 2)]
        for d in chain[1:-1]:  # through the dummy's whole layer band, so the edge stays clear of boxes
            dx, _ = pos[d]
            band = y_top[layer[d]]
            pts += [(dx, band), (dx, band + heights[layer[d]])]
        pts.append((x1, y1 - sizes[chain[-1]][1] / 2))
        routes.append(pts)
    real = {v: pos[v] for v in ids}
    extent = max((x[v] - left + width[v] / 2 for v in x), default=0.0)
    return Layout(real, routes, extent, max(0.0, top - GAP_Y), {v: layer[v] for v in ids})
