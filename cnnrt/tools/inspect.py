"""What ``cnnrt inspect`` shows: the optimised graph, the pass log and the memory plan.

One ``report(session)`` dict feeds every format: text for the terminal, JSON for tools, DOT
for graphviz, the pictures (cnnrt.tools.plots) and the HTML inspector (cnnrt.tools.inspect_html).
``graph_view`` turns it into the boxes and labelled edges every drawing shows, graph inputs
and outputs included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnrt.core.ir import BF16, Graph, Node
from cnnrt.errors import CnnrtError
from cnnrt.tools.costs import node_macs

# what an output file's suffix says it holds (``cnnrt inspect -o`` without ``--format``)
FORMAT_OF_SUFFIX = {
    ".txt": "text",
    ".json": "json",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
    ".html": "html",
    ".htm": "html",
}
FORMATS = ("text", "json", "dot", "svg", "png", "html")
_NEEDS_FILE = ("svg", "png", "html")

# shown in their own columns, not among the attributes
_SHOWN_KEYS = ("activation", "act_alpha", "act_beta", "algorithm", "algorithm_reason", "precision", "bf16_tile")


def output_format(fmt: str | None, path: str | None) -> str:
    """The format ``cnnrt inspect`` writes: ``fmt`` if given, else the one ``path``'s suffix names
    (text on stdout without either). A suffix that names another format than ``fmt`` is an
    error, so a picture's name never receives text."""
    suffix = Path(path).suffix.lower() if path else ""
    implied = FORMAT_OF_SUFFIX.get(suffix)
    known = ", ".join(FORMAT_OF_SUFFIX)
    if fmt is None:
        if path is None:
            return "text"
        if implied is None:
            raise CnnrtError(f"-o {path!r}: cannot tell the format from the suffix; use one of {known} or --format")
        return implied
    if fmt not in FORMATS:
        raise CnnrtError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if path is None and fmt in _NEEDS_FILE:
        raise CnnrtError(f"--format {fmt} needs -o PATH")
    if implied is not None and implied != fmt:
        raise CnnrtError(f"--format {fmt} does not match -o {path!r} (its suffix means {implied})")
    return fmt


def check_writable(path: str, option: str) -> None:
    """Fail before any work when ``path`` cannot be created (its folder is missing or is a file)."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise CnnrtError(f"{option} {path!r}: the folder {str(folder)!r} does not exist")
    if Path(path).is_dir():
        raise CnnrtError(f"{option} {path!r} is a folder, not a file name")


def epilogue(node: Node) -> str:
    """The fused epilogue in words: '+bias +residual Relu' (empty for plain nodes)."""
    parts = []
    if node.op in ("Conv", "BlockedConv", "ConvTranspose", "Gemm") and len(node.inputs) > 2 and node.inputs[2]:
        parts.append("+bias")
    if node.op in ("Conv", "BlockedConv") and len(node.inputs) > 3 and node.inputs[3]:
        parts.append("+residual")
    act = node.attrs.get("activation")
    if act and act != "none":
        parts.append(str(act))
    return " ".join(parts)


def _node_record(node: Node, graph: Graph, step: int) -> dict[str, Any]:
    return {
        "step": step,
        "name": node.name,
        "op": node.op,
        # written by passes/select_algorithm.py for the session's backend
        "algorithm": node.attrs.get("algorithm"),
        "algorithm_reason": node.attrs.get("algorithm_reason"),
        # "bf16" / "int8" where a pass made the node compute in reduced precision (passes/precision.py)
        "precision": node.attrs.get("precision", "f32"),
        # "amx" where a bf16 conv runs on AMX tiles (kernels/cpu/conv_amx.py)
        "tile": node.attrs.get("bf16_tile"),
        "epilogue": epilogue(node),
        "origin": list(node.origin),
        "inputs": [
            {"name": i, "shape": list(graph.values[i].shape), "constant": i in graph.constants}
            for i in node.inputs
            if i
        ],
        "outputs": [_value_record(graph, o) for o in node.outputs if o],
        "macs": node_macs(node, graph),
        "attrs": {k: _jsonable(v) for k, v in node.attrs.items() if k not in _SHOWN_KEYS},
    }


def op_label(n: dict[str, Any]) -> str:
    """A node record's op as the tables and drawings show it: op/algorithm, and its precision
    when reduced, with the tile that computes it when not the vector one ("BlockedConv/direct
    bf16", "BlockedConv/direct bf16 amx")."""
    op = n["op"] + (f"/{n['algorithm']}" if n.get("algorithm") else "")
    op += f" {n['precision']}" if n.get("precision", "f32") != "f32" else ""
    return op + (f" {n['tile']}" if n.get("tile") else "")


def _value_record(graph: Graph, name: str) -> dict[str, Any]:
    v = graph.values[name]
    return {"name": name, "shape": list(v.shape), "dtype": v.dtype, "layout": v.layout, "logical": v.logical}


def _log_tokens(entry: str) -> list[str]:
    """The node names a pass-log entry mentions ('a + b -> a+B' names three)."""
    return [t for part in entry.split(" -> ") for t in part.split(" + ") if t]


def log_by_node(log, graph: Graph) -> dict[str, list[dict[str, str]]]:
    """Each pass-log entry under the optimised nodes it concerns.

    Entries name nodes as they were when the pass ran: a name that is (the start of) an
    optimised node's name belongs to that node; a name that no longer exists belongs to the
    nodes whose origin holds it (an Add fused into a conv). Entries about no surviving node
    (a removed constant) are under no node.
    """
    out: dict[str, list[dict[str, str]]] = {n.name: [] for n in graph.nodes}
    by_origin: dict[str, list[str]] = {}
    for n in graph.nodes:
        for o in n.origin:
            by_origin.setdefault(o, []).append(n.name)

    def owners(token: str) -> list[str]:
        named = [n.name for n in graph.nodes if n.name == token or n.name.startswith(token + "+")]
        return named or by_origin.get(token, [])

    entries = [(p, "fired", rule, node, "") for p, v in log.fired.items() for rule, node in v]
    entries += [(p, "declined", rule, node, why) for p, v in log.declined.items() for rule, node, why in v]
    for pass_name, kind, rule, node, why in entries:
        hit = dict.fromkeys(o for t in _log_tokens(node) for o in owners(t))
        for name in hit:
            out[name].append({"pass": pass_name, "kind": kind, "rule": rule, "at": node, "reason": why})
    return out


def _live_bytes(buffers: list[dict[str, Any]], steps: int) -> list[int]:
    """Bytes of arena regions live at each step (the planner's lower bound is their maximum)."""
    live = [0] * max(steps, 1)
    for b in buffers:
        if not b["alias"]:
            for s in range(max(b["first_step"], 0), min(b["last_step"], steps - 1) + 1):
                live[s] += b["region_bytes"]
    return live


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def report(session) -> dict[str, Any]:
    """Everything inspect prints, as plain data."""
    graph, plan, log = session.graph, session.plan, session.pass_log
    producer = {o: n for n in graph.nodes for o in n.outputs if o}
    buffers = []
    for value, root in plan.alias_of.items():
        b = plan.buffers[root]
        made_by = producer.get(value)
        buffers.append(
            {
                "tensor": value,
                "producer": made_by.name if made_by else None,
                "producer_op": made_by.op if made_by else "graph input",
                "root": root,
                "offset": b.offset,
                "bytes": graph.values[value].nbytes,
                "region_bytes": b.nbytes,
                "first_step": b.first,
                "last_step": b.last,
                "alias": value != root,
            }
        )
    buffers.sort(key=lambda r: (r["offset"], r["first_step"]))
    nodes = [_node_record(n, graph, i) for i, n in enumerate(graph.nodes)]
    entries = log_by_node(log, graph)
    for rec in nodes:
        rec["passes"] = entries[rec["name"]]
    return {
        "model": graph.name,
        "opt_level": session.opt_level,
        "backend": session.backend,
        "inputs": [_value_record(graph, i) for i in graph.inputs],
        "outputs": [_value_record(graph, o) for o in graph.outputs],
        "nodes": nodes,
        "op_counts": graph.op_counts(),
        "total_macs": sum(node_macs(n, graph) for n in graph.nodes),
        "passes": {
            "rounds": log.rounds,
            "fired": {k: [list(x) for x in v] for k, v in log.fired.items() if v},
            "declined": {k: [list(x) for x in v] for k, v in log.declined.items() if v},
        },
        "memory": {
            "arena_bytes": plan.arena_bytes,
            "peak_live_bytes": plan.peak_live_bytes,
            "naive_bytes": plan.naive_bytes,
            "constant_bytes": int(sum(a.nbytes for a in graph.constants.values())),
            "buffers": buffers,
            "live_bytes": _live_bytes(buffers, len(graph.nodes)),
        },
    }


def to_json(rep: dict[str, Any]) -> str:
    return json.dumps(rep, indent=2)


def to_text(rep: dict[str, Any]) -> str:
    lines = [
        f"model {rep['model']}  opt_level {rep['opt_level']}  {len(rep['nodes'])} nodes  "
        f"{rep['total_macs'] / 1e6:.1f} MMACs"
    ]
    lines.append("ops: " + ", ".join(f"{k}×{v}" for k, v in sorted(rep["op_counts"].items())))
    reduced: dict[str, int] = {}
    for n in rep["nodes"]:
        if n.get("precision", "f32") != "f32":
            reduced[n["precision"]] = reduced.get(n["precision"], 0) + 1
    if reduced:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(reduced.items()))
        bf16_values = sum(o["dtype"] == BF16 for n in rep["nodes"] for o in n["outputs"])
        stored = f"; {bf16_values} output(s) stored bf16 (read by bf16 convs only)" if bf16_values else ""
        lines.append(f"precision: {counts} node(s) ({len(rep['nodes']) - sum(reduced.values())} float32){stored}")
    lines.append("")
    lines.append(f"{'#':>4} {'node':32s} {'op':27s} {'epilogue':22s} {'output shape':20s} {'MMACs':>9}  origin")
    for n in rep["nodes"]:
        shape = "x".join(str(d) for d in n["outputs"][0]["shape"]) if n["outputs"] else ""
        shape += " bf16" if n["outputs"] and n["outputs"][0]["dtype"] == BF16 else ""  # stored bf16
        origin = ", ".join(n["origin"])
        op = op_label(n)
        lines.append(
            f"{n['step']:>4} {n['name'][:32]:32s} {op[:27]:27s} {n['epilogue'][:22]:22s} {shape:20s} "
            f"{n['macs'] / 1e6:9.2f}  {origin}"
        )
    chosen = [n for n in rep["nodes"] if n.get("algorithm")]
    if chosen:
        lines.append("")
        lines.append("algorithms:")
        for n in chosen:
            prec = f" ({n['precision']})" if n.get("precision", "f32") != "f32" else ""
            lines.append(f"  {n['name'][:32]:32s} {n['algorithm']}{prec}: {n['algorithm_reason']}")
    lines.append("")
    lines.append(f"passes ({rep['passes']['rounds']} rounds):")
    for name, fired in rep["passes"]["fired"].items():
        rules: dict[str, list[str]] = {}
        for rule, node in fired:
            rules.setdefault(rule, []).append(node)
        for rule, nodes in rules.items():
            lines.append(
                f"  [{name}] fired {rule} ×{len(nodes)}: {', '.join(nodes[:6])}{' ...' if len(nodes) > 6 else ''}"
            )
    for name, declined in rep["passes"]["declined"].items():
        for rule, node, why in declined:
            lines.append(f"  [{name}] declined {rule} at {node}: {why}")
    m = rep["memory"]
    lines.append("")
    lines.append(
        f"memory: arena {m['arena_bytes'] / 2**20:.2f} MiB, peak live {m['peak_live_bytes'] / 2**20:.2f} MiB "
        f"({m['arena_bytes'] / max(1, m['peak_live_bytes']):.3f}×), naive {m['naive_bytes'] / 2**20:.2f} MiB, "
        f"weights {m['constant_bytes'] / 2**20:.2f} MiB"
    )
    lines.append(f"  {'offset':>12} {'bytes':>10} {'steps':>11}  tensor")
    for b in m["buffers"]:
        alias = f" (view of {b['root']})" if b["alias"] else ""
        lines.append(
            f"  {b['offset']:>12} {b['bytes']:>10} {b['first_step']:>5}-{b['last_step']:<5}  {b['tensor']}{alias}"
        )
    return "\n".join(lines)


def shape_text(shape: list[int]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def short_name(name: str, width: int = 30) -> str:
    """A node name cut to ``width`` characters, keeping its end (the distinguishing part)."""
    base = name.split("+")[0] if "+" in name else name
    return base if len(base) <= width else "…" + base[-(width - 1) :]


def graph_view(rep: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Boxes (graph inputs, nodes, graph outputs, in topological order) and edges (one per
    tensor read, labelled with its shape as stored) that every drawing of the graph shows.

    A box: id, kind ("input" | "node" | "output"), name (node or tensor), lines of text, and
    for nodes the step.
    An edge: src, dst (box ids), tensor, label.
    """
    boxes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    source: dict[str, str] = {}
    shapes: dict[str, str] = {}
    for v in rep["inputs"]:
        box = f"in:{v['name']}"
        boxes.append(
            {"id": box, "kind": "input", "name": v["name"], "lines": ["input " + v["name"], shape_text(v["shape"])]}
        )
        source[v["name"]], shapes[v["name"]] = box, shape_text(v["shape"])
    for n in rep["nodes"]:
        box = f"n:{n['step']}"
        lines = [op_label(n), short_name(n["name"])] + ([n["epilogue"]] if n["epilogue"] else [])
        boxes.append({"id": box, "kind": "node", "name": n["name"], "lines": lines, "step": n["step"]})
        for i in n["inputs"]:
            if i["name"] in source:
                edges.append({"src": source[i["name"]], "dst": box, "tensor": i["name"], "label": shapes[i["name"]]})
        for o in n["outputs"]:
            source[o["name"]], shapes[o["name"]] = box, shape_text(o["shape"])
    for v in rep["outputs"]:
        box = f"out:{v['name']}"
        boxes.append(
            {"id": box, "kind": "output", "name": v["name"], "lines": ["output " + v["name"], shape_text(v["shape"])]}
        )
        if v["name"] in source:
            edges.append({"src": source[v["name"]], "dst": box, "tensor": v["name"], "label": shapes[v["name"]]})
    return boxes, edges


def fused_ids(rep: dict[str, Any]) -> set[str]:
    """graph_view ids of the nodes that stand for several ONNX nodes (drawn shaded)."""
    return {f"n:{n['step']}" for n in rep["nodes"] if len(n["origin"]) > 1}


def _dot_str(s: str) -> str:
    """A DOT quoted string; line breaks become DOT's own \\n escape (written once)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(rep: dict[str, Any]) -> str:
    """Graphviz DOT: a box per node (op, name, epilogue), ellipses for the graph inputs and
    outputs, every edge labelled with its tensor's shape."""
    style = {
        "input": 'shape=ellipse, style=filled, fillcolor="#e8f4e8"',
        "output": 'shape=ellipse, style=filled, fillcolor="#f4e8e8"',
        "node": "shape=box, style=filled",
    }
    out = [
        f"digraph {_dot_str(rep['model'])} {{",
        "  rankdir=TB; node [fontname=Helvetica, fontsize=10]; edge [fontname=Helvetica, fontsize=8];",
    ]
    boxes, edges = graph_view(rep)
    fused = fused_ids(rep)
    for b in boxes:
        fill = ', fillcolor="#cde"' if b["id"] in fused else (', fillcolor="white"' if b["kind"] == "node" else "")
        out.append(f"  {_dot_str(b['id'])} [label={_dot_str(chr(10).join(b['lines']))}, {style[b['kind']]}{fill}];")
    for e in edges:
        out.append(f"  {_dot_str(e['src'])} -> {_dot_str(e['dst'])} [label={_dot_str(e['label'])}];")
    out.append("}")
    return "\n".join(out)
