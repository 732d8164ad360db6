"""Depthwise convolution (kernels/cpu/depthwise.py): both of its kernels against the naive
float64 reference, over the edges of their layouts, then end to end against onnxruntime.

depthwise_3x3 (3x3, pads 1, stride 1 or 2 on even planes) reads taps as flat offsets into a
padded copy of the plane and drops column taps that wrap into the neighbouring row by a
select; _depthwise_flat (everything else, dilation 1) uses per-phase padded planes. The cases
below name which one they are meant for, and a test checks that they still reach it.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import act_params, assert_within, run_node, sum_bound  # noqa: E402
from onnx import helper
from reference import activation_ref, conv2d_reference, conv_out  # noqa: E402

import cnnrt  # noqa: E402
from cnnrt.kernels.conv_spec import ConvSpec  # noqa: E402
from cnnrt.kernels.cpu.depthwise import flat3x3_applies  # noqa: E402

# name: (N, C, H, W, multiplier, k, stride, pads (t, l, b, r), fast path expected)
CASES = {
    "s1_8x8": (2, 5, 8, 8, 1, 3, 1, (1, 1, 1, 1), True),
    "s1_7x7_n3": (3, 4, 7, 7, 1, 3, 1, (1, 1, 1, 1), True),
    "s1_wide": (1, 3, 3, 17, 1, 3, 1, (1, 1, 1, 1), True),
    "s1_tall": (1, 3, 19, 2, 1, 3, 1, (1, 1, 1, 1), True),
    "s1_1x1_plane": (2, 3, 1, 1, 1, 3, 1, (1, 1, 1, 1), True),
    "s1_1xW": (1, 2, 1, 9, 1, 3, 1, (1, 1, 1, 1), True),
    "s1_Hx1": (1, 2, 9, 1, 1, 3, 1, (1, 1, 1, 1), True),
    "s1_mult2": (2, 3, 6, 5, 2, 3, 1, (1, 1, 1, 1), True),
    "s1_mult3_28": (1, 2, 28, 28, 3, 3, 1, (1, 1, 1, 1), True),
    "s2_8x8": (2, 5, 8, 8, 1, 3, 2, (1, 1, 1, 1), True),
    "s2_2x2": (1, 3, 2, 2, 1, 3, 2, (1, 1, 1, 1), True),
    "s2_14x28": (1, 3, 14, 28, 1, 3, 2, (1, 1, 1, 1), True),  # ow >= 12: row-at-a-time split
    "s2_28x28_mult2": (2, 2, 28, 28, 2, 3, 2, (1, 1, 1, 1), True),
    "s2_pad_b0": (1, 3, 10, 12, 1, 3, 2, (1, 1, 0, 0), True),  # same output, bottom pad unused
    "s2_odd": (2, 4, 9, 7, 1, 3, 2, (1, 1, 1, 1), False),
    "s2_same_upper": (1, 4, 8, 8, 1, 3, 2, (0, 0, 1, 1), False),
    "s1_nopad": (1, 3, 8, 9, 1, 3, 1, (0, 0, 0, 0), False),
    "s1_asym": (1, 3, 8, 9, 1, 3, 1, (1, 2, 0, 1), False),
    "k5_pad2": (2, 3, 9, 9, 1, 5, 1, (2, 2, 2, 2), False),
    "k5_s2_mult2": (1, 3, 12, 11, 2, 5, 2, (2, 2, 2, 2), False),
    "s3_k3": (1, 3, 13, 11, 1, 3, 3, (1, 1, 1, 1), False),
}


def _spec(case, act=0, res=False):
    n, c, h, w, mult, k, s, pads, _ = case
    oh, ow = conv_out(h, k, s, 1, pads[0], pads[2]), conv_out(w, k, s, 1, pads[1], pads[3])
    return ConvSpec(n, c, h, w, c * mult, oh, ow, k, k, s, s, *pads, 1, 1, c, "float32", True, res, act)


def _data(case, seed=0, residual=False):
    n, c, h, w, mult, k, s, pads, _ = case
    spec = _spec(case)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c * mult, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c * mult).astype(np.float32)
    oshape = (n, c * mult, spec.oh, spec.ow)
    r = rng.standard_normal(oshape).astype(np.float32) if residual else None
    return x, wt, b, r, oshape


def _run(case, x, wt, b, r, oshape, act="none", const=(1, 2)):
    n, c, h, w, mult, k, s, pads, _ = case
    alpha, beta = act_params(act)
    attrs = dict(
        strides=(s, s),
        pads=pads,
        dilations=(1, 1),
        group=c,
        kernel=(k, k),
        activation=act,
        act_alpha=alpha,
        act_beta=beta,
        algorithm="depthwise",
    )
    return run_node("Conv", [x, wt, b, r], attrs, [oshape], const=const)[0]


def _expected(case, x, wt, b, r, act="none"):
    n, c, h, w, mult, k, s, pads, _ = case
    alpha, beta = act_params(act)
    pre = conv2d_reference(x, wt, b, (s, s), pads, (1, 1), c)
    mag = conv2d_reference(np.abs(x), np.abs(wt), np.abs(b), (s, s), pads, (1, 1), c)
    if r is not None:
        pre, mag = pre + r, mag + np.abs(r)
    ref = activation_ref(pre, act, alpha, beta)
    return ref, sum_bound(k * k + 1 + (r is not None), mag, ref, act, alpha)


@pytest.mark.parametrize("name", list(CASES))
def test_cases_reach_the_kernel_they_name(name):
    assert flat3x3_applies(_spec(CASES[name])) == CASES[name][-1]


@pytest.mark.parametrize("name", list(CASES))
def test_depthwise_vs_reference(name):
    case = CASES[name]
    x, wt, b, r, oshape = _data(case)
    got = _run(case, x, wt, b, r, oshape)
    ref, bound = _expected(case, x, wt, b, r)
    assert_within(got, ref, bound, name)


@pytest.mark.parametrize("act", ["Relu", "Clip", "HardSwish", "Sigmoid"])
@pytest.mark.parametrize("name", ["s1_7x7_n3", "s2_8x8", "s1_mult2", "s2_odd", "k5_pad2"])
def test_depthwise_residual_and_activation(name, act):
    """act(conv + bias + residual): the residual goes in before the activation, in the kernel."""
    case = CASES[name]
    x, wt, b, r, oshape = _data(case, seed=2, residual=True)
    got = _run(case, x, wt, b, r, oshape, act)
    ref, bound = _expected(case, x, wt, b, r, act)
    assert_within(got, ref, bound, f"{name}/{act}")


@pytest.mark.parametrize("name", ["s1_8x8", "s2_8x8", "s2_odd"])
def test_depthwise_activation_without_residual(name):
    case = CASES[name]
    x, wt, b, r, oshape = _data(case, seed=3)
    for act in ("Clip", "Relu", "LeakyRelu", "Tanh"):
        got = _run(case, x, wt, b, r, oshape, act)
        ref, bound = _expected(case, x, wt, b, r, act)
        assert_within(got, ref, bound, f"{name}/{act}")


@pytest.mark.parametrize("name", ["s1_mult2", "s2_28x28_mult2", "k5_s2_mult2"])
def test_depthwise_runtime_weights(name):
    """W and B as graph inputs: nothing prepacked, read at every run."""
    case = CASES[name]
    x, wt, b, r, oshape = _data(case, seed=4)
    got = _run(case, x, wt, b, r, oshape, const=())
    ref, bound = _expected(case, x, wt, b, r)
    assert_within(got, ref, bound, name)


@pytest.mark.parametrize("act", ["none", "Clip"])
@pytest.mark.parametrize("name", ["s1_7x7_n3", "s1_wide", "s2_8x8", "s2_14x28", "s2_odd"])
def test_depthwise_nan_and_inf_stay_in_their_windows(name, act):
    """NaN and Inf in the first and last columns (where depthwise_3x3's column taps wrap into
    the neighbouring row and are dropped) reach exactly the outputs whose window holds them."""
    case = CASES[name]
    x, wt, b, r, oshape = _data(case, seed=5)
    x[0, 0, 1, 0] = np.nan
    x[0, 0, 2, -1] = np.inf
    x[-1, -1, -1, -1] = -np.inf
    x[-1, -1, 0, 0] = np.nan
    got = _run(case, x, wt, b, r, oshape, act).astype(np.float64)
    ref, bound = _expected(case, x, wt, b, r, act)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), name
    inf = np.isinf(ref)
    assert np.array_equal(got[inf], ref[inf]), name
    fin = np.isfinite(ref)
    assert_within(got[fin], ref[fin], np.broadcast_to(bound, ref.shape)[fin], name)


# ----------------------------------------------------------------------------- vs onnxruntime

ORT_CASES = [
    # (id, x shape, stride, Conv -> Add(residual) -> Clip?)
    ("mnv2_s1", (2, 16, 14, 14), 1, False),
    ("mnv2_s2", (2, 16, 14, 14), 2, False),
    ("mnv2_s1_residual", (1, 24, 28, 28), 1, True),
    ("mnv2_s2_residual", (3, 8, 10, 12), 2, True),
    ("odd_s2", (1, 8, 9, 9), 2, False),
]


@pytest.mark.parametrize("xshape,stride,residual", [c[1:] for c in ORT_CASES], ids=[c[0] for c in ORT_CASES])
def test_depthwise_vs_onnxruntime(xshape, stride, residual):
    """Conv(group=C) + bias (+ residual Add) + Clip(0, 6) through a full session (fusion on)."""
    from helpers import make_model, ort_run

    rng = np.random.default_rng(7)
    n, c, h, w = xshape
    oh, ow = conv_out(h, 3, stride, 1, 1, 1), conv_out(w, 3, stride, 1, 1, 1)
    x = rng.standard_normal(xshape).astype(np.float32)
    inits = {
        "w": rng.standard_normal((c, 1, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(c).astype(np.float32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
    }
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["t"], group=c, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]
        )
    ]
    inputs, feeds = [("x", list(xshape), np.float32)], {"x": x}
    if residual:
        feeds["r"] = rng.standard_normal((n, c, oh, ow)).astype(np.float32)
        inputs.append(("r", [n, c, oh, ow], np.float32))
        nodes.append(helper.make_node("Add", ["t", "r"], ["u"]))
    nodes.append(helper.make_node("Clip", ["u" if residual else "t", "lo", "hi"], ["y"]))
    model = make_model(nodes, inputs, [("y", None, np.float32)], inits)
    (got,) = cnnrt.InferenceSession(model).run(None, feeds)
    (want,) = ort_run(model, feeds)
    assert got.shape == want.shape == (n, c, oh, ow)
    # the float32 sum of 10-11 terms, each |term| <= max|x| max|w| (+ |b|, |r|)
    mag = 11 * np.abs(x).max() * np.abs(inits["w"]).max() + np.abs(inits["b"]).max()
    mag += np.abs(feeds["r"]).max() if residual else 0.0
    np.testing.assert_allclose(got, want, rtol=0, atol=2 * 12 * 2.0**-24 * mag)


@pytest.mark.parametrize("name", ["s1_7x7_n3", "s2_8x8", "k5_s2_mult2"])
def test_depthwise_float64(name):
    """float64 end to end (its own compiled signatures; the float32 bound covers it)."""
    case = CASES[name]
    *arrays, oshape = _data(case, seed=8, residual=True)
    x, wt, b, r = (a.astype(np.float64) for a in arrays)
    n, c, h, w, mult, k, s, pads, _ = case
    alpha, beta = act_params("Clip")
    attrs = dict(
        strides=(s, s),
        pads=pads,
        dilations=(1, 1),
        group=c,
        kernel=(k, k),
        activation="Clip",
        act_alpha=alpha,
        act_beta=beta,
        algorithm="depthwise",
    )
    (got,) = run_node("Conv", [x, wt, b, r], attrs, [oshape], out_dtypes=["float64"], const=(1, 2))
    assert got.dtype == np.float64
    ref, bound = _expected(case, x, wt, b, r, "Clip")
    assert_within(got, ref, bound, name)
