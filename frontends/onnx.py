"""ONNX ModelProto -> cnnrt Graph: the frontend's entry point, :class:`OnnxModel`.

Importing happens for concrete input shapes: symbolic dimensions are bound from the feeds
(the session re-imports when a new shape arrives). Each ONNX op has small converters
registered with :func:`cnnrt.frontends.registry.onnx_op`; the one with the newest ``since``
not above the model's opset is used. Converters compute output shapes; values that are
known at import time (initializers, Constants, shape arithmetic on them) are tracked so
Reshape targets, Slice bounds, Pad amounts and Resize scales resolve to attributes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import onnx

from cnnrt.core.ir import Graph
from cnnrt.errors import ModelLoadError, UnsupportedOpError

from .graph_builder import GraphBuilder
from .loader import InputSpec, input_spec, load_model, tensor_to_array
from .registry import converter_for, onnx_op_types
from .schema_checks import check_signatures, opset_of


class OnnxModel:
    """A parsed ONNX model, ready to be imported for any concrete input shapes."""

    def __init__(self, model: str | os.PathLike | bytes | onnx.ModelProto) -> None:
        self.proto, self.folder = load_model(model)
        g = self.proto.graph
        self.opset = opset_of(self.proto)
        self.initializers: dict[str, np.ndarray] = {}
        for t in g.initializer:
            if t.name in self.initializers:
                raise ModelLoadError(f"initializer {t.name!r} appears twice")
            self.initializers[t.name] = tensor_to_array(t, self.folder)
        self.inputs: list[InputSpec] = []
        # IR-3 models list initializers as inputs too: they stay constants unless fed.
        self.overridable: list[InputSpec] = []
        seen = set()
        for vi in g.input:
            if vi.name in seen:
                raise ModelLoadError(f"graph input {vi.name!r} is listed twice")
            seen.add(vi.name)
            spec = input_spec(vi)
            (self.overridable if vi.name in self.initializers else self.inputs).append(spec)
        self.outputs = [o.name for o in g.output]
        if len(set(self.outputs)) != len(self.outputs):
            raise ModelLoadError(f"graph outputs repeat a name: {self.outputs}")
        if not self.outputs:
            raise ModelLoadError("the graph declares no outputs")
        self._check_supported()
        check_signatures(g, self.opset)

    def _check_supported(self) -> None:
        """Scan every node first, then raise once listing all that cannot be imported."""
        supported = onnx_op_types()
        bad = []
        for i, n in enumerate(self.proto.graph.node):
            label = n.name or f"#{i}"
            if n.domain not in ("", "ai.onnx"):
                bad.append(f"{label} ({n.domain}::{n.op_type}, domain not supported)")
            elif n.op_type not in supported:
                bad.append(f"{label} ({n.op_type}, opset {self.opset})")
            elif converter_for(n.op_type, self.opset) is None:
                bad.append(f"{label} ({n.op_type} is supported from a newer opset than {self.opset})")
        if bad:
            raise UnsupportedOpError(
                f"{len(bad)} node(s) use ops cnnrt does not support: "
                + "; ".join(bad)
                + ". Supported ops: "
                + ", ".join(supported)
            )

    def bind_shapes(self, feeds_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
        """Concrete shape for each real input: given shapes, else symbolic dims as 1."""
        feeds_shapes = feeds_shapes or {}
        out = {}
        for spec in self.inputs:
            if spec.name in feeds_shapes:
                out[spec.name] = tuple(int(d) for d in feeds_shapes[spec.name])
            else:
                out[spec.name] = tuple(d if isinstance(d, int) else 1 for d in spec.shape)
        return out

    def to_graph(
        self, input_shapes: Mapping[str, tuple[int, ...]], fed_initializers: frozenset[str] = frozenset()
    ) -> Graph:
        """Import the graph for these concrete input shapes."""
        return GraphBuilder(self, input_shapes, fed_initializers).build()
