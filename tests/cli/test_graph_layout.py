"""The layered layout every graph drawing uses: edges run downwards, boxes in a layer keep their
gaps, and no edge passes through a box (a skip edge stays visible beside the chain it bypasses)."""

from __future__ import annotations

import itertools

import onnx
import pytest
from inspect_models import small_resnet

import cnnrt
from cnnrt.tools.graph_layout import GAP_X, box_size, layered_layout
from cnnrt.tools.inspect import graph_view, report


def _bezier(p, q, steps=20):
    """Points of the cubic a renderer draws from p to q (leaving and entering vertically)."""
    (x0, y0), (x1, y1) = p, q
    ym = (y0 + y1) / 2
    for k in range(steps + 1):
        t = k / steps
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        yield a * x0 + b * x0 + c * x1 + d * x1, a * y0 + b * ym + c * ym + d * y1


def _inside(pt, centre, size, margin=1.0):
    (x, y), (cx, cy), (w, h) = pt, centre, size
    return abs(x - cx) < w / 2 - margin and abs(y - cy) < h / 2 - margin


@pytest.mark.parametrize("opt_level", [0, 2])
def test_edges_never_cross_a_box_and_boxes_keep_their_gaps(tmp_path, opt_level):
    path = tmp_path / "m.onnx"
    onnx.save(small_resnet(), path)
    boxes, edges = graph_view(report(cnnrt.InferenceSession(str(path), threads=1, opt_level=opt_level)))
    sizes = {b["id"]: box_size(b["lines"]) for b in boxes}
    lay = layered_layout(sizes, [(e["src"], e["dst"]) for e in edges])
    assert len(lay.routes) == len(edges)
    for e, route in zip(edges, lay.routes):
        assert route[0][1] < route[-1][1], e  # downwards
        for p, q in zip(route, route[1:]):
            for pt in _bezier(p, q):
                hit = [b for b in sizes if b not in (e["src"], e["dst"]) and _inside(pt, lay.pos[b], sizes[b])]
                assert not hit, (e["tensor"], hit)
    for a, b in itertools.combinations(sizes, 2):
        (xa, ya), (wa, ha) = lay.pos[a], sizes[a]
        (xb, yb), (wb, hb) = lay.pos[b], sizes[b]
        if abs(ya - yb) < (ha + hb) / 2:
            assert abs(xa - xb) >= (wa + wb) / 2 + GAP_X - 1e-6, (a, b)
    # the residual input bypasses the block's convs on a route of its own (through dummy slots)
    add = "block/Add" if opt_level == 0 else "block.b/Conv+BatchNormalization+residual+Relu"
    by_name = {b["name"]: b["id"] for b in boxes}
    skip = [r for e, r in zip(edges, lay.routes) if e["dst"] == by_name[add] and e["tensor"].startswith("stem.out")]
    assert len(skip) == 1 and len(skip[0]) > 2


def test_crossings_are_undone():
    """Two chains given in crossing order come out side by side without crossing."""
    sizes = {k: (40.0, 20.0) for k in "abcdefg"}
    edges = [("a", "c"), ("a", "b"), ("b", "d"), ("c", "e"), ("d", "f"), ("e", "g"), ("f", "g")]
    lay = layered_layout(sizes, edges)
    x = {k: lay.pos[k][0] for k in sizes}
    assert (x["b"] < x["c"]) == (x["d"] < x["e"]) == (x["d"] < x["e"]) == (x["f"] < x["e"])
    assert lay.layer == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 2, "f": 3, "g": 4}
    # e (layer 2) feeds g (layer 4): its edge passes layer 3 through a slot beside f
    route = lay.routes[edges.index(("e", "g"))]
    assert len(route) == 4 and abs(route[1][0] - x["f"]) >= 20 + GAP_X


def test_a_straight_chain_stays_straight():
    sizes = {k: (30.0 + 10 * i, 20.0) for i, k in enumerate("abcd")}
    lay = layered_layout(sizes, [("a", "b"), ("b", "c"), ("c", "d")])
    assert len({round(lay.pos[k][0], 6) for k in sizes}) == 1


def test_a_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        layered_layout({"a": (1, 1), "b": (1, 1)}, [("a", "b"), ("b", "a")])
