"""cnnrt's optimised IR as an ONNX file, and back.

Every IR node becomes an ONNX node of the ``cnnrt`` domain with the IR op as its op type:
IR ops keep cnnrt's conventions (``kernel`` rather than ``kernel_shape``, 4-value ``pads``,
Reshape targets and Resize sizes as attributes, fused epilogues, channel-blocked layouts), so
none of them can claim ONNX semantics. Attributes are ONNX attributes Netron shows: ints and
int tuples as INT and INTS, anything else as a STRING holding its JSON (exact for floats, None,
bools and nested values). A node's ONNX origin is its metadata ``origin`` (a JSON list); a
channel-blocked value carries ``layout`` and ``logical`` metadata. The graph's shapes are the
concrete ones it was optimised for. The model's metadata ``cnnrt.ir`` marks such a file, and
:func:`graph_from_onnx` rebuilds the very Graph from it, so cnnrt runs it as it ran before.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cnnrt.core.ir import BF16, Graph, Node, Value
from cnnrt.errors import ModelLoadError

from .loader import ONNX_DTYPES

DOMAIN = "cnnrt"
DOMAIN_VERSION = 1
MARK = "cnnrt.ir"  # model metadata key of a file written here (its value: the IR format version)
# the IR's dtypes: the loader's, and bf16 activations (passes/precision.py)
_IR_DTYPES = {**ONNX_DTYPES, onnx.TensorProto.BFLOAT16: BF16}
_ONNX_TYPE = {v: k for k, v in _IR_DTYPES.items()}
_IR_VERSION = 10  # the first with node and value metadata


def is_cnnrt_ir(proto: onnx.ModelProto) -> bool:
    return any(p.key == MARK for p in proto.metadata_props)


def _to_json(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"ndarray": v.tolist(), "dtype": str(v.dtype)}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (tuple, list)):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_json(x) for k, x in v.items()}
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_from_json(x) for x in v)
    if isinstance(v, dict):
        if set(v) == {"ndarray", "dtype"}:
            return np.array(v["ndarray"], dtype=v["dtype"])
        return {k: _from_json(x) for k, x in v.items()}
    return v


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _attribute(name: str, v: Any) -> onnx.AttributeProto:
    if _is_int(v):
        return helper.make_attribute(name, int(v))
    if isinstance(v, tuple) and v and all(_is_int(x) for x in v):
        return helper.make_attribute(name, [int(x) for x in v])
    return helper.make_attribute(name, json.dumps(_to_json(v)))


def _attr_value(a: onnx.AttributeProto) -> Any:
    if a.type == onnx.AttributeProto.INT:
        return int(a.i)
    if a.type == onnx.AttributeProto.INTS:
        return tuple(int(x) for x in a.ints)
    if a.type == onnx.AttributeProto.STRING:
        return _from_json(json.loads(a.s.decode()))
    raise ModelLoadError(f"attribute {a.name!r} of a cnnrt IR node has ONNX type {a.type}, which cnnrt never writes")


def _meta(proto: Any, **entries: str) -> None:
    for k, v in entries.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v


def _value_info(v: Value) -> onnx.ValueInfoProto:
    vi = helper.make_tensor_value_info(v.name, _ONNX_TYPE[v.dtype], list(v.shape))
    if v.layout != "nchw":
        _meta(vi, layout=v.layout, logical=v.logical)
    return vi


def graph_to_onnx(graph: Graph, opset: int, source: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """``graph`` as an ONNX model of ``cnnrt``-domain nodes (``opset``: the source model's, kept
    in the opset imports); ``source``'s producer and metadata are carried over."""
    nodes = []
    for n in graph.nodes:
        node = helper.make_node(n.op, list(n.inputs), list(n.outputs), name=n.name, domain=DOMAIN)
        node.attribute.extend(_attribute(k, v) for k, v in sorted(n.attrs.items()))
        _meta(node, origin=json.dumps(list(n.origin)))
        nodes.append(node)
    io = set(graph.inputs) | set(graph.outputs) | set(graph.constants)
    g = helper.make_graph(
        nodes,
        graph.name,
        [_value_info(graph.values[i]) for i in graph.inputs],
        [_value_info(graph.values[o]) for o in graph.outputs],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(a), k) for k, a in graph.constants.items()],
        value_info=[_value_info(v) for name, v in graph.values.items() if name not in io],
    )
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)]
    )
    model.ir_version = _IR_VERSION
    model.producer_name = "cnnrt"
    if source is not None:
        model.doc_string = source.doc_string
        model.model_version = source.model_version
        for p in source.metadata_props:
            if p.key != MARK:
                _meta(model, **{p.key: p.value})
    _meta(model, **{MARK: str(DOMAIN_VERSION)})
    return model


def _value(vi: onnx.ValueInfoProto) -> Value:
    tt = vi.type.tensor_type
    meta = {p.key: p.value for p in vi.metadata_props}
    dtype = _IR_DTYPES.get(tt.elem_type)
    if dtype is None or not all(d.HasField("dim_value") for d in tt.shape.dim):
        raise ModelLoadError(f"value {vi.name!r} of a cnnrt IR file needs a supported dtype and concrete dims")
    shape = tuple(int(d.dim_value) for d in tt.shape.dim)
    return Value(vi.name, shape, dtype, meta.get("layout", "nchw"), meta.get("logical", ""))


def graph_from_onnx(proto: onnx.ModelProto, constants: dict[str, np.ndarray]) -> Graph:
    """The IR Graph a :func:`graph_to_onnx` file holds (verified); ``constants``: its initializers, decoded."""
    g = proto.graph
    values = {vi.name: _value(vi) for vi in (*g.input, *g.output, *g.value_info)}
    for name, arr in constants.items():
        values.setdefault(name, Value(name, tuple(arr.shape), str(arr.dtype)))
    nodes = []
    for n in g.node:
        if n.domain != DOMAIN:
            raise ModelLoadError(f"node {n.name!r} of a cnnrt IR file is in domain {n.domain!r}, not {DOMAIN!r}")
        meta = {p.key: p.value for p in n.metadata_props}
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        origin = tuple(json.loads(meta.get("origin", "[]")))
        nodes.append(Node(n.op_type, tuple(n.input), tuple(n.output), attrs, n.name, origin))
    graph = Graph(nodes, values, constants, [i.name for i in g.input], [o.name for o in g.output], g.name)
    graph.verify()
    return graph
