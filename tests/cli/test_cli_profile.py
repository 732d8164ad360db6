"""``cnnrt profile``: per-step times that add up, MACs from the op definitions, trace and plot files."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import shape_inference

STEP_KEYS = {"name", "op", "origin", "ms", "macs", "gflops", "share"}


def _check_report(rep):
    assert {"total_ms", "end_to_end_ms", "build", "steps"} <= set(rep)
    for key in ("import", "passes", "planning", "kernels", "first_run_jit"):
        assert rep["build"][key] >= 0
    assert rep["steps"]
    for s in rep["steps"]:
        assert STEP_KEYS <= set(s)
        assert s["ms"] >= 0 and s["origin"] and isinstance(s["origin"], list)
        if s["macs"]:
            assert s["gflops"] == pytest.approx(2 * s["macs"] / (s["ms"] * 1e-3) / 1e9)
    assert math.isclose(sum(s["ms"] for s in rep["steps"]), rep["total_ms"], rel_tol=1e-9)
    assert math.isclose(sum(s["share"] for s in rep["steps"]), 1.0, rel_tol=1e-9)
    assert rep["end_to_end_ms"] > 0


def _onnx_macs(path) -> int:
    """MACs of Conv, Gemm and AveragePool from the ONNX model itself (shape inference)."""
    m = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {
        vi.name: [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
        for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)
    }
    for t in m.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = 0
    for n in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        out = shapes[n.output[0]]
        if n.op_type == "Conv":
            w = shapes[n.input[1]]
            total += int(np.prod(out)) * w[1] * w[2] * w[3]  # N*M*OH*OW * C/group*kh*kw
        elif n.op_type == "Gemm":
            a = shapes[n.input[0]]
            k = a[0] if attrs.get("transA", 0) else a[1]
            total += out[0] * out[1] * k
        elif n.op_type == "AveragePool":
            total += int(np.prod(out)) * int(np.prod(attrs["kernel_shape"]))
    return total


def test_profile_tiny_json_trace_plot(cnnrt_cli, tiny_path, tmp_path):
    r = cnnrt_cli(
        "profile",
        tiny_path,
        "--runs",
        "5",
        "--batch",
        "2",
        "--json",
        "p.json",
        "--chrome-trace",
        "t.json",
        "--plot",
        "p.png",
    )
    assert r.rc == 0, r.err
    rep = r.json(tmp_path / "p.json")
    _check_report(rep)
    assert rep["batch"] == 2
    assert rep["peak_gflops"] == 100.0  # the seeded cache was used
    assert all(s["pct_of_peak"] == pytest.approx(s["gflops"]) for s in rep["steps"] if s["gflops"])
    # both convs of the tiny model: N*M*OH*OW*(C/group)*kh*kw
    assert rep["total_macs"] == 2 * 4 * 8 * 8 * 3 * 3 * 3 + 2 * 4 * 8 * 8 * 4 * 3 * 3
    trace = r.json(tmp_path / "t.json")
    xs = [e for e in trace["traceEvents"] if e["ph"] == "X" and e.get("cat") != "build"]
    assert len(xs) == 5 * len(rep["steps"])
    assert {e["name"] for e in xs} == {s["name"] for s in rep["steps"]}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in xs)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "first run (JIT)" in r.out and "end-to-end" in r.out


def test_profile_lenet5_macs_match_the_onnx_model(cnnrt_cli, lenet5_path, tmp_path):
    r = cnnrt_cli("profile", lenet5_path, "--runs", "3", "--json", "p.json", "--no-peak")
    assert r.rc == 0, r.err
    rep = r.json(tmp_path / "p.json")
    _check_report(rep)
    assert rep["total_macs"] == _onnx_macs(lenet5_path)
    origins = [o for s in rep["steps"] for o in s["origin"]]
    conv_names = [n.name for n in onnx.load(str(lenet5_path)).graph.node if n.op_type == "Conv"]
    assert set(conv_names) <= set(origins)
    # the executor loop timed both ways: native plan and Python loop
    assert 0 <= rep["native_steps"] <= len(rep["steps"]) and rep["native_segments"] >= 0
    assert rep["python_loop_ms"] > 0 and rep["executor_run_ms"] > 0
    assert f"of {len(rep['steps'])} steps in {rep['native_segments']} compiled segment(s)" in r.out


def test_peak_probe_is_cached(monkeypatch, tmp_path):
    from cnnrt.tools import timing

    monkeypatch.setenv("CNNRT_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(timing, "measure_peak_gflops", lambda threads: calls.append(threads) or 100.0 + threads)
    assert timing.peak_gflops(2) == (102.0, False)
    assert timing.peak_gflops(2) == (102.0, True)
    assert timing.peak_gflops(1) == (101.0, False)
    assert calls == [2, 1]
    assert (tmp_path / "peak.json").exists()


def test_peak_probe_measures_something():
    from cnnrt.tools.timing import measure_peak_gflops

    assert measure_peak_gflops(1, n=256, repeats=2) > 0.1
