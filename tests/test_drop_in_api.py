"""cnnrt as a drop-in for onnxruntime: a script written for onnxruntime runs unchanged but for
its import line, and every SessionOptions / RunOptions / provider setting is honoured or refused."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime
import pytest
from helpers import assert_close_to, make_model, ort_run
from onnx import helper

import cnnrt
from cnnrt.errors import BackendUnavailableError, CnnrtError, InputError

SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np
    import onnxruntime as ort

    model_path, out_path = sys.argv[1], sys.argv[2]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, sess_options=so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 80 for d in inp.shape]
    shape[0] = 2
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    ro = ort.RunOptions()
    ro.log_severity_level = 3
    outs = sess.run(names, {inp.name: x}, ro)
    outs2 = sess.run(None, {inp.name: x[:1]})
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    meta = sess.get_modelmeta()
    info = {
        "inputs": [[i.name, i.shape, i.type] for i in sess.get_inputs()],
        "outputs": [[o.name, o.shape, o.type] for o in sess.get_outputs()],
        "providers": sess.get_providers(),
        "meta": [meta.producer_name, meta.graph_name, meta.version, meta.custom_metadata_map],
        "threads": sess.get_session_options().intra_op_num_threads,
        "node_events": sum(e.get("cat") == "Node" and e["dur"] >= 0 and "op_name" in e["args"] for e in events),
    }
    np.savez(out_path, *outs, *outs2)
    with open(out_path + ".json", "w") as f:
        json.dump(info, f)
    """
)


def _run_script(script: str, model_path, out, tmp_path, without_onnxruntime: bool) -> tuple[list, dict]:
    path = tmp_path / "infer.py"
    path.write_text(script)
    block = "import sys; sys.modules['onnxruntime'] = None; " if without_onnxruntime else ""
    code = f"{block}import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    r = subprocess.run(
        [sys.executable, "-c", code, str(path), str(model_path), str(tmp_path / out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(tmp_path / f"{out}.npz") as z:
        arrays = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    return arrays, json.loads((tmp_path / f"{out}.json").read_text())


def test_an_onnxruntime_script_runs_unchanged_with_import_cnnrt_as_ort(tmp_path):
    model_path = tmp_path / "model.onnx"
    onnx.save(_tiny(hw=("height", "width")), model_path)
    ours = SCRIPT.replace("import onnxruntime as ort", "import cnnrt as ort")
    assert [a for a in zip(SCRIPT.splitlines(), ours.splitlines()) if a[0] != a[1]] == [
        ("import onnxruntime as ort", "import cnnrt as ort")
    ]
    want, want_info = _run_script(SCRIPT, model_path, "ort", tmp_path, without_onnxruntime=False)
    got, got_info = _run_script(ours, model_path, "cnnrt", tmp_path, without_onnxruntime=True)
    assert [a.shape for a in got] == [a.shape for a in want] == [(2, 10), (1, 10)]
    for g, w in zip(got, want):
        assert_close_to(g, w)
    sess, steps = cnnrt.InferenceSession(str(model_path)), 0
    for batch in (2, 1):
        sess.prepare({"x": (batch, 3, 80, 80)})
        steps += len(sess.executor.steps)
    assert got_info.pop("node_events") == steps
    assert want_info.pop("node_events") > 0
    assert got_info == want_info


def _tiny(hw=(8, 8)):
    """Conv (16 channels, so the CPU's blocked layout fires) + BN + Relu + residual + pool + Gemm,
    on an input [batch, 3, *hw]."""
    rng = np.random.default_rng(1)
    inits = {
        "w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
        "s": rng.uniform(0.5, 1.5, 16).astype(np.float32),
        "b": rng.standard_normal(16).astype(np.float32),
        "m": rng.standard_normal(16).astype(np.float32),
        "v": rng.uniform(0.5, 1.5, 16).astype(np.float32),
        "w2": rng.standard_normal((16, 16, 3, 3)).astype(np.float32),
        "fc": rng.standard_normal((10, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r"], ["a"], name="add"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1, name="fc"),
    ]
    m = make_model(nodes, [("x", ["batch", 3, *hw], np.float32)], [("y", ["batch", 10], np.float32)], inits)
    m.producer_name, m.model_version = "tests", 3
    helper.set_model_props(m, {"author": "cnnrt tests"})
    return m


def _x(batch=2):
    return np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)


def test_optimized_model_file_is_valid_onnx_and_loads_back(tmp_path):
    path = tmp_path / "opt.onnx"
    so = cnnrt.SessionOptions()
    so.optimized_model_filepath = str(path)
    sess = cnnrt.InferenceSession(_tiny(), so)
    [y] = sess.run(None, {"x": _x(1)})
    saved = onnx.load(str(path))
    onnx.checker.check_model(saved, full_check=True)
    assert {n.domain for n in saved.graph.node} == {"cnnrt"}
    ops = [n.op_type for n in saved.graph.node]
    assert ops == [n.op for n in sess.graph.nodes] and any(op.startswith("Blocked") for op in ops)
    fused = next(n for n in saved.graph.node if n.op_type == "BlockedConv")
    origin = json.loads({p.key: p.value for p in fused.metadata_props}["origin"])
    assert origin[:3] == ["conv", "bn", "relu"]
    assert any(p.key == "layout" for vi in saved.graph.value_info for p in vi.metadata_props)
    again = cnnrt.InferenceSession(str(path))
    assert [(n.op, dict(n.attrs), n.origin) for n in again.graph.nodes] == [
        (n.op, dict(n.attrs), n.origin) for n in sess.graph.nodes
    ]
    np.testing.assert_array_equal(again.run(None, {"x": _x(1)})[0], y)
    assert_close_to(y, ort_run(_tiny(), {"x": _x(1)})[0])
    assert again.get_modelmeta().custom_metadata_map["author"] == "cnnrt tests"


def test_optimized_model_file_of_another_vector_width_is_refused(tmp_path):
    """A file optimised where CPU vectors are wider or narrower (blocks of 16 float32 lanes
    with AVX-512, 8 with AVX2) holds blocked values this CPU's kernels would read at the
    wrong width: loading it fails with a typed error that says so, not inside a kernel."""
    from cnnrt.frontends.onnx import OnnxModel
    from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
    from cnnrt.passes.pipeline import run_pipeline
    from cnnrt.runtime.optimised_model import save_optimised

    other = 32 if VECTOR_BYTES == 64 else 64
    model = OnnxModel(_tiny())
    graph, _ = run_pipeline(model.to_graph({"x": (1, 3, 8, 8)}), 2, vector_bytes=other, backend="cpu")
    path = tmp_path / "opt.onnx"
    save_optimised(graph, model, path)  # what a session there writes as optimized_model_filepath
    assert any(v.layout == f"nchw{other // 4}c" for v in graph.values.values())
    with pytest.raises(BackendUnavailableError, match=f"nchw{other // 4}c .*blocks are {VECTOR_BYTES // 4} lanes"):
        cnnrt.InferenceSession(str(path))


def test_profile_is_a_chrome_trace_of_every_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    so = cnnrt.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = "prof"
    sess = cnnrt.InferenceSession(_tiny(), so)
    for b in (1, 2, 2):
        sess.run(None, {"x": _x(b)})
    path = sess.end_profiling()
    assert path.startswith("prof_") and sess.end_profiling() == ""
    events = json.loads((tmp_path / path).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    nodes = [e for e in events if e.get("cat") == "Node"]
    assert len(runs) == 3 and len(nodes) == 3 * len(sess.executor.steps)
    assert {e["name"] for e in events if e.get("cat") == "Session"} == {
        "model_loading",
        "session_initialization",
        "model_run",
    }
    for run in runs:  # each step lies inside its run
        inside = [e for e in nodes if run["ts"] <= e["ts"] and e["ts"] + e["dur"] <= run["ts"] + run["dur"] + 1]
        assert len(inside) == len(sess.executor.steps)


def test_onnxruntime_session_options_are_honoured():
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = cnnrt.InferenceSession(_tiny(), so)
    assert (sess.threads, sess.opt_level) == (1, 0)
    assert "BatchNormalization" in [n.op for n in sess.graph.nodes]
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    sess = cnnrt.InferenceSession(_tiny(), so)  # everything but the layout change
    assert sess.opt_level == 2 and "block_layout" in sess.disabled_passes
    assert not any(n.op.startswith("Blocked") for n in sess.graph.nodes)
    got = sess.get_session_options().graph_optimization_level
    assert got == cnnrt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert_close_to(sess.run(None, {"x": _x()})[0], ort_run(_tiny(), {"x": _x()})[0])


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("enable_mem_pattern", False, "enable_mem_pattern=False is not supported"),
        ("enable_cpu_mem_arena", False, "enable_cpu_mem_arena=False"),
        ("execution_mode", cnnrt.ExecutionMode.ORT_PARALLEL, "ORT_PARALLEL"),
        ("execution_order", cnnrt.ExecutionOrder.PRIORITY_BASED, "execution_order"),
        ("intra_op_num_threads", -1, "intra_op_num_threads must be >= 0"),
        ("log_severity_level", 7, "log_severity_level"),
        ("optimized_model_filepath", "m.ort", ".ort format"),
    ],
)
def test_session_options_cnnrt_cannot_honour_are_refused(field, value, match):
    so = cnnrt.SessionOptions()
    setattr(so, field, value)
    with pytest.raises(CnnrtError, match=match):
        cnnrt.InferenceSession(_tiny(), so)
    with pytest.raises(CnnrtError, match="no session config entries"):
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with pytest.raises(AttributeError):
        so.no_such_field = 1


def test_options_given_twice_must_agree_and_sess_options_must_be_options():
    so = cnnrt.SessionOptions()
    so.intra_op_num_threads = 2
    with pytest.raises(CnnrtError, match="threads=1 contradicts sess_options"):
        cnnrt.InferenceSession(_tiny(), so, threads=1)
    assert cnnrt.InferenceSession(_tiny(), so, threads=2).threads == 2
    with pytest.raises(CnnrtError, match="sess_options must be a SessionOptions"):
        cnnrt.InferenceSession(_tiny(), "cpu")
    with pytest.raises(CnnrtError, match="backend='cuda' contradicts providers"):
        cnnrt.InferenceSession(_tiny(), providers=["CPUExecutionProvider"], backend="cuda")


def test_providers(monkeypatch, caplog):
    sess = cnnrt.InferenceSession(_tiny(), providers=[("CPUExecutionProvider", {})])
    assert sess.get_providers() == ["CPUExecutionProvider"] and sess.backend == "cpu"
    assert sess.get_provider_options() == {"CPUExecutionProvider": {}}
    with pytest.raises(
        BackendUnavailableError, match=r"unknown execution provider\(s\) \['TensorrtExecutionProvider'\]"
    ):
        cnnrt.InferenceSession(_tiny(), providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(CnnrtError, match="provider option device_id=1 of CUDAExecutionProvider"):
        cnnrt.InferenceSession(_tiny(), providers=[("CUDAExecutionProvider", {"device_id": 1})])
    monkeypatch.setattr("cnnrt.runtime.session._cuda_missing", lambda: "no GPU in this test")
    with caplog.at_level(logging.WARNING, logger="cnnrt"):
        sess = cnnrt.InferenceSession(_tiny(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.backend == "cpu" and "CUDAExecutionProvider is not available (no GPU in this test)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cnnrt"):  # onnxruntime, too, falls back to its CPU
        assert cnnrt.InferenceSession(_tiny(), providers=["CUDAExecutionProvider"]).backend == "cpu"
    assert "falling back to CPUExecutionProvider" in caplog.text
    assert cnnrt.InferenceSession(_tiny(), cnnrt.SessionOptions(), opt_level=0).opt_level == 0


def test_run_options_are_honoured_or_refused(caplog):
    sess = cnnrt.InferenceSession(_tiny())
    ro = onnxruntime.RunOptions()
    ro.log_severity_level, ro.logid = 1, "run-7"
    with caplog.at_level(logging.DEBUG, logger="cnnrt"):
        sess.run(None, {"x": _x(3)}, ro)  # a new batch size: its plan is built and logged
    assert "[run-7] planned input shapes {'x': (3, 3, 8, 8)}" in caplog.text
    for field, match in (("terminate", "terminate is set"), ("only_execute_path_to_fetches", "whole plan")):
        ro = cnnrt.RunOptions()
        setattr(ro, field, True)
        with pytest.raises(CnnrtError, match=match):
            sess.run(None, {"x": _x()}, ro)
    with pytest.raises(InputError, match="run_options must be a RunOptions"):
        sess.run(None, {"x": _x()}, {"terminate": True})


def test_session_log_severity_and_metadata_and_backend_attribute(caplog):
    so = cnnrt.SessionOptions()
    so.log_severity_level, so.logid = 0, "s1"
    with caplog.at_level(logging.DEBUG, logger="cnnrt"):
        sess = cnnrt.InferenceSession(_tiny(), so)
    assert "[s1] [fuse_epilogue] fired" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="cnnrt"):
        cnnrt.InferenceSession(_tiny())  # the default threshold is WARNING
    assert caplog.text == ""
    ref = onnxruntime.InferenceSession(_tiny().SerializeToString(), providers=["CPUExecutionProvider"])
    for field in ("producer_name", "graph_name", "domain", "description", "graph_description", "version"):
        assert getattr(sess.get_modelmeta(), field) == getattr(ref.get_modelmeta(), field), field
    assert sess.get_modelmeta().custom_metadata_map == ref.get_modelmeta().custom_metadata_map
    assert cnnrt.backend.prepare(_tiny()).run([_x()])[0].shape == (2, 10)
    assert "CPUExecutionProvider" in cnnrt.get_available_providers()
