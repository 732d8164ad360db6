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
from .ir_onnx import graph_from_onnx, is_cnnrt_ir
from .loader import InputSpec, input_spec, load_model, tensor_to_array
from .registry import converter_for, onnx_op_types
from .schema_checks import check_signatures, opset_of


class OnnxModel:
    """A parsed ONNX model, ready to be imported for any concrete input shapes."""

    def __init__(self, model: str | os.PathLike | bytes | onnx.ModelProto) -> None:
        self.proto, self.folder = load_model(model)
        g = self.proto.graph
        self.opset = opset_of(self.proto)
        self._output_specs: list[InputSpec] | None = None
        self.initializers: dict[str, np.ndarray] = {}
        for t in g.initializer:
            if t.name in self.initializers:
                raise ModelLoadError(f"initializer {t.name!r} appears twice")
            self.initializers[t.name] = tensor_to_array(t, self.folder)
        # a file cnnrt wrote with its optimised graph (frontends/ir_onnx.py): that graph, as it was
        self.optimised: Graph | None = (
            graph_from_onnx(self.proto, self.initializers) if is_cnnrt_ir(self.proto) else None
        )
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
        if self.optimised is None:
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

    def output_specs(self) -> list[InputSpec]:
        """Each graph output's name, dims and dtype as onnxruntime reports them.

        ONNX shape inference merged with the declared shapes: a dimension keeps its declared
        value or name, else the inferred one (a symbolic name flows from the inputs), else None
        (onnxruntime's answer for a dim nothing names; inference's own ``unk__N`` names count as
        unnamed). Computed once, on first use: inference copies the whole model.
        """
        if self._output_specs is None:
            declared = [input_spec(vi) for vi in self.proto.graph.output]
            try:
                inferred = onnx.shape_inference.infer_shapes(self.proto).graph.output
                specs = [input_spec(vi) for vi in inferred]
            except Exception:  # inference cannot follow the graph: the declared shapes are all there is
                specs = declared
            named = _dim_params(self.proto.graph)
            self._output_specs = [
                InputSpec(s.name, tuple(None if isinstance(d, str) and d not in named else d for d in s.shape), s.dtype)
                for s in specs
            ]
        return self._output_specs

    def symbolic_beyond_batch(self) -> dict[str, list[int | str | None]]:
        """Inputs with a symbolic (or unknown) dimension after the first, by name: those
        cannot be planned until concrete shapes arrive."""
        return {s.name: list(s.shape) for s in self.inputs if any(not isinstance(d, int) for d in s.shape[1:])}

    def default_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Concrete shape for each real input with ``batch`` for a symbolic first dimension
        (callers check :meth:`symbolic_beyond_batch` first: other symbolic dims have no default)."""
        return {s.name: tuple(d if isinstance(d, int) else batch for d in s.shape) for s in self.inputs}

    def to_graph(
        self, input_shapes: Mapping[str, tuple[int, ...]], fed_initializers: frozenset[str] = frozenset()
    ) -> Graph:
        """Import the graph for these concrete input shapes."""
        if self.optimised is not None:  # its inputs are declared concrete: the feed checks saw these shapes
            return self.optimised.copy()
        return GraphBuilder(self, input_shapes, fed_initializers).build()


def _dim_params(g: onnx.GraphProto) -> set[str]:
    """Every symbolic dimension name the graph itself declares (inputs, outputs, value_info)."""
    return {
        d.dim_param
        for vi in (*g.input, *g.output, *g.value_info)
        if vi.type.HasField("tensor_type")
        for d in vi.type.tensor_type.shape.dim
        if d.HasField("dim_param")
    }
