"""BatchNormalization, ChannelAffine and LRN: against the naive references, then vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import U32, act_params, assert_within, run_node, sum_bound  # noqa: E402
from onnx import helper
from reference import activation_ref, batchnorm_reference, lrn_reference  # noqa: E402
from vs_onnxruntime import run_both  # noqa: E402

import cnnrt  # noqa: E402
from cnnrt.core.ops import ACTIVATIONS  # noqa: E402


def _bn_params(rng, shape):
    scale = rng.standard_normal(shape).astype(np.float32)
    bias = rng.standard_normal(shape).astype(np.float32)
    mean = rng.standard_normal(shape).astype(np.float32)
    var = rng.uniform(0.05, 2.0, shape).astype(np.float32)
    return scale, bias, mean, var


def _bn_bound(x, scale, bias, mean, var, eps):
    """y = x*s + t with s = scale/sqrt(var+eps), t = bias - mean*s: a handful of roundings, each
    relative to one of |x s|, |bias|, |mean s| (8u covers computing s and t in float32)."""
    p = (lambda a: a.reshape((1, -1) + (1,) * (x.ndim - 2))) if scale.ndim == 1 else (lambda a: a[None])
    s = np.abs(p(scale.astype(np.float64)) / np.sqrt(p(var.astype(np.float64)) + eps))
    return 8 * U32 * (np.abs(x) * s + np.abs(p(bias)) + np.abs(p(mean)) * s) + 1e-30


@pytest.mark.parametrize("xshape", [(3, 5), (2, 4, 6), (2, 3, 4, 5), (1, 2, 3, 2, 2)])
@pytest.mark.parametrize("per_activation", [False, True], ids=["per_channel", "per_activation"])
@pytest.mark.parametrize("const", [True, False], ids=["const", "runtime"])
def test_batch_norm_vs_reference(xshape, per_activation, const):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(xshape) * 3).astype(np.float32)
    pshape = xshape[1:] if per_activation else (xshape[1],)
    params = _bn_params(rng, pshape)
    eps = 1e-3
    (got,) = run_node(
        "BatchNormalization", [x, *params], dict(epsilon=eps), [xshape], const=(1, 2, 3, 4) if const else ()
    )
    want = batchnorm_reference(x, *params, eps)
    assert_within(got, want, _bn_bound(x, *params, eps), f"{xshape}")


@pytest.mark.parametrize("act", ["none", "Relu"])
def test_channel_affine_nan_and_inf(act):
    """NaN stays NaN through the affine map and Relu (as onnxruntime's BatchNormalization +
    Relu); -Inf after the map gives 0 under Relu, +Inf stays."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 7, 7)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[rng.random(x.shape) < 0.1] = np.inf
    x[rng.random(x.shape) < 0.1] = -np.inf
    s = np.array([1.5, -2.0, 0.5, 1.0, -0.25], np.float32)
    t = rng.standard_normal(5).astype(np.float32)
    (got,) = run_node(
        "ChannelAffine", [x, s, t], dict(activation=act, act_alpha=0.0, act_beta=0.0), [x.shape], const=(1, 2)
    )
    pre = x.astype(np.float64) * s.reshape(1, 5, 1, 1) + t.reshape(1, 5, 1, 1)
    want = np.where(pre < 0, 0.0, pre) if act == "Relu" else pre
    special = ~np.isfinite(want)
    np.testing.assert_array_equal(got[special], want[special].astype(np.float32))
    mag = np.abs(np.where(np.isfinite(x), x, 0)) * np.abs(s.reshape(1, 5, 1, 1)) + np.abs(t.reshape(1, 5, 1, 1))
    assert_within(got[~special], want[~special], (4 * U32 * mag + 1e-30)[~special], act)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("xshape", [(2, 4, 3, 5), (3, 6)])
def test_channel_affine_vs_reference(act, xshape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xshape).astype(np.float32)
    c = xshape[1]
    s, t = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    alpha, beta = act_params(act)
    attrs = dict(activation=act, act_alpha=alpha, act_beta=beta)
    (got,) = run_node("ChannelAffine", [x, s, t], attrs, [xshape], const=(1, 2))
    bshape = (1, c) + (1,) * (len(xshape) - 2)
    pre = x.astype(np.float64) * s.reshape(bshape) + t.reshape(bshape)
    want = activation_ref(pre, act, alpha, beta)
    mag = np.abs(x) * np.abs(s.reshape(bshape)) + np.abs(t.reshape(bshape))
    assert_within(got, want, sum_bound(2, mag, want, act, alpha), act)


def _lrn_bound(size, beta, want):
    """Float32 sum of ``size`` squares (relative error (size + 1) u, all terms positive), the
    base bias + a*sum rounded once from float64 (+u), raised to beta (scales it by beta), then
    for beta = 0.75 the float32 chain r = sqrt(b), sqrt(r), r * sqrt(r), x / that: 1.5u + u + u
    + u; the pow path (float64, one final rounding) is within that. (beta*(size+2) + 4.5) u."""
    return (beta * (size + 2) + 4.5) * U32 * np.abs(want) + 1e-30


@pytest.mark.parametrize("beta", [0.75, 0.6])  # 0.75 has its own sqrt path
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("xshape", [(2, 7, 3, 4), (1, 6, 5)])
def test_lrn_vs_reference(size, xshape, beta):
    x = (np.random.default_rng(2).standard_normal(xshape) * 2).astype(np.float32)
    attrs = dict(size=size, alpha=0.3, beta=beta, bias=1.5)
    (got,) = run_node("LRN", [x], attrs, [xshape])
    want = lrn_reference(x, size, 0.3, beta, 1.5)
    assert_within(got, want, _lrn_bound(size, beta, want), f"size={size} beta={beta}")


def test_lrn_window_is_asymmetric_for_even_size():
    """size=2: channels [c, c+1] (floor/ceil of (size-1)/2), a one-hot input shows the window."""
    x = np.zeros((1, 4, 1, 1), np.float32)
    x[0, 2] = 1.0
    (got,) = run_node("LRN", [x], dict(size=2, alpha=2.0, beta=1.0, bias=1.0), [x.shape])
    (ones,) = run_node("LRN", [np.ones_like(x)], dict(size=2, alpha=2.0, beta=1.0, bias=1.0), [x.shape])
    assert got[0, 2, 0, 0] == pytest.approx(1 / (1 + 1))
    # channel 3 (last) sums only itself, channels 0..2 sum two ones: 1/(1 + 2/2*2) = 1/3
    np.testing.assert_allclose(ones.ravel(), [1 / 3, 1 / 3, 1 / 3, 1 / 2], rtol=4 * U32)


# ----------------------------------------------------------------------------- vs onnxruntime


@pytest.mark.parametrize(
    "opset,spatial,xshape",
    [
        (15, None, (2, 3, 4, 5)),
        (15, None, (4, 3)),
        (9, None, (2, 3, 4)),
        (7, 1, (2, 3, 4, 5)),
        (7, 0, (2, 3, 4, 5)),
        (7, 0, (3, 4)),
    ],
)
@pytest.mark.parametrize("as_inputs", [False, True], ids=["initializers", "graph_inputs"])
def test_batch_norm_vs_onnxruntime(opset, spatial, xshape, as_inputs):
    from helpers import make_model

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(xshape) * 2).astype(np.float32)
    pshape = xshape[1:] if spatial == 0 else (xshape[1],)
    params = dict(zip(("s", "b", "m", "v"), _bn_params(rng, pshape)))
    attrs = dict(epsilon=1e-4)
    if spatial is not None:
        attrs["spatial"] = spatial
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], **attrs)
    inputs = [("x", list(xshape), np.float32)]
    if as_inputs:
        inputs += [(k, list(pshape), np.float32) for k in params]
    model = make_model([node], inputs, [("y", None, np.float32)], None if as_inputs else params, opset=opset)
    feeds = {"x": x, **(params if as_inputs else {})}
    (got,), (want,) = run_both(model, feeds)
    assert_within(got, want.astype(np.float64), 2 * _bn_bound(x, *params.values(), 1e-4), f"opset {opset}")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_vs_onnxruntime(size):
    """Even sizes: onnxruntime refuses them (and onnx's ReferenceEvaluator LRN loops over the batch
    axis instead of channels), so the naive reference stands in, still through the frontend."""
    from helpers import make_model

    xshape = (2, 7, 4, 3)
    x = (np.random.default_rng(4).standard_normal(xshape) * 2).astype(np.float32)
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.3, beta=0.75, bias=1.5)
    model = make_model([node], [("x", list(xshape), np.float32)], [("y", None, np.float32)])
    if size % 2:
        (got,), (want,) = run_both(model, {"x": x})
    else:
        (got,) = cnnrt.InferenceSession(model, opt_level=0).run(None, {"x": x})
        want = lrn_reference(x, size, 0.3, 0.75, 1.5)
    assert_within(got, want.astype(np.float64), 2 * _lrn_bound(size, 0.75, want), f"size={size}")


@pytest.mark.parametrize("size,beta,bias", [(5, 0.75, 1.5), (4, 0.6, 1.0), (3, 0.75, 0.0), (1, 0.75, 2.0)])
def test_blocked_lrn_is_the_nchw_lrn(size, beta, bias):
    """BlockedLRN (passes/block_layout.py keeps GoogLeNet's and AlexNet's LRN blocked) sums
    across lanes and block ends as LRN sums across channels: bit for bit the NCHW kernel's
    result, 40 channels in blocks of the vector width, padding lanes zero in and out (0/0
    with bias 0), NaN and Inf in the windows they reach."""
    from cnnrt.core.ir import Graph, Node, Value
    from cnnrt.core.layout import block, unblock
    from cnnrt.kernels.cpu.conv_common import block_size
    from cnnrt.kernels.cpu.norm import build_blocked_lrn

    lanes = block_size(np.float32)
    x = np.random.default_rng(size).standard_normal((2, 40, 5, 7)).astype(np.float32)
    x[1, 17, 2, 3], x[0, lanes - 1, 0, 0] = np.nan, np.inf
    attrs = dict(size=size, alpha=0.3, beta=beta, bias=bias)
    (want,) = run_node("LRN", [x], attrs, [x.shape])
    xb = block(x, lanes)
    values = {
        "x": Value("x", x.shape),
        "xb": Value("xb", xb.shape, layout=f"nchw{lanes}c", logical="x"),
        "y": Value("y", x.shape),
        "yb": Value("yb", xb.shape, layout=f"nchw{lanes}c", logical="y"),
    }
    node = Node("BlockedLRN", ("xb",), ("yb",), attrs, name="lrn")
    got = np.full(xb.shape, np.nan, np.float32)
    build_blocked_lrn(node, Graph([node], values, {}, ["xb"], ["yb"]))([xb], [got])
    np.testing.assert_array_equal(unblock(got, 40), want)
    if 40 % lanes:
        assert not got[:, -1, ..., 40 % lanes :].any()
