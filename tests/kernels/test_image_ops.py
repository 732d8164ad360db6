"""GroupNormalization (instance norm as one group per channel), DepthToSpace, SpaceToDepth and
cubic Resize CPU kernels against the naive references (tests/reference.py; cubic Resize's is
onnx's reference implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import ACT_LIPSCHITZ, U32, act_params, assert_within, run_node
from reference import (
    activation_ref,
    depth_to_space_reference,
    group_norm_reference,
    resize_reference,
    space_to_depth_reference,
)


@pytest.mark.parametrize(
    "xshape, groups", [((2, 6, 5, 7), 3), ((1, 4, 3, 3), 4), ((3, 8, 10), 1), ((2, 6, 2, 2, 3), 2)]
)
@pytest.mark.parametrize("const", [True, False], ids=["const", "runtime"])
def test_group_norm_vs_reference(xshape, groups, const):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(xshape) * 2 + 5).astype(np.float32)  # a mean far from 0
    c = xshape[1]
    scale, bias = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    eps = 1e-3
    (got,) = run_node(
        "GroupNormalization",
        [x, scale, bias],
        dict(num_groups=groups, epsilon=eps),
        [xshape],
        const=(1, 2) if const else (),
    )
    want = group_norm_reference(x, scale, bias, groups, eps)
    # float64 statistics: the error is a few roundings of |x a| and |b| (a = scale * rstd)
    normalised = (want - bias.reshape((1, c) + (1,) * (len(xshape) - 2))) / np.where(scale == 0, 1, scale).reshape(
        (1, c) + (1,) * (len(xshape) - 2)
    )
    bound = 8 * U32 * (np.abs(want) + np.abs(normalised * scale.reshape((1, c) + (1,) * (len(xshape) - 2)))) + 1e-6
    assert_within(got, want, bound, f"{xshape} groups={groups}")


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "Clip", "HardSwish", "Elu"])
def test_group_norm_fused_activation(act):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    scale, bias = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    alpha, beta = act_params(act)
    attrs = dict(num_groups=2, epsilon=1e-5, activation=act, act_alpha=alpha, act_beta=beta)
    (got,) = run_node("GroupNormalization", [x, scale, bias], attrs, [x.shape], const=(1, 2))
    pre = group_norm_reference(x, scale, bias, 2, 1e-5)
    want = activation_ref(pre, act, alpha, beta)
    assert_within(got, want, 16 * U32 * (np.abs(pre) + 1) * ACT_LIPSCHITZ[act], act)


def test_group_norm_constant_group_is_the_bias():
    """Zero variance: (x - mean) is exactly 0, so the output is the bias (eps keeps it finite)."""
    x = np.full((1, 4, 3, 3), 7.25, np.float32)
    scale, bias = np.ones(4, np.float32), np.arange(4, dtype=np.float32)
    (got,) = run_node("GroupNormalization", [x, scale, bias], dict(num_groups=2, epsilon=1e-5), [x.shape])
    np.testing.assert_array_equal(got, np.broadcast_to(bias.reshape(1, 4, 1, 1), x.shape))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("b", [2, 3])
def test_depth_to_space_and_back(mode, b):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2 * b * b, 3, 4)).astype(np.float32)
    out_shape = (2, 2, 3 * b, 4 * b)
    (y,) = run_node("DepthToSpace", [x], dict(blocksize=b, mode=mode), [out_shape])
    np.testing.assert_array_equal(y, depth_to_space_reference(x, b, mode))
    (back,) = run_node("SpaceToDepth", [y], dict(blocksize=b, mode=mode), [x.shape])
    np.testing.assert_array_equal(back, space_to_depth_reference(y, b, mode))
    np.testing.assert_array_equal(back, x)


def test_rearrangement_of_integers():
    x = np.arange(2 * 8 * 2 * 2, dtype=np.int64).reshape(2, 8, 2, 2)
    (y,) = run_node("SpaceToDepth", [x], dict(blocksize=2, mode="DCR"), [(2, 32, 1, 1)], out_dtypes=["int64"])
    np.testing.assert_array_equal(y, space_to_depth_reference(x, 2, "DCR"))


CUBIC_CASES = [
    # (input shape, scales, coord, a, exclude_outside): the first three resize the last two
    # axes (the fused 2-D kernel), the last two other axes too (one pass per axis)
    ((1, 2, 5, 4), (1, 1, 2.0, 1.5), "half_pixel", -0.75, False),
    ((2, 1, 6, 7), (1, 1, 0.5, 0.6), "align_corners", -0.5, True),
    ((1, 3, 4, 4), (1, 1, 1.7, 3.0), "asymmetric", -0.75, True),
    ((2, 3, 4, 5), (1, 2.0, 1.5, 1), "pytorch_half_pixel", -0.5, False),
    ((3, 4, 5), (2.0, 1, 0.8), "half_pixel_symmetric", -0.75, True),
]


@pytest.mark.parametrize("shape, scales, coord, a, exclude", CUBIC_CASES)
def test_cubic_resize_vs_onnx_reference(shape, scales, coord, a, exclude):
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    out_shape = tuple(int(np.floor(np.float32(d) * np.float32(s))) for d, s in zip(shape, scales))
    attrs = dict(mode="cubic", coord_mode=coord, scales=scales, cubic_coeff_a=a, exclude_outside=exclude)
    (got,) = run_node("Resize", [x], attrs, [out_shape])
    want = resize_reference(x, scales, "cubic", coord, "round_prefer_floor", a, exclude)
    # 16 taps whose weights sum to 1 in magnitude at most ~1.6 per axis: a few ulps of max|x|
    assert_within(got, want, 64 * U32 * np.max(np.abs(x)), f"cubic {coord} {shape}->{out_shape}")
