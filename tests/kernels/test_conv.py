"""Conv and ConvTranspose kernels: against the naive references, then end to end vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import act_params, assert_within, run_node, sum_bound  # noqa: E402
from onnx import helper
from reference import activation_ref, conv2d_reference, conv_out, conv_transpose2d_reference  # noqa: E402

import cnnrt  # noqa: E402
from cnnrt.core.ops import ACTIVATIONS  # noqa: E402
from cnnrt.errors import UnsupportedOpError  # noqa: E402
from cnnrt.kernels.conv_spec import ConvSpec  # noqa: E402
from cnnrt.kernels.cpu import conv as conv_mod  # noqa: E402
from cnnrt.kernels.cpu.conv_algorithm import choose  # noqa: E402

# (N, C, H, W, M, kh, kw, strides, pads (t, l, b, r), dilations, group)
CONV_CASES = {
    "3x3_pad1": (2, 3, 8, 7, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "3x3_s2_nopad": (1, 4, 9, 9, 6, 3, 3, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    "3x2_s21_asym": (2, 4, 9, 8, 6, 3, 2, (2, 1), (1, 0, 2, 1), (1, 1), 1),
    "dil2": (1, 4, 10, 9, 4, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),
    "g2_s23_d21": (1, 4, 11, 10, 4, 3, 3, (2, 3), (1, 2, 0, 1), (2, 1), 2),
    "even_k_g2_n3": (3, 4, 6, 5, 4, 2, 2, (2, 2), (0, 0, 1, 1), (1, 1), 2),
    "pointwise": (2, 8, 6, 6, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "pointwise_g4": (2, 8, 6, 6, 12, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 4),
    "1x1_s2": (1, 8, 7, 7, 4, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    "1x1_pad2": (1, 2, 3, 3, 2, 1, 1, (1, 1), (2, 2, 2, 2), (1, 1), 1),
    "dw3x3": (2, 6, 8, 8, 6, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 6),
    "dw3x3_s2_asym": (1, 6, 9, 8, 6, 3, 3, (2, 2), (1, 0, 1, 1), (1, 1), 6),
    "dw_mult2_dil": (1, 4, 9, 9, 8, 3, 3, (1, 2), (2, 1, 0, 2), (2, 1), 4),
    "dw5x5": (1, 5, 7, 7, 5, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1), 5),
    "dw_s3_dil2": (1, 3, 11, 10, 3, 3, 3, (3, 3), (1, 2, 2, 1), (2, 2), 3),
    "dw_s3_k4": (2, 3, 11, 13, 6, 4, 4, (3, 3), (1, 2, 2, 1), (1, 1), 3),  # generic phase copy
    "7x7_s2_stem": (1, 3, 12, 12, 4, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),
    "cin1_5x5": (1, 1, 8, 8, 3, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "kernel_is_input": (1, 4, 5, 5, 3, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "stride_gt_kernel": (1, 2, 8, 8, 2, 2, 2, (3, 3), (1, 1, 1, 1), (1, 1), 1),
}


def _data(case, seed=0, bias=True, residual=False):
    n, c, h, w, m, kh, kw, strides, pads, dil, group = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c // group, kh, kw)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    oh, ow = (
        conv_out(h, kh, strides[0], dil[0], pads[0], pads[2]),
        conv_out(w, kw, strides[1], dil[1], pads[1], pads[3]),
    )
    r = rng.standard_normal((n, m, oh, ow)).astype(np.float32) if residual else None
    return x, wt, b, r, (n, m, oh, ow)


def _attrs(case, act="none", **extra):
    *_, kh, kw, strides, pads, dil, group = case
    alpha, beta = act_params(act)
    return dict(
        strides=strides,
        pads=pads,
        dilations=dil,
        group=group,
        kernel=(kh, kw),
        activation=act,
        act_alpha=alpha,
        act_beta=beta,
        **extra,
    )


def _expected(case, x, wt, b, r, act="none"):
    """(reference, bound) for one conv + bias + residual + activation."""
    *_, kh, kw, strides, pads, dil, group = case
    alpha, beta = act_params(act)
    pre = conv2d_reference(x, wt, b, strides, pads, dil, group)
    mag = conv2d_reference(np.abs(x), np.abs(wt), None if b is None else np.abs(b), strides, pads, dil, group)
    if r is not None:
        pre, mag = pre + r, mag + np.abs(r)
    ref = activation_ref(pre, act, alpha, beta)
    k = wt.shape[1] * kh * kw + (b is not None) + (r is not None)
    return ref, sum_bound(k, mag, ref, act, alpha)


def _run_conv(case, x, wt, b, r, out_shape, act="none", const=(1, 2), **extra):
    return run_node("Conv", [x, wt, b, r], _attrs(case, act, **extra), [out_shape], const=const)[0]


@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv_vs_reference(name):
    case = CONV_CASES[name]
    x, wt, b, r, oshape = _data(case)
    got = _run_conv(case, x, wt, b, r, oshape)
    ref, bound = _expected(case, x, wt, b, r)
    assert_within(got, ref, bound, name)


@pytest.mark.parametrize("name", ["3x3_pad1", "pointwise_g4", "dw_mult2_dil", "g2_s23_d21"])
def test_conv_runtime_weights(name):
    """W and B as graph inputs (not constants): nothing prepacked, read at every run."""
    case = CONV_CASES[name]
    x, wt, b, r, oshape = _data(case, seed=1)
    got = _run_conv(case, x, wt, b, r, oshape, const=())
    ref, bound = _expected(case, x, wt, b, r)
    assert_within(got, ref, bound, name)


@pytest.mark.parametrize(
    "name,algorithm",
    [
        ("pointwise", "im2col"),
        ("pointwise_g4", "im2col"),
        ("dw3x3", "im2col"),
        ("dw_mult2_dil", "im2col"),
        ("pointwise", "depthwise"),
        ("cin1_5x5", "depthwise"),
        ("1x1_s2", "im2col"),
        ("1x1_s2", "direct"),
        ("dw3x3", "direct"),
        ("dw_mult2_dil", "direct"),
        ("3x3_pad1", "im2col"),
        ("g2_s23_d21", "im2col"),
        ("7x7_s2_stem", "im2col"),
        ("stride_gt_kernel", "im2col"),
        ("even_k_g2_n3", "im2col"),
    ],
)
def test_conv_forced_algorithm(name, algorithm):
    """Every algorithm agrees with the reference wherever it applies (the node attr overrides)."""
    case = CONV_CASES[name]
    if algorithm == "depthwise" and case[1] != case[-1]:
        case = case[:-1] + (case[1],)  # make it group == C
    x, wt, b, r, oshape = _data(case)
    got = _run_conv(case, x, wt, b, r, oshape, algorithm=algorithm)
    ref, bound = _expected(case, x, wt, b, r)
    assert_within(got, ref, bound, f"{name}/{algorithm}")


def test_conv_rejects_inapplicable_algorithm():
    case = CONV_CASES["3x3_pad1"]
    x, wt, b, r, oshape = _data(case)
    with pytest.raises(UnsupportedOpError, match="cannot compute"):
        _run_conv(case, x, wt, b, r, oshape, algorithm="pointwise")


def test_select_algorithm():
    def algo(name):
        n, c, h, w, m, kh, kw, (sh, sw), pads, (dh, dw), g = CONV_CASES[name]
        oh, ow = conv_out(h, kh, sh, dh, pads[0], pads[2]), conv_out(w, kw, sw, dw, pads[1], pads[3])
        return choose(ConvSpec(n, c, h, w, m, oh, ow, kh, kw, sh, sw, *pads, dh, dw, g))[0]

    assert [
        algo(n) for n in ("pointwise", "pointwise_g4", "dw3x3", "dw_mult2_dil", "3x3_pad1", "1x1_s2", "1x1_pad2")
    ] == ["pointwise", "pointwise", "depthwise", "depthwise", "direct", "im2col", "im2col"]


def test_conv_im2col_row_blocks(monkeypatch):
    """Tiny column blocks: one output row per im2col block, blocks stitched into the output."""
    monkeypatch.setattr(conv_mod, "_COL_BLOCK_BYTES", 1)
    for name in ("3x3_pad1", "g2_s23_d21", "stride_gt_kernel"):
        case = CONV_CASES[name]
        x, wt, b, r, oshape = _data(case, seed=2, residual=True)
        got = _run_conv(case, x, wt, b, r, oshape, act="Relu", algorithm="im2col_numpy")
        ref, bound = _expected(case, x, wt, b, r, "Relu")
        assert_within(got, ref, bound, name)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("name", ["pointwise", "dw3x3_s2_asym", "3x2_s21_asym"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_conv_epilogue(act, name, residual):
    """Bias, residual (added before the activation) and every fused activation, per algorithm."""
    case = CONV_CASES[name]
    x, wt, b, r, oshape = _data(case, seed=3, residual=residual)
    got = _run_conv(case, x, wt, b, r, oshape, act=act)
    ref, bound = _expected(case, x, wt, b, r, act)
    assert_within(got, ref, bound, f"{name}/{act}")


@pytest.mark.parametrize("name", ["pointwise", "dw3x3", "3x3_pad1"])
def test_conv_residual_without_bias(name):
    """Inputs (X, W, "", R): the bias slot is empty, ins[2] is None."""
    case = CONV_CASES[name]
    x, wt, _, r, oshape = _data(case, seed=4, bias=False, residual=True)
    got = _run_conv(case, x, wt, None, r, oshape, act="LeakyRelu")
    ref, bound = _expected(case, x, wt, None, r, "LeakyRelu")
    assert_within(got, ref, bound, name)


def test_conv2d_wrapper_checks_shapes():
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        conv_mod.conv2d(x, np.zeros((4, 3, 3, 3), np.float32), group=1)  # C/group mismatch
    with pytest.raises(ValueError, match="does not fit"):
        conv_mod.conv2d(x, np.zeros((6, 2, 3, 3), np.float32), group=4)
    with pytest.raises(ValueError):
        conv_mod.conv2d(x, np.zeros((4, 4, 3, 3), np.float32), r=np.zeros((1, 4, 2, 2), np.float32))
    y = conv_mod.conv2d(x + 1, np.ones((2, 2, 3, 3), np.float32), group=2, pads=(1, 1, 1, 1))
    assert y[0, 0, 2, 2] == 18 and y[0, 1, 0, 0] == 8


# ----------------------------------------------------------------------------- ConvTranspose

# (N, C, H, W, Mg, kh, kw, strides, pads, dilations, group, output_padding)
CT_CASES = {
    "k3_s1": (2, 3, 5, 4, 4, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1, (0, 0)),
    "k3_s2_p1": (1, 4, 4, 5, 3, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1, (0, 0)),
    "k4_s2_p1_dcgan": (2, 6, 3, 3, 4, 4, 4, (2, 2), (1, 1, 1, 1), (1, 1), 1, (0, 0)),
    "asym_outpad": (1, 4, 4, 3, 2, 3, 2, (2, 3), (1, 0, 2, 1), (1, 1), 1, (1, 2)),
    "group2_dil": (1, 4, 4, 4, 3, 3, 3, (1, 2), (1, 2, 0, 1), (2, 1), 2, (0, 0)),
    "depthwise_s2": (2, 4, 3, 4, 1, 2, 2, (2, 2), (0, 0, 0, 0), (1, 1), 4, (0, 0)),
    "big_pads": (1, 2, 5, 5, 2, 3, 3, (1, 1), (2, 2, 2, 2), (1, 1), 1, (0, 0)),
}


def _ct_out(case):
    n, c, h, w, mg, kh, kw, (sh, sw), pads, (dh, dw), group, (oph, opw) = case
    oh = (h - 1) * sh + (kh - 1) * dh + 1 + oph - pads[0] - pads[2]
    ow = (w - 1) * sw + (kw - 1) * dw + 1 + opw - pads[1] - pads[3]
    return (n, mg * group, oh, ow)


@pytest.mark.parametrize("act", ["none", "Relu", "Tanh"])
@pytest.mark.parametrize("name", list(CT_CASES))
def test_conv_transpose_vs_reference(name, act):
    case = CT_CASES[name]
    n, c, h, w, mg, kh, kw, strides, pads, dil, group, _ = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, mg, kh, kw)).astype(np.float32)
    b = rng.standard_normal(mg * group).astype(np.float32)
    oshape = _ct_out(case)
    alpha, beta = act_params(act)
    attrs = dict(
        strides=strides,
        pads=pads,
        dilations=dil,
        group=group,
        kernel=(kh, kw),
        activation=act,
        act_alpha=alpha,
        act_beta=beta,
    )
    for const in ((1, 2), ()):
        got = run_node("ConvTranspose", [x, wt, b], attrs, [oshape], const=const)[0]
        pre = conv_transpose2d_reference(x, wt, b, strides, pads, dil, group, oshape[2:])
        mag = conv_transpose2d_reference(np.abs(x), np.abs(wt), np.abs(b), strides, pads, dil, group, oshape[2:])
        ref = activation_ref(pre, act, alpha, beta)
        assert_within(got, ref, sum_bound(c // group * kh * kw + 1, mag, ref, act, alpha), f"{name}/{act}")


def test_conv_transpose_residual():
    """An optional 4th input R (as for Conv) is added before the activation."""
    case = CT_CASES["asym_outpad"]
    n, c, h, w, mg, kh, kw, strides, pads, dil, group, _ = case
    rng = np.random.default_rng(9)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, mg, kh, kw)).astype(np.float32)
    oshape = _ct_out(case)
    r = rng.standard_normal(oshape).astype(np.float32)
    attrs = dict(
        strides=strides,
        pads=pads,
        dilations=dil,
        group=group,
        kernel=(kh, kw),
        activation="LeakyRelu",
        act_alpha=0.1,
        act_beta=0.0,
    )
    (got,) = run_node("ConvTranspose", [x, wt, None, r], attrs, [oshape], const=(1,))
    pre = conv_transpose2d_reference(x, wt, None, strides, pads, dil, group, oshape[2:]) + r
    mag = conv_transpose2d_reference(np.abs(x), np.abs(wt), None, strides, pads, dil, group, oshape[2:]) + np.abs(r)
    ref = activation_ref(pre, "LeakyRelu", 0.1)
    assert_within(got, ref, sum_bound(c * kh * kw + 1, mag, ref, "LeakyRelu"), "residual")


# ----------------------------------------------------------------------------- vs onnxruntime


def _ort_compare(model, feeds):
    """cnnrt (opt_level=0, real frontend) vs onnxruntime; both within the accumulation bound."""
    from helpers import ort_run

    got = cnnrt.InferenceSession(model, opt_level=0).run(None, feeds)
    want = ort_run(model, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
    return got, want


ORT_CONV = [
    # (id, x shape, w shape, attrs)
    ("explicit_pads", (2, 3, 9, 8), (4, 3, 3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1])),
    ("same_upper_s2", (1, 4, 9, 8), (6, 4, 3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    ("same_lower_s2", (1, 4, 9, 8), (6, 4, 4, 4), dict(auto_pad="SAME_LOWER", strides=[2, 2])),
    ("same_upper_even_k", (1, 4, 7, 7), (4, 4, 4, 2), dict(auto_pad="SAME_UPPER")),
    ("valid", (1, 4, 9, 8), (6, 4, 3, 3), dict(auto_pad="VALID")),
    ("group2", (1, 4, 8, 8), (6, 2, 3, 3), dict(group=2, pads=[1, 1, 1, 1])),
    ("depthwise_s2", (2, 6, 9, 9), (6, 1, 3, 3), dict(group=6, strides=[2, 2], pads=[1, 1, 1, 1])),
    ("depthwise_mult3", (1, 2, 7, 7), (6, 1, 5, 5), dict(group=2, pads=[2, 2, 2, 2])),
    ("pointwise_nobias", (2, 8, 5, 5), (4, 8, 1, 1), dict()),
    ("kernel_shape_attr", (1, 2, 6, 6), (3, 2, 3, 3), dict(kernel_shape=[3, 3], dilations=[2, 2])),
]


@pytest.mark.parametrize("xshape,wshape,attrs", [c[1:] for c in ORT_CONV], ids=[c[0] for c in ORT_CONV])
def test_conv_vs_onnxruntime(xshape, wshape, attrs):
    from helpers import make_model

    rng = np.random.default_rng(6)
    x = rng.standard_normal(xshape).astype(np.float32)
    wt = rng.standard_normal(wshape).astype(np.float32)
    with_bias = "nobias" not in str(attrs) and wshape[2:] != (1, 1)
    inits = {"w": wt}
    if with_bias:
        inits["b"] = rng.standard_normal(wshape[0]).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if with_bias else []), ["y"], **attrs)
    model = make_model([node], [("x", list(xshape), np.float32)], [("y", None, np.float32)], inits)
    (got,), (want,) = _ort_compare(model, {"x": x})
    # magnitude: the same ONNX conv on |x|, |w| (+|b|), via onnxruntime
    from helpers import ort_run

    abs_inits = {k: np.abs(v) for k, v in inits.items()}
    abs_model = make_model([node], [("x", list(xshape), np.float32)], [("y", None, np.float32)], abs_inits)
    (mag,) = ort_run(abs_model, {"x": np.abs(x)})
    k = wshape[1] * wshape[2] * wshape[3] + with_bias
    assert_within(got, want.astype(np.float64), 2 * sum_bound(k, mag, want), str(attrs))


ORT_CT = [
    ("s2_p1", (1, 4, 4, 5), (4, 3, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    ("output_padding", (2, 3, 4, 3), (3, 2, 3, 3), dict(strides=[2, 3], pads=[1, 0, 1, 1], output_padding=[1, 2])),
    ("output_shape", (1, 3, 4, 4), (3, 2, 3, 3), dict(strides=[2, 2], output_shape=[9, 8])),
    ("same_upper", (1, 3, 4, 5), (3, 2, 4, 4), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ("same_lower", (1, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    ("group_dil", (1, 4, 4, 4), (4, 2, 3, 3), dict(group=2, dilations=[2, 1], pads=[1, 1, 0, 0])),
    ("valid_nobias", (1, 2, 3, 3), (2, 3, 2, 2), dict(strides=[2, 2], auto_pad="VALID")),
    # output_shape one past the full output (9): an implicit output padding, a negative end pad
    ("output_shape_past_full", (1, 3, 4, 4), (3, 2, 3, 3), dict(strides=[2, 2], output_shape=[10, 10])),
    (
        "output_shape_past_full_lower",
        (1, 3, 4, 4),
        (3, 2, 3, 3),
        dict(strides=[2, 2], output_shape=[10, 9], auto_pad="SAME_LOWER"),
    ),
    (
        "output_shape_past_full_upper",
        (1, 3, 4, 4),
        (3, 2, 3, 3),
        dict(strides=[2, 2], output_shape=[10, 9], auto_pad="SAME_UPPER"),
    ),
]


def _ct_params():
    for c in ORT_CT:
        yield pytest.param(*c[1:], id=c[0])


@pytest.mark.parametrize("xshape,wshape,attrs", list(_ct_params()))
def test_conv_transpose_vs_onnxruntime(xshape, wshape, attrs):
    from helpers import make_model, ort_run

    rng = np.random.default_rng(7)
    x = rng.standard_normal(xshape).astype(np.float32)
    wt = rng.standard_normal(wshape).astype(np.float32)
    group = attrs.get("group", 1)
    with_bias = "VALID" not in str(attrs)
    inits = {"w": wt}
    if with_bias:
        inits["b"] = rng.standard_normal(wshape[1] * group).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if with_bias else []), ["y"], **attrs)
    model = make_model([node], [("x", list(xshape), np.float32)], [("y", None, np.float32)], inits)
    (got,), (want,) = _ort_compare(model, {"x": x})
    abs_model = make_model(
        [node], [("x", list(xshape), np.float32)], [("y", None, np.float32)], {k: np.abs(v) for k, v in inits.items()}
    )
    (mag,) = ort_run(abs_model, {"x": np.abs(x)})
    k = xshape[1] // group * wshape[2] * wshape[3] + with_bias
    assert_within(got, want.astype(np.float64), 2 * sum_bound(k, mag, want), str(attrs))


def test_conv_same_with_dilation_vs_onnx_reference():
    """onnxruntime refuses auto_pad SAME with dilations; onnx's reference evaluator does not."""
    from helpers import make_model
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 4, 7, 8)).astype(np.float32)
    wt = rng.standard_normal((4, 4, 3, 2)).astype(np.float32)
    for auto in ("SAME_UPPER", "SAME_LOWER"):
        node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto, dilations=[2, 3], strides=[2, 1])

        def model(w, node=node):
            return make_model([node], [("x", list(x.shape), np.float32)], [("y", None, np.float32)], {"w": w})

        (got,) = cnnrt.InferenceSession(model(wt), opt_level=0).run(None, {"x": x})
        (want,) = ReferenceEvaluator(model(wt)).run(None, {"x": x})
        (mag,) = ReferenceEvaluator(model(np.abs(wt))).run(None, {"x": np.abs(x)})
        assert got.shape == want.shape == (1, 4, 4, 8)
        assert_within(got, want.astype(np.float64), 2 * sum_bound(4 * 3 * 2, mag, want), auto)
