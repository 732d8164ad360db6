"""ONNX's backend test suite (onnx.backend.test) for cnnrt's op set, through cnnrt.runtime.onnx_backend.

Included: the node tests of every ONNX op type the op table (cnnrt.core.ops.OPS) imports, plus the pytorch-converted and
pytorch-operator model tests built only from those ops. Everything excluded is listed in
EXCLUDE with the reason; the list should shrink over time, not grow.
"""

from __future__ import annotations

import os
import re

import numpy as np
import onnx
import onnx.backend.test
from onnx import TensorProto, helper
from onnx.backend.test.loader import load_model_tests

import cnnrt.runtime.onnx_backend
from cnnrt.core.ops import OPS

# Node-test name prefixes (test_<prefix>_..._cpu) of the ONNX op types the op table imports
# (cnnrt.core.ops, field ``onnx``): the lower-cased type, except where onnx names its tests
# otherwise. Constant has no IR op (it becomes a graph constant) but is imported too.
_TEST_PREFIXES = {
    "Conv": ("conv", "basic_conv"),
    "BatchNormalization": ("batchnorm",),
    "Pad": ("constant_pad", "edge_pad", "reflect_pad"),
    "ReduceMean": ("reduce_mean",),
    "InstanceNormalization": ("instancenorm",),
    "GroupNormalization": ("group_normalization",),
    "ReduceSum": ("reduce_sum",),
    "ReduceMax": ("reduce_max",),
    "ReduceMin": ("reduce_min",),
    "ReduceL2": ("reduce_l2",),
    "ArgMax": ("argmax",),
    "ArgMin": ("argmin",),
    "LayerNormalization": ("layer_normalization",),
    "LessOrEqual": ("less_equal",),
    "GreaterOrEqual": ("greater_equal",),
}
_NODE_OPS = tuple(
    sorted({"constant"} | {p for d in OPS.values() for t in d.onnx for p in _TEST_PREFIXES.get(t, (t.lower(),))})
)

# pytorch-converted / pytorch-operator model tests whose every node is in the op set
_MODEL_TESTS = (
    "PReLU_1d",
    "PReLU_1d_multiparam",
    "PReLU_2d",
    "PReLU_2d_multiparam",
    "PReLU_3d",
    "PReLU_3d_multiparam",
    "BatchNorm1d_3d_input_eval",
    "BatchNorm2d_eval",
    "BatchNorm2d_momentum_eval",
    "BatchNorm3d_eval",
    "BatchNorm3d_momentum_eval",
    "Conv1d",
    "Conv1d_dilated",
    "Conv1d_groups",
    "Conv1d_pad1",
    "Conv1d_pad1size1",
    "Conv1d_pad2",
    "Conv1d_pad2size1",
    "Conv1d_stride",
    "Conv2d",
    "Conv2d_depthwise",
    "Conv2d_depthwise_padded",
    "Conv2d_depthwise_strided",
    "Conv2d_depthwise_with_multiplier",
    "Conv2d_dilated",
    "Conv2d_groups",
    "Conv2d_groups_thnn",
    "Conv2d_no_bias",
    "Conv2d_padding",
    "Conv2d_strided",
    "Conv3d",
    "Conv3d_dilated",
    "Conv3d_dilated_strided",
    "Conv3d_groups",
    "Conv3d_no_bias",
    "Conv3d_stride",
    "Conv3d_stride_padding",
    "ConvTranspose2d",
    "ConvTranspose2d_no_bias",
    "AvgPool1d",
    "AvgPool1d_stride",
    "AvgPool2d",
    "AvgPool2d_stride",
    "AvgPool3d",
    "AvgPool3d_stride",
    "AvgPool3d_stride1_pad0_gpu_input",
    "MaxPool1d",
    "MaxPool1d_stride",
    "MaxPool1d_stride_padding_dilation",
    "MaxPool2d",
    "MaxPool2d_stride_padding_dilation",
    "MaxPool3d",
    "MaxPool3d_stride",
    "MaxPool3d_stride_padding",
    "ConstantPad2d",
    "ZeroPad2d",
    "ReflectionPad2d",
    "ReplicationPad2d",
    "ELU",
    "GLU",
    "GLU_dim",
    "LeakyReLU",
    "LeakyReLU_with_negval",
    "Linear",
    "Linear_no_bias",
    "LogSoftmax",
    "PixelShuffle",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Embedding",
    "Embedding_sparse",
    "log_softmax_dim3",
    "log_softmax_lastdim",
    "softmax_functional_dim3",
    "softmax_lastdim",
    "operator_add_broadcast",
    "operator_add_size1_broadcast",
    "operator_add_size1_right_broadcast",
    "operator_add_size1_singleton_broadcast",
    "operator_addconstant",
    "operator_addmm",
    "operator_chunk",
    "operator_clip",
    "operator_concat2",
    "operator_conv",
    "operator_convtranspose",
    "operator_flatten",
    "operator_index",
    "operator_max",
    "operator_maxpool",
    "operator_min",
    "operator_mm",
    "operator_non_float_params",
    "operator_permute2",
    "operator_reduced_mean",
    "operator_reduced_mean_keepdim",
    "operator_view",
)

EXCLUDE = {
    r"_expanded(_ver\d+)?_": "function-expanded variants are built from ops outside the set (Exp, ReduceMax, Where, ...)",
    r"^test_cast_.*(BFLOAT16|FLOAT8|FLOAT4|INT4|UINT4|INT2|UINT2|e8m0)": "bfloat16 and 8/4/2-bit element types are not supported",
    r"^test_gather_elements_": "GatherElements is another op (not in the set)",
    r"^test_split_to_sequence_": "SplitToSequence produces sequences (not in the set)",
    r"^test_identity_(opt|sequence)_": "optional and sequence values are not tensors",
    r"^test_(reshape_allowzero_reordered|split_zero_size_splits_opset\d+)_": "zero-size tensors (the session rejects empty dimensions)",
    r"^test_batchnorm_.*_training_mode_": "BatchNormalization in training mode (inference only)",
    r"^test_resize_.*(antialias|tf_crop_and_resize)": "antialias and tf_crop_and_resize Resize are not supported",
    r"^test_(averagepool|maxpool)_3d_": "3-D pooling is not supported (1-D imports as 2-D, 3-D does not)",
    r"^test_convtranspose_3d_": "3-D ConvTranspose is not supported (1-D imports as 2-D, 3-D does not)",
    r"^test_(Conv3d|AvgPool3d|MaxPool3d|operator_maxpool)": "3-D convolution and pooling are not supported",
    r"^test_reduce_\w+_empty_set_": "zero-size tensors (the session rejects empty dimensions)",
    r"^test_reduce_sum_square_": "ReduceSumSquare is another op (not in the set)",
    r"^test_equal_string": "string tensors are not supported",
    r"^test_not_": "opset 1 models are older than the importer's MIN_OPSET (6)",
    r"^test_(de)?quantizelinear_(e4m3fn|e5m2|float4e2m1|u?int(2|4|16))": "quantization is to uint8/int8 only",
    r"^test_(de)?quantizelinear_blocked": "blocked quantization (block_size) is not supported",
}


def _old_opset_models() -> dict[str, str]:
    """The pytorch model tests older than the importer's MIN_OPSET (most are opset 6)."""
    from cnnrt.frontends.schema_checks import MIN_OPSET

    old = {}
    for kind in ("pytorch-converted", "pytorch-operator"):
        for t in load_model_tests(kind=kind):
            if t.name[len("test_") :] in _MODEL_TESTS:
                model = onnx.load(os.path.join(t.model_dir, "model.onnx"), load_external_data=False)
                opset = max(i.version for i in model.opset_import if i.domain in ("", "ai.onnx"))
                if opset < MIN_OPSET:
                    old[rf"^{t.name}_(cpu|cuda)$"] = (
                        f"opset {opset} is older than the importer's MIN_OPSET ({MIN_OPSET})"
                    )
    return old


EXCLUDE.update(_old_opset_models())

_DEVICES = "|".join(d.lower() for d in ("CPU", "CUDA") if cnnrt.runtime.onnx_backend.supports_device(d))
INCLUDE = [rf"^test_{op}(_.*)?_({_DEVICES})$" for op in _NODE_OPS]
INCLUDE += [rf"^test_{name}_({_DEVICES})$" for name in _MODEL_TESTS]

backend_test = onnx.backend.test.BackendTest(cnnrt.runtime.onnx_backend, __name__)
for _pattern in INCLUDE:
    backend_test.include(_pattern)
for _pattern in EXCLUDE:
    backend_test.exclude(_pattern)


def _selected(cases: dict) -> dict:
    """Only the included tests: the suite registers ~4000, almost all for other ops."""
    include = [re.compile(p) for p in INCLUDE]
    kept = {}
    for name, case in cases.items():
        for attr in [a for a in vars(case) if a.startswith("test_")]:
            if not any(p.search(attr) for p in include):
                delattr(case, attr)
        if any(a.startswith("test_") for a in vars(case)):
            kept[name] = case
    return kept


globals().update(_selected(backend_test.test_cases))


def test_run_node_and_devices():
    node = helper.make_node("Sub", ["a", "b"], ["c"])
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32)
    (c,) = cnnrt.runtime.onnx_backend.run_node(node, [a, b])
    np.testing.assert_array_equal(c, a - b)
    assert cnnrt.runtime.onnx_backend.supports_device("CPU")


def test_parameter_inputs_are_compiled_in_per_value():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    graph = helper.make_graph(
        [node],
        "reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_empty_tensor_value_info("y")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
    rep = cnnrt.runtime.onnx_backend.prepare(model)
    assert rep.parameters == ["shape"]
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    for shape in ([3, 4], [4, -1], [3, 4]):
        (y,) = rep.run([x, np.array(shape, np.int64)])
        np.testing.assert_array_equal(y, x.reshape(shape))
    assert len(rep._sessions) == 2
