"""``cnnrt inspect --format html``: one self-contained page to explore a compiled model in a browser.

The page holds everything it shows: the report of cnnrt.tools.inspect, both graphs already laid
out (cnnrt.tools.graph_layout: the optimised one and the ONNX graph as imported, beside it), the
per-node times when profiled, and the page's own script and style (the files under
``inspector/``, copied in when the page is written). It loads nothing from the network, so it
opens from disk, offline, or as a CI artifact.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from cnnrt.tools.graph_layout import box_size, layered_layout
from cnnrt.tools.inspect import fused_ids, graph_view, shape_text, short_name


def _laid_out(boxes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    """Boxes and edges with their coordinates (rounded: the page only draws them)."""
    sizes = {b["id"]: box_size(b["lines"]) for b in boxes}
    lay = layered_layout(sizes, [(e["src"], e["dst"]) for e in edges])
    for b in boxes:
        (x, y), (w, h) = lay.pos[b["id"]], sizes[b["id"]]
        b.update(x=round(x, 1), y=round(y, 1), w=round(w, 1), h=round(h, 1))
    for e, route in zip(edges, lay.routes):
        e["route"] = [[round(x, 1), round(y, 1)] for x, y in route]
    return {"boxes": boxes, "edges": edges, "width": round(lay.width, 1), "height": round(lay.height, 1)}


def onnx_view(session) -> dict[str, Any]:
    """The model's ONNX graph as imported (every ONNX node a box, shapes from the importer), laid out.

    Node names follow the importer's rule (frontends/graph_builder.py): the ONNX name, or
    ``{op_type}_{index}`` for an unnamed node, so they match the optimised nodes' origins.
    """
    graph = session.graph
    imported = session.model.to_graph({i: tuple(graph.values[i].shape) for i in graph.inputs})
    values = imported.values
    proto = session.model.proto.graph
    boxes, edges, source = [], [], {}
    for name in imported.inputs:
        boxes.append({"id": f"in:{name}", "kind": "input", "lines": ["input " + name], "name": name})
        source[name] = f"in:{name}"
    for idx, n in enumerate(proto.node):
        name = n.name or f"{n.op_type}_{idx}"
        box = f"o:{idx}"
        boxes.append({"id": box, "kind": "node", "lines": [n.op_type, short_name(name)], "name": name})
        for t in n.input:
            if t in source:
                label = shape_text(list(values[t].shape)) if t in values else ""
                edges.append({"src": source[t], "dst": box, "tensor": t, "label": label})
        for t in n.output:
            if t:
                source[t] = box
    for name in imported.outputs:
        boxes.append({"id": f"out:{name}", "kind": "output", "lines": ["output " + name], "name": name})
        if name in source:
            label = shape_text(list(values[name].shape))
            edges.append({"src": source[name], "dst": f"out:{name}", "tensor": name, "label": label})
    return _laid_out(boxes, edges)


def profile_times(session, runs: int) -> dict[str, Any]:
    """Median milliseconds per node over ``runs`` profiled runs on random inputs (cnnrt.tools.profile)."""
    from cnnrt.tools.modelsource import random_feeds
    from cnnrt.tools.profile import profile_session

    prof = profile_session(session, random_feeds(session), runs=runs, warmup=1)
    return {
        "runs": runs,
        "total_ms": prof["total_ms"],
        "ms": {s["name"]: s["ms"] for s in prof["steps"]},
    }


def page_data(session, rep: dict[str, Any], title: str, profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict (``title``: what the model is called)."""
    boxes, edges = graph_view(rep)
    fused = fused_ids(rep)
    for b in boxes:
        b["fused"] = b["id"] in fused
    graph = _laid_out(boxes, edges)
    return {"title": title, "report": rep, "graph": graph, "original": onnx_view(session), "profile": profile}


def _asset(name: str) -> str:
    return resources.files("cnnrt.tools").joinpath("inspector", name).read_text(encoding="utf-8")


def render(data: dict[str, Any]) -> str:
    """The page: the template with the style, the data and the script written into it."""
    # "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" can end the block
    blob = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    title = f"cnnrt inspect: {data['title']}".replace("&", "&amp;").replace("<", "&lt;")
    page = _asset("inspector.html")
    for key, text in (("TITLE", title), ("CSS", _asset("inspector.css")), ("JS", _asset("inspector.js"))):
        page = page.replace(f"@@{key}@@", text)
    return page.replace("@@DATA@@", blob)


def write_html(session, rep: dict[str, Any], path: str, title: str, profile_runs: int | None = None) -> None:
    """Write the inspector page for ``session`` (whose report is ``rep``) to ``path``."""
    profile = profile_times(session, profile_runs) if profile_runs else None
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(page_data(session, rep, title, profile)))
