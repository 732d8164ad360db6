"""Inputs found by the fuzzers (tests/fuzz/fuzz_load.py, test_fuzz_models.py, a long random-mutation
loop) that crashed cnnrt or made it answer differently from onnxruntime, rebuilt as readable
models. Each test names the defect it guards against (or, as xfail, a bug still open in a
file this suite does not own).
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from fuzz_lib import check
from onnx import TensorProto, helper, numpy_helper
from robust_models import IR_VERSION, conv_net, external_model, input_for, ort_session, set_initializer, tensor_net

import cnnrt
from cnnrt.errors import CnnrtError, ModelLoadError, ResourceLimitError, ShapeError, UnsupportedOpError


def _node(m, name):
    return next(n for n in m.graph.node if n.name == name)


def _set_attr_proto(node, attr: onnx.AttributeProto) -> None:
    keep = [a for a in node.attribute if a.name != attr.name]
    del node.attribute[:]
    node.attribute.extend(keep + [attr])


def _raw_attr(name: str, attr_type: int) -> onnx.AttributeProto:
    a = onnx.AttributeProto()
    a.name, a.type = name, attr_type
    return a


# -- converters crashed on attributes of the wrong type (TypeError / ValueError escaped) --


@pytest.mark.parametrize(
    "node, attr",
    [
        ("conv", helper.make_attribute("group", [1, 1])),  # int() of a list
        ("conv", helper.make_attribute("auto_pad", 3)),
        ("conv", helper.make_attribute("strides", 2)),  # 'int' object is not iterable
        ("conv", helper.make_attribute("pads", "VALID")),  # int('V')
        ("softmax", helper.make_attribute("axis", float("nan"))),  # cannot convert float NaN to integer
        ("softmax", helper.make_attribute("axis", "reflect")),
        ("gemm", helper.make_attribute("alpha", "SAME_UPPER")),  # float('SAME_UPPER')
        ("gemm", helper.make_attribute("transB", [1])),
        ("pool", helper.make_attribute("kernel_shape", 2.0)),  # 'float' object is not iterable
        ("flatten", helper.make_attribute("axis", [1])),
        ("relu", _raw_attr("alpha", onnx.AttributeProto.UNDEFINED)),
        ("conv", _raw_attr("kernel_shape", onnx.AttributeProto.GRAPH)),  # 'GraphProto' is not iterable
        ("pool", _raw_attr("strides", onnx.AttributeProto.TENSOR)),
    ],
)
def test_attribute_of_wrong_type_is_a_load_error_naming_node_and_attribute(node, attr):
    m = conv_net()
    _set_attr_proto(_node(m, node), attr)
    with pytest.raises(ModelLoadError, match=rf"{node} \(\w+-\d+\): (attribute|unknown attribute) '{attr.name}'"):
        cnnrt.InferenceSession(m)


def test_batchnorm_epsilon_as_a_list():
    m = onnx.ModelProto()
    from robust_models import group_conv_net

    m.CopyFrom(group_conv_net())
    _set_attr_proto(_node(m, "bn"), helper.make_attribute("epsilon", [1.0, 2.0]))  # float() of a list
    with pytest.raises(
        ModelLoadError, match=r"bn \(BatchNormalization-15\): attribute 'epsilon' must be FLOAT, got FLOATS"
    ):
        cnnrt.InferenceSession(m)


# -- converters indexed inputs that were not there (IndexError / KeyError '') --


@pytest.mark.parametrize(
    "node, inputs, match",
    [
        ("relu", [], r"relu \(Relu-14\): has 0 inputs"),
        ("conv", ["w"], r"conv \(Conv-11\): has 1 inputs"),
        ("pool", ["r", "r"], r"pool \(MaxPool-12\): has 2 inputs"),
        ("conv", ["x", ""], r"conv \(Conv-11\): required input 1 \(W\) is empty"),
        ("gemm", ["", "fw", "fb"], r"gemm \(Gemm-13\): required input 0 \(A\) is empty"),
    ],
)
def test_missing_or_extra_inputs(node, inputs, match):
    m = conv_net()
    n = _node(m, node)
    del n.input[:]
    n.input.extend(inputs)
    with pytest.raises(ModelLoadError, match=match):
        cnnrt.InferenceSession(m)


def test_pad_with_only_its_pads_input():
    m = tensor_net()
    n = _node(m, "pad")
    del n.input[:]
    n.input.append("pads")  # now 'data' is an int64 initializer and 'pads' is missing
    with pytest.raises(ModelLoadError, match=r"pad \(Pad-\d+\): has 1 inputs"):
        cnnrt.InferenceSession(m)


# -- bytes from protobuf where a str was expected --


def test_node_name_that_is_not_utf8():
    data = conv_net().SerializeToString()
    i = data.find(b"softmax")
    with pytest.raises(ModelLoadError, match=r"node\[5\]\.name is not valid UTF-8"):
        cnnrt.InferenceSession(data[:i] + b"\x95" + data[i + 1 :])


def test_value_name_that_is_not_utf8():
    data = conv_net().SerializeToString()
    i = data.find(b"\x12\x01r")  # NodeProto.output "r" (field 2, length 1)
    assert i > 0
    with pytest.raises(ModelLoadError, match="not valid UTF-8"):
        cnnrt.InferenceSession(data[: i + 2] + b"\xff" + data[i + 3 :])


# -- shapes so large that int64 size arithmetic wrapped (ValueError / OverflowError escaped) --


@pytest.mark.parametrize("pad", [2**31, 2**40, 2**62, 2**63 - 1])
def test_huge_pads_are_refused_before_planning(pad):
    m = conv_net()
    _set_attr_proto(_node(m, "conv"), helper.make_attribute("pads", [pad] * 4))
    with pytest.raises((ResourceLimitError, ShapeError)):
        cnnrt.InferenceSession(m, memory_limit=64 << 20)


def test_huge_pads_on_the_last_node_do_not_reach_the_executor():
    # no Flatten after the conv to stop it: unchecked, the shape reaches Executor._array (numpy's
    # "ValueError: Maximum allowed dimension exceeded") or the planner (OverflowError)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[2**62] * 4)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    with pytest.raises(ResourceLimitError, match=r"node 'c' \(Conv.*more than 2\*\*48"):
        cnnrt.InferenceSession(m)


# -- answers that differed from onnxruntime (which rejects these models) --


def test_conv_with_float_input_and_double_weights_is_refused():
    m = conv_net()
    w = next(t for t in m.graph.initializer if t.name == "w")
    set_initializer(m, "w", numpy_helper.to_array(w).astype(np.float64))
    with pytest.raises(ShapeError, match=r"'conv'.*must have the same dtype"):
        cnnrt.InferenceSession(m)


def test_gemm_with_int8_bias_is_refused():
    m = conv_net()
    set_initializer(m, "fb", np.zeros(5, np.int8))
    with pytest.raises(UnsupportedOpError, match=r"'gemm'.*'fb' has dtype tensor\(int8\)"):
        cnnrt.InferenceSession(m)


def test_output_declared_float_but_computed_otherwise():
    m = conv_net()
    _node(m, "softmax").op_type = "Cast"
    del _node(m, "softmax").attribute[:]
    _set_attr_proto(_node(m, "softmax"), helper.make_attribute("to", TensorProto.DOUBLE))
    with pytest.raises(ModelLoadError, match="'y' is declared FLOAT but the graph computes float64"):
        cnnrt.InferenceSession(m)


def test_graph_without_outputs():
    m = conv_net()
    del m.graph.output[:]
    with pytest.raises(ModelLoadError, match="no outputs"):
        cnnrt.InferenceSession(m)


def test_unsorted_graph_is_sorted_like_onnxruntime_does():
    m = conv_net()
    a, b = onnx.NodeProto(), onnx.NodeProto()
    a.CopyFrom(m.graph.node[1])
    b.CopyFrom(m.graph.node[2])
    m.graph.node[1].CopyFrom(b)
    m.graph.node[2].CopyFrom(a)
    assert check(m)[0] == "match"


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_integer_maxpool_with_padding_matches_onnxruntime(dtype):
    # kernels/cpu/pool.py filled the running max with -inf cast to an integer type
    # (undefined: garbage such as 122 came out of a 1..25 input)
    g = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[5, 5], pads=[2, 2, 2, 2])],
        "g",
        [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), [1, 1, 5, 5])],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), [1, 1, 5, 5])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])
    m.ir_version = IR_VERSION
    x = (np.arange(1, 26) - (100 if dtype == np.int8 else 0)).astype(dtype).reshape(1, 1, 5, 5)
    want = ort_session(m).run(None, {"x": x})[0]
    for _ in range(5):
        np.testing.assert_array_equal(cnnrt.InferenceSession(m).run(None, {"x": x})[0], want)


# -- the load itself hung or read forever --


def test_external_data_fifo_does_not_hang(tmp_path):
    import os

    external_model(tmp_path, "pipe")
    os.mkfifo(tmp_path / "pipe")
    done = []
    th = threading.Thread(target=lambda: done.append(_load_error(tmp_path / "m.onnx")), daemon=True)
    th.start()
    th.join(20)
    assert done and "not a regular file" in done[0]


def _load_error(path) -> str:
    try:
        cnnrt.InferenceSession(path)
    except CnnrtError as e:
        return str(e)
    return "loaded"


def test_external_location_with_nul_byte(tmp_path):
    external_model(tmp_path, "w\0.bin")  # not a bare ValueError "embedded null byte"
    with pytest.raises(ModelLoadError, match="NUL byte"):
        cnnrt.InferenceSession(tmp_path / "m.onnx")


# -- session API --


def test_executor_property_does_not_recurse():
    s = cnnrt.InferenceSession(conv_net())
    assert s.executor is s._current.executor  # the property reads the plan, not itself (no RecursionError)


def test_memory_limit_env_that_is_not_a_number(monkeypatch):
    monkeypatch.setenv("CNNRT_MEMORY_LIMIT", "8G")  # int('8G'): ValueError escaped
    with pytest.raises(CnnrtError, match="CNNRT_MEMORY_LIMIT"):
        cnnrt.InferenceSession(conv_net())


def test_input_of_an_unusual_but_supported_dtype_is_fed():
    m = conv_net()
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.UINT16
    with pytest.raises(CnnrtError):
        cnnrt.InferenceSession(m)  # Conv does not take uint16: refused at load, not at feed time


# -- found by atheris (tests/fuzz/fuzz_load.py, 7 min): a flipped byte made one weight -3e38 --


def test_overflowing_weight_through_relu_matches_onnxruntime():
    from robust_models import group_conv_net

    m = group_conv_net()
    for t in m.graph.initializer:
        if t.name == "w1":
            w = numpy_helper.to_array(t).copy()
            w[0, 1, 1, 0] = -3.0072280e38  # conv -> -Inf in places -> BN -> Relu
            t.CopyFrom(numpy_helper.from_array(w, "w1"))
    _node(m, "add").op_type = "Mul"
    x = input_for(m, seed=37)
    got = cnnrt.InferenceSession(m).run(None, x)[0]
    want = ort_session(m).run(None, x)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def test_sample_model_still_matches_after_all_checks():
    m = conv_net()
    x = input_for(m)
    np.testing.assert_allclose(
        cnnrt.InferenceSession(m).run(None, x)[0], ort_session(m).run(None, x)[0], rtol=1e-5, atol=1e-6
    )


# -- found by atheris (second run): ceil_mode=2 read as True by cnnrt, as 0 by onnxruntime --


@pytest.mark.parametrize(
    "node, attr, value",
    [
        ("pool", "ceil_mode", 2),
        ("pool", "storage_order", 2**63 - 1),
        ("gemm", "transB", 2**62),  # onnxruntime: shape error; cnnrt must not read it as "transpose"
        ("gemm", "transA", -1),
    ],
)
def test_flag_attributes_must_be_0_or_1(node, attr, value):
    m = conv_net()
    _set_attr_proto(_node(m, node), helper.make_attribute(attr, value))
    with pytest.raises(ModelLoadError, match=rf"{node} \(\w+-\d+\): attribute '{attr}' must be 0 or 1, got {value}"):
        cnnrt.InferenceSession(m)


def test_average_pool_ceil_mode_2_after_asymmetric_conv_pads():
    from robust_models import group_conv_net

    m = group_conv_net()
    _set_attr_proto(_node(m, "conv1"), helper.make_attribute("pads", [2, 1, 1, 1]))
    _set_attr_proto(_node(m, "avgpool"), helper.make_attribute("ceil_mode", 2))
    with pytest.raises(ModelLoadError, match="'ceil_mode' must be 0 or 1"):
        cnnrt.InferenceSession(m)
    _set_attr_proto(_node(m, "avgpool"), helper.make_attribute("ceil_mode", 1))
    assert check(m)[0] == "match"  # the valid spelling agrees with onnxruntime


def test_value_size_does_not_wrap():
    from cnnrt.core.ir import Value

    v = Value("v", (2**33, 2**33), "float32")  # the frontend refuses such shapes; passes could still make one
    assert v.size == 2**66 and v.nbytes == 2**68
