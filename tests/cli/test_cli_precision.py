"""--precision on run / inspect / bench: bf16 nodes are shown as such, checked against their
precision's bound (bench's reduced-precision peers too), a bad value stops before any work."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from inspect_models import small_resnet

from cnnrt.kernels.cpu.conv_blocked_bf16 import bf16_unsupported_reason
from cnnrt.kernels.cpu.microkernel_amx import amx_unsupported_reason
from cnnrt.tools.bench import bench_case, tolerance, with_precisions

needs_bf16 = pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")


@pytest.fixture
def resnet_path(tmp_path):
    p = tmp_path / "small_resnet.onnx"
    onnx.save(small_resnet(), p)
    return p


def test_precision_variants_and_their_bounds():
    assert with_precisions(["onnxruntime", "cnnrt"], ["f32", "bf16"], explicit=False) == [
        "onnxruntime",
        "cnnrt",
        "cnnrt-bf16",
        "openvino-bf16",
    ]
    assert with_precisions(["onnxruntime", "cnnrt", "openvino"], ["bf16"], explicit=True) == [
        "onnxruntime",
        "cnnrt",
        "cnnrt-bf16",
        "openvino",
        "openvino-bf16",
    ]
    assert with_precisions(["onnxruntime", "cnnrt"], ["f32"], explicit=False) == ["onnxruntime", "cnnrt"]
    assert (tolerance("cnnrt", None), tolerance("openvino-bf16", None), tolerance("cnnrt-bf16", 1e-2)) == (
        1e-3,
        2e-1,
        1e-2,
    )


def test_bench_holds_a_bf16_backend_to_the_bf16_bound():
    ref = np.ones((1, 10), np.float32)
    off = ref + np.float32(0.05)  # 5e-2: a bf16 answer, WRONG for float32
    runners = {"onnxruntime": lambda: [ref], "openvino": lambda: [off], "openvino-bf16": lambda: [off]}
    res = bench_case(runners, runs=1, warmup=0)
    assert res["openvino"].status == "WRONG" and res["openvino-bf16"].status == "ok"
    assert bench_case(runners, runs=1, warmup=0, rtol=1e-2)["openvino-bf16"].status == "WRONG"


@needs_bf16
def test_run_and_inspect_show_bf16(cnnrt_main, resnet_path):
    r = cnnrt_main("run", resnet_path, "--precision", "bf16", "--check", "--threads", "1")
    assert r.rc == 0, r.err
    assert "precision bf16" in r.out and "OK" in r.out
    r = cnnrt_main("inspect", resnet_path, "--precision", "bf16")
    assert r.rc == 0, r.err
    if amx_unsupported_reason():
        assert "BlockedConv/direct bf16" in r.out and "precision: 3 bf16 node(s)" in r.out  # 2 convs, the Gemm
        # block.a's output, read by block.b alone, and the 16-channel stem's (conv_stem.py), read by
        # block.a and as block.b's residual, are stored bf16 (passes/precision.py)
        assert "2 output(s) stored bf16" in r.out and "1x1x16x16x16 bf16" in r.out
        assert "[precision] declined bf16 at stem" in r.out  # 3 input channels: float32, and why
    else:  # the stem's reduction (3 x 9) is below AMX's size rule: float32, and why
        assert "BlockedConv/direct bf16 amx" in r.out and "precision: 3 bf16 node(s)" in r.out
        assert "[precision] declined bf16 at stem" in r.out and "small for AMX" in r.out
    assert "bf16" not in cnnrt_main("inspect", resnet_path).out


@pytest.mark.parametrize("command", ["run", "bench", "profile", "inspect"])
def test_bad_precision_stops_before_work(cnnrt_main, no_work, command):
    r = cnnrt_main(command, "lenet5", "--precision", "fp8")
    assert r.rc == 2 and "precision" in r.err and "f32" in r.err and len(r.err.strip().splitlines()) == 1


@needs_bf16
def test_compare_derives_bf16_tolerances(resnet_path):
    """bf16 nodes get the bf16 rounding in their bound: within it, while float32's bounds
    (the same graph without the precision marks and bf16 activations) call the bf16 rounding
    a divergence, at the first node with a bf16 rounding."""
    import dataclasses

    import cnnrt
    from cnnrt.core.ir import BF16, Graph
    from cnnrt.tools.compare import compare_steps, first_divergence, ort_tensors, snapshot_steps

    sess = cnnrt.InferenceSession(resnet_path, precision="bf16", threads=1)
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    graph, steps = snapshot_steps(sess, feeds)
    ref, _ = ort_tensors(resnet_path, feeds)
    assert first_divergence(compare_steps(graph, steps, ref, None, None)) is None
    plain = [n.replace(attrs={k: v for k, v in n.attrs.items() if k != "precision"}) for n in graph.nodes]
    values = {k: dataclasses.replace(v, dtype="float32") if v.dtype == BF16 else v for k, v in graph.values.items()}
    as_f32 = Graph(plain, values, graph.constants, graph.inputs, graph.outputs, graph.name)
    first = first_divergence(compare_steps(as_f32, steps, ref, None, None))
    assert first is not None
    node = graph.node(first["node"])  # a bf16 conv, or the float32 stem whose store rounds to bf16
    assert node.attrs.get("precision") == "bf16" or graph.values[node.outputs[0]].dtype == BF16
