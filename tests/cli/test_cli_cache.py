"""``cnnrt cache info/clear``, the pruning of stale caches, and cached zoo exports used without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnrt.kernels import cache_dir
from cnnrt.models import zoo_cache


def _old(path: Path, age_s: float) -> Path:
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A private cache root holding a current and a stale kernel cache and zoo export each (the
    stale export with its external data file)."""
    monkeypatch.setenv("CNNRT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CNNRT_ZOO_CACHE", raising=False)
    current = cache_dir.kernel_cache_dir()
    (current / "k.nbi").parent.mkdir(parents=True)
    (current / "k.nbi").write_bytes(b"x" * 100)
    stale = tmp_path / "numba-0123456789abcdef"
    stale.mkdir()
    (stale / "k.nbc").write_bytes(b"y" * 300)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    zoo_cache.cached_path("lenet5").write_bytes(b"z" * 50)
    (zoo / "lenet5-op17-dyn-0000000000000000.onnx").write_bytes(b"w" * 70)
    zoo_cache.data_path(zoo / "lenet5-op17-dyn-0000000000000000.onnx").write_bytes(b"d" * 30)  # its weights
    return tmp_path


def _cli(env_root: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, CNNRT_CACHE_DIR=str(env_root))
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("CNNRT_ZOO_CACHE", None)
    return subprocess.run(
        [sys.executable, "-m", "cnnrt", "cache", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cache_info_lists_current_and_stale(root):
    r = _cli(root, "info", "--json", str(root / "info.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((root / "info.json").read_text())
    assert rep["root"] == str(root) and rep["kernel_source_hash"] == cache_dir.kernel_source_hash()
    kernels = {Path(k["path"]).name: k for k in rep["kernels"]}
    assert (
        kernels[cache_dir.kernel_cache_dir().name]["current"]
        and kernels[cache_dir.kernel_cache_dir().name]["bytes"] == 100
    )
    assert not kernels["numba-0123456789abcdef"]["current"] and kernels["numba-0123456789abcdef"]["bytes"] == 300
    assert sorted((z["current"], z["bytes"]) for z in rep["zoo"]) == [(False, 100), (True, 50)]
    assert "stale" in r.stdout and cache_dir.kernel_source_hash() in r.stdout


def test_cache_clear_stale_then_kernels_then_all(root):
    r = _cli(root, "clear")
    assert r.returncode == 0, r.stderr
    assert not (root / "numba-0123456789abcdef").exists() and cache_dir.kernel_cache_dir().exists()
    assert [p.name for p in (root / "zoo").iterdir()] == [zoo_cache.cached_path("lenet5").name]
    assert "freed    400 B in 2 entries" in r.stdout
    assert _cli(root, "clear", "--kernels").returncode == 0
    assert not cache_dir.kernel_caches(root) and zoo_cache.cached_path("lenet5").exists()
    (root / "peak.json").write_text("{}")
    assert _cli(root, "clear", "--all").returncode == 0
    assert not list((root / "zoo").iterdir()) and not (root / "peak.json").exists()


def test_stale_kernel_caches_and_exports_are_pruned_after_a_day(root):
    current = cache_dir.kernel_cache_dir()
    recent = root / "numba-1111111111111111"
    recent.mkdir()
    _old(root / "numba-0123456789abcdef", 2 * cache_dir.STALE_AFTER_S)
    _old(current, 2 * cache_dir.STALE_AFTER_S)  # the current one stays, however old
    gone = cache_dir.prune_stale_kernel_caches(current)
    assert gone == [root / "numba-0123456789abcdef"] and recent.exists() and current.exists()
    old_export = _old(root / "zoo" / "lenet5-op17-dyn-0000000000000000.onnx", 2 * cache_dir.STALE_AFTER_S)
    _old(zoo_cache.cached_path("lenet5"), 2 * cache_dir.STALE_AFTER_S)
    # data files go with their model, or when their model is gone and they are unused for a day
    datas = [zoo_cache.data_path(p) for p in (old_export, zoo_cache.cached_path("lenet5"))]
    orphans = [root / "zoo" / f"vgg19-op17-dyn-{h}.onnx.data" for h in ("0" * 16, "1" * 16)]
    for d in datas + orphans:
        d.write_bytes(b"d")
    _old(datas[1], 2 * cache_dir.STALE_AFTER_S)
    _old(orphans[0], 2 * cache_dir.STALE_AFTER_S)
    assert zoo_cache.prune_stale(root / "zoo") == [old_export]
    assert [d.exists() for d in datas + orphans] == [False, True, False, True]
    # a new process prunes on import, and marks its own cache as used
    env = dict(os.environ, CNNRT_CACHE_DIR=str(root))
    env.pop("NUMBA_CACHE_DIR", None)
    _old(recent, 2 * cache_dir.STALE_AFTER_S)
    code = "import os, cnnrt; print(os.environ['NUMBA_CACHE_DIR'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == str(current) and not recent.exists()
    assert time.time() - current.stat().st_mtime < 600


def test_cached_zoo_model_runs_without_torch(tmp_path, lenet5_path):
    """A zoo name whose export is cached resolves, builds and runs with torch never imported."""
    env = dict(os.environ, CNNRT_CACHE_DIR=str(tmp_path))
    env.pop("CNNRT_ZOO_CACHE", None)  # NUMBA_CACHE_DIR stays: the kernels are this session's
    code = (
        "import sys, os\n"
        "from cnnrt.models import zoo_cache\n"
        "p = zoo_cache.cached_path('lenet5'); p.parent.mkdir(parents=True)\n"
        f"p.write_bytes(open({str(lenet5_path)!r}, 'rb').read())\n"
        "from cnnrt.cli import main\n"
        "rc = main(['run', 'lenet5', '--no-tier'])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('no torch')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no torch" in r.stdout and "output  output float32[1, 10]" in r.stdout


def test_cache_info_and_clear_plans(root):
    plans = root / cache_dir.kernel_cache_dir().name / "plans"
    (plans / "0123abcd").mkdir(parents=True)
    (plans / "0123abcd" / "arrays.bin").write_bytes(b"\0" * 40)
    (plans / "model-0123.pkl").write_bytes(b"\0" * 2)
    r = _cli(root, "info", "--json", str(root / "info.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((root / "info.json").read_text())
    assert sorted((Path(e["path"]).name, e["bytes"]) for e in rep["plans"]) == [("0123abcd", 40), ("model-0123.pkl", 2)]
    assert "plans" in r.stdout and "2 entries" in r.stdout
    r = _cli(root, "clear", "--plans")
    assert r.returncode == 0, r.stderr
    assert not list(plans.iterdir()) and cache_dir.kernel_cache_dir().name in {p.name for p in root.iterdir()}
