"""Elementwise CUDA kernels: activations, broadcasting arithmetic, PRelu, Cast, ChannelAffine, BN."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, rand, run_op
from reference import activation_ref

from cnnrt.core.ops import UNARY_ACTIVATION_OPS

ACT_ATTRS = {
    "LeakyRelu": dict(alpha=0.2),
    "Elu": dict(alpha=0.7),
    "HardSigmoid": dict(alpha=0.3, beta=0.45),
    "Clip": dict(min=-0.5, max=0.8),
}


@pytest.mark.parametrize("op", UNARY_ACTIVATION_OPS)
def test_activation(op):
    x = rand(np.random.default_rng(0), 3, 4, 5, lo=-4, hi=4)
    x[0, 0, :3] = [0.0, -0.0, 1e-3]
    attrs = ACT_ATTRS.get(op, {})
    a = attrs.get("alpha", attrs.get("min", 0.0))
    b = attrs.get("beta", attrs.get("max", 0.0))
    [y] = run_op(op, [x], [x.shape], attrs)
    assert_close(y, activation_ref(x, op, a, b), 1e-6)


def test_relu_keeps_nan_and_clip_on_int64():
    x = np.array([np.nan, -np.inf, -1.0, 2.0, np.inf], np.float32)
    [y] = run_op("Relu", [x], [x.shape])
    np.testing.assert_array_equal(y, [np.nan, 0.0, 0.0, 2.0, np.inf])
    xi = np.array([-5, 0, 3, 9], np.int64)
    [yi] = run_op("Clip", [xi], [(xi.shape, "int64")], dict(min=-1.0, max=4.0))
    np.testing.assert_array_equal(yi, [-1, 0, 3, 4])


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize(
    "shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (3, 1)), ((1, 3, 1, 2), (4, 1, 5, 1)), ((5,), ()), ((), (2, 3))]
)
def test_binary_broadcasting(op, shapes):
    rng = np.random.default_rng(len(shapes[0]) * 7 + len(shapes[1]))
    a, b = rand(rng, *shapes[0]), rand(rng, *shapes[1], lo=0.5, hi=2.0)
    ref = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](a.astype(np.float64), b)
    [y] = run_op(op, [a, b], [ref.shape], const=(1,))
    assert_close(y, ref, 1e-6)


def test_binary_on_int64():
    a, b = np.array([[1, -2, 3]], np.int64), np.array([[10], [20]], np.int64)
    [y] = run_op("Mul", [a, b], [((2, 3), "int64")])
    np.testing.assert_array_equal(y, a * b)


@pytest.mark.parametrize("op", ["Sum", "Max", "Min"])
def test_variadic_with_broadcast(op):
    rng = np.random.default_rng(1)
    xs = [rand(rng, 2, 1, 4), rand(rng, 3, 1), rand(rng, 2, 3, 4), rand(rng, 4)]
    fn = {"Sum": np.add, "Max": np.maximum, "Min": np.minimum}[op]
    ref = xs[0].astype(np.float64)
    for x in xs[1:]:
        ref = fn(ref, x)
    [y] = run_op(op, xs, [ref.shape])
    assert_close(y, ref, 1e-6)
    [y1] = run_op(op, xs[2:3], [xs[2].shape])
    np.testing.assert_array_equal(y1, xs[2])


def test_max_propagates_nan():
    a = np.array([np.nan, 1.0, 2.0], np.float32)
    b = np.array([0.0, np.nan, 1.0], np.float32)
    [y] = run_op("Max", [a, b], [(3,)])
    np.testing.assert_array_equal(y, [np.nan, np.nan, 2.0])


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (3, 4, 2)])
def test_prelu(slope_shape):
    rng = np.random.default_rng(2)
    x, s = rand(rng, 2, 3, 4, 2), rand(rng, *slope_shape)
    [y] = run_op("PRelu", [x, s], [x.shape], const=(1,))
    assert_close(y, np.where(x >= 0, x, x * s), 1e-7)


@pytest.mark.parametrize(
    "src, dst",
    [("float32", "int64"), ("int64", "float32"), ("float32", "bool"), ("bool", "float32"), ("float32", "float64")],
)
def test_cast(src, dst):
    x = np.array([[-2.7, -0.0, 0.4, 3.9], [5.0, 1.0, -1.5, 0.0]]).astype(src)
    [y] = run_op("Cast", [x], [(x.shape, dst)], dict(to=dst))
    np.testing.assert_array_equal(y, x.astype(dst))


@pytest.mark.parametrize("per", ["channel", "activation"])
def test_channel_affine_with_activation(per):
    rng = np.random.default_rng(4)
    x = rand(rng, 2, 3, 2, 5)
    pshape = (3,) if per == "channel" else (3, 2, 5)
    s, t = rand(rng, *pshape), rand(rng, *pshape)
    bshape = (1, 3, 1, 1) if per == "channel" else (1, 3, 2, 5)
    ref = activation_ref(x * s.reshape(bshape).astype(np.float64) + t.reshape(bshape), "LeakyRelu", 0.1)
    [y] = run_op(
        "ChannelAffine", [x, s, t], [x.shape], dict(activation="LeakyRelu", act_alpha=0.1, act_beta=0.0), const=(1, 2)
    )
    assert_close(y, ref, 1e-6)


@pytest.mark.parametrize("const_params", [True, False])
@pytest.mark.parametrize("per", ["channel", "activation"])
def test_batch_normalization(const_params, per):
    rng = np.random.default_rng(6)
    x = rand(rng, 2, 4, 3, 3)
    pshape = (4,) if per == "channel" else (4, 3, 3)
    scale, bias, mean = rand(rng, *pshape), rand(rng, *pshape), rand(rng, *pshape)
    var = rand(rng, *pshape, lo=0.1, hi=2.0)
    eps = 1e-3
    bshape = (1, 4, 1, 1) if per == "channel" else (1, 4, 3, 3)
    p = [a.reshape(bshape).astype(np.float64) for a in (scale, bias, mean, var)]
    ref = (x - p[2]) / np.sqrt(p[3] + eps) * p[0] + p[1]
    const = (1, 2, 3, 4) if const_params else ()
    [y] = run_op("BatchNormalization", [x, scale, bias, mean, var], [x.shape], dict(epsilon=eps), const=const)
    assert_close(y, ref, 1e-5)
