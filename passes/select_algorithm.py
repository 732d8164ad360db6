"""select_algorithm: write on every conv node the algorithm its backend's kernel runs.

The decision lives in one module per backend (kernels/<backend>/conv_algorithm.py:
``choose(spec, op, blocked_input) -> (algorithm, reason)`` and ``check``); this step asks it
for each node it has algorithms for and records ``attrs["algorithm"]`` and
``attrs["algorithm_reason"]``, which the kernels, ``cnnrt inspect`` and the pass log read.
An ``algorithm`` already on a node (set by a test or a tool) is the override: checked, and
kept with the reason "requested"; one that cannot compute the layer is an
UnsupportedOpError naming the node.

Requires: the graph's final form (it runs after every other pass, at every opt_level, since
the kernels read its result). Guarantees: nodes, values and numerics unchanged.
"""

from __future__ import annotations

import importlib

from cnnrt.core.ir import Graph
from cnnrt.core.layout import is_blocked
from cnnrt.kernels.conv_spec import spec_from_node

from . import PassResult

BACKENDS = {"cpu": "cnnrt.kernels.cpu.conv_algorithm", "cuda": "cnnrt.kernels.cuda.conv_algorithm"}


def select_algorithm(graph: Graph, backend: str) -> PassResult:
    """Resolve the algorithm of every conv node for ``backend``; see the module docstring."""
    rules = importlib.import_module(BACKENDS[backend])
    nodes, fired, declined = [], [], []
    for node in graph.nodes:
        if node.op not in rules.ALGORITHMS:
            nodes.append(node)
            continue
        try:
            spec = spec_from_node(node, graph)
        except (ValueError, TypeError) as e:  # shapes the kernel rejects: its build says why
            declined.append((f"{node.op} algorithm", node.name, str(e)))
            nodes.append(node)
            continue
        blocked_input = is_blocked(graph.values[node.inputs[0]])
        algorithm = node.attrs.get("algorithm")
        if algorithm:
            rules.check(spec, algorithm, node.name, node.op, blocked_input)
            reason = node.attrs.get("algorithm_reason", "requested")
        else:
            algorithm, reason = rules.choose(spec, node.op, blocked_input)
        nodes.append(node.with_attrs(algorithm=algorithm, algorithm_reason=reason))
        fired.append((f"{node.op} -> {algorithm}: {reason}", node.name))
    new = Graph(nodes, graph.values, graph.constants, graph.inputs, graph.outputs, graph.name)
    return PassResult(new, bool(fired), fired, declined)
