"""Small valid models (hand-built and from the zoo) that the robustness and fuzz tests mutate.

Every builder returns a fresh ``onnx.ModelProto`` that both cnnrt and onnxruntime accept.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10  # onnxruntime 1.31 reads at most IR 13; onnx 1.23 writes 14 by default


def _init(rng: np.random.Generator, name: str, shape, scale: float = 0.3) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def conv_net(batch: int | str = 1, c: int = 3, hw: int = 8, seed: int = 0) -> onnx.ModelProto:
    """Conv(3->4, 3x3, pad 1) + Relu + MaxPool(2) + Flatten + Gemm(->5) + Softmax."""
    rng = np.random.default_rng(seed)
    oc, classes = 4, 5
    flat = oc * (hw // 2) * (hw // 2)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], group=1
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], name="gemm", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
    ]
    inits = [
        _init(rng, "w", (oc, c, 3, 3)),
        _init(rng, "b", (oc,)),
        _init(rng, "fw", (classes, flat), 0.2),
        _init(rng, "fb", (classes,)),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model


def group_conv_net(seed: int = 1) -> onnx.ModelProto:
    """Grouped conv, BatchNorm, Add residual, AveragePool, GlobalAveragePool: more attributes to mutate."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2),
        helper.make_node("BatchNormalization", ["a", "s", "bb", "m", "v"], ["bn"], name="bn", epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "r"], ["s2"], name="add"),
        helper.make_node("AveragePool", ["s2"], ["ap"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["ap"], ["y"], name="gap"),
    ]
    inits = [
        _init(rng, "w1", (4, 2, 3, 3)),
        numpy_helper.from_array((1 + 0.1 * rng.standard_normal(4)).astype(np.float32), "s"),
        _init(rng, "bb", (4,)),
        _init(rng, "m", (4,), 0.1),
        numpy_helper.from_array((0.5 + rng.random(4)).astype(np.float32), "v"),
        _init(rng, "w2", (4, 4, 1, 1)),
        _init(rng, "b2", (4,)),
    ]
    graph = helper.make_graph(
        nodes,
        "group_conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model


@functools.lru_cache(maxsize=1)
def _lenet5_bytes() -> bytes:
    from cnnrt.models import export_cached

    model = onnx.load(str(export_cached("lenet5")))
    model.ir_version = min(model.ir_version, IR_VERSION)
    return model.SerializeToString()


def lenet5() -> onnx.ModelProto:
    """The zoo's LeNet-5 (1x32x32 input, symbolic batch), a fresh copy each call."""
    m = onnx.ModelProto()
    m.ParseFromString(_lenet5_bytes())
    return m


def set_initializer(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """Replace initializer ``name`` of ``model`` by ``array`` (its dtype and shape included)."""
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def external_model(folder, location, offset=None, length=None, name="m.onnx"):
    """conv_net written to ``folder/name`` with weight "w" stored at external ``location`` (optionally a range
    of it); returns the path."""
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


def input_for(model: onnx.ModelProto, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Random float32 feeds for every non-initializer graph input (symbolic dims -> batch/1)."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else (batch if axis == 0 else 1)
            for axis, d in enumerate(vi.type.tensor_type.shape.dim)
        ]
        feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def ort_session(model: onnx.ModelProto | bytes):
    """An onnxruntime CPU session without graph optimisations (the reference)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def tensor_net(seed: int = 2) -> onnx.ModelProto:
    """Conv, Split, Concat, Transpose, Pad, Slice, Reshape, MatMul, Add, Softmax: axis/shape inputs to mutate."""
    rng = np.random.default_rng(seed)

    def i64(name, values):
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Split", ["a", "split"], ["s1", "s2"], name="split", axis=1),
        helper.make_node("Concat", ["s2", "s1"], ["c"], name="concat", axis=1),
        helper.make_node("Transpose", ["c"], ["t"], name="transpose", perm=[0, 1, 3, 2]),
        helper.make_node("Pad", ["t", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node("Slice", ["p", "starts", "ends", "axes"], ["sl"], name="slice"),
        helper.make_node("Reshape", ["sl", "shape"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "mw"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "bias"], ["ad"], name="add"),
        helper.make_node("Softmax", ["ad"], ["y"], name="softmax", axis=-1),
    ]
    inits = [
        _init(rng, "w", (4, 4, 1, 1)),
        i64("split", [1, 3]),
        i64("pads", [0, 0, 1, 1, 0, 0, 1, 1]),
        i64("starts", [1]),
        i64("ends", [7]),
        i64("axes", [2]),
        i64("shape", [1, -1]),
        _init(rng, "mw", (192, 5), 0.1),
        _init(rng, "bias", (5,)),
    ]
    graph = helper.make_graph(
        nodes,
        "tensor_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model


BASE_MODELS = {"conv_net": conv_net, "group_conv_net": group_conv_net, "tensor_net": tensor_net, "lenet5": lenet5}
