"""Loading a model from a stranger: every failure is a typed CnnrtError that says what and where.

Covers unreadable files, broken graphs, unsupported ops/opsets/dtypes, initializers that do
not fit their node, schema violations, the activation memory limit, and external data that
tries to leave the model's folder.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from robust_models import conv_net, input_for, lenet5, ort_session, set_initializer

import cnnrt
import cnnrt.runtime.build as build_mod
from cnnrt.errors import (
    CnnrtError,
    ModelLoadError,
    ResourceLimitError,
    ShapeError,
    UnsupportedOpError,
)


def _load(model, **kw):
    return cnnrt.InferenceSession(model, **kw)


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    if value is not None:
        node.attribute.append(helper.make_attribute(name, value))


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


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
    m = conv_net()
    edit(m)
    with pytest.raises(ModelLoadError, match=match):
        _load(m)


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
    m = conv_net()
    edit(m)
    with pytest.raises(cls, match=match):
        _load(m)


def test_lenet5_weight_that_does_not_fit():
    m = lenet5()
    for t in m.graph.initializer:
        if t.name == "3.weight":
            t.CopyFrom(numpy_helper.from_array(np.ones((16, 5, 5, 5), np.float32), t.name))
    with pytest.raises(ShapeError, match=r"'/3/Conv' \(Conv.*expects 5 input channels"):
        _load(m)


def test_astronomical_shapes_are_refused_not_wrapped():
    # pads of 2**62 make a conv output with ~2**126 elements: int64 size arithmetic would wrap
    m = conv_net()
    _set_attr(_node(m, "conv"), "pads", [2**62] * 4)
    with pytest.raises(ResourceLimitError, match=r"'conv'.*more than 2\*\*48"):
        _load(m)


# ---------------------------------------------------------------------------- memory limit


class _NoExecutor:
    def __init__(self, *a, **k):
        raise AssertionError("the executor (and its arena) must not be built above the limit")


def test_memory_limit_refuses_before_allocating(monkeypatch):
    monkeypatch.setattr(build_mod, "Executor", _NoExecutor)
    with pytest.raises(ResourceLimitError, match=r"need a \d+ bytes arena, above the memory limit of 1000 bytes"):
        _load(conv_net(), memory_limit=1000)


def test_memory_limit_from_environment(monkeypatch):
    monkeypatch.setenv("CNNRT_MEMORY_LIMIT", "2048")
    with pytest.raises(ResourceLimitError, match="memory limit of 2048 bytes.*CNNRT_MEMORY_LIMIT"):
        _load(lenet5())
    monkeypatch.setenv("CNNRT_MEMORY_LIMIT", str(64 << 20))
    assert _load(lenet5()).memory_limit == 64 << 20
    monkeypatch.setenv("CNNRT_MEMORY_LIMIT", "lots")
    with pytest.raises(CnnrtError, match="CNNRT_MEMORY_LIMIT must be a positive number of bytes, not 'lots'"):
        _load(lenet5())


@pytest.mark.parametrize("bad", [0, -5, 1.5, "1GB", True])
def test_memory_limit_argument_is_validated(bad):
    with pytest.raises(CnnrtError, match="memory_limit must be a positive int"):
        _load(conv_net(), memory_limit=bad)


def test_memory_limit_for_a_bigger_batch_at_run_time_keeps_the_session_usable():
    m = conv_net(batch="N")
    s = _load(m)
    one = s.plan.arena_bytes
    s = _load(m, memory_limit=one * 4)
    x = input_for(m)["x"]
    [y1] = s.run(None, {"x": x})
    with pytest.raises(ResourceLimitError, match=r"'x': \(64, 3, 8, 8\)"):
        s.run(None, {"x": np.repeat(x, 64, axis=0)})
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], y1)


# ---------------------------------------------------------------------------- external data


W = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)


def _external_model(folder, location, offset=None, length=None, name="m.onnx"):
    m = conv_net()
    t = m.graph.initializer[0]
    assert t.name == "w"
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    if offset is not None:
        t.external_data.add(key="offset", value=str(offset))
    if length is not None:
        t.external_data.add(key="length", value=str(length))
    path = folder / name
    path.write_bytes(m.SerializeToString())
    return path


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "w.bin").write_bytes(W.tobytes())
    (tmp_path / "secret.bin").write_bytes(W.tobytes())  # outside the model's folder
    return d


def test_external_data_inside_the_folder_loads(model_dir):
    path = _external_model(model_dir, "w.bin")
    ref = conv_net()
    set_initializer(ref, "w", W)
    x = input_for(ref)
    np.testing.assert_allclose(_load(path).run(None, x)[0], ort_session(ref).run(None, x)[0], rtol=1e-5, atol=1e-6)
    (model_dir / "sub").mkdir()
    (model_dir / "sub" / "w.bin").write_bytes(b"\0" * 16 + W.tobytes())
    assert _load(_external_model(model_dir, "sub/w.bin", offset=16, length=W.nbytes))


@pytest.mark.parametrize(
    "location, match",
    [
        ("../secret.bin", "escapes the model's folder"),
        ("sub/../../secret.bin", "escapes the model's folder"),
        ("ABS", "is absolute"),
        ("/etc/passwd", "is absolute"),
        ("link.bin", "escapes the model's folder"),
        ("linkdir/secret.bin", "escapes the model's folder"),
        ("zero.bin", "escapes the model's folder"),
        ("fifo.bin", "is not a regular file"),
        ("adir", "cannot read external data|not a regular file"),
        ("missing.bin", "cannot read external data 'missing.bin': No such file"),
        ("w\0.bin", "NUL byte"),
        ("", "without a location"),
    ],
)
def test_external_data_that_escapes_or_cannot_be_read(model_dir, location, match):
    outside = model_dir.parent
    os.symlink(outside / "secret.bin", model_dir / "link.bin")
    os.symlink(outside, model_dir / "linkdir")
    os.symlink("/dev/zero", model_dir / "zero.bin")
    os.mkfifo(model_dir / "fifo.bin")
    (model_dir / "adir").mkdir()
    if location == "ABS":
        location = str(outside / "secret.bin")
    path = _external_model(model_dir, location)
    with pytest.raises(ModelLoadError, match=r"initializer 'w'.*" + match):
        _load(path)


@pytest.mark.parametrize(
    "offset, length, match",
    [
        (10**9, None, r"offset=1000000000 length=None exceeds 'w.bin' \(432 bytes\)"),
        (0, 10**9, r"length=1000000000 exceeds"),
        (400, 64, r"offset=400 length=64 exceeds"),
        (-4, None, r"offset=-4"),
        (0, -1, r"length=-1"),
        ("12abc", None, r"bad external data offset/length"),
        (0, 12, r"tensor 'w' cannot be decoded"),  # in range, but too short for the dims
    ],
)
def test_external_data_range_outside_the_file(model_dir, offset, length, match):
    with pytest.raises(ModelLoadError, match=match):
        _load(_external_model(model_dir, "w.bin", offset, length))


def test_external_data_needs_a_folder(model_dir):
    data = _external_model(model_dir, "w.bin").read_bytes()
    with pytest.raises(ModelLoadError, match="load the model from its path"):
        _load(data)


def test_model_file_reached_through_a_symlink_uses_the_real_folder(tmp_path, model_dir):
    path = _external_model(model_dir, "w.bin")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(path, elsewhere / "m.onnx")
    assert _load(elsewhere / "m.onnx").run(None, input_for(conv_net()))[0].shape == (1, 5)
