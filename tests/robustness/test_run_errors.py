"""Running with bad feeds: a clear InputError and a session that keeps working; odd but valid
arrays (strided, read-only, Fortran-ordered, broadcast) work; NaN/Inf propagate as in onnxruntime."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import numpy_helper
from robust_models import conv_net, input_for, lenet5, ort_session

import cnnrt
from cnnrt.errors import InputError


@pytest.fixture(scope="module")
def sess():
    return cnnrt.InferenceSession(conv_net(batch="N"))


@pytest.fixture(scope="module")
def good():
    return input_for(conv_net())


class _ArrayLike:
    def __array__(self, dtype=None, copy=None):
        return np.zeros((1, 3, 8, 8), np.float32)


X = np.zeros((1, 3, 8, 8), np.float32)

BAD_FEEDS = [
    (None, "input_feed must be a dict"),
    ([X], "input_feed must be a dict"),
    ("x", "input_feed must be a dict"),
    ({}, r"missing input\(s\) \['x'\]"),
    ({"X": X}, r"unknown input name\(s\) \['X'\]"),
    ({"x": X, "extra": X}, r"unknown input name\(s\) \['extra'\]"),
    ({0: X}, r"unknown input name\(s\) \[0\]"),
    ({"x": X.astype(np.float64)}, "must have dtype float32, got float64"),
    ({"x": X.astype(np.float16)}, "must have dtype float32, got float16"),
    ({"x": X.astype(np.int32)}, "must have dtype float32, got int32"),
    ({"x": X.astype(">f4")}, "must have dtype float32, got >f4"),
    ({"x": np.full((1, 3, 8, 8), "a")}, "must have dtype float32, got <U1"),
    ({"x": np.empty((1, 3, 8, 8), object)}, "must have dtype float32, got object"),
    ({"x": X[0]}, r"must have rank 4 \(shape \['N', 3, 8, 8\]\), got shape \[3, 8, 8\]"),
    ({"x": X[None]}, "must have rank 4"),
    ({"x": np.float32(1)}, "must be a numpy.ndarray, not float32|must have rank 4"),
    ({"x": np.zeros((1, 3, 9, 8), np.float32)}, r"dimension 2 must be 8 .* got shape \[1, 3, 9, 8\]"),
    ({"x": np.zeros((1, 4, 8, 8), np.float32)}, "dimension 1 must be 3"),
    ({"x": np.zeros((0, 3, 8, 8), np.float32)}, "empty dimension 0"),
    ({"x": X.tolist()}, "must be a numpy.ndarray, not list"),
    ({"x": 1.0}, "must be a numpy.ndarray, not float"),
    ({"x": None}, "must be a numpy.ndarray, not NoneType"),
    ({"x": _ArrayLike()}, "must be a numpy.ndarray, not _ArrayLike"),
    ({"x": "abc"}, "must be a numpy.ndarray, not str"),
]


@pytest.mark.parametrize("feeds, match", BAD_FEEDS, ids=[f"bad{i}" for i in range(len(BAD_FEEDS))])
def test_bad_feeds_raise_input_error_and_the_session_stays_usable(sess, good, feeds, match):
    [before] = sess.run(None, good)
    with pytest.raises(InputError, match=match):
        sess.run(None, feeds)
    np.testing.assert_array_equal(sess.run(None, good)[0], before)


@pytest.mark.parametrize(
    "names, match",
    [
        (["nope"], r"unknown output name\(s\) \['nope'\]; the model's outputs are \['y'\]"),
        (["y", "z"], r"\['z'\]"),
        ([None], r"\[None\]"),
        ([0], r"\[0\]"),
        ("y", "output_names must be a list"),
        (b"y", "output_names must be a list"),
        (5, "output_names must be a list"),
    ],
)
def test_bad_output_names(sess, good, names, match):
    with pytest.raises(InputError, match=match):
        sess.run(names, good)
    assert sess.run(["y"], good)[0].shape == (1, 5)


def test_output_selection(sess, good):
    [a] = sess.run(None, good)
    b, c = sess.run(("y", "y"), good)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert sess.run([], good) == []


def test_outputs_are_fresh_arrays_not_views_of_the_arena(sess, good):
    [a] = sess.run(None, good)
    keep = a.copy()
    a[...] = 123.0  # writing to a result must not corrupt the next run
    sess.run(None, {"x": np.ones_like(good["x"])})
    [b] = sess.run(None, good)
    np.testing.assert_array_equal(b, keep)


def _variants(x: np.ndarray):
    """The same values as x in arrays that are not plain C-contiguous writable buffers."""
    ro = x.copy()
    ro.flags.writeable = False
    big = np.zeros((x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 3), x.dtype)
    big[:, :, ::2, ::3] = x
    rev = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    yield "read-only", ro
    yield "strided", big[:, :, ::2, ::3]
    yield "fortran", np.asfortranarray(x)
    yield "negative-strides", rev
    yield "transposed-view", np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    shifted = np.frombuffer(b"\0" + x.tobytes(), np.uint8, count=x.nbytes, offset=1)
    yield "misaligned", shifted.view(np.float32).reshape(x.shape)
    yield "masked", np.ma.masked_array(x)


@pytest.mark.parametrize(
    "kind", ["read-only", "strided", "fortran", "negative-strides", "transposed-view", "misaligned", "masked"]
)
@pytest.mark.parametrize("make", [conv_net, lenet5], ids=["conv_net", "lenet5"])
def test_non_contiguous_and_read_only_inputs(make, kind):
    m = make()
    feeds = input_for(m, seed=3)
    name, x = next(iter(feeds.items()))
    s = cnnrt.InferenceSession(m)
    [ref] = s.run(None, feeds)
    arr = dict(_variants(x))[kind]
    np.testing.assert_array_equal(arr, x)
    [got] = s.run(None, {name: arr})
    np.testing.assert_array_equal(got, ref)


def test_broadcast_input_with_zero_strides():
    m = conv_net()
    s = cnnrt.InferenceSession(m)
    x = np.broadcast_to(np.float32(0.25), (1, 3, 8, 8))  # read-only, all strides 0
    [got] = s.run(None, {"x": x})
    np.testing.assert_array_equal(got, s.run(None, {"x": np.full((1, 3, 8, 8), 0.25, np.float32)})[0])


# ---------------------------------------------------------------------------- NaN / Inf


def _masks_match(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg="NaN masks differ")
    np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b), err_msg="+Inf masks differ")
    np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b), err_msg="-Inf masks differ")
    fin = np.isfinite(b)
    np.testing.assert_allclose(a[fin], b[fin], rtol=1e-4, atol=1e-5)


def _plant(x: np.ndarray, rng: np.random.Generator, k: int, values) -> np.ndarray:
    x = x.copy()
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, k, replace=False)
    flat[idx] = rng.choice(values, k)
    return x


@pytest.mark.parametrize("make", [conv_net, lenet5], ids=["conv_net", "lenet5"])
@pytest.mark.parametrize(
    "values",
    [[np.nan], [np.inf], [-np.inf], [np.nan, np.inf, -np.inf], [np.float32(3e38)]],
    ids=["nan", "inf", "-inf", "mixed", "huge"],
)
def test_nan_and_inf_propagate_like_onnxruntime(make, values):
    m = make()
    s, ref = cnnrt.InferenceSession(m), ort_session(m)
    name, x0 = next(iter(input_for(m, batch=2).items()))
    rng = np.random.default_rng(7)
    for k in (1, 2, 5, x0.size // 4, x0.size):
        x = _plant(x0, rng, k, values)
        got, want = s.run(None, {name: x})[0], ref.run(None, {name: x})[0]
        _masks_match(got, want)


def test_nan_propagation_ignores_the_callers_numpy_error_settings():
    m = conv_net()
    s = cnnrt.InferenceSession(m)
    x = _plant(input_for(m)["x"], np.random.default_rng(0), 4, [np.nan, np.inf])
    want = ort_session(m).run(None, {"x": x})[0]
    old = np.seterr(all="raise")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = s.run(None, {"x": x})[0]
    finally:
        np.seterr(**old)
    _masks_match(got, want)


def test_loading_overflowing_weights_ignores_the_callers_numpy_error_settings():
    m = conv_net()
    w = next(t for t in m.graph.initializer if t.name == "w")
    arr = np.full((4, 3, 3, 3), 3e38, np.float32)
    w.CopyFrom(numpy_helper.from_array(arr, "w"))
    old = np.seterr(all="raise")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s = cnnrt.InferenceSession(m)
            got = s.run(None, input_for(m))[0]
    finally:
        np.seterr(**old)
    assert got.shape == (1, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shapes": {"x": (-1, 3, 8, 8)}}, "must hold positive ints"),
        ({"input_shapes": {"x": ("a", 3, 8, 8)}}, "must hold positive ints"),
        ({"input_shapes": {"x": 7}}, "must be a sequence of ints"),
        ({"input_shapes": {"x": (1, 3)}}, r"must have rank 4 \(shape \['N', 3, 8, 8\]\), got shape \[1, 3\]"),
        ({"input_shapes": {"x": (1, 4, 8, 8)}}, "dimension 1 must be 3"),
        ({"input_shapes": {"zz": (1, 3, 8, 8)}}, r"unknown input name\(s\) \['zz'\]"),
        ({"input_shapes": 5}, "input_shapes must be a dict"),
        ({"batch": 0}, "batch must be a positive int"),
        ({"batch": -2}, "batch must be a positive int"),
    ],
)
def test_prepare_validates_shapes(sess, good, kwargs, match):
    with pytest.raises(InputError, match=match):
        sess.prepare(**kwargs)
    assert sess.run(None, good)[0].shape == (1, 5)
    sess.prepare(batch=3)
    assert sess.graph.values["x"].shape == (3, 3, 8, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threads": 0}, "threads must be"),
        ({"threads": True}, "threads must be"),
        ({"threads": 1.5}, "threads must be"),
        ({"opt_level": 3}, "opt_level"),
        ({"backend": "tpu"}, "unknown backend"),
        ({"disabled_passes": ["no_such_pass"]}, r"unknown pass name\(s\) \['no_such_pass'\]"),
        ({"disabled_passes": 5}, "disabled_passes must be a list"),
    ],
)
def test_bad_session_arguments(kwargs, match):
    with pytest.raises(cnnrt.CnnrtError, match=match):
        cnnrt.InferenceSession(conv_net(), **kwargs)
