"""GroupNormalization, DepthToSpace / SpaceToDepth and cubic Resize CUDA kernels against the
naive references (tests/reference.py; the cubic one is onnx's reference implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, rand, run_op
from reference import (
    activation_ref,
    depth_to_space_reference,
    group_norm_reference,
    resize_reference,
    space_to_depth_reference,
)


@pytest.mark.parametrize("xshape, groups, act", [((2, 6, 3, 4), 3, "none"), ((1, 4, 5), 4, "Relu")])
def test_group_norm(xshape, groups, act):
    rng = np.random.default_rng(0)
    x = rand(rng, *xshape) * 3 + 2
    c = xshape[1]
    s, b = rand(rng, c), rand(rng, c)
    attrs = dict(num_groups=groups, epsilon=1e-4, activation=act)
    [y] = run_op("GroupNormalization", [x, s, b], [xshape], attrs, const=(1,))
    assert_close(y, activation_ref(group_norm_reference(x, s, b, groups, 1e-4), act), 2e-5)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_and_back(mode):
    x = rand(np.random.default_rng(1), 2, 8, 2, 3)
    [y] = run_op("DepthToSpace", [x], [(2, 2, 4, 6)], dict(blocksize=2, mode=mode))
    np.testing.assert_array_equal(y, depth_to_space_reference(x, 2, mode))
    [back] = run_op("SpaceToDepth", [y], [x.shape], dict(blocksize=2, mode=mode))
    np.testing.assert_array_equal(back, space_to_depth_reference(y, 2, mode))


@pytest.mark.parametrize(
    "coord, a, exclude, scales",
    [
        ("half_pixel", -0.75, False, (1, 1, 2.0, 1.5)),
        ("align_corners", -0.5, False, (1, 1, 0.6, 2.0)),
        ("asymmetric", -0.75, True, (1, 1, 1.7, 0.5)),
        ("pytorch_half_pixel", -0.5, True, (1, 1, 3.0, 1.0)),
    ],
)
def test_cubic_resize(coord, a, exclude, scales):
    x = rand(np.random.default_rng(2), 1, 2, 5, 4)
    out_shape = tuple(int(np.floor(d * s)) for d, s in zip(x.shape, scales))
    attrs = dict(mode="cubic", coord_mode=coord, scales=scales, cubic_coeff_a=a, exclude_outside=exclude)
    [y] = run_op("Resize", [x], [out_shape], attrs)
    assert_close(y, resize_reference(x, scales, "cubic", coord, "round_prefer_floor", a, exclude), 1e-5)


def test_image_net_end_to_end_vs_onnxruntime():
    """A 1-D conv (imported as 2-D), InstanceNorm, cubic upsampling and DepthToSpace through
    InferenceSession(backend="cuda"), against onnxruntime."""
    from helpers import make_model, ort_run
    from onnx import helper

    import cnnrt

    rng = np.random.default_rng(3)
    inits = {
        "w": rand(rng, 4, 2, 3),
        "s": rand(rng, 4, lo=0.5, hi=1.5),
        "b": rand(rng, 4),
        "scales": np.array([1, 1, 2.0, 1.5], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1]),  # (N, 4, 6)
        helper.make_node("Unsqueeze", ["c", "axes"], ["c4"]),  # (N, 4, 1, 6)
        helper.make_node("InstanceNormalization", ["c4", "s", "b"], ["n"]),
        helper.make_node("Resize", ["n", "", "scales"], ["r"], mode="cubic"),  # (N, 4, 2, 9)
        helper.make_node(
            "DepthToSpace",
            [
                "r",
            ],
            ["y"],
            blocksize=2,
            mode="CRD",
        ),  # (N, 1, 4, 18)
    ]
    inits["axes"] = np.array([2], np.int64)
    model = make_model(nodes, [("x", [2, 2, 6], np.float32)], [("y", None, np.float32)], inits, opset=13)
    x = rand(rng, 2, 2, 6)
    [got] = cnnrt.InferenceSession(model, backend="cuda").run(None, {"x": x})
    [want] = ort_run(model, {"x": x})
    assert_close(got, want, 1e-5)
