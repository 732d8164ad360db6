"""Where the fuzzers' randomness comes from (``Chooser``: hypothesis' ``data.draw``, atheris'
FuzzedDataProvider or a seeded ``random.Random``) and the model mutators it drives.

A mutator takes a Chooser and a ModelProto and edits the proto in place: attributes, shapes,
dtypes, edges, deleted initializers/nodes/outputs, op types, opsets, node order.
``mutate_bytes`` then may truncate or flip bytes of the serialized model.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ---------------------------------------------------------------------------- choosers


class Chooser:
    """Where mutation decisions come from."""

    def int(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.int(0, len(seq) - 1)]

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def float(self) -> float:
        return self.choice([0.0, 1e-5, 0.5, 1.0, -1.0, 2.0, 1e30, -1e-30, float("nan"), float("inf")])


class RandomChooser(Chooser):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class HypothesisChooser(Chooser):
    def __init__(self, data) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))


class FdpChooser(Chooser):
    """atheris.FuzzedDataProvider-backed: once the data runs out every draw is ``lo``."""

    def __init__(self, fdp) -> None:
        self.fdp = fdp

    def int(self, lo: int, hi: int) -> int:
        return self.fdp.ConsumeIntInRange(lo, hi)


# ---------------------------------------------------------------------------- mutators

_ATTR_CANDIDATES = {
    "Conv": ["strides", "pads", "group", "kernel_shape", "dilations", "auto_pad"],
    "MaxPool": ["strides", "pads", "kernel_shape", "dilations", "ceil_mode", "auto_pad", "storage_order"],
    "AveragePool": ["strides", "pads", "kernel_shape", "ceil_mode", "count_include_pad", "auto_pad"],
    "Gemm": ["transA", "transB", "alpha", "beta"],
    "Softmax": ["axis"],
    "Flatten": ["axis"],
    "Concat": ["axis"],
    "Split": ["axis", "num_outputs"],
    "Transpose": ["perm"],
    "Pad": ["mode"],
    "BatchNormalization": ["epsilon", "training_mode", "momentum"],
}
_COMMON_ATTRS = ["axis", "alpha", "strides", "pads", "foo"]
_STRINGS = ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "constant", "reflect", "edge", "", "garbage"]
_BIG = [2**31 - 1, 2**31, 2**62, 2**63 - 1, -(2**63)]
# element types numpy can hold (an initializer can be retyped to these with real data)
_NUMPY_DTYPES = [
    TensorProto.FLOAT,
    TensorProto.DOUBLE,
    TensorProto.FLOAT16,
    TensorProto.INT64,
    TensorProto.INT32,
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.BOOL,
]
_DTYPES = _NUMPY_DTYPES + [
    TensorProto.BFLOAT16,
    TensorProto.STRING,
    TensorProto.COMPLEX64,
    TensorProto.UINT64,
    0,
    99,
]
_OPS = [
    "Relu",
    "Sigmoid",
    "Tanh",
    "Conv",
    "MaxPool",
    "AveragePool",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Softmax",
    "Flatten",
    "Reshape",
    "Concat",
    "Transpose",
    "Identity",
    "GlobalAveragePool",
    "BatchNormalization",
    "Einsum",
    "NonZero",
    "Loop",
    "If",
    "Scan",
    "",
    "Conv2D",
]


def _small_int(c: Chooser) -> int:
    return c.choice([c.int(-3, 12), c.int(-3, 12), c.int(0, 3), c.choice(_BIG)])


def _random_attribute(c: Chooser, name: str) -> onnx.AttributeProto:
    kind = c.int(0, 5)
    if kind == 0:
        return helper.make_attribute(name, _small_int(c))
    if kind in (1, 2):
        return helper.make_attribute(
            name, [_small_int(c) for _ in range(c.int(0, 5))], attr_type=onnx.AttributeProto.INTS
        )
    if kind == 3:
        return helper.make_attribute(name, c.float())
    if kind == 4:
        return helper.make_attribute(name, c.choice(_STRINGS))
    a = onnx.AttributeProto()  # an attribute with no value and an odd declared type
    a.name = name
    a.type = c.choice(
        [onnx.AttributeProto.UNDEFINED, onnx.AttributeProto.GRAPH, onnx.AttributeProto.INTS, onnx.AttributeProto.TENSOR]
    )
    return a


def mut_attribute(c: Chooser, m: onnx.ModelProto) -> str:
    if not m.graph.node:
        return "noop"
    node = c.choice(list(m.graph.node))
    names = sorted({a.name for a in node.attribute} | set(_ATTR_CANDIDATES.get(node.op_type, _COMMON_ATTRS)))
    name = c.choice(names)
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    if c.int(0, 5):  # mostly set, sometimes delete
        node.attribute.append(_typed_attribute(c, node, name) if c.int(0, 3) else _random_attribute(c, name))
    return f"attr {node.name}.{name}"


def _typed_attribute(c: Chooser, node: onnx.NodeProto, name: str) -> onnx.AttributeProto:
    """A value of the type the schema wants (so it gets past the signature check), small and
    mostly plausible: exercises the converters' value checks and the kernels."""
    try:
        spec = onnx.defs.get_schema(node.op_type, 17, "").attributes.get(name)
    except onnx.defs.SchemaError:
        spec = None
    if spec is None:
        return _random_attribute(c, name)
    t = onnx.defs.OpSchema.AttrType
    if spec.type == t.INT:
        return helper.make_attribute(name, c.choice([c.int(-2, 6), c.int(0, 3), _small_int(c)]))
    if spec.type == t.INTS:
        n = c.choice([2, 4, 4, c.int(0, 5)])
        return helper.make_attribute(
            name,
            [c.choice([c.int(0, 3), c.int(-1, 6), _small_int(c)]) for _ in range(n)],
            attr_type=onnx.AttributeProto.INTS,
        )
    if spec.type == t.FLOAT:
        return helper.make_attribute(name, c.float())
    if spec.type == t.STRING:
        return helper.make_attribute(name, c.choice(_STRINGS))
    return _random_attribute(c, name)


def _random_array(c: Chooser, shape: tuple[int, ...], dtype) -> np.ndarray:
    rng = np.random.default_rng(c.int(0, 1000))
    return (rng.standard_normal(shape) * 0.5).astype(dtype)


def mut_initializer_shape(c: Chooser, m: onnx.ModelProto) -> str:
    if not m.graph.initializer:
        return "noop"
    t = c.choice(list(m.graph.initializer))
    try:
        arr = numpy_helper.to_array(t)
    except Exception:  # an earlier mutation relabelled its dtype: leave it broken
        return "noop"
    shape = list(arr.shape)
    op = c.int(0, 3)
    if op == 0 and shape:
        i = c.int(0, len(shape) - 1)
        shape[i] = max(0, shape[i] + c.choice([-1, 1, 2, -shape[i]]))
    elif op == 1 and shape:
        shape.pop(c.int(0, len(shape) - 1))
    elif op == 2:
        shape.insert(c.int(0, len(shape)), c.int(1, 3))
    else:
        shape = [c.int(0, 6) for _ in range(c.int(0, 4))]
    if arr.dtype.kind in "iu" and arr.size:  # shape-like int vectors: new plausible values
        new = np.array(
            [_small_int(c) if c.int(0, 3) == 0 else int(arr.flat[k % arr.size]) for k in range(int(np.prod(shape)))],
            dtype=np.int64,
        )
        new = new.reshape(shape).astype(arr.dtype)
    else:
        new = _random_array(c, tuple(shape), arr.dtype)
    t.CopyFrom(numpy_helper.from_array(new, t.name))
    return f"init-shape {t.name} {list(arr.shape)}->{shape}"


def mut_input_shape(c: Chooser, m: onnx.ModelProto) -> str:
    vis = list(m.graph.input) + list(m.graph.output)
    if not vis:
        return "noop"
    vi = c.choice(vis)
    dims = vi.type.tensor_type.shape.dim
    op = c.int(0, 4)
    if op == 0 and len(dims):
        d = dims[c.int(0, len(dims) - 1)]
        d.dim_value = c.choice([0, 1, 2, 3, 5, 7, 16, 33, 2**40, -1])
    elif op == 1 and len(dims):
        del dims[c.int(0, len(dims) - 1)]
    elif op == 2:
        dims.add().dim_value = c.int(1, 3)
    elif op == 3 and len(dims):
        dims[c.int(0, len(dims) - 1)].dim_param = c.choice(["batch", "N", "h", ""])
    else:
        vi.type.tensor_type.ClearField("shape")
    return f"io-shape {vi.name}"


def mut_dtype(c: Chooser, m: onnx.ModelProto) -> str:
    where = c.int(0, 2)
    if where == 0 and m.graph.initializer:
        t = c.choice(list(m.graph.initializer))
        dt = c.choice(_DTYPES)
        if dt in _NUMPY_DTYPES and c.bool():
            try:
                arr = numpy_helper.to_array(t)
            except Exception:
                return "noop"
            np_dt = helper.tensor_dtype_to_np_dtype(dt)
            with np.errstate(all="ignore"):
                t.CopyFrom(numpy_helper.from_array(arr.astype(np_dt), t.name))
        else:  # relabel the raw bytes: sizes may not fit any more
            t.data_type = dt
        return f"init-dtype {t.name} -> {dt}"
    vis = list(m.graph.input) + list(m.graph.output)
    if not vis:
        return "noop"
    vi = c.choice(vis)
    vi.type.tensor_type.elem_type = c.choice(_DTYPES)
    return f"io-dtype {vi.name}"


def _value_names(m: onnx.ModelProto) -> list[str]:
    names = [i.name for i in m.graph.input] + [t.name for t in m.graph.initializer]
    for n in m.graph.node:
        names.extend(o for o in n.output if o)
    return names


def mut_rewire(c: Chooser, m: onnx.ModelProto) -> str:
    if not m.graph.node:
        return "noop"
    node = c.choice(list(m.graph.node))
    target = c.choice(_value_names(m) + ["", "ghost"])
    slot = c.int(0, len(node.input))  # == len: append a new input
    if slot == len(node.input):
        node.input.append(target)
    else:
        node.input[slot] = target
    return f"rewire {node.name}[{slot}] <- {target!r}"


def mut_delete(c: Chooser, m: onnx.ModelProto) -> str:
    g = m.graph
    what = c.int(0, 5)
    if what == 0 and g.initializer:
        i = c.int(0, len(g.initializer) - 1)
        name = g.initializer[i].name
        del g.initializer[i]
        return f"del-init {name}"
    if what == 1 and g.node:
        i = c.int(0, len(g.node) - 1)
        name = g.node[i].name
        del g.node[i]
        return f"del-node {name}"
    if what == 2 and g.node:
        n = c.choice(list(g.node))
        if n.input:
            del n.input[c.int(0, len(n.input) - 1)]
        return f"del-node-input {n.name}"
    if what == 3 and g.node:
        n = c.choice(list(g.node))
        if n.output:
            n.output[c.int(0, len(n.output) - 1)] = c.choice(["", "renamed"])
        return f"del-node-output {n.name}"
    if what == 4 and g.output:
        del g.output[c.int(0, len(g.output) - 1)]
        return "del-graph-output"
    if g.input:
        del g.input[c.int(0, len(g.input) - 1)]
        return "del-graph-input"
    return "noop"


def mut_structure(c: Chooser, m: onnx.ModelProto) -> str:
    g = m.graph
    what = c.int(0, 4)
    if what == 0 and g.node:
        n = c.choice(list(g.node))
        n.op_type = c.choice(_OPS)
        return f"op-type {n.name} -> {n.op_type}"
    if what == 1 and len(g.node) > 1:
        i, j = c.int(0, len(g.node) - 1), c.int(0, len(g.node) - 1)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(g.node[i]), b.CopyFrom(g.node[j])
        g.node[i].CopyFrom(b), g.node[j].CopyFrom(a)
        return f"swap-nodes {i} {j}"
    if what == 2 and g.node:
        n = c.choice(list(g.node))
        g.node.append(n)
        return f"dup-node {n.name}"
    if what == 3:
        m.opset_import[0].version = c.choice([1, 6, 7, 9, 10, 11, 13, 17, 18, 21, 28, 29, 1000])
        return f"opset {m.opset_import[0].version}"
    if g.node:
        n = c.choice(list(g.node))
        n.domain = c.choice(["com.microsoft", "ai.onnx.ml", "ai.onnx", "x"])
        return f"domain {n.name} -> {n.domain}"
    return "noop"


MUTATORS: list[Callable[[Chooser, onnx.ModelProto], str]] = [
    mut_attribute,
    mut_attribute,
    mut_initializer_shape,
    mut_input_shape,
    mut_dtype,
    mut_rewire,
    mut_delete,
    mut_structure,
]


def mutate(c: Chooser, m: onnx.ModelProto, max_mutations: int = 3) -> list[str]:
    """Apply 1..max_mutations random mutators to ``m`` in place; returns what was done."""
    return [c.choice(MUTATORS)(c, m) for _ in range(c.int(1, max_mutations))]


def mutate_bytes(c: Chooser, data: bytes) -> tuple[bytes, str]:
    """Maybe truncate the serialized model or flip a few of its bytes."""
    what = c.int(0, 5)
    if what == 0 and data:
        n = c.int(0, len(data) - 1)
        return data[:n], f"truncate {n}/{len(data)}"
    if what == 1 and data:
        b = bytearray(data)
        for _ in range(c.int(1, 4)):
            b[c.int(0, len(b) - 1)] = c.int(0, 255)
        return bytes(b), "flip bytes"
    return data, ""
