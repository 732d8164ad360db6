"""``cnnrt compare``: every intermediate tensor against a reference; the first divergence is named."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from cli_helpers import perturb_initializer, tiny_model

from cnnrt.tools.compare import derive_tolerances, diff_tensor

JSON_NODE_KEYS = {"node", "op", "origin", "status", "tensors"}


def _check_schema(rep):
    assert "first_divergence" in rep and isinstance(rep["nodes"], list) and rep["nodes"]
    for n in rep["nodes"]:
        assert JSON_NODE_KEYS <= set(n)
        for t in n["tensors"]:
            assert {"tensor", "max_abs", "max_rel", "rtol", "atol", "ok"} <= set(t)


def test_compare_lenet5_agrees_with_onnxruntime(cnnrt_cli, lenet5_path, tmp_path):
    r = cnnrt_cli("compare", lenet5_path, "--json", "c.json")
    assert r.rc == 0, r.out + r.err
    rep = r.json(tmp_path / "c.json")
    _check_schema(rep)
    assert rep["first_divergence"] is None
    compared = [t for n in rep["nodes"] for t in n["tensors"]]
    assert len(compared) >= 5 and all(t["ok"] for t in compared)
    assert "output" in {t["tensor"] for t in compared}


def test_compare_finds_the_perturbed_lenet5_conv(cnnrt_cli, lenet5_path, tmp_path):
    convs = [n for n in onnx.load(str(lenet5_path)).graph.node if n.op_type == "Conv"]
    target = convs[1]
    bad = tmp_path / "lenet5_bad.onnx"
    perturb_initializer(lenet5_path, bad, target.input[1], 1.05)
    r = cnnrt_cli("compare", bad, "--reference-model", lenet5_path, "--json", "c.json")
    assert r.rc == 1, r.out + r.err
    rep = r.json(tmp_path / "c.json")
    _check_schema(rep)
    fd = rep["first_divergence"]
    assert fd is not None and target.name in fd["origin"], fd
    # everything executed before it agrees
    idx = [n["node"] for n in rep["nodes"]].index(fd["node"])
    assert all(n["status"] in ("ok", "no-ref") for n in rep["nodes"][:idx])
    assert "first divergence" in r.out and fd["node"] in r.out


def test_compare_tiny_against_unoptimized_and_bisect_nothing(cnnrt_cli, tiny_path, tmp_path):
    r = cnnrt_cli(
        "compare", tiny_path, "--against", "unoptimized", "--bisect-passes", "--batch", "2", "--json", "c.json"
    )
    assert r.rc == 0, r.out + r.err
    rep = r.json(tmp_path / "c.json")
    assert rep["first_divergence"] is None and rep["bisect"] is None
    assert rep["reference"]["against"] == "unoptimized"
    assert "nothing to bisect" in r.out


def test_compare_fixed_tolerances_flag_the_perturbed_tiny(cnnrt_cli, tmp_path):
    onnx.save(tiny_model(), tmp_path / "good.onnx")
    onnx.save(tiny_model(scale_w2=1.05), tmp_path / "bad.onnx")
    r = cnnrt_cli(
        "compare", "bad.onnx", "--reference-model", "good.onnx", "--rtol", "1e-4", "--atol", "0", "--json", "c.json"
    )
    assert r.rc == 1
    fd = r.json(tmp_path / "c.json")["first_divergence"]
    assert "conv2" in fd["origin"] and fd["rtol"] == 1e-4
    loose = cnnrt_cli("compare", "bad.onnx", "--reference-model", "good.onnx", "--rtol", "0.5")
    assert loose.rc == 0, loose.out


def test_bisect_names_a_planted_bad_pass(monkeypatch, tmp_path):
    """A pass that scales a conv weight by 1.01 is what bisecting must name."""
    import cnnrt
    from cnnrt.core.ir import Value
    from cnnrt.passes import PassResult, pipeline
    from cnnrt.tools.compare import bisect_passes, cnnrt_tensors, run_compare

    def scale_conv_weight(graph):
        for i, node in enumerate(graph.nodes):
            if node.op == "Conv" and not node.inputs[1].endswith("#scaled"):
                g = graph.copy()
                w = node.inputs[1]
                new = w + "#scaled"
                g.constants[new] = (g.constants[w] * np.float32(1.01)).astype(np.float32)
                g.values[new] = Value(new, g.values[w].shape, g.values[w].dtype)
                g.nodes[i] = node.replace(inputs=(node.inputs[0], new, *node.inputs[2:]))
                return PassResult(g, True, [("scale conv weight", node.name)])
        return PassResult(graph, False)

    monkeypatch.setattr(pipeline, "PASSES", [*pipeline.PASSES, ("scale_conv_weight", scale_conv_weight, 1)])
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    ref = cnnrt_tensors(path, feeds, opt_level=0)
    _, fd = run_compare(path, feeds, ref)
    assert fd is not None and "conv1" in fd["origin"]
    res = bisect_passes(path, feeds, ref, log=lambda *_: None)
    assert res["culprits"] == ["scale_conv_weight"], res
    assert cnnrt.InferenceSession(path, disabled_passes=["scale_conv_weight"]) is not None


def test_tolerances_grow_along_depth_and_with_k():
    import cnnrt

    sess = cnnrt.InferenceSession(tiny_model(), opt_level=0)
    g = sess.graph
    tol = derive_tolerances(g)
    eps = np.finfo(np.float32).eps
    conv1 = next(n for n in g.nodes if n.name == "conv1")
    # conv1: K = 3*3*3 + bias, no transcendental: 8 * eps * sqrt(28)
    assert tol[conv1.outputs[0]] == pytest.approx(8 * eps * math.sqrt(28))
    order = [tol[n.outputs[0]] for n in g.nodes]
    assert order == sorted(order) and order[-1] > order[0]


def test_diff_tensor_rules():
    a = np.array([1.0, 2.0, np.nan], np.float32)
    assert diff_tensor(a, a.copy(), 0.0, 0.0).ok
    b = a.copy()
    b[2] = 0.0
    assert not diff_tensor(a, b, 1.0, 1.0).ok  # NaN where the reference has none
    assert not diff_tensor(np.zeros((2, 3)), np.zeros((3, 2)), 1.0, 1.0).ok
    assert not diff_tensor(np.array([1, 2], np.int64), np.array([1, 3], np.int64), 1.0, 1.0).ok
    d = diff_tensor(np.array([1.0, 2.001], np.float32), np.array([1.0, 2.0], np.float32), 1e-3, 0.0)
    assert d.ok and d.max_rel == pytest.approx(0.0005, rel=1e-3)
    assert not diff_tensor(np.array([1.0, 2.01], np.float32), np.array([1.0, 2.0], np.float32), 1e-3, 0.0).ok
