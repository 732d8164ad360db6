"""External tensor data: read from inside the model's folder only, whole files and byte ranges checked,
every failure a typed ModelLoadError."""

from __future__ import annotations

import os

import numpy as np
import pytest
from robust_models import conv_net, external_model, input_for, ort_session, set_initializer

import cnnrt
from cnnrt.errors import ModelLoadError

_load = cnnrt.InferenceSession

W = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "w.bin").write_bytes(W.tobytes())
    (tmp_path / "secret.bin").write_bytes(W.tobytes())  # outside the model's folder
    return d


def test_external_data_inside_the_folder_loads(model_dir):
    path = external_model(model_dir, "w.bin")
    ref = conv_net()
    set_initializer(ref, "w", W)
    x = input_for(ref)
    np.testing.assert_allclose(_load(path).run(None, x)[0], ort_session(ref).run(None, x)[0], rtol=1e-5, atol=1e-6)
    (model_dir / "sub").mkdir()
    (model_dir / "sub" / "w.bin").write_bytes(b"\0" * 16 + W.tobytes())
    assert _load(external_model(model_dir, "sub/w.bin", offset=16, length=W.nbytes))


@pytest.mark.parametrize(
    "location, match",
    [
        ("../secret.bin", "escapes the model's folder"),
        ("sub/../../secret.bin", "escapes the model's folder"),
        ("ABS", "is absolute"),
        ("/etc/passwd", "is absolute"),
        ("link.bin", "escapes the model's folder"),
        ("linkdir/secret.bin", "escapes the model's folder"),
        ("zero.bin", "escapes the model's folder"),
        ("fifo.bin", "is not a regular file"),
        ("adir", "cannot read external data|not a regular file"),
        ("missing.bin", "cannot read external data 'missing.bin': No such file"),
        ("w\0.bin", "NUL byte"),
        ("", "without a location"),
    ],
)
def test_external_data_that_escapes_or_cannot_be_read(model_dir, location, match):
    outside = model_dir.parent
    os.symlink(outside / "secret.bin", model_dir / "link.bin")
    os.symlink(outside, model_dir / "linkdir")
    os.symlink("/dev/zero", model_dir / "zero.bin")
    os.mkfifo(model_dir / "fifo.bin")
    (model_dir / "adir").mkdir()
    if location == "ABS":
        location = str(outside / "secret.bin")
    path = external_model(model_dir, location)
    with pytest.raises(ModelLoadError, match=r"initializer 'w'.*" + match):
        _load(path)


@pytest.mark.parametrize(
    "offset, length, match",
    [
        (10**9, None, r"offset=1000000000 length=None exceeds 'w.bin' \(432 bytes\)"),
        (0, 10**9, r"length=1000000000 exceeds"),
        (400, 64, r"offset=400 length=64 exceeds"),
        (-4, None, r"offset=-4"),
        (0, -1, r"length=-1"),
        ("12abc", None, r"bad external data offset/length"),
        (0, 12, r"tensor 'w' cannot be decoded"),  # in range, but too short for the dims
    ],
)
def test_external_data_range_outside_the_file(model_dir, offset, length, match):
    with pytest.raises(ModelLoadError, match=match):
        _load(external_model(model_dir, "w.bin", offset, length))


def test_external_data_needs_a_folder(model_dir):
    data = external_model(model_dir, "w.bin").read_bytes()
    with pytest.raises(ModelLoadError, match="load the model from its path"):
        _load(data)


def test_model_file_reached_through_a_symlink_uses_the_real_folder(tmp_path, model_dir):
    path = external_model(model_dir, "w.bin")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(path, elsewhere / "m.onnx")
    assert _load(elsewhere / "m.onnx").run(None, input_for(conv_net()))[0].shape == (1, 5)
