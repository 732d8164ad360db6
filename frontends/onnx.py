"""ONNX ModelProto -> cnnrt Graph.

Importing happens for concrete input shapes: symbolic dimensions are bound from the feeds
(the session re-imports when a new shape arrives). Each ONNX op has small converters
registered with :func:`onnx_op`; the one with the newest ``since`` not above the model's
opset is used. Converters compute output shapes; values that are known at import time
(initializers, Constants, shape arithmetic on them) are tracked so Reshape targets, Slice
bounds, Pad amounts and Resize scales resolve to attributes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cnnrt.const_eval import evaluate_node
from cnnrt.errors import ModelLoadError, ShapeError, UnsupportedOpError
from cnnrt.ir import Graph, Node, Value

MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()
# Known values larger than this are not propagated (they are weights, not shape arithmetic).
_KNOWN_VALUE_LIMIT = 1 << 16

Converter = Callable[["ConvertContext"], None]
_REGISTRY: dict[str, list[tuple[int, Converter]]] = {}

ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.BOOL: "bool",
}


def onnx_op(op_type: str, since: int = 1) -> Callable[[Converter], Converter]:
    """Register a converter for ``op_type`` valid from opset ``since`` until a newer one."""

    def deco(fn: Converter) -> Converter:
        _REGISTRY.setdefault(op_type, []).append((since, fn))
        _REGISTRY[op_type].sort(key=lambda t: t[0])
        return fn

    return deco


def supported_ops() -> list[str]:
    _load_converters()
    return sorted(_REGISTRY)


def _pick_converter(op_type: str, opset: int) -> Converter | None:
    best = None
    for since, fn in _REGISTRY.get(op_type, ()):
        if since <= opset:
            best = fn
    return best


def _load_converters() -> None:
    from . import ops_nn, ops_tensor, ops_elementwise  # noqa: F401  (registers converters)


# ---------------------------------------------------------------------------- loading


def load_model(model: str | os.PathLike | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, Path | None]:
    """Read a model from a path, bytes or a ModelProto; returns it and its folder (or None)."""
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, folder = bytes(model), None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelLoadError(f"cannot read model file {str(path)!r}: {e.strerror or e}") from None
        folder = path.resolve().parent
    else:
        raise ModelLoadError(
            f"model must be a path, bytes or onnx.ModelProto, not {type(model).__name__}"
        )
    if not data:
        raise ModelLoadError("model is empty (0 bytes)")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning-ish errors
        raise ModelLoadError(f"not a valid ONNX protobuf ({len(data)} bytes): {e}") from None
    if not proto.HasField("graph") or not proto.graph.node and not proto.graph.output:
        raise ModelLoadError("the file parsed but holds no ONNX graph (truncated or not an ONNX model?)")
    return proto, folder


def _external_bytes(tensor: onnx.TensorProto, folder: Path | None) -> bytes:
    info = {e.key: e.value for e in tensor.external_data}
    loc = info.get("location")
    if not loc:
        raise ModelLoadError(f"initializer {tensor.name!r} has external data without a location")
    if folder is None:
        raise ModelLoadError(
            f"initializer {tensor.name!r} stores its data in external file {loc!r}; "
            "load the model from its path so the file can be found"
        )
    if os.path.isabs(loc) or Path(loc).drive:
        raise ModelLoadError(f"initializer {tensor.name!r}: external data location {loc!r} is absolute")
    target = (folder / loc).resolve()
    if not target.is_relative_to(folder):
        raise ModelLoadError(
            f"initializer {tensor.name!r}: external data location {loc!r} escapes the model's folder"
        )
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ModelLoadError(f"initializer {tensor.name!r}: bad external data offset/length") from None
    try:
        size = target.stat().st_size
        if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
            raise ModelLoadError(
                f"initializer {tensor.name!r}: external data range offset={offset} length={length} "
                f"exceeds {loc!r} ({size} bytes)"
            )
        with open(target, "rb") as f:
            f.seek(offset)
            return f.read(length if length is not None else size - offset)
    except OSError as e:
        raise ModelLoadError(f"initializer {tensor.name!r}: cannot read external data {loc!r}: {e.strerror}") from None


def tensor_to_array(tensor: onnx.TensorProto, folder: Path | None = None, where: str = "") -> np.ndarray:
    """Decode a TensorProto (external data read safely from ``folder``)."""
    if tensor.data_type not in ONNX_DTYPES:
        name = onnx.TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in onnx.TensorProto.DataType.values() else tensor.data_type
        raise UnsupportedOpError(
            f"tensor {tensor.name or where!r} has dtype {name}; supported: "
            + ", ".join(sorted(set(ONNX_DTYPES.values())))
        )
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        t = onnx.TensorProto()
        t.CopyFrom(tensor)
        t.raw_data = _external_bytes(tensor, folder)
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]
        tensor = t
    try:
        arr = numpy_helper.to_array(tensor)
    except Exception as e:
        raise ModelLoadError(f"tensor {tensor.name or where!r} cannot be decoded: {e}") from None
    return np.ascontiguousarray(arr)


def opset_of(proto: onnx.ModelProto) -> int:
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset is None:
        opset = 1 if not proto.opset_import else None
    if opset is None:
        raise UnsupportedOpError("the model imports no default-domain (ai.onnx) opset")
    if opset > MAX_OPSET:
        raise UnsupportedOpError(
            f"model opset {opset} is newer than the newest this onnx package defines ({MAX_OPSET})"
        )
    if opset < MIN_OPSET:
        raise UnsupportedOpError(f"model opset {opset} is older than the oldest supported ({MIN_OPSET})")
    return opset


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class InputSpec:
    """A graph input as users see it: dims are ints or symbolic names (str) or None."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


class OnnxModel:
    """A parsed ONNX model, ready to be imported for any concrete input shapes."""

    def __init__(self, model: str | os.PathLike | bytes | onnx.ModelProto) -> None:
        _load_converters()
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
            spec = _input_spec(vi)
            (self.overridable if vi.name in self.initializers else self.inputs).append(spec)
        self.outputs = [o.name for o in g.output]
        if len(set(self.outputs)) != len(self.outputs):
            raise ModelLoadError(f"graph outputs repeat a name: {self.outputs}")
        self._check_supported()

    def _check_supported(self) -> None:
        """Scan every node first, then raise once listing all that cannot be imported."""
        bad = []
        for i, n in enumerate(self.proto.graph.node):
            label = n.name or f"#{i}"
            if n.domain not in ("", "ai.onnx"):
                bad.append(f"{label} ({n.domain}::{n.op_type}, domain not supported)")
            elif n.op_type not in _REGISTRY:
                bad.append(f"{label} ({n.op_type}, opset {self.opset})")
            elif _pick_converter(n.op_type, self.opset) is None:
                bad.append(f"{label} ({n.op_type} is supported from a newer opset than {self.opset})")
        if bad:
            raise UnsupportedOpError(
                f"{len(bad)} node(s) use ops cnnrt does not support: "
                + "; ".join(bad)
                + ". Supported ops: "
                + ", ".join(sorted(_REGISTRY))
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

    def to_graph(self, input_shapes: Mapping[str, tuple[int, ...]], fed_initializers: frozenset[str] = frozenset()) -> Graph:
        """Import the graph for these concrete input shapes."""
        return _GraphBuilder(self, input_shapes, fed_initializers).build()


def _input_spec(vi: onnx.ValueInfoProto) -> InputSpec:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedOpError(f"graph input {vi.name!r} is not a tensor (sequences/maps are not supported)")
    dtype = ONNX_DTYPES.get(tt.elem_type)
    if dtype is None:
        raise UnsupportedOpError(
            f"graph input {vi.name!r} has element type {tt.elem_type}; supported: "
            + ", ".join(sorted(set(ONNX_DTYPES.values())))
        )
    dims: list[int | str | None] = []
    if tt.HasField("shape"):
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
    return InputSpec(vi.name, tuple(dims), dtype)


# ---------------------------------------------------------------------------- conversion


class ConvertContext:
    """What a converter sees: one ONNX node, its inputs' Values and known values."""

    def __init__(self, builder: _GraphBuilder, proto: onnx.NodeProto, name: str) -> None:
        self._b = builder
        self.proto = proto
        self.name = name
        self.opset = builder.model.opset
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.attrs: dict[str, Any] = {}
        for a in proto.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif a.type == onnx.AttributeProto.TENSOR:
                v = tensor_to_array(v, builder.model.folder, where=f"{name}.{a.name}")
            self.attrs[a.name] = v
        self._count = 0

    # inputs
    def has_input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def value(self, i: int) -> Value:
        return self._b.values[self.inputs[i]]

    def shape(self, i: int) -> tuple[int, ...]:
        return self.value(i).shape

    def known(self, i: int) -> np.ndarray | None:
        """The input's value if known at import time (constant or computed from constants)."""
        if not self.has_input(i):
            return None
        return self._b.known.get(self.inputs[i])

    def require_known(self, i: int, what: str) -> np.ndarray:
        v = self.known(i)
        if v is None:
            raise UnsupportedOpError(
                f"node {self.name!r} ({self.proto.op_type}): {what} (input {i}, {self.inputs[i]!r}) "
                "must be computable at load time, but it depends on runtime data"
            )
        return v

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def fail(self, msg: str, cls: type[Exception] = ShapeError) -> Exception:
        return cls(f"node {self.name!r} ({self.proto.op_type}, opset {self.opset}): {msg}")

    def unsupported(self, msg: str) -> Exception:
        return self.fail(msg, UnsupportedOpError)

    def fresh(self, suffix: str) -> str:
        self._count += 1
        return f"{self.name}/{suffix}{self._count}"

    def add_constant(self, base: str, array: np.ndarray) -> str:
        return self._b.add_constant(f"{self.name}/{base}", array)

    # outputs
    def emit(
        self,
        op: str,
        inputs: list[str],
        outputs: list[tuple[str, tuple[int, ...], str]],
        attrs: dict[str, Any] | None = None,
        suffix: str = "",
    ) -> Node:
        """Add an IR node; ``outputs`` are (name, shape, dtype)."""
        for name, shape, _ in outputs:
            if any((not isinstance(d, (int, np.integer))) or d < 0 for d in shape):
                raise self.fail(f"computed an invalid shape {list(shape)} for output {name!r}")
        node = Node(
            op=op,
            inputs=tuple(inputs),
            outputs=tuple(o[0] for o in outputs),
            attrs=dict(attrs or {}),
            name=self.name + suffix,
            origin=(self.name,),
        )
        self._b.add_node(node, [Value(n, tuple(int(d) for d in s), dt) for n, s, dt in outputs])
        return node

    def out(self, i: int, shape: tuple[int, ...], dtype: str = "float32") -> tuple[str, tuple[int, ...], str]:
        return (self.outputs[i], tuple(shape), dtype)


class _GraphBuilder:
    def __init__(self, model: OnnxModel, input_shapes: Mapping[str, tuple[int, ...]], fed: frozenset[str]) -> None:
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
        for name, arr in model.initializers.items():
            if name in fed:
                spec = next(s for s in model.overridable if s.name == name)
                self.values[name] = Value(name, arr.shape, spec.dtype)
                self.inputs.append(name)
            else:
                self.values[name] = Value(name, arr.shape, str(arr.dtype))
                self.constants[name] = arr
                self.known[name] = arr

    def add_constant(self, name: str, arr: np.ndarray) -> str:
        while name in self.values:
            name += "_"
        arr = np.ascontiguousarray(arr)
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
        for idx, n in enumerate(g.node):
            name = n.name or f"{n.op_type}_{idx}"
            for i in n.input:
                if i and i not in self.values:
                    raise ModelLoadError(
                        f"node {name!r} ({n.op_type}) reads {i!r}, which no earlier node, input or "
                        "initializer defines (undefined input, or the graph is not topologically sorted / has a cycle)"
                    )
            conv = _pick_converter(n.op_type, self.model.opset)
            ctx = ConvertContext(self, n, name)
            conv(ctx)
            for o in n.output:
                if o and o not in self.values:
                    raise ModelLoadError(f"node {name!r} ({n.op_type}): output {o!r} is not supported by cnnrt")
        for o in self.model.outputs:
            if o not in self.values:
                raise ModelLoadError(f"graph output {o!r} is never produced")
        graph = Graph(self.nodes, self.values, self.constants, self.inputs, self.model.outputs, g.name or "graph")
        graph.verify()
        return graph
