"""InstanceNormalization, GroupNormalization (opsets 18 and 21), DepthToSpace and SpaceToDepth
(frontends/ops_image.py) and cubic Resize (frontends/ops_resize.py) end to end against
onnxruntime, and their import errors."""

from __future__ import annotations

import numpy as np
import pytest
from frontend_helpers import check, make_model
from helpers import ort_run
from onnx import helper

import cnnrt
from cnnrt.errors import ShapeError

rng = np.random.default_rng(5)
X = (rng.standard_normal((2, 6, 5, 4)) * 3 + 1).astype(np.float32)


def _norm_model(op, scale, bias, opset, params_as_inputs=False, **attrs):
    node = helper.make_node(op, ["x", "s", "b"], ["y"], name="n", **attrs)
    if params_as_inputs:
        inputs = [("x", np.float32, X.shape), ("s", np.float32, scale.shape), ("b", np.float32, bias.shape)]
        return make_model([node], inputs, ["y"], opset=opset)
    return make_model([node], [("x", np.float32, X.shape)], ["y"], [("s", scale), ("b", bias)], opset=opset)


def test_instance_norm():
    s, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    check(_norm_model("InstanceNormalization", s, b, 17, epsilon=1e-3), {"x": X}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
@pytest.mark.parametrize("opset", [18, 21])
def test_group_norm(groups, opset):
    n = groups if opset == 18 else 6  # opset 18: one scale and bias per group
    s, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    check(_norm_model("GroupNormalization", s, b, opset, num_groups=groups), {"x": X}, rtol=1e-4, atol=1e-4)


def test_group_norm_18_with_runtime_scale_gathers_it_per_channel():
    s, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    model = _norm_model("GroupNormalization", s, b, 18, params_as_inputs=True, num_groups=3)
    sess = cnnrt.InferenceSession(model, opt_level=0)
    assert [n.op for n in sess.graph.nodes] == ["Gather", "Gather", "GroupNormalization"]
    feeds = {"x": X, "s": s, "b": b}
    np.testing.assert_allclose(sess.run(None, feeds)[0], ort_run(model, feeds)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "op, scale, attrs, match",
    [
        ("GroupNormalization", 6, {"num_groups": 4}, "num_groups=4 must divide the 6 channels"),
        ("GroupNormalization", 6, {"num_groups": 3}, r"scale 's' must have shape \[3\] \(one per group\)"),
        ("InstanceNormalization", 3, {}, r"scale 's' must have shape \[6\]"),
    ],
)
def test_norm_errors_name_the_node(op, scale, attrs, match):
    s = np.ones(scale, np.float32)
    with pytest.raises(ShapeError, match=rf"'n' \({op}.*{match}"):
        cnnrt.InferenceSession(_norm_model(op, s, s, 18, **attrs))


def _block_model(op, b, opset=13, **attrs):
    node = helper.make_node(op, ["x"], ["y"], name="n", blocksize=b, **attrs)
    return make_model([node], [("x", np.float32, X.shape)], ["y"], opset=opset)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    x = rng.standard_normal((2, 18, 3, 2)).astype(np.float32)
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=3, mode=mode)
    check(make_model([node], [("x", np.float32, x.shape)], ["y"], opset=13), {"x": x})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_opset_28_modes_against_onnx_reference(mode):
    from onnx.reference import ReferenceEvaluator

    from cnnrt.frontends.schema_checks import MAX_OPSET

    x = rng.standard_normal((1, 3, 4, 6)).astype(np.float32)
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2, mode=mode)
    model = make_model([node], [("x", np.float32, x.shape)], ["y"], opset=MAX_OPSET)
    [want] = ReferenceEvaluator(model).run(None, {"x": x})
    [got] = cnnrt.InferenceSession(model, opt_level=0).run(None, {"x": x})
    np.testing.assert_array_equal(got, want)


def test_space_to_depth():
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2)
    check(make_model([node], [("x", np.float32, x.shape)], ["y"], opset=13), {"x": x})


def test_block_errors_name_the_node():
    with pytest.raises(ShapeError, match=r"'n' \(DepthToSpace.*6 channels are not a multiple of blocksize\^2 = 4"):
        cnnrt.InferenceSession(_block_model("DepthToSpace", 2))
    with pytest.raises(ShapeError, match=r"'n' \(SpaceToDepth.*height 5 and width 4 must be multiples of blocksize 2"):
        cnnrt.InferenceSession(_block_model("SpaceToDepth", 2))


@pytest.mark.parametrize(
    "coord, a, exclude",
    [
        ("half_pixel", -0.75, 0),
        ("half_pixel", -0.5, 1),
        ("align_corners", -0.75, 1),
        ("asymmetric", -0.5, 0),
        ("pytorch_half_pixel", -0.75, 1),
        ("half_pixel_symmetric", -0.5, 0),
    ],
)
@pytest.mark.parametrize("scales", [[1, 1, 2.0, 1.5], [1, 1, 0.6, 0.5]])  # whole output lengths: see below
def test_cubic_resize(coord, a, exclude, scales):
    """Scales giving whole output lengths: otherwise align_corners differs by design (cnnrt
    divides by the real-valued output length minus 1, as the ONNX formula does, onnxruntime
    by the rounded one; test_ops_tensor.py shows it for linear)."""
    attrs = dict(mode="cubic", coordinate_transformation_mode=coord, cubic_coeff_a=a, exclude_outside=exclude)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)
    model = make_model(
        [node], [("x", np.float32, X.shape)], ["y"], [("scales", np.array(scales, np.float32))], opset=19
    )
    check(model, {"x": X}, rtol=1e-5, atol=1e-5)


def test_cubic_resize_from_sizes():
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic")
    model = make_model([node], [("x", np.float32, X.shape)], ["y"], [("sizes", np.array([2, 6, 9, 7]))], opset=13)
    check(model, {"x": X}, rtol=1e-5, atol=1e-5)
