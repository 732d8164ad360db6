"""The tensor / elementwise / resize CPU kernels on one-node IR graphs, against naive
references written here (loops or plain numpy, float64, sharing no code with the kernels).

Bounds: Softmax sums n exponentials, so its error is a few times n float32 roundoffs relative
to the result; Resize and ReduceMean combine 2-4 or n terms the same way; data movement
(Pad, Slice, Gather, ...) must be exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from kernel_helpers import U32, assert_within, run_node

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.kernels import get_builder

rng = np.random.default_rng(7)


# ---------------------------------------------------------------------------- Softmax


def softmax_naive(x, axis, coerce_2d, log):
    shape = x.shape
    if coerce_2d:
        rows = x.reshape(math.prod(shape[:axis]), -1).astype(np.float64)
        out = np.empty_like(rows)
        for r in range(rows.shape[0]):
            m = max(rows[r])
            e = [math.exp(v - m) for v in rows[r]]
            s = sum(e)
            out[r] = [(v - m - math.log(s)) if log else ev / s for v, ev in zip(rows[r], e)]
        return out.reshape(shape)
    moved = np.moveaxis(x.astype(np.float64), axis, -1)
    return np.moveaxis(softmax_naive(moved, moved.ndim - 1, True, log), -1, axis)


@pytest.mark.parametrize(
    "shape,axis", [((1, 10), 1), ((4, 7, 3), 1), ((2, 3, 4, 5), 0), ((2, 3, 4, 5), 3), ((3, 1000), 1)]
)
@pytest.mark.parametrize("coerce_2d", [False, True])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_against_naive(shape, axis, coerce_2d, log, dtype):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    (got,) = run_node("Softmax", [x], dict(axis=axis, coerce_2d=coerce_2d, log=log), [shape], [np.dtype(dtype).name])
    ref = softmax_naive(x, axis, coerce_2d, log)
    n = math.prod(shape[axis:]) if coerce_2d else shape[axis]
    u = U32 if dtype == np.float32 else 2.0**-53
    # the exponent's argument is exact to u|x|; the sum adds n terms
    bound = (4 * n * u + 4 * u * np.abs(x)) * (1 + np.abs(ref)) + 1e-300
    assert_within(got, ref, bound, f"Softmax{shape} axis={axis} coerce={coerce_2d} log={log}")


def test_softmax_infinities_and_nan():
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 1.0, 2.0], [-np.inf, -np.inf, -np.inf]], np.float32)
    (got,) = run_node("Softmax", [x], dict(axis=1, coerce_2d=False, log=False), [x.shape])
    e = np.exp([0.0, 1.0])
    np.testing.assert_allclose(got[0], [e[0] / e.sum(), 0.0, e[1] / e.sum()], rtol=1e-6)
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all()


# ---------------------------------------------------------------------------- Resize


def coord_f32(y, n_in, n_out, scale, mode):
    """The ONNX coordinate formulas, one output index at a time, in float32 scalars."""
    f = np.float32
    y, s, n_in32 = f(y), f(scale), f(n_in)
    length = s * n_in32
    if mode == "asymmetric":
        return y / s
    if mode == "half_pixel":
        return (y + f(0.5)) / s - f(0.5)
    if mode == "pytorch_half_pixel":
        return f(-0.5) if length == 1 else (y + f(0.5)) / s - f(0.5)
    if mode == "align_corners":
        return f(0) if length == 1 else y * f(n_in - 1) / (length - f(1))
    if mode == "half_pixel_symmetric":
        return n_in32 / f(2) * (f(1) - f(n_out) / length) + (y + f(0.5)) / s - f(0.5)
    raise KeyError(mode)


def nearest_index(x, nearest, scale, n_in):
    x = float(x)
    if nearest == "simple":
        nearest = "ceil" if scale < 1 else "floor"
    if nearest == "round_prefer_floor":
        i = math.ceil(x - 0.5)
    elif nearest == "round_prefer_ceil":
        i = math.floor(x + 0.5)
    elif nearest == "floor":
        i = math.floor(x)
    else:
        i = math.ceil(x)
    return min(max(i, 0), n_in - 1)


def resize_naive(x, out_shape, scales, mode, coord, nearest):
    """Per output element: per-axis source coordinates, then the nearest element or the
    2^k-neighbour multilinear blend (edge-clamped)."""
    out = np.empty(out_shape, np.float64)
    axes_coords = [
        [float(coord_f32(o, n, m, s, coord)) for o in range(m)] for n, m, s in zip(x.shape, out_shape, scales)
    ]
    for idx in np.ndindex(*out_shape):
        if mode == "nearest":
            src = tuple(
                nearest_index(axes_coords[a][o], nearest, scales[a], x.shape[a])
                if x.shape[a] != out_shape[a] or scales[a] != 1
                else o
                for a, o in enumerate(idx)
            )
            out[idx] = x[src]
            continue
        corners = [[]]
        for a, o in enumerate(idx):
            if x.shape[a] == out_shape[a] and scales[a] == 1:
                corners = [c + [(o, 1.0)] for c in corners]
                continue
            c = axes_coords[a][o]
            lo = math.floor(c)
            w = c - lo
            clamp = lambda i, n=x.shape[a]: min(max(i, 0), n - 1)  # noqa: E731
            corners = [cc + [(clamp(lo), 1 - w)] for cc in corners] + [cc + [(clamp(lo + 1), w)] for cc in corners]
        out[idx] = sum(math.prod(w for _, w in c) * x[tuple(i for i, _ in c)] for c in corners)
    return out


RESIZE_CASES = [
    # in shape, out shape, scales
    ((1, 2, 4, 5), (1, 2, 8, 10), (1, 1, 2, 2)),
    ((1, 2, 5, 7), (1, 2, 3, 4), (1, 1, 3 / 5, 4 / 7)),
    ((2, 1, 3, 4), (2, 1, 7, 9), (1, 1, 7 / 3, 9 / 4)),
    ((1, 1, 6, 6), (1, 1, 6, 13), (1, 1, 1, 13 / 6)),
    ((2, 3, 4, 5), (2, 6, 4, 8), (1, 2, 1, 1.6)),  # a non-spatial axis: the general path
    ((3, 5), (7, 2), (7 / 3, 2 / 5)),
]


@pytest.mark.parametrize("shape,out_shape,scales", RESIZE_CASES)
@pytest.mark.parametrize(
    "coord", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric"]
)
def test_resize_linear_against_naive(shape, out_shape, scales, coord):
    x = rng.standard_normal(shape).astype(np.float32)
    attrs = dict(mode="linear", coord_mode=coord, nearest_mode="round_prefer_floor", scales=scales)
    (got,) = run_node("Resize", [x], attrs, [out_shape])
    ref = resize_naive(x.astype(np.float64), out_shape, scales, "linear", coord, None)
    corners = 2 ** sum(a != b for a, b in zip(shape, out_shape))
    assert_within(got, ref, 4 * corners * U32 * np.max(np.abs(x)), f"Resize linear {coord} {shape}->{out_shape}")


@pytest.mark.parametrize("shape,out_shape,scales", RESIZE_CASES)
@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"])
@pytest.mark.parametrize("nearest", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple"])
def test_resize_nearest_against_naive(shape, out_shape, scales, coord, nearest):
    x = rng.standard_normal(shape).astype(np.float32)
    attrs = dict(mode="nearest", coord_mode=coord, nearest_mode=nearest, scales=scales)
    (got,) = run_node("Resize", [x], attrs, [out_shape])
    ref = resize_naive(x, out_shape, scales, "nearest", coord, nearest)
    np.testing.assert_array_equal(got, ref)


def test_resize_identity_is_a_copy():
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    (got,) = run_node(
        "Resize",
        [x],
        dict(mode="linear", coord_mode="half_pixel", nearest_mode="floor", scales=(1, 1, 1, 1)),
        [x.shape],
    )
    np.testing.assert_array_equal(got, x)


# ---------------------------------------------------------------------------- Pad


def pad_attrs(widths, mode, value):
    return dict(mode=mode, pads=tuple(b for b, _ in widths) + tuple(e for _, e in widths), value=value)


@pytest.mark.parametrize(
    "shape,widths",
    [
        ((5,), [(2, 3)]),
        ((3, 4), [(1, 2), (0, 3)]),
        ((2, 3, 4, 5), [(0, 0), (0, 0), (1, 2), (2, 1)]),
        ((2, 3, 4, 5), [(1, 0), (0, 2), (0, 0), (3, 3)]),
        ((2, 2, 3, 3, 4), [(0, 0), (1, 1), (0, 0), (2, 0), (0, 3)]),  # rank 5, reducible to 4-D
        ((2, 2, 3, 3, 4), [(1, 0), (1, 1), (0, 1), (2, 0), (0, 3)]),  # rank 5, numpy fallback
    ],
)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_against_numpy(shape, widths, mode):
    for dtype in (np.float32, np.int64):
        x = (rng.standard_normal(shape) * 10).astype(dtype)
        out_shape = tuple(d + b + e for d, (b, e) in zip(shape, widths))
        value = 3 if dtype == np.int64 else -1.5
        (got,) = run_node("Pad", [x], pad_attrs(widths, mode, value), [out_shape], [np.dtype(dtype).name])
        kw = {"constant_values": value} if mode == "constant" else {}
        np.testing.assert_array_equal(got, np.pad(x, widths, mode=mode, **kw))


def test_pad_float16_takes_the_numpy_path():
    x = rng.standard_normal((3, 4)).astype(np.float16)
    (got,) = run_node("Pad", [x], pad_attrs([(1, 1), (2, 1)], "reflect", 0.0), [(5, 7)], ["float16"])
    np.testing.assert_array_equal(got, np.pad(x, [(1, 1), (2, 1)], mode="reflect"))


def test_pad_bool():
    x = rng.standard_normal((3, 4)) > 0
    (got,) = run_node("Pad", [x], pad_attrs([(1, 1), (2, 0)], "constant", True), [(5, 6)], ["bool"])
    np.testing.assert_array_equal(got, np.pad(x, [(1, 1), (2, 0)], constant_values=True))


# ---------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize(
    "xshape,sshape",
    [((2, 3, 4, 5), (3, 1, 1)), ((2, 3, 4, 5), (1,)), ((2, 3, 4, 5), (4, 5)), ((2, 3, 4, 5), (3, 1, 5))],
)
def test_prelu_against_numpy(xshape, sshape):
    x = rng.standard_normal(xshape).astype(np.float32)
    s = rng.uniform(0.1, 0.9, sshape).astype(np.float32)
    (got,) = run_node("PRelu", [x, s], {}, [xshape], const=(1,))
    ref = np.where(x < 0, x.astype(np.float64) * s, x)
    assert_within(got, ref, U32 * np.abs(ref), "PRelu")


def test_integer_div_truncates_even_when_written_over_b():
    # The planner may place the output over an equal-shaped input.
    a = np.array([7, -7, 7, -7, 5], np.int64)
    b = np.array([2, 2, -2, -2, 7], np.int64)
    vals = {n: Value(n, (5,), "int64") for n in ("a", "b", "y")}
    node = Node("Div", ("a", "b"), ("y",), {}, name="d")
    run = get_builder("Div")(node, Graph([node], vals, {}, ["a", "b"], ["y"]))
    bb = b.copy()
    run([a, bb], [bb])
    np.testing.assert_array_equal(bb, [3, -3, -3, 3, 0])


@pytest.mark.parametrize("op,f", [("Sum", np.add), ("Max", np.maximum), ("Min", np.minimum)])
def test_variadic_three_inputs(op, f):
    xs = [rng.standard_normal(s).astype(np.float32) for s in ((3, 1), (4,), (2, 3, 4))]
    (got,) = run_node(op, xs, {}, [(2, 3, 4)])
    ref = f(f(xs[0].astype(np.float64), xs[1]), xs[2])
    # Max/Min pick an input exactly; a float32 sum of 3 terms rounds twice
    magnitude = np.abs(xs[0]).astype(np.float64) + np.abs(xs[1]) + np.abs(xs[2])
    assert_within(got, ref, 2 * U32 * magnitude if op == "Sum" else 0.0, op)


def test_cast_truncates_and_maps_to_bool():
    x = np.array([-2.7, -0.5, 0.0, 0.5, 2.7], np.float32)
    (i,) = run_node("Cast", [x], dict(to="int32"), [(5,)], ["int32"])
    (b,) = run_node("Cast", [x], dict(to="bool"), [(5,)], ["bool"])
    np.testing.assert_array_equal(i, [-2, 0, 0, 0, 2])
    np.testing.assert_array_equal(b, [True, True, False, True, True])


@pytest.mark.parametrize("axes,keepdims", [((1,), True), ((2, 3), False), ((0, 1, 2, 3), True)])
def test_reduce_mean(axes, keepdims):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keepdims or i not in axes)
    (got,) = run_node("ReduceMean", [x], dict(axes=axes, keepdims=keepdims), [out])
    ref = x.astype(np.float64).mean(axis=axes, keepdims=keepdims)
    n = math.prod(x.shape[a] for a in axes)
    assert_within(got, ref, 2 * n * U32 * np.abs(x).max(), "ReduceMean")


# ---------------------------------------------------------------------------- data movement


def test_view_copies_a_constant_and_leaves_an_alias_alone():
    w = rng.standard_normal((2, 6)).astype(np.float32)
    (got,) = run_node("Reshape", [w], dict(shape=(3, 4)), [(3, 4)], const=(0,))
    np.testing.assert_array_equal(got, w.reshape(3, 4))
    node = Node("Identity", ("x",), ("y",), {}, name="i")
    vals = {"x": Value("x", (2, 6)), "y": Value("y", (2, 6))}
    run = get_builder("Identity")(node, Graph([node], vals, {}, ["x"], ["y"]))
    x = w.copy()
    run([x], [x])  # aliased: nothing to do, and nothing must break
    np.testing.assert_array_equal(x, w)


@pytest.mark.parametrize(
    "starts,ends,steps",
    [((0, 1), (2, 4), (1, 2)), ((1, 4), (0, -1), (1, -1)), ((1, 3), (-1, 0), (-1, -2)), ((0, 0), (0, 5), (1, 1))],
)
def test_slice(starts, ends, steps):
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    ref = x[tuple(slice(s, None if e < 0 else e, p) for s, e, p in zip(starts, ends, steps))]
    (got,) = run_node("Slice", [x], dict(starts=starts, ends=ends, steps=steps), [ref.shape])
    np.testing.assert_array_equal(got, ref)


def test_concat_and_split_round_trip():
    parts = [rng.standard_normal((2, k, 3)).astype(np.float32) for k in (1, 3, 2)]
    (cat,) = run_node("Concat", parts, dict(axis=1), [(2, 6, 3)])
    np.testing.assert_array_equal(cat, np.concatenate(parts, axis=1))
    outs = run_node("Split", [cat], dict(axis=1, sizes=(1, 3, 2)), [p.shape for p in parts])
    for o, p in zip(outs, parts):
        np.testing.assert_array_equal(o, p)


def test_transpose():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    (got,) = run_node("Transpose", [x], dict(perm=(2, 0, 1)), [(4, 2, 3)])
    np.testing.assert_array_equal(got, x.transpose(2, 0, 1))


def test_gather_negative_and_out_of_range_indices():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    idx = np.array([[-1, 0], [2, -4]], np.int64)
    (got,) = run_node("Gather", [x, idx], dict(axis=1), [(3, 2, 2)])
    np.testing.assert_array_equal(got, np.take(x, idx, axis=1))
    with pytest.raises(IndexError):
        run_node("Gather", [x, np.array([4], np.int64)], dict(axis=1), [(3, 1)])


def test_shape_and_constant_of_shape():
    x = np.zeros((2, 3, 4), np.float32)
    (s,) = run_node("Shape", [x], dict(start=1, end=None), [(2,)], ["int64"])
    np.testing.assert_array_equal(s, [3, 4])
    (c,) = run_node("ConstantOfShape", [], dict(value=np.array(2.5, np.float32)), [(2, 2)])
    np.testing.assert_array_equal(c, np.full((2, 2), 2.5, np.float32))
