"""``cnnrt zoo export NAME --quantize int8``: onnxruntime's static QDQ quantization of a zoo net,
cached, and cnnrt on it against onnxruntime: running the file as written on every CPU, and
running it in int8 where its u8 x s8 arithmetic is exact (cnnrt.tools.bench_int8's module doc)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from quant.qdq_models import MLAS_SATURATES_REASON, ort_optimized, ort_unfused

import cnnrt
from cnnrt.cli import main
from cnnrt.models import sample_input
from cnnrt.models.quantize import quantize_cached, quantized_path
from cnnrt.tools.bench_int8 import agrees, bench_row, onnxruntime_u8s8_saturates, output_step


def test_zoo_export_quantize_writes_a_cached_qdq_model_cnnrt_runs_in_int8(tmp_path):
    out = tmp_path / "lenet5-int8.onnx"
    assert main(["zoo", "export", "lenet5", "--quantize", "int8", "--batch", "2", "-o", str(out)]) == 0
    assert quantized_path("lenet5", batch=2).exists()  # the cache: bench and tests quantize once
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= set(ops)
    sess = cnnrt.InferenceSession(str(out))
    assert sum(n.op == "QConv" and n.attrs["precision"] == "int8" for n in sess.graph.nodes) == ops.count("Conv")
    x = sample_input("lenet5", 2, seed=5)
    got, want = sess.run(None, {"input": x})[0], ort_unfused(onnx.load(out), {"input": x})[0]
    assert np.abs(got - want).max() <= output_step(out)  # the bench's int8 agreement: one step


@pytest.mark.skipif(onnxruntime_u8s8_saturates(), reason=MLAS_SATURATES_REASON)
def test_cnnrt_int8_is_within_one_step_of_onnxruntime_int8():
    path = quantize_cached("lenet5", batch=2)
    x = sample_input("lenet5", 2, seed=5)
    got = cnnrt.InferenceSession(str(path)).run(None, {"input": x})[0]
    want = ort_optimized(onnx.load(path), {"input": x})[0]
    assert np.abs(got - want).max() <= output_step(path)


def test_the_int8_bench_row_compares_the_engines_on_the_qdq_file():
    row = bench_row("lenet5", 1, runs=1)
    assert row["onnxruntime-int8_saturates"] == onnxruntime_u8s8_saturates()
    assert agrees(row) and row["cnnrt-int8_steps_as_written"] <= 1.0 and row["top1_agrees"]
    assert row["openvino-int8_ms"] > 0 and row["int8_speedup_over_f32"] > 0
