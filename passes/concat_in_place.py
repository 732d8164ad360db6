"""concat_in_place: let a Concat's producers write straight into its output (zero-copy Concat).

A Concat marked ``in_place=True`` is a no-op step: the planner places each input as a
slice of the output along the concat axis (see :func:`cnnrt.core.placement.concat_layout`), and the
executor hands each producer a numpy view of that slice. Concats that feed a bigger Concat
(DenseNet's growing feature maps) nest: the smaller one becomes a slice of the bigger one.

The slice of a value along ``axis`` is contiguous only when every axis in front of it has
size 1 (NCHW channel slices at batch 1). A strided slice (batch > 1) is taken only in
blocked graphs, where the producer's kernel writes such outputs (the op table's
``strided_output``: each image a contiguous run, the runs apart by the buffer's image stride;
for a BlockedConv, the register tile's and Winograd's algorithms; a Concat, whose copies
write any view) and every other reader's kernel reads them (``strided_input``: DenseNet's
BN + ReLU reading the growing Concat); the rest are declined with the reason.

Requires: a verified graph; run after the fusion passes (it looks at final producers) and
after remove_identity. It re-decides every Concat on each run, so later rewrites cannot
leave a stale mark.
Guarantees: ``in_place`` is True exactly on Concats the planner can lay out: every input is
produced by a node or fed as a graph input (not a constant, not a view op output), no input
appears twice, the slices are contiguous or channel ranges written by kernels that take
strided outputs, and nesting with other marked Concats is
consistent (a value can sit in one place only).
"""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph
from cnnrt.core.layout import is_blocked
from cnnrt.core.ops import VIEW_OPS, op_def
from cnnrt.core.placement import concat_axis, concat_layout
from cnnrt.kernels.conv_spec import spec_from_node
from cnnrt.kernels.cpu.conv_algorithm import choose

from . import PassResult

RULE = "Concat -> in-place Concat (producers write into slices)"


def _writes_strided(graph: Graph, p) -> bool:
    """Whether ``p``'s CPU kernel writes a strided output itself: the op table says so, and for a
    BlockedConv its algorithm (the override, else the one select_algorithm will choose) is the
    register tile's or Winograd's; the depthwise kernels would go through a scratch copy."""
    if not op_def(p.op).strided_output:
        return False
    if p.op != "BlockedConv":
        return True
    spec = spec_from_node(p, graph)
    algorithm = p.attrs.get("algorithm") or choose(spec, p.op, is_blocked(graph.values[p.inputs[0]]))[0]
    return algorithm in ("direct", "grouped", "winograd")


def _strided_reason(graph: Graph, node, producers, readers) -> str | None:
    """Why an input of ``node`` cannot be a strided slice (None: each can). Strided slices are
    taken in blocked graphs only (the CPU's kernels; the CUDA executor refuses them)."""
    if not is_blocked(graph.values[node.outputs[0]]):
        return "its slices would be strided, and only the channel-blocked kernels handle those"
    for x in node.inputs:
        p = producers.get(x)
        if p is None or not _writes_strided(graph, p):
            return f"{x!r} would be a strided slice, and its producer's kernel writes contiguous outputs only"
        if x in graph.outputs:
            return f"{x!r} would be a strided slice, and it is a graph output"
        for r in readers.get(x, ()):
            if r is not node and not op_def(r.op).strided_input:
                return f"{x!r} would be a strided slice, and {r.name!r} ({r.op}) reads contiguous inputs only"
    return None


def _local_reason(graph: Graph, node, producers, readers) -> str | None:
    axis = concat_axis(graph, node)
    shape = graph.values[node.outputs[0]].shape
    lead = int(np.prod(shape[:axis]))
    if lead != 1 and axis != 1:
        return f"slices along axis {axis} of {list(shape)} are strided apart within each image"
    if lead != 1 and (why := _strided_reason(graph, node, producers, readers)):
        return why
    if len(set(node.inputs)) != len(node.inputs):
        return "an input appears twice"
    for x in node.inputs:
        if x in graph.constants:
            return f"input {x!r} is a constant"
        p = producers.get(x)
        if p is not None and p.op in VIEW_OPS:
            return f"input {x!r} is a {p.op} view of another tensor"
        if graph.values[x].dtype != graph.values[node.outputs[0]].dtype:
            return f"input {x!r} has dtype {graph.values[x].dtype}"
    return None


def concat_in_place(graph: Graph) -> PassResult:
    """Mark the Concats whose inputs can be written in place; see the module docstring."""
    producers = graph.producers()
    readers: dict[str, list] = {}  # value -> the nodes reading it
    for n in graph.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    declined: list[tuple[str, str, str]] = []
    candidates = []
    for node in graph.nodes:
        if node.op != "Concat":
            continue
        why = _local_reason(graph, node, producers, readers)
        if why:
            declined.append((RULE, node.name, why))
        else:
            candidates.append(node)
    _, rejected = concat_layout(graph, candidates)
    declined.extend((RULE, name, why) for name, why in rejected.items())
    accept = {n.name for n in candidates} - set(rejected)
    fired: list[tuple[str, str]] = []
    nodes = []
    for node in graph.nodes:
        if node.op == "Concat":
            want = node.name in accept
            if bool(node.attrs.get("in_place", False)) != want:
                node = node.with_attrs(in_place=want)
                if want:
                    fired.append((RULE, node.name))
        nodes.append(node)
    changed = any(a is not b for a, b in zip(nodes, graph.nodes))
    g = graph.copy()
    g.nodes = nodes
    return PassResult(g, changed, fired, declined)
