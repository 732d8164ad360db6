"""Tensor converters (frontends/ops_tensor.py) end to end against onnxruntime: one-node and
small multi-node ONNX models, over the opset versions whose forms differ (attributes vs
inputs), run by cnnrt at opt_level=0."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from frontend_helpers import check, cnnrt_run, make_model
from helpers import IR_VERSION, ort_run
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import cnnrt
import cnnrt.frontends.onnx
from cnnrt.errors import ShapeError, UnsupportedOpError

I64 = np.int64


def one_node(op, x, opset=13, attrs=None, extra=(), n_out=1):
    """op(x, *extra): x fed at run time, extra inputs as initializers (None = omitted input)."""
    names = ["x"] + [("" if v is None else f"p{i}") for i, v in enumerate(extra)]
    while names and names[-1] == "":
        names.pop()
    inits = [(f"p{i}", v) for i, v in enumerate(extra) if v is not None]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    return make_model([node], [("x", x.dtype, x.shape)], outs, inits, opset)


def _zero_d_survives_import() -> bool:
    """Whether 0-d initializers and Constants keep shape () through the importer."""
    node = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(1.0, np.float32)))
    m = make_model([node], [("x", np.float32, (1,))], ["c"], [("k", np.array(2, I64))])
    g = cnnrt.frontends.onnx.OnnxModel(m).to_graph({"x": (1,)})
    return g.values["c"].shape == () and g.values["k"].shape == ()


ZERO_D_BROKEN = not _zero_d_survives_import()
ZERO_D_REASON = "the importer turns 0-d tensors 1-D (np.ascontiguousarray in tensor_to_array / add_constant)"

rng = np.random.default_rng(1)
X = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)


# ---------------------------------------------------------------------------- Concat, Split


@pytest.mark.parametrize("axis", [0, 1, 3, -1, -3])
def test_concat(axis):
    shapes = [list(X.shape) for _ in range(3)]
    for k, s in enumerate(shapes):
        s[axis] = k + 1
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    node = helper.make_node("Concat", ["a", "b", "c"], ["y"], axis=axis)
    m = make_model([node], [(n, np.float32, s) for n, s in zip("abc", shapes)], ["y"])
    check(m, dict(zip("abc", arrays)))


def test_concat_mismatched_shapes():
    node = helper.make_node("Concat", ["a", "b"], ["y"], axis=0)
    m = make_model([node], [("a", np.float32, (2, 3)), ("b", np.float32, (2, 4))], ["y"])
    with pytest.raises(ShapeError, match="differ outside axis 0"):
        cnnrt.InferenceSession(m, opt_level=0)


@pytest.mark.parametrize(
    "opset,axis,split,n",
    [
        (11, 1, [1, 2], 2),
        (11, -1, None, 5),
        (13, 2, [1, 1, 2], 3),
        (13, 0, None, 2),
        (18, 3, [2, 3], 2),
        (18, 3, None, 2),
    ],
)
def test_split(opset, axis, split, n):
    attrs = {"axis": axis}
    extra = []
    if split is not None and opset < 13:
        attrs["split"] = split
    elif split is not None:
        extra = [np.array(split, I64)]
    elif opset >= 18:
        attrs["num_outputs"] = n  # 5 along axis 3 into 2: chunks of 3 and 2
    check(one_node("Split", X, opset, attrs, extra, n_out=n), {"x": X})


def test_split_uneven_without_sizes_is_an_error():
    with pytest.raises(ShapeError, match="equal parts"):
        cnnrt_run(one_node("Split", X, 13, {"axis": 3}, n_out=2), {"x": X})


# ---------------------------------------------------------------------------- Slice


SLICES = [
    # starts, ends, axes, steps
    ([0, 1], [2, 3], [2, 3], None),
    ([1], [1000], [1], None),  # end past the dim: clamped
    ([-3], [-1], [3], None),
    ([-100], [100], [0], None),
    ([3], [0], [3], [-1]),
    ([-1], [-1000], [2], [-2]),  # negative step through index 0
    ([4], [-1000], [3], [-3]),
    ([0, 0], [9223372036854775807, 4], [-1, -2], [2, 3]),  # INT64_MAX end, negative axes
    ([5], [1], [3], [1]),  # empty
]


@pytest.mark.parametrize("opset", [10, 13])
@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
def test_slice_inputs(opset, starts, ends, axes, steps):
    extra = [
        np.array(starts, I64),
        np.array(ends, I64),
        np.array(axes, I64),
        None if steps is None else np.array(steps, I64),
    ]
    check(one_node("Slice", X, opset, extra=extra), {"x": X})


@pytest.mark.parametrize("starts,ends,axes", [([0, 1], [2, 3], [2, 3]), ([1], [1000], None), ([-3], [-1], [3])])
def test_slice_attributes_opset_9(starts, ends, axes):
    attrs = {"starts": starts, "ends": ends} | ({} if axes is None else {"axes": axes})
    check(one_node("Slice", X, 9, attrs), {"x": X})


def test_slice_runtime_bounds_are_rejected():
    node = helper.make_node("Slice", ["x", "s", "e"], ["y"], name="sl")
    m = make_model([node], [("x", np.float32, (4,)), ("s", I64, (1,)), ("e", I64, (1,))], ["y"])
    with pytest.raises(UnsupportedOpError, match=r"'sl'.*starts.*load time"):
        cnnrt.InferenceSession(m, opt_level=0)


# ---------------------------------------------------------------------------- reshapes


@pytest.mark.parametrize("axis", [0, 1, 2, 4, -1, -4])
def test_flatten(axis):
    check(one_node("Flatten", X, 13, {"axis": axis}), {"x": X})


@pytest.mark.parametrize("shape", [[6, -1], [0, 0, -1], [-1], [2, 0, 20], [1, 2, 3, 4, 5]])
def test_reshape(shape):
    check(one_node("Reshape", X, 13, extra=[np.array(shape, I64)]), {"x": X})


def test_reshape_allowzero_keeps_literal_sizes():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    check(one_node("Reshape", x, 14, {"allowzero": 1}, extra=[np.array([4, 3], I64)]), {"x": x})
    with pytest.raises(ShapeError, match="cannot reshape"):
        cnnrt_run(one_node("Reshape", x, 14, {"allowzero": 1}, extra=[np.array([0, 12], I64)]), {"x": x})


def test_reshape_bad_target():
    with pytest.raises(ShapeError, match=r"cannot infer the -1 in \[7, -1\]"):
        cnnrt_run(one_node("Reshape", X, 13, extra=[np.array([7, -1], I64)]), {"x": X})


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [None, [2], [-1, 0]])
def test_squeeze(opset, axes):
    x = rng.standard_normal((1, 3, 1, 5, 1)).astype(np.float32)
    if axes is None:
        m = one_node("Squeeze", x, opset)
    elif opset < 13:
        m = one_node("Squeeze", x, opset, {"axes": axes})
    else:
        m = one_node("Squeeze", x, opset, extra=[np.array(axes, I64)])
    check(m, {"x": x})


def test_squeeze_non_unit_axis():
    with pytest.raises(ShapeError, match="not 1"):
        cnnrt_run(one_node("Squeeze", X, 13, extra=[np.array([1], I64)]), {"x": X})


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[0], [4], [-1], [0, 5], [3, 1], [-1, -6]])
def test_unsqueeze(opset, axes):
    if opset < 13:
        m = one_node("Unsqueeze", X, opset, {"axes": axes})
    else:
        m = one_node("Unsqueeze", X, opset, extra=[np.array(axes, I64)])
    check(m, {"x": X})


@pytest.mark.parametrize("perm", [None, [0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 2, 3]])
def test_transpose(perm):
    check(one_node("Transpose", X, 13, {} if perm is None else {"perm": perm}), {"x": X})


def test_transpose_bad_perm():
    with pytest.raises(ShapeError, match="permutation"):
        cnnrt_run(one_node("Transpose", X, 13, {"perm": [0, 1, 1, 2]}), {"x": X})


# ---------------------------------------------------------------------------- Pad


PADS = [[0, 0, 1, 2, 0, 0, 2, 1], [1, 0, 0, 0, 0, 2, 3, 3], [0, 0, -1, 1, 0, 0, 1, -2], [0, 0, 0, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", PADS)
def test_pad_attributes_opset_10(mode, pads):
    attrs = {"mode": mode, "pads": pads} | ({"value": 1.5} if mode == "constant" else {})
    check(one_node("Pad", X, 10, attrs), {"x": X})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", PADS)
def test_pad_inputs_opset_11(mode, pads):
    extra = [np.array(pads, I64)] + ([np.array(-2.5, np.float32)] if mode == "constant" else [])
    check(one_node("Pad", X, 11, {"mode": mode}, extra), {"x": X})


@pytest.mark.parametrize("axes,pads", [([2, 3], [1, 2, 2, 1]), ([-1], [3, 0]), ([0, -2], [1, 0, 0, 2])])
def test_pad_axes_opset_18(axes, pads):
    extra = [np.array(pads, I64), np.array(0.25, np.float32), np.array(axes, I64)]
    check(one_node("Pad", X, 18, {"mode": "constant"}, extra), {"x": X})


def test_pad_rank_5_and_integer_tensor():
    x = rng.integers(-9, 9, (2, 2, 2, 3, 4)).astype(np.int64)
    pads = [1, 0, 1, 0, 1, 0, 1, 1, 2, 1]  # every axis padded: not reducible to 4-D
    for mode in ("constant", "edge", "reflect"):
        check(one_node("Pad", x, 13, {"mode": mode}, [np.array(pads, I64)]), {"x": x})


def test_pad_wrap_mode_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="wrap"):
        cnnrt_run(one_node("Pad", X, 19, {"mode": "wrap"}, [np.array([0] * 8, I64)]), {"x": X})


def test_pad_reflect_wider_than_input():
    with pytest.raises(ShapeError, match="reflect"):
        cnnrt_run(one_node("Pad", X, 13, {"mode": "reflect"}, [np.array([0, 0, 0, 5, 0, 0, 0, 0], I64)]), {"x": X})


# ---------------------------------------------------------------------------- Resize, Upsample


IMG = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
COORDS = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
# scales whose products with 5 and 7 are integers, so align_corners means the same to
# onnxruntime (integer output length) and the ONNX reference (scale * length)
SCALES = [[1, 1, 2, 3], [1, 1, 0.6, 2 / 7], [1, 1, 1.4, 1 / 7 * 4], [1, 1, 1, 2]]
# Exact .5 ties of asymmetric coordinates (e.g. 7 -> 4: x = 2 * 7/4 = 3.5) are avoided: there
# float32 rounding decides round_prefer_ceil, and onnxruntime rounds them differently.
SIZES = [[2, 3, 10, 14], [2, 3, 3, 5], [2, 3, 8, 5], [2, 3, 5, 9]]


def resize_model(opset, attrs, scales=None, sizes=None, x=IMG):
    if opset == 10:
        return one_node("Resize", x, 10, attrs, [np.array(scales, np.float32)])
    roi = np.array([], np.float32) if opset == 11 else None
    extra = [
        roi,
        None if scales is None else np.array(scales, np.float32),
        None if sizes is None else np.array(sizes, I64),
    ]
    if opset == 11 and scales is None:
        extra[1] = np.array([], np.float32)
    return one_node("Resize", x, opset, attrs, extra)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.6, 0.5], [1, 1, 1.5, 2.0]])
def test_resize_opset_10(mode, scales):
    check(resize_model(10, {"mode": mode}, scales), {"x": IMG}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [11, 13, 19])
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("scales", SCALES)
def test_resize_linear_scales(opset, coord, scales):
    if coord == "half_pixel_symmetric" and opset < 19:
        pytest.skip("half_pixel_symmetric exists from opset 19")
    attrs = {"mode": "linear", "coordinate_transformation_mode": coord}
    check(resize_model(opset, attrs, scales=scales), {"x": IMG}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("coord", COORDS[:4])
@pytest.mark.parametrize("sizes", SIZES)
def test_resize_linear_sizes(opset, coord, sizes):
    attrs = {"mode": "linear", "coordinate_transformation_mode": coord}
    check(resize_model(opset, attrs, sizes=sizes), {"x": IMG}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("coord", COORDS[:4])
@pytest.mark.parametrize("nearest", NEAREST)
@pytest.mark.parametrize("sizes", SIZES)
def test_resize_nearest(coord, nearest, sizes):
    attrs = {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    check(resize_model(13, attrs, sizes=sizes), {"x": IMG})


@pytest.mark.parametrize("nearest", NEAREST)
def test_resize_nearest_scales(nearest):
    attrs = {"mode": "nearest", "nearest_mode": nearest, "coordinate_transformation_mode": "asymmetric"}
    check(resize_model(13, attrs, scales=[1, 1, 2, 3]), {"x": IMG})
    attrs["coordinate_transformation_mode"] = "half_pixel"
    check(resize_model(13, attrs, scales=[1, 1, 0.6, 3]), {"x": IMG})


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("axes,sizes", [([2, 3], [10, 9]), ([3, 2], [9, 10]), ([3], [14])])
def test_resize_axes_and_aspect_ratio_opset_18(policy, axes, sizes):
    for mode in ("nearest", "linear"):
        attrs = {"mode": mode, "axes": axes, "keep_aspect_ratio_policy": policy}
        check(resize_model(18, attrs, sizes=sizes), {"x": IMG}, rtol=1e-5, atol=1e-5)


def test_resize_non_spatial_axes_against_the_onnx_reference():
    # Resizing axes 1 and 3 takes the general one-pass-per-axis path.
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for mode in ("nearest", "linear"):
        m = resize_model(13, {"mode": mode}, scales=[1, 2, 1, 1.6], x=x)
        (got,) = cnnrt_run(m, {"x": x})
        (ref,) = ReferenceEvaluator(m).run(None, {"x": x})
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_resize_align_corners_uses_the_real_valued_length():
    # scale 0.6 of 4 is 2.4: the ONNX formula divides by (2.4 - 1) (onnxruntime by 2 - 1).
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 2, 4)
    m = resize_model(13, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 0.6, 0.6], x=x)
    (got,) = cnnrt_run(m, {"x": x})
    np.testing.assert_allclose(got, [[[[1.0, 1 + 3 / 1.4]]]], rtol=1e-6)


@pytest.mark.parametrize(
    "attrs,match",
    [
        ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop_and_resize"),
        ({"mode": "linear", "antialias": 1}, "antialias"),
    ],
)
def test_resize_unsupported_forms(attrs, match):
    with pytest.raises(UnsupportedOpError, match=match):
        cnnrt_run(resize_model(19, attrs, scales=[1, 1, 2, 2]), {"x": IMG})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 3, 1.5]])
def test_upsample_opset_7_and_9(mode, scales):
    attrs = {"mode": mode, "scales": [float(s) for s in scales]}
    check(one_node("Upsample", IMG, 7, attrs), {"x": IMG}, rtol=1e-5, atol=1e-5)
    check(
        one_node("Upsample", IMG, 9, {"mode": mode}, [np.array(scales, np.float32)]), {"x": IMG}, rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------------------- constants, shapes, Gather


@pytest.mark.parametrize(
    "attr,value",
    [
        ("value", numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))),
        ("value_floats", [1.5, 2.5, 3.5]),
        ("value_ints", [3, 1, 2]),
        ("value_int", 7),
        ("value_float", 0.5),
    ],
)
def test_constant(attr, value):
    if ZERO_D_BROKEN and attr in ("value_int", "value_float"):
        pytest.xfail(ZERO_D_REASON)
    node = helper.make_node("Constant", [], ["c"], **{attr: value})
    add = helper.make_node("Identity", ["c"], ["y"])
    m = make_model([node, add], [("x", np.float32, (1,))], ["y", "c"])
    check(m, {"x": np.zeros(1, np.float32)})


@pytest.mark.parametrize("value", [None, np.array([1.5], np.float32), np.array([3], I64)])
def test_constant_of_shape(value):
    attrs = {} if value is None else {"value": numpy_helper.from_array(value)}
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"], **attrs), helper.make_node("Identity", ["x"], ["y"])]
    m = make_model(nodes, [("x", np.float32, (1,))], ["c", "y"], [("shape", np.array([2, 3, 4], I64))])
    (c, _) = check(m, {"x": np.zeros(1, np.float32)})
    assert c.shape == (2, 3, 4)


def test_constant_of_shape_from_runtime_shape_is_rejected():
    x = np.array([2, 3], I64)
    with pytest.raises(UnsupportedOpError, match="shape"):
        cnnrt_run(one_node("ConstantOfShape", x, 13), {"x": x})


@pytest.mark.parametrize("start,end", [(None, None), (1, None), (None, -1), (-3, 3), (-10, 10), (3, 1)])
def test_shape_opset_15(start, end):
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    check(one_node("Shape", X, 15, attrs), {"x": X})


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("idx", [np.array([0, 2, 1, 0]), np.array([[-1, 0], [1, -2]])])
def test_gather(axis, idx):
    idx = np.where(idx >= 0, idx % X.shape[axis], idx)
    for dtype in (np.int64, np.int32):
        check(one_node("Gather", X, 13, {"axis": axis}, [idx.astype(dtype)]), {"x": X})
    # runtime indices
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    m = make_model([node], [("x", np.float32, X.shape), ("i", I64, idx.shape)], ["y"])
    check(m, {"x": X, "i": idx.astype(I64)})


def test_gather_scalar_runtime_index():
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    m = make_model([node], [("x", np.float32, X.shape), ("i", I64, ())], ["y"])
    check(m, {"x": X, "i": np.array(-1, I64)})


def test_gather_known_index_out_of_range():
    with pytest.raises(ShapeError, match="out of range"):
        cnnrt_run(one_node("Gather", X, 13, {"axis": 1}, [np.array([3], I64)]), {"x": X})


def test_gather_runtime_index_out_of_range_names_the_node():
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="g", axis=1)
    m = make_model([node], [("x", np.float32, X.shape), ("i", I64, (1,))], ["y"])
    with pytest.raises(cnnrt.CnnrtError, match="'g'"):
        cnnrt_run(m, {"x": X, "i": np.array([5], I64)})


# ---------------------------------------------------------------------------- ReduceMean


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [None, [1], [2, 3], [-1, 0]])
def test_reduce_mean(keepdims, axes):
    attrs13 = {"keepdims": keepdims} | ({} if axes is None else {"axes": axes})
    check(one_node("ReduceMean", X, 13, attrs13), {"x": X}, rtol=1e-5)
    extra = [] if axes is None else [np.array(axes, I64)]
    check(one_node("ReduceMean", X, 18, {"keepdims": keepdims}, extra), {"x": X}, rtol=1e-5)


def test_reduce_mean_noop_with_empty_axes():
    (y,) = check(one_node("ReduceMean", X, 18, {"noop_with_empty_axes": 1}), {"x": X})
    np.testing.assert_array_equal(y, X)


# ---------------------------------------------------------------------------- multi-node graphs


@pytest.mark.xfail(ZERO_D_BROKEN, reason=ZERO_D_REASON, strict=True)
def test_pytorch_flatten_chain_resolves_to_one_reshape():
    # x.view(x.size(0), -1) as torch.onnx exports it: Shape -> Gather(0-d index) -> Unsqueeze
    # -> Concat -> Reshape
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, I64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    inits = [("axes0", np.array([0], I64)), ("minus1", np.array([-1], I64))]
    # batch is symbolic: the chain must resolve for each batch size the session sees
    vi = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 4, 5])]
    graph = helper.make_graph(
        nodes,
        "flatten",
        vi,
        [helper.make_empty_tensor_value_info("z")],
        [numpy_helper.from_array(v, k) for k, v in inits],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=IR_VERSION)
    sess = cnnrt.InferenceSession(m, opt_level=0)
    for n in (1, 3):
        x = rng.standard_normal((n, 3, 4, 5)).astype(np.float32)
        (got,) = sess.run(None, {"x": x})
        np.testing.assert_array_equal(got, np.maximum(x.reshape(n, -1), 0))
        np.testing.assert_array_equal(got, ort_run(m, {"x": x})[0])
        reshape = next(node for node in sess.graph.nodes if node.op == "Reshape" and node.inputs[0] == "x")
        assert reshape.inputs == ("x",) and reshape.attrs["shape"] == (n, 60)


def test_flatten_chain_with_1d_index():
    # The same chain written with a 1-D index (no Unsqueeze): independent of 0-d handling.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n1"], axis=0),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [("zero", np.array([0], I64)), ("minus1", np.array([-1], I64))]
    m = make_model(nodes, [("x", np.float32, X.shape)], ["y"], inits)
    (y,) = check(m, {"x": X})
    assert y.shape == (2, 60)


def test_ir3_initializers_listed_as_inputs():
    # IR version 3: initializers are graph inputs too; they stay constants unless fed.
    w = rng.standard_normal((3, 1, 1)).astype(np.float32)
    shape = np.array([2, -1], I64)
    nodes = [helper.make_node("Mul", ["x", "w"], ["m"]), helper.make_node("Reshape", ["m", "shape"], ["y"])]
    inputs = [("x", np.float32, X.shape), ("w", np.float32, w.shape), ("shape", I64, shape.shape)]
    m = make_model(nodes, inputs, ["y"], [("w", w), ("shape", shape)], opset=7, ir_version=3)
    sess = cnnrt.InferenceSession(m, opt_level=0)
    assert [i.name for i in sess.get_inputs()] == ["x"]
    (y,) = sess.run(None, {"x": X})
    np.testing.assert_allclose(y, (X * w).reshape(2, -1), rtol=1e-6)
    w2 = np.full_like(w, 2.0)
    (y2,) = sess.run(None, {"x": X, "w": w2})  # an initializer-input may be overridden
    np.testing.assert_allclose(y2, (X * 2).reshape(2, -1), rtol=1e-6)
    (ref,) = ort_run(m, {"x": X})
    np.testing.assert_allclose(y, ref, rtol=1e-6)


def test_split_then_concat_and_slice_chain():
    nodes = [
        helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
        helper.make_node("Transpose", ["b"], ["bt"], perm=[0, 1, 3, 2]),
        helper.make_node("Slice", ["bt", "st", "en", "ax", "sp"], ["bs"]),
        helper.make_node("Reshape", ["bs", "tgt"], ["br"]),
        helper.make_node("Concat", ["a", "br"], ["y"], axis=1),
    ]
    inits = [
        ("sizes", np.array([1, 2], I64)),
        ("st", np.array([-1], I64)),
        ("en", np.array([-1000], I64)),
        ("ax", np.array([3], I64)),
        ("sp", np.array([-1], I64)),
        ("tgt", np.array([2, 2, 4, 5], I64)),
    ]
    check(make_model(nodes, [("x", np.float32, X.shape)], ["y"], inits), {"x": X})
