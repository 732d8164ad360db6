"""Fixtures for the CLI tests: a runner for ``python -m cnnrt``, tiny ONNX models, lenet5."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
from cli_helpers import tiny_model

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self, path) -> object:
        return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory):
    """Environment for CLI subprocesses: a private cache dir with a seeded peak (100 GFLOP/s)."""
    env = dict(os.environ)
    cache = tmp_path_factory.mktemp("cnnrt-cache")
    env["CNNRT_CACHE_DIR"] = str(cache)
    # a seeded peak keeps the 1-2 s sgemm probe out of every profile test (tested on its own)
    from cnnrt.tools.timing import _machine_key, cpu_count

    peaks = {_machine_key(t): 100.0 for t in range(1, cpu_count() + 1)}
    (cache / "peak.json").write_text(json.dumps(peaks))
    env.pop("CNNRT_POISON", None)
    return env


@pytest.fixture
def cnnrt_cli(cli_env, tmp_path):
    """``cnnrt_cli("run", "lenet5", ...)`` runs the real entry point in a subprocess."""

    def run(*args, timeout=600) -> Result:
        p = subprocess.run(
            [sys.executable, "-m", "cnnrt", *map(str, args)],
            capture_output=True,
            text=True,
            env=cli_env,
            cwd=tmp_path,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run


@pytest.fixture
def tiny_path(tmp_path) -> Path:
    p = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), p)
    return p


@pytest.fixture(scope="session")
def lenet5_path(tmp_path_factory) -> Path:
    """lenet5 exported once for the session (symbolic batch)."""
    models = pytest.importorskip("cnnrt.models")
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("zoo") / "lenet5.onnx"
    from cnnrt.frontends.loader import model_bytes

    out.write_bytes(model_bytes(models.export_cached("lenet5", opset=17, batch=None)))  # one self-contained file
    return out


@pytest.fixture
def cnnrt_main(tmp_path, monkeypatch, capsys):
    """``cnnrt_main("run", ...)`` calls ``cnnrt.cli.main`` in this process (in ``tmp_path``): fast, for
    the errors that stop a command before its work (a SystemExit gives its code)."""
    from cnnrt.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args) -> Result:
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return Result(rc, out, err)

    return run


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if a command gets as far as loading a model or building a session."""

    def refuse(*a, **k):
        raise AssertionError("the command started work before rejecting its arguments")

    import cnnrt
    import cnnrt.tools.modelsource as modelsource

    monkeypatch.setattr(cnnrt, "InferenceSession", refuse)
    monkeypatch.setattr(modelsource, "resolve_model", refuse)
    monkeypatch.setattr(modelsource, "random_feeds", refuse)
