"""`cnnrt inspect`: the conv algorithm each layer runs with is reported."""

from __future__ import annotations

from cnnrt.models import export_cached

import cnnrt
from cnnrt import inspect as insp


def test_report_names_the_conv_algorithm_per_layer():
    sess = cnnrt.InferenceSession(str(export_cached("lenet5")), threads=1)
    rep = insp.report(sess)
    convs = [n["algorithm"] for n in rep["nodes"] if n["op"] == "Conv"]
    # 1->6 and 6->16 5x5 convs: direct; 16x5x5 -> 120 covers its whole input: a Gemm
    assert convs == ["direct", "direct", "fc"]
    assert all(n["algorithm"] is None for n in rep["nodes"] if n["op"] != "Conv")
    assert "Conv/fc" in insp.to_text(rep)
