"""Building the IR Graph of a parsed ONNX model for concrete input shapes.

Nodes are converted in dependency order by the converter the registry picks for the model's
opset. Values known at import time (initializers, Constants, and what const_eval computes
from them) are tracked, so converters can turn shape arithmetic into attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.ops import evaluate_node
from cnnrt.errors import CnnrtError, ModelLoadError

from .context import ConvertContext
from .loader import ONNX_DTYPES, InputSpec, dtype_name
from .registry import converter_for
from .schema_checks import check_input_types
from .toposort import topological_order

# Known values larger than this are not propagated (they are weights, not shape arithmetic).
_KNOWN_VALUE_LIMIT = 1 << 16


class ParsedModel(Protocol):
    """What the builder reads of a parsed model (cnnrt.frontends.onnx.OnnxModel)."""

    proto: onnx.ModelProto
    folder: Path | None
    opset: int
    initializers: dict[str, np.ndarray]
    inputs: list[InputSpec]
    overridable: list[InputSpec]
    outputs: list[str]


class GraphBuilder:
    """One import: the IR nodes, values, constants and known values built so far."""

    def __init__(self, model: ParsedModel, input_shapes: Mapping[str, tuple[int, ...]], fed: frozenset[str]) -> None:
        self.model = model
        self.nodes: list[Node] = []
        self.values: dict[str, Value] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.known: dict[str, np.ndarray] = {}
        self.inputs: list[str] = []
        self.node_names: set[str] = set()
        for spec in model.inputs:
            shape = tuple(input_shapes[spec.name])
            self.values[spec.name] = Value(spec.name, shape, spec.dtype)
            self.inputs.append(spec.name)
        overridable = {s.name: s for s in model.overridable}
        for name, arr in model.initializers.items():
            if name in fed:  # the feed's shape, which may differ from the initializer's
                shape = tuple(input_shapes.get(name, arr.shape))
                self.values[name] = Value(name, shape, overridable[name].dtype)
                self.inputs.append(name)
            else:
                self.values[name] = Value(name, arr.shape, str(arr.dtype))
                self.constants[name] = arr
                self.known[name] = arr

    def add_constant(self, name: str, arr: np.ndarray) -> str:
        while name in self.values:
            name += "_"
        arr = np.asarray(arr, order="C")
        self.values[name] = Value(name, tuple(arr.shape), str(arr.dtype))
        self.constants[name] = arr
        self.known[name] = arr
        return name

    def add_node(self, node: Node, outs: list[Value]) -> None:
        name = node.name
        while name in self.node_names:
            name += "_"
        if name != node.name:
            node = node.replace(name=name)
        self.node_names.add(name)
        for v in outs:
            if v.name in self.values:
                raise ModelLoadError(f"value {v.name!r} is produced twice (again by node {name!r})")
            self.values[v.name] = v
        self.nodes.append(node)
        ins = [self.known.get(i) if i else None for i in node.inputs]
        if all(x is not None or not i for x, i in zip(ins, node.inputs)) and all(
            v.size <= _KNOWN_VALUE_LIMIT for v in outs
        ):
            results = evaluate_node(node, ins, [v for v in outs])
            if results is not None:
                for v, r in zip(outs, results):
                    self.known[v.name] = r

    def build(self) -> Graph:
        g = self.model.proto.graph
        for idx in topological_order(g.node, set(self.values)):
            n = g.node[idx]
            name = n.name or f"{n.op_type}_{idx}"
            for i in n.input:
                if i and i not in self.values:
                    raise ModelLoadError(
                        f"node {name!r} ({n.op_type}) reads {i!r}, which no earlier node, input or "
                        "initializer defines (undefined input, or the graph is not topologically sorted / has a cycle)"
                    )
            conv = converter_for(n.op_type, self.model.opset)
            check_input_types(n, name, self.model.opset, self.values)
            try:
                ctx = ConvertContext(self, n, name, self.model.opset, self.model.folder)
                conv(ctx)
            except (CnnrtError, MemoryError):  # the build names what was being allocated
                raise
            except Exception as e:
                # Safety net: a converter that trips over a malformed node (a bad attribute
                # type, an impossible shape) must still fail as a load error naming the node.
                ins = ", ".join(f"{i}{list(self.values[i].shape)}" if i in self.values else repr(i) for i in n.input)
                raise ModelLoadError(
                    f"node {name!r} ({n.op_type}, opset {self.model.opset}) with inputs [{ins}] cannot be "
                    f"imported: {type(e).__name__}: {e}"
                ) from e
            for o in n.output:
                if o and o not in self.values:
                    raise ModelLoadError(f"node {name!r} ({n.op_type}): output {o!r} is not supported by cnnrt")
        for o in self.model.outputs:
            if o not in self.values:
                raise ModelLoadError(f"graph output {o!r} is never produced")
        for vi in g.output:
            declared = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            got = self.values[vi.name].dtype
            if declared and ONNX_DTYPES.get(declared) != got:
                raise ModelLoadError(
                    f"graph output {vi.name!r} is declared {dtype_name(declared)} but the graph computes {got}"
                )
        graph = Graph(self.nodes, self.values, self.constants, self.inputs, self.model.outputs, g.name or "graph")
        graph.verify()
        return graph
