"""Loading a model from a stranger: every failure is a typed CnnrtError that says what and where.

Covers unreadable files, broken graphs, unsupported ops/opsets/dtypes, initializers that do
not fit their node and schema violations (the memory limit and external data have their own
files).
"""

from __future__ import annotations

import copy
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from robust_models import conv_net, input_for, lenet5, ort_session, set_initializer

import cnnrt
from cnnrt.errors import ModelLoadError, ResourceLimitError, ShapeError, UnsupportedOpError

_load = cnnrt.InferenceSession


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    if value is not None:
        node.attribute.append(helper.make_attribute(name, value))


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _assert_edit_refused(edit, cls, match) -> None:
    """conv_net changed by ``edit`` fails to load with ``cls`` matching ``match``."""
    m = conv_net()
    edit(m)
    with pytest.raises(cls, match=match):
        _load(m)


# ---------------------------------------------------------------------------- unreadable input


@pytest.mark.parametrize("frac", [0.0005, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.9999])
@pytest.mark.parametrize("make", [conv_net, lenet5], ids=["conv_net", "lenet5"])
def test_truncated_models_raise_model_load_error(make, frac):
    data = make().SerializeToString()
    cut = max(1, int(len(data) * frac))
    with pytest.raises(ModelLoadError):
        _load(data[:cut])


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "empty"),
        (b"\x00", "not a valid ONNX protobuf|no ONNX graph"),
        (b"hello world, this is not an onnx model\n" * 10, "not a valid ONNX protobuf|no ONNX graph"),
        (b'{"graph": {"node": []}}', "not a valid ONNX protobuf|no ONNX graph"),
        (b"\xff" * 64, "not a valid ONNX protobuf"),
        (np.random.default_rng(0).bytes(4096), "not a valid ONNX protobuf|no ONNX graph"),
        (
            onnx.TensorProto(name="t", dims=[2], data_type=1, float_data=[1, 2]).SerializeToString(),
            "not a valid ONNX protobuf|no ONNX graph",
        ),
    ],
    ids=["empty", "nul", "text", "json", "ff", "random", "tensorproto"],
)
def test_garbage_bytes(data, match):
    with pytest.raises(ModelLoadError, match=match):
        _load(data)


def test_bad_paths(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        _load(tmp_path / "empty.onnx")
    with pytest.raises(ModelLoadError, match="cannot read model file.*No such file"):
        _load(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError, match="cannot read model file|not a regular file"):
        _load(tmp_path)
    with pytest.raises(ModelLoadError, match="not a regular file"):
        _load("/dev/zero")  # would read forever
    os.mkfifo(tmp_path / "fifo.onnx")
    with pytest.raises(ModelLoadError, match="not a regular file"):
        _load(tmp_path / "fifo.onnx")  # would block forever waiting for a writer
    with pytest.raises(ModelLoadError, match="cannot read model file"):
        _load("bad\0name.onnx")
    with pytest.raises(ModelLoadError, match="path, bytes or onnx.ModelProto"):
        _load(3.5)


def test_string_field_that_is_not_utf8_names_the_field():
    data = conv_net().SerializeToString()
    i = data.find(b"softmax")
    broken = data[:i] + b"\x95" + data[i + 1 :]
    with pytest.raises(ModelLoadError, match=r"node\[5\]\.name is not valid UTF-8"):
        _load(broken)


# ---------------------------------------------------------------------------- broken graphs


def _rewire(name: str, slot: int, value: str):
    def edit(m):
        _node(m, name).input[slot] = value

    return edit


def _duplicate_first(field: str):
    def edit(m):
        entries = getattr(m.graph, field)
        entries.append(copy.deepcopy(entries[0]))

    return edit


def _set(getter, attr: str, value):
    def edit(m):
        setattr(getter(m), attr, value)

    return edit


def _clear_outputs(m):
    del m.graph.output[:]


@pytest.mark.parametrize(
    "edit, match",
    [
        pytest.param(  # relu <- pool <- relu
            _rewire("relu", 0, "p"),
            r"cycle: (pool \(MaxPool\) -> relu \(Relu\) -> pool|relu \(Relu\) -> pool \(MaxPool\) -> relu)",
            id="cycle",
        ),
        pytest.param(_rewire("relu", 0, "r"), r"cycle: relu \(Relu\) -> relu", id="self-loop"),
        pytest.param(
            _rewire("gemm", 1, "no_such_weight"), r"'gemm' \(Gemm\) reads 'no_such_weight'", id="undefined-input"
        ),
        pytest.param(
            lambda m: m.graph.node.insert(1, helper.make_node("Identity", ["x"], ["c"], name="dup")),
            r"'c' is produced twice",
            id="value-produced-twice",
        ),
        pytest.param(
            lambda m: m.graph.node.append(helper.make_node("Identity", ["y"], ["x"], name="writes_x")),
            r"'x' is produced twice.*writes_x",
            id="node-overwrites-graph-input",
        ),
        pytest.param(_duplicate_first("output"), r"repeat a name: \['y', 'y'\]", id="duplicate-output"),
        pytest.param(_duplicate_first("input"), r"graph input 'x' is listed twice", id="duplicate-input"),
        pytest.param(_duplicate_first("initializer"), r"initializer 'w' appears twice", id="duplicate-initializer"),
        pytest.param(
            _set(lambda m: m.graph.output[0], "name", "nowhere"), "'nowhere' is never produced", id="output-unproduced"
        ),
        pytest.param(_clear_outputs, "no outputs", id="no-outputs"),
        pytest.param(
            _set(lambda m: m.graph.output[0].type.tensor_type, "elem_type", TensorProto.DOUBLE),
            "'y' is declared DOUBLE but the graph computes float32",
            id="output-dtype",
        ),
    ],
)
def test_broken_graph_names_what_is_wrong(edit, match):
    _assert_edit_refused(edit, ModelLoadError, match)


def test_unsorted_but_acyclic_graph_loads_like_onnxruntime():
    m = conv_net()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    x = input_for(m)
    [got] = _load(m).run(None, x)
    [ref] = ort_session(m).run(None, x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- unsupported


def test_unsupported_ops_listed_at_once_with_custom_domain():
    m = conv_net()
    _node(m, "relu").op_type = "Mish"
    _node(m, "flatten").op_type = "Einsum"
    _node(m, "softmax").domain = "com.microsoft"
    with pytest.raises(UnsupportedOpError) as e:
        _load(m)
    msg = str(e.value)
    assert msg.startswith("3 node(s)")
    assert "relu (Mish, opset 17)" in msg and "flatten (Einsum, opset 17)" in msg
    assert "softmax (com.microsoft::Softmax" in msg and "Supported ops: " in msg and "Conv" in msg


@pytest.mark.parametrize(
    "version, match",
    [(99, "opset 99 is newer than the newest"), (3, "opset 3 is older than the oldest")],
)
def test_opset_out_of_range(version, match):
    m = conv_net()
    m.opset_import[0].version = version
    with pytest.raises(UnsupportedOpError, match=match):
        _load(m)


def test_no_default_domain_opset():
    m = conv_net()
    m.opset_import[0].domain = "com.example"
    with pytest.raises(UnsupportedOpError, match="no default-domain"):
        _load(m)


@pytest.mark.parametrize(
    "dtype, where",
    [
        (TensorProto.COMPLEX64, "init"),
        (TensorProto.BFLOAT16, "init"),
        (TensorProto.STRING, "init"),
        (TensorProto.STRING, "input"),
        (TensorProto.BFLOAT16, "input"),
        (TensorProto.COMPLEX128, "input"),
        (12345, "input"),
    ],
)
def test_unsupported_dtypes_say_which_are_supported(dtype, where):
    m = conv_net()
    if where == "init":
        m.graph.initializer[1].data_type = dtype
        name = "tensor 'b'"
    else:
        m.graph.input[0].type.tensor_type.elem_type = dtype
        name = "graph input 'x'"
    with pytest.raises(UnsupportedOpError) as e:
        _load(m)
    msg = str(e.value)
    assert name in msg and "supported: " in msg and "float32" in msg
    label = TensorProto.DataType.Name(dtype) if dtype in TensorProto.DataType.values() else str(dtype)
    assert label in msg


def test_op_that_does_not_take_a_dtype():
    m = conv_net()
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(UnsupportedOpError, match=r"'conv' \(Conv.*'x' has dtype tensor\(int64\); the op takes"):
        _load(m)


def test_inputs_bound_to_one_type_must_agree():
    m = conv_net()
    set_initializer(m, "w", np.ones((4, 3, 3, 3), np.float64))
    with pytest.raises(
        ShapeError, match=r"'conv'.*'x' \(tensor\(float\)\) and 'w' \(tensor\(double\)\) must have the same dtype"
    ):
        _load(m)


# ---------------------------------------------------------------------------- schema violations


def _load_error_message(m) -> str:
    """The ModelLoadError's message: these checks report every violation in one error."""
    with pytest.raises(ModelLoadError) as e:
        _load(m)
    return str(e.value)


def test_attribute_of_the_wrong_type_names_node_and_attribute():
    m = conv_net()
    _set_attr(_node(m, "conv"), "group", [1, 1])
    _set_attr(_node(m, "softmax"), "axis", 1.5)
    msg = _load_error_message(m)
    assert "conv (Conv-11): attribute 'group' must be INT, got INTS" in msg
    assert "softmax (Softmax-13): attribute 'axis' must be INT, got FLOAT" in msg


def test_unknown_and_missing_attributes():
    m = conv_net()
    _set_attr(_node(m, "relu"), "slope", 0.1)
    _set_attr(_node(m, "pool"), "kernel_shape", None)
    msg = _load_error_message(m)
    assert "relu (Relu-14): unknown attribute 'slope'" in msg
    assert "pool (MaxPool-12): required attribute 'kernel_shape' is missing" in msg


def test_input_counts_and_empty_required_inputs():
    m = conv_net()
    del _node(m, "conv").input[1:]
    _node(m, "relu").input.append("x")
    _node(m, "gemm").input[1] = ""
    msg = _load_error_message(m)
    assert "conv (Conv-11): has 1 inputs, the schema wants 2 to 3" in msg
    assert "relu (Relu-14): has 2 inputs, the schema wants 1" in msg
    assert "gemm (Gemm-13): required input 1 (B) is empty" in msg


# ---------------------------------------------------------------------------- weights vs node


@pytest.mark.parametrize(
    "edit, cls, match",
    [
        (
            lambda m: set_initializer(m, "w", np.ones((4, 3, 3), np.float32)),
            ShapeError,
            r"'conv' \(Conv.*weight 'w' must have rank 4",
        ),
        (lambda m: set_initializer(m, "w", np.ones((4, 3, 3, 3, 1), np.float32)), ShapeError, r"'conv'.*rank 4"),
        (
            lambda m: _set_attr(_node(m, "conv"), "group", 2),
            ShapeError,
            r"'conv'.*group=2 must divide input channels 3",
        ),
        (lambda m: _set_attr(_node(m, "conv"), "group", 0), ShapeError, r"'conv'.*group=0"),
        (
            lambda m: set_initializer(m, "w", np.ones((4, 2, 3, 3), np.float32)),
            ShapeError,
            r"'conv'.*expects 2 input channels",
        ),
        (
            lambda m: set_initializer(m, "b", np.ones((5,), np.float32)),
            ShapeError,
            r"'conv'.*bias 'b' must have shape \[4\]",
        ),
        (
            lambda m: (
                _set_attr(_node(m, "conv"), "pads", [0, 0, 0, 0]),
                _set_attr(_node(m, "conv"), "kernel_shape", [11, 11]),
                set_initializer(m, "w", np.ones((4, 3, 11, 11), np.float32)),
            ),
            ShapeError,
            r"'conv'.*kernel extent 11 is larger than the padded input \(8\+0\+0\)",
        ),
        (
            lambda m: _set_attr(_node(m, "conv"), "pads", [-1, 0, 0, 0]),
            ShapeError,
            r"'conv'.*pads must be non-negative",
        ),
        (lambda m: _set_attr(_node(m, "conv"), "pads", [1, 1]), ShapeError, r"'conv'.*pads must have 4 entries"),
        (lambda m: _set_attr(_node(m, "conv"), "strides", [0, 1]), ShapeError, r"'conv'.*must be positive"),
        (
            lambda m: _set_attr(_node(m, "conv"), "kernel_shape", [5, 5]),
            ShapeError,
            r"'conv'.*kernel_shape \[5, 5\] does not match weight",
        ),
        (
            lambda m: _set_attr(_node(m, "pool"), "kernel_shape", [9, 9]),
            ShapeError,
            r"'pool' \(MaxPool.*kernel extent 9 is larger",
        ),
        (
            lambda m: set_initializer(m, "fw", np.ones((5, 63), np.float32)),
            ShapeError,
            r"'gemm' \(Gemm.*inner dimensions differ",
        ),
        (lambda m: _set_attr(_node(m, "softmax"), "axis", 7), ShapeError, r"'softmax'"),
        (lambda m: _set_attr(_node(m, "flatten"), "axis", -9), ShapeError, r"'flatten'"),
    ],
    ids=[
        "w-rank3",
        "w-rank5",
        "group-2",
        "group-0",
        "w-channels",
        "bias",
        "kernel-too-big",
        "neg-pads",
        "pads-len",
        "stride-0",
        "kernel_shape",
        "pool-too-big",
        "gemm-inner",
        "softmax-axis",
        "flatten-axis",
    ],
)
def test_initializers_and_attributes_that_do_not_fit(edit, cls, match):
    _assert_edit_refused(edit, cls, match)


def test_lenet5_weight_that_does_not_fit():
    m = lenet5()
    set_initializer(m, "3.weight", np.ones((16, 5, 5, 5), np.float32))
    with pytest.raises(ShapeError, match=r"'/3/Conv' \(Conv.*expects 5 input channels"):
        _load(m)


def test_astronomical_shapes_are_refused_not_wrapped():
    # pads of 2**62 make a conv output with ~2**126 elements: int64 size arithmetic would wrap
    m = conv_net()
    _set_attr(_node(m, "conv"), "pads", [2**62] * 4)
    with pytest.raises(ResourceLimitError, match=r"'conv'.*more than 2\*\*48"):
        _load(m)
