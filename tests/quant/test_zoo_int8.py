"""``cnnrt zoo export NAME --quantize int8``: onnxruntime's static QDQ quantization of a zoo net,
cached, and cnnrt on it against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from quant.qdq_models import ort_optimized

import cnnrt
from cnnrt.cli import main
from cnnrt.models import sample_input
from cnnrt.models.quantize import quantized_path
from cnnrt.tools.bench_int8 import bench_row, output_step


def test_zoo_export_quantize_writes_a_cached_qdq_model_cnnrt_runs_in_int8(tmp_path):
    out = tmp_path / "lenet5-int8.onnx"
    assert main(["zoo", "export", "lenet5", "--quantize", "int8", "--batch", "2", "-o", str(out)]) == 0
    assert quantized_path("lenet5", batch=2).exists()  # the cache: bench and tests quantize once
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= set(ops)
    sess = cnnrt.InferenceSession(str(out))
    assert sum(n.op == "QConv" and n.attrs["precision"] == "int8" for n in sess.graph.nodes) == ops.count("Conv")
    x = sample_input("lenet5", 2, seed=5)
    got, want = sess.run(None, {"input": x})[0], ort_optimized(onnx.load(out), {"input": x})[0]
    assert np.abs(got - want).max() <= output_step(out)  # the bench's int8 agreement: one step


def test_the_int8_bench_row_compares_the_engines_on_the_qdq_file():
    row = bench_row("lenet5", 1, runs=1)
    assert row["cnnrt-int8_steps"] <= 1.0 and row["top1_agrees"]
    assert row["openvino-int8_ms"] > 0 and row["int8_speedup_over_f32"] > 0
