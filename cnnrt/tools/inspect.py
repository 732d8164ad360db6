"""What ``cnnrt inspect`` shows: the optimised graph, the pass log and the memory plan.

One ``report(session)`` dict feeds every format: text for the terminal, JSON for tools,
DOT for graphviz, and pictures (graph and memory plan) drawn with matplotlib so no system
graphviz is needed.
"""

from __future__ import annotations

import json
from typing import Any

from cnnrt.core.ir import Graph, Node
from cnnrt.tools.costs import node_macs

# shown in their own columns, not among the attributes
_SHOWN_KEYS = ("activation", "act_alpha", "act_beta", "algorithm", "algorithm_reason")


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
        "epilogue": epilogue(node),
        "origin": list(node.origin),
        "inputs": [
            {"name": i, "shape": list(graph.values[i].shape), "constant": i in graph.constants}
            for i in node.inputs
            if i
        ],
        "outputs": [
            {"name": o, "shape": list(graph.values[o].shape), "dtype": graph.values[o].dtype} for o in node.outputs if o
        ],
        "macs": node_macs(node, graph),
        "attrs": {k: _jsonable(v) for k, v in node.attrs.items() if k not in _SHOWN_KEYS},
    }


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
    buffers = []
    for value, root in plan.alias_of.items():
        b = plan.buffers[root]
        buffers.append(
            {
                "tensor": value,
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
    return {
        "model": graph.name,
        "opt_level": session.opt_level,
        "nodes": [_node_record(n, graph, i) for i, n in enumerate(graph.nodes)],
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
    lines.append("")
    lines.append(f"{'#':>4} {'node':32s} {'op':22s} {'epilogue':22s} {'output shape':20s} {'MMACs':>9}  origin")
    for n in rep["nodes"]:
        shape = "x".join(str(d) for d in n["outputs"][0]["shape"]) if n["outputs"] else ""
        origin = ", ".join(n["origin"])
        op = n["op"] + (f"/{n['algorithm']}" if n.get("algorithm") else "")
        lines.append(
            f"{n['step']:>4} {n['name'][:32]:32s} {op[:22]:22s} {n['epilogue'][:22]:22s} {shape:20s} "
            f"{n['macs'] / 1e6:9.2f}  {origin}"
        )
    chosen = [n for n in rep["nodes"] if n.get("algorithm")]
    if chosen:
        lines.append("")
        lines.append("algorithms:")
        for n in chosen:
            lines.append(f"  {n['name'][:32]:32s} {n['algorithm']}: {n['algorithm_reason']}")
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


def _dot_id(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(rep: dict[str, Any]) -> str:
    """Graphviz DOT: one box per node (op, epilogue, output shape), edges labelled by tensor."""
    out = ["digraph cnnrt {", "  rankdir=TB; node [shape=box, fontname=Helvetica, fontsize=10];"]
    producer = {}
    for n in rep["nodes"]:
        for o in n["outputs"]:
            producer[o["name"]] = n["name"]
        label = n["op"] + (f"\\n{n['epilogue']}" if n["epilogue"] else "")
        if n["outputs"]:
            label += "\\n" + "x".join(map(str, n["outputs"][0]["shape"]))
        color = "lightblue" if n["epilogue"] else "white"
        out.append(f"  {_dot_id(n['name'])} [label={_dot_id(label)}, style=filled, fillcolor={color}];")
    for n in rep["nodes"]:
        for i in n["inputs"]:
            if i["name"] in producer:
                out.append(f"  {_dot_id(producer[i['name']])} -> {_dot_id(n['name'])};")
    out.append("}")
    return "\n".join(out)


def draw_graph(session, path: str) -> None:
    """Picture of the graph (layered top to bottom), PNG or SVG by extension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    g = session.graph.to_networkx()
    layers = list(nx.topological_generations(g)) if len(g) else []
    pos = {}
    for depth, layer in enumerate(layers):
        for k, name in enumerate(sorted(layer)):
            pos[name] = (k - (len(layer) - 1) / 2, -depth)
    width = max((len(layer) for layer in layers), default=1)
    fig, ax = plt.subplots(figsize=(max(4, 2.2 * width), max(4, 0.55 * len(layers))))
    ops = nx.get_node_attributes(g, "op")
    by_name = {n.name: n for n in session.graph.nodes}
    labels = {k: ops[k] + ("\n" + epilogue(by_name[k]) if epilogue(by_name[k]) else "") for k in g}
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=8, edge_color="#888")
    for k, (x, y) in pos.items():
        ax.text(
            x,
            y,
            labels[k],
            ha="center",
            va="center",
            fontsize=7,
            bbox=dict(boxstyle="round", fc="#cde" if epilogue(by_name[k]) else "white", ec="#333"),
        )
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_memory(rep: dict[str, Any], path: str) -> None:
    """Memory plan picture: each tensor a rectangle on the step (x) × arena offset (y) plane."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    m = rep["memory"]
    fig, ax = plt.subplots(figsize=(10, 5))
    roots = {}
    for b in m["buffers"]:
        if not b["alias"]:
            roots[b["root"]] = b
    cmap = plt.get_cmap("tab20")
    for k, b in enumerate(roots.values()):
        ax.add_patch(
            Rectangle(
                (b["first_step"] - 0.5, b["offset"] / 2**20),
                b["last_step"] - b["first_step"] + 1,
                b["region_bytes"] / 2**20,
                fc=cmap(k % 20),
                ec="black",
                lw=0.3,
            )
        )
    steps = max((b["last_step"] for b in roots.values()), default=1)
    ax.set_xlim(-1.5, steps + 1.5)
    ax.set_ylim(0, max(m["arena_bytes"], 1) / 2**20 * 1.05)
    ax.axhline(m["peak_live_bytes"] / 2**20, color="red", ls="--", lw=0.8, label="peak live")
    ax.set_xlabel("step")
    ax.set_ylabel("arena offset (MiB)")
    ax.set_title(
        f"memory plan: arena {m['arena_bytes'] / 2**20:.2f} MiB, peak live {m['peak_live_bytes'] / 2**20:.2f} MiB"
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
