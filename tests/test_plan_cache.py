"""The plan cache (runtime/plan_cache.py): a hit gives the fresh build's outputs bit for bit without
onnx or the passes; a changed file, option or shape misses; a damaged entry is rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_model
from onnx import helper

import cnnrt
from cnnrt.runtime import plan_cache

RNG = np.random.default_rng(3)


def _model(scale: float = 0.3):
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "W2"], ["c2"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["y"]),
    ]
    init = {
        "W": (RNG.standard_normal((16, 3, 3, 3)) * scale).astype(np.float32),
        "B": RNG.standard_normal(16).astype(np.float32),
        "W2": (RNG.standard_normal((16, 16, 1, 1)) * scale).astype(np.float32),
    }
    return make_model(nodes, [("x", ["n", 3, 8, 8], np.float32)], [("y", ["n", 16, 1, 1], np.float32)], init)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A model file and an empty plan cache of its own (the plans live in the kernel folder)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv(plan_cache.ENV, "1")
    path = tmp_path / "m.onnx"
    path.write_bytes(_model().SerializeToString())
    return path


def _session(path, **kw):
    sess = cnnrt.InferenceSession(str(path), threads=1, **kw)
    plan_cache.wait_for_writes()
    return sess


X = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)


def test_a_hit_gives_the_fresh_build_bit_for_bit(cache):
    first = _session(cache)
    assert not first._now().cached
    [y0] = first.run(None, {"x": X})
    again = _session(cache)
    assert again._now().cached and again.build_timings["passes"] == 0
    assert isinstance(again.model, plan_cache.CachedModel)
    [y1] = again.run(None, {"x": X})
    np.testing.assert_array_equal(y0, y1)
    assert again.pass_log.lines() == first.pass_log.lines()
    assert again.plan.constant_bytes == first.plan.constant_bytes


def test_a_changed_file_option_or_shape_misses(cache):
    _session(cache)
    assert not _session(cache, opt_level=1)._now().cached
    assert not _session(cache, disabled_passes=["fold_constants"])._now().cached
    sess = _session(cache)
    assert sess._now().cached
    sess.prepare(batch=2)
    assert not sess._now().cached  # a batch of 2 was never built
    cache.write_bytes(_model(scale=0.5).SerializeToString())  # same size, other weights
    changed = _session(cache)
    assert not changed._now().cached
    ref = cnnrt.InferenceSession(str(cache), threads=1, plan_cache=False)
    np.testing.assert_array_equal(changed.run(None, {"x": X})[0], ref.run(None, {"x": X})[0])


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_a_damaged_entry_is_rebuilt(cache, damage):
    [ref] = _session(cache).run(None, {"x": X})
    [entry] = [p for p in plan_cache.plans_dir().iterdir() if p.is_dir() and p.name != "files"]
    if damage == "truncate":
        os.truncate(entry / "arrays.bin", 100)
    elif damage == "flip":
        data = bytearray((entry / "graph.pkl").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (entry / "graph.pkl").write_bytes(data)
    else:
        (entry / "manifest.json").write_text("{")
    sess = _session(cache)
    assert not sess._now().cached
    np.testing.assert_array_equal(sess.run(None, {"x": X})[0], ref)
    assert _session(cache)._now().cached  # written again


def test_the_cache_can_be_turned_off(cache, monkeypatch):
    _session(cache, plan_cache=False)
    assert not plan_cache.plans_dir().exists()
    monkeypatch.setenv(plan_cache.ENV, "0")
    _session(cache)
    assert not plan_cache.plans_dir().exists()


def test_a_hit_does_not_import_onnx(cache):
    import numba

    # the child finds the plans in the test's folder and the kernels this process loads (linked in)
    kernels = Path(os.environ["NUMBA_CACHE_DIR"])
    kernels.mkdir(parents=True, exist_ok=True)
    for p in Path(numba.config.CACHE_DIR).iterdir():
        if p.name != "plans":
            (kernels / p.name).symlink_to(p)
    _session(cache)
    code = (
        "import sys, numpy as np, cnnrt\n"
        f"s = cnnrt.InferenceSession({str(cache)!r}, threads=1)\n"
        "s.run(None, {'x': np.zeros((1, 3, 8, 8), np.float32)})\n"
        "print(s._now().cached, 'onnx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_external_data_files_are_part_of_the_key(tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv(plan_cache.ENV, "1")
    model = _model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="ext.bin", size_threshold=0)
    [ref] = _session(path).run(None, {"x": X})
    assert _session(path)._now().cached
    data = bytearray((tmp_path / "ext.bin").read_bytes())
    data[:4] = b"\0\0\0\0"
    (tmp_path / "ext.bin").write_bytes(data)
    sess = _session(path)
    assert not sess._now().cached
    assert not np.array_equal(sess.run(None, {"x": X})[0], ref)
    assert Path(tmp_path / "kernels" / "plans").is_dir()
