"""ONNX ModelProto -> cnnrt Graph.

Importing happens for concrete input shapes: symbolic dimensions are bound from the feeds
(the session re-imports when a new shape arrives). Each ONNX op has small converters
registered with :func:`onnx_op`; the one with the newest ``since`` not above the model's
opset is used. Converters compute output shapes; values that are known at import time
(initializers, Constants, shape arithmetic on them) are tracked so Reshape targets, Slice
bounds, Pad amounts and Resize scales resolve to attributes.
"""

from __future__ import annotations

import functools
import heapq
import math
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from cnnrt.core.const_eval import evaluate_node
from cnnrt.core.ir import Graph, Node, Value
from cnnrt.errors import CnnrtError, ModelLoadError, ResourceLimitError, ShapeError, UnsupportedOpError

# Converters handle the pre-7 attribute forms too; opset 6 is what the ONNX backend suite's
# pytorch-converted models use, so it is tested.
MIN_OPSET = 6
MAX_OPSET = onnx.defs.onnx_opset_version()
# Known values larger than this are not propagated (they are weights, not shape arithmetic).
_KNOWN_VALUE_LIMIT = 1 << 16
# No tensor may need more bytes than this (256 TiB): far beyond any memory limit, far below
# int64 overflow in the size arithmetic of the IR and the planner.
MAX_TENSOR_BYTES = 1 << 48

Converter = Callable[["ConvertContext"], None]
_REGISTRY: dict[str, list[tuple[int, Converter]]] = {}

ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
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
    from . import ops_elementwise, ops_nn, ops_resize, ops_tensor  # noqa: F401  (registers converters)


# ---------------------------------------------------------------------------- loading


def load_model(model: str | os.PathLike | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, Path | None]:
    """Read a model from a path, bytes or a ModelProto; returns it and its folder (or None)."""
    if isinstance(model, onnx.ModelProto):
        _check_proto(model)
        return model, None
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, folder = bytes(model), None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            # O_NONBLOCK + a regular-file check: a FIFO or /dev/zero must not hang the load.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise ModelLoadError(f"model path {str(path)!r} is not a regular file")
                data = f.read()
            folder = path.resolve().parent
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read model file {str(path)!r}: {getattr(e, 'strerror', None) or e}") from None
    else:
        raise ModelLoadError(f"model must be a path, bytes or onnx.ModelProto, not {type(model).__name__}")
    if not data:
        raise ModelLoadError("model is empty (0 bytes)")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning-ish errors
        raise ModelLoadError(f"not a valid ONNX protobuf ({len(data)} bytes): {e}") from None
    _check_proto(proto)
    return proto, folder


def _check_proto(proto: onnx.ModelProto) -> None:
    if not proto.HasField("graph") or not proto.graph.node and not proto.graph.output:
        raise ModelLoadError("the file parsed but holds no ONNX graph (truncated or not an ONNX model?)")
    where = _first_non_utf8(proto, "model")
    if where is not None:
        raise ModelLoadError(f"{where} is not valid UTF-8 text (corrupt or not an ONNX model)")


def _first_non_utf8(msg: Any, path: str) -> str | None:
    """Path of the first string field that protobuf could not decode (it hands back bytes)."""
    for fd, value in msg.ListFields():
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        items = value if repeated else [value]
        if fd.type == fd.TYPE_MESSAGE:
            for k, item in enumerate(items):
                label = getattr(item, "name", "") if isinstance(getattr(item, "name", None), str) else ""
                where = _first_non_utf8(item, f"{path}.{fd.name}[{label or k}]" if repeated else f"{path}.{fd.name}")
                if where is not None:
                    return where
        elif fd.type == fd.TYPE_STRING and any(isinstance(v, bytes) for v in items):
            return f"{path}.{fd.name}"
    return None


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
    if "\0" in loc:
        raise ModelLoadError(f"initializer {tensor.name!r}: external data location {loc!r} contains a NUL byte")
    try:
        target = (folder / loc).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # symlink loops, over-long names
        raise ModelLoadError(
            f"initializer {tensor.name!r}: external data location {loc!r} cannot be resolved: {e}"
        ) from None
    if not target.is_relative_to(folder):
        raise ModelLoadError(f"initializer {tensor.name!r}: external data location {loc!r} escapes the model's folder")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ModelLoadError(f"initializer {tensor.name!r}: bad external data offset/length") from None
    try:
        # O_NOFOLLOW + fstat on the opened descriptor: the file checked is the file read (no
        # symlink swapped in after resolve()), and O_NONBLOCK keeps a FIFO from hanging open().
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ModelLoadError(
                    f"initializer {tensor.name!r}: external data location {loc!r} is not a regular file"
                )
            size = st.st_size
            if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
                raise ModelLoadError(
                    f"initializer {tensor.name!r}: external data range offset={offset} length={length} "
                    f"exceeds {loc!r} ({size} bytes)"
                )
            f.seek(offset)
            return f.read(length if length is not None else size - offset)
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise ModelLoadError(f"initializer {tensor.name!r}: cannot read external data {loc!r}: {why}") from None


def _dtype_name(code: int) -> str:
    if code in onnx.TensorProto.DataType.values():
        return onnx.TensorProto.DataType.Name(code)
    return f"<unknown element type {code}>"


def tensor_to_array(tensor: onnx.TensorProto, folder: Path | None = None, where: str = "") -> np.ndarray:
    """Decode a TensorProto (external data read safely from ``folder``)."""
    if tensor.data_type not in ONNX_DTYPES:
        raise UnsupportedOpError(
            f"tensor {tensor.name or where!r} has dtype {_dtype_name(tensor.data_type)}; supported: "
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
    return np.asarray(arr, order="C")  # not ascontiguousarray: it turns 0-d arrays into shape (1,)


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
        if not self.outputs:
            raise ModelLoadError("the graph declares no outputs")
        self._check_supported()
        self._check_signatures()

    def _check_signatures(self) -> None:
        """Every node against its ONNX schema: input/output counts, required inputs, attribute
        names and types. Converters may then trust ``int(ctx.attr(...))`` and ``ctx.inputs[i]``.
        All problems are listed at once."""
        bad = []
        for i, n in enumerate(self.proto.graph.node):
            schema = _schema(n.op_type, self.opset)
            if schema is None:
                bad.append(f"{n.name or f'#{i}'} ({n.op_type}): no such op in opset {self.opset}")
                continue
            bad.extend(
                f"{n.name or f'#{i}'} ({n.op_type}-{schema.since_version}): {why}"
                for why in _signature_problems(n, schema)
            )
        if bad:
            raise ModelLoadError(f"{len(bad)} node(s) do not match their ONNX schema: " + "; ".join(bad))

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

    def to_graph(
        self, input_shapes: Mapping[str, tuple[int, ...]], fed_initializers: frozenset[str] = frozenset()
    ) -> Graph:
        """Import the graph for these concrete input shapes."""
        return _GraphBuilder(self, input_shapes, fed_initializers).build()


@functools.cache
def _schema(op_type: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


_SINGLE = onnx.defs.OpSchema.FormalParameterOption.Single
# INT attributes the ONNX spec defines as 0/1 flags
_FLAG_ATTRS = frozenset(
    (
        "ceil_mode",
        "count_include_pad",
        "storage_order",
        "transA",
        "transB",
        "keepdims",
        "training_mode",
        "noop_with_empty_axes",
        "allowzero",
        "spatial",
        "is_test",
    )
)
_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic


def _signature_problems(n: onnx.NodeProto, schema: onnx.defs.OpSchema) -> list[str]:
    out = []
    for what, actual, formals, lo, hi in (
        ("input", list(n.input), schema.inputs, schema.min_input, schema.max_input),
        ("output", list(n.output), schema.outputs, schema.min_output, schema.max_output),
    ):
        if not lo <= len(actual) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 2**31 - 1 else f"at least {lo}"
            out.append(f"has {len(actual)} {what}s, the schema wants {want}")
            continue
        for k, name in enumerate(actual):
            formal = formals[min(k, len(formals) - 1)]
            if not name and (formal.option == _SINGLE or (formal.option == _VARIADIC and k < lo)):
                out.append(f"required {what} {k} ({formal.name}) is empty")
    seen = set()
    for a in n.attribute:
        spec = schema.attributes.get(a.name)
        if a.name in seen:
            out.append(f"attribute {a.name!r} is given twice")
        seen.add(a.name)
        if spec is None:
            out.append(f"unknown attribute {a.name!r} (the schema has {sorted(schema.attributes) or 'none'})")
        elif a.ref_attr_name:
            continue
        elif a.name in _FLAG_ATTRS and int(a.type) == int(spec.type) and a.i not in (0, 1):
            # onnxruntime reads some of these as "== 1", we as truthy: refuse, do not guess
            out.append(f"attribute {a.name!r} must be 0 or 1, got {a.i}")
        elif int(a.type) != int(spec.type):
            got = (
                onnx.AttributeProto.AttributeType.Name(a.type)
                if a.type in onnx.AttributeProto.AttributeType.values()
                else a.type
            )
            out.append(f"attribute {a.name!r} must be {spec.type.name}, got {got}")
    for name, spec in schema.attributes.items():
        if spec.required and name not in seen:
            out.append(f"required attribute {name!r} is missing")
    return out


def _onnx_type_str(dtype: str) -> str:
    return "tensor(" + {"float32": "float", "float64": "double"}.get(dtype, dtype) + ")"


def _type_problems(
    n: onnx.NodeProto, schema: onnx.defs.OpSchema | None, values: Mapping[str, Value]
) -> list[tuple[type[CnnrtError], str]]:
    """Input dtypes against the schema's type constraints (one dtype per type parameter):
    (UnsupportedOpError, why) for a dtype the op does not take, (ShapeError, why) for
    inputs that must share a dtype and do not."""
    if schema is None or not schema.inputs:
        return []
    constraints = {t.type_param_str: t.allowed_type_strs for t in schema.type_constraints}
    bound: dict[str, tuple[str, str]] = {}
    out = []
    for k, name in enumerate(n.input):
        if not name or name not in values:
            continue
        formal = schema.inputs[min(k, len(schema.inputs) - 1)]
        got = _onnx_type_str(values[name].dtype)
        allowed = constraints.get(formal.type_str, [formal.type_str])
        if got not in allowed:
            out.append(
                (
                    UnsupportedOpError,
                    f"input {k} ({formal.name}) {name!r} has dtype {got}; the op takes {', '.join(allowed)}",
                )
            )
        elif formal.type_str in constraints and formal.is_homogeneous:
            first = bound.setdefault(formal.type_str, (name, got))
            if first[1] != got:
                out.append(
                    (
                        ShapeError,
                        f"inputs {first[0]!r} ({first[1]}) and {name!r} ({got}) must have the same dtype ({formal.type_str})",
                    )
                )
    return out


def _topological_order(nodes: Sequence[onnx.NodeProto], defined: set[str]) -> list[int]:
    """Node indices in a dependency order (the file's order when it already is one).

    ONNX requires sorted graphs but onnxruntime sorts unsorted ones itself, so we do too.
    Raises ModelLoadError naming the value for an undefined input, the nodes for a cycle.
    """
    producer: dict[str, int] = {}
    for k, n in enumerate(nodes):
        for o in n.output:
            if o and o not in defined:
                producer.setdefault(o, k)
    deps: list[set[int]] = []
    for k, n in enumerate(nodes):
        d = set()
        for i in n.input:
            if not i or i in defined:
                continue
            if i not in producer:
                raise ModelLoadError(
                    f"node {n.name or f'#{k}'!r} ({n.op_type}) reads {i!r}, which no node, graph input or initializer defines"
                )
            d.add(producer[i])
        deps.append(d)
    users: dict[int, list[int]] = {}
    for k, d in enumerate(deps):
        for p in d:
            users.setdefault(p, []).append(k)
    waiting = [len(d) for d in deps]
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for u in users.get(k, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        # walk back along unfinished dependencies until a node repeats: that is a cycle
        left = {k for k, w in enumerate(waiting) if w > 0}
        path, k = [], min(left)
        while k not in path:
            path.append(k)
            k = min(p for p in deps[k] if p in left)
        cycle = path[path.index(k) :]
        names = [f"{nodes[j].name or f'#{j}'} ({nodes[j].op_type})" for j in reversed(cycle)]
        raise ModelLoadError(f"the graph has a cycle: {' -> '.join(names + names[:1])}")
    return order


def _input_spec(vi: onnx.ValueInfoProto) -> InputSpec:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedOpError(f"graph input {vi.name!r} is not a tensor (sequences/maps are not supported)")
    dtype = ONNX_DTYPES.get(tt.elem_type)
    if dtype is None:
        raise UnsupportedOpError(
            f"graph input {vi.name!r} has element type {_dtype_name(tt.elem_type)}; supported: "
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
        """A new graph constant named after this node (a fresh name); returns the name."""
        return self._b.add_constant(f"{self.name}/{base}", array)

    def define_constant(self, i: int, array: np.ndarray) -> None:
        """Make ONNX output ``i`` a graph constant under its own name (no node is emitted)."""
        if self.outputs[i] in self._b.values:
            raise self.fail(f"output {self.outputs[i]!r} is already defined")
        self._b.add_constant(self.outputs[i], np.asarray(array))

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
        for name, shape, dtype in outputs:
            if any((not isinstance(d, (int, np.integer))) or d < 0 for d in shape):
                raise self.fail(f"computed an invalid shape {list(shape)} for output {name!r}")
            # exact (Python int) size: int64 products of huge dims would wrap and fool the planner
            nbytes = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
            if nbytes > MAX_TENSOR_BYTES:
                raise self.fail(
                    f"output {name!r} of shape {list(shape)} would take {nbytes} bytes (more than 2**48)",
                    ResourceLimitError,
                )
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
        for idx in _topological_order(g.node, set(self.values)):
            n = g.node[idx]
            name = n.name or f"{n.op_type}_{idx}"
            for i in n.input:
                if i and i not in self.values:
                    raise ModelLoadError(
                        f"node {name!r} ({n.op_type}) reads {i!r}, which no earlier node, input or "
                        "initializer defines (undefined input, or the graph is not topologically sorted / has a cycle)"
                    )
            conv = _pick_converter(n.op_type, self.model.opset)
            type_problems = _type_problems(n, _schema(n.op_type, self.model.opset), self.values)
            if type_problems:
                cls = ShapeError if any(c is ShapeError for c, _ in type_problems) else UnsupportedOpError
                raise cls(
                    f"node {name!r} ({n.op_type}, opset {self.model.opset}): " + "; ".join(w for _, w in type_problems)
                )
            try:
                ctx = ConvertContext(self, n, name)
                conv(ctx)
            except CnnrtError:
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
                    f"graph output {vi.name!r} is declared {_dtype_name(declared)} but the graph computes {got}"
                )
        graph = Graph(self.nodes, self.values, self.constants, self.inputs, self.model.outputs, g.name or "graph")
        graph.verify()
        return graph
