"""The package's layer rules: the import-linter contracts in pyproject.toml, no import cycles, and an inference
path that loads neither onnxruntime, matplotlib nor torch.

The package is installed from several folders (pyproject's package-dir maps frontends/ to cnnrt.frontends, and
so on), and import-linter's graph builder walks the root package's one directory. So the checks run against a
staging copy made of symlinks that lays the folders out as the installed package sees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"


@pytest.fixture(scope="module")
def staged_package(tmp_path_factory) -> Path:
    """A directory holding `cnnrt/` laid out as installed: cnnrt/'s entries plus each package-dir folder."""
    package_dir = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    root = tmp_path_factory.mktemp("staged")
    pkg = root / "cnnrt"
    pkg.mkdir()
    for entry in (REPO / package_dir["cnnrt"]).iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in package_dir.items():
        parts = name.split(".")
        target = pkg.joinpath(*parts[1:])
        if len(parts) == 2 and not target.exists():  # deeper ones (cnnrt.kernels.cpu) lie inside their parent
            target.symlink_to(REPO / folder)
    return root


def _run_staged(root: Path, code: str) -> subprocess.CompletedProcess:
    # cwd is the staging directory so that `cnnrt` resolves there and not to the repository's own folder
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_contracts_hold(staged_package):
    code = f"""
        import sys
        from importlinter.cli import lint_imports
        sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True, no_logo=True))
    """
    proc = _run_staged(staged_package, code)
    assert "Analyzed" in proc.stdout, proc.stdout + proc.stderr  # the graph was built from the staged package
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_import_cycles(staged_package):
    code = """
        import json, grimp
        graph = grimp.build_graph("cnnrt", cache_dir=None)
        print(json.dumps([[m, sorted(graph.find_modules_directly_imported_by(m))] for m in sorted(graph.modules)]))
    """
    proc = _run_staged(staged_package, code)
    assert proc.returncode == 0, proc.stderr
    edges = json.loads(proc.stdout)
    assert any(m == "cnnrt.frontends.onnx" for m, _ in edges)  # the mapped folders are in the graph
    graph = nx.DiGraph((m, imported) for m, imports in edges for imported in imports)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_inference_loads_no_reference_or_plotting_library(tmp_path):
    """Building and running a session leaves onnxruntime, matplotlib and torch unloaded (the static contract
    cannot see imports made by third-party packages on our behalf)."""
    code = """
        import sys
        import numpy as np
        from onnx import TensorProto, helper
        import cnnrt

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 10
        sess = cnnrt.InferenceSession(model.SerializeToString())
        feed = np.linspace(-1, 1, 32, dtype=np.float32).reshape(1, 2, 4, 4)
        (out,) = sess.run(None, {"x": feed})
        assert np.array_equal(out, np.maximum(feed, 0))
        print(sorted(m for m in ("onnxruntime", "matplotlib", "torch") if m in sys.modules))
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
