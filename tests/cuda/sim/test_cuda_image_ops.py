"""GroupNormalization, DepthToSpace / SpaceToDepth and cubic Resize CUDA kernels against the
naive references (tests/reference.py; the cubic one is onnx's reference implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, rand, run_op
from reference import depth_to_space_reference, group_norm_reference, space_to_depth_reference


@pytest.mark.parametrize("xshape, groups", [((2, 6, 3, 4), 3), ((1, 4, 5), 4)])
def test_group_norm(xshape, groups):
    rng = np.random.default_rng(0)
    x = rand(rng, *xshape) * 3 + 2
    c = xshape[1]
    s, b = rand(rng, c), rand(rng, c)
    [y] = run_op("GroupNormalization", [x, s, b], [xshape], dict(num_groups=groups, epsilon=1e-4), const=(1,))
    assert_close(y, group_norm_reference(x, s, b, groups, 1e-4), 2e-5)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_and_back(mode):
    x = rand(np.random.default_rng(1), 2, 8, 2, 3)
    [y] = run_op("DepthToSpace", [x], [(2, 2, 4, 6)], dict(blocksize=2, mode=mode))
    np.testing.assert_array_equal(y, depth_to_space_reference(x, 2, mode))
    [back] = run_op("SpaceToDepth", [y], [x.shape], dict(blocksize=2, mode=mode))
    np.testing.assert_array_equal(back, space_to_depth_reference(y, 2, mode))
