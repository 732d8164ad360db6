"""`cnnrt inspect`: the conv algorithm each layer runs with is reported."""

from __future__ import annotations

import cnnrt
from cnnrt.models import export_cached
from cnnrt.tools import inspect as insp


def test_report_names_the_conv_algorithm_per_layer():
    sess = cnnrt.InferenceSession(str(export_cached("lenet5")), threads=1)
    rep = insp.report(sess)
    convs = [n["algorithm"] for n in rep["nodes"] if n["op"] == "Conv"]
    # 1->6 and 6->16 5x5 convs: direct; 16x5x5 -> 120 covers its whole input: a Gemm
    assert convs == ["direct", "direct", "fc"]
    assert all(n["algorithm"] is None for n in rep["nodes"] if n["op"] != "Conv")
    assert "Conv/fc" in insp.to_text(rep)


def test_report_shows_blocked_convs_with_their_algorithm_and_epilogue():
    """ResNet-18 runs in the channel-blocked layout: BlockedConv steps, each with the
    algorithm it runs (Winograd on the 3x3 stride-1 56x56 layers) and its fused epilogue."""
    sess = cnnrt.InferenceSession(str(export_cached("resnet18")), threads=1)
    rep = insp.report(sess)
    convs = [n for n in rep["nodes"] if n["op"] == "BlockedConv"]
    assert len(convs) == 20 and not [n for n in rep["nodes"] if n["op"] == "Conv"]
    assert {n["algorithm"] for n in convs} == {"direct", "winograd"}
    assert {n["epilogue"] for n in convs} >= {"+bias Relu", "+bias +residual Relu"}
    assert "BlockedConv/winograd   +bias +residual Relu" in insp.to_text(rep)


def test_report_reads_the_algorithm_and_reason_from_the_node():
    """inspect shows what select_algorithm wrote on the node (it does not work the choice out
    again): an attribute changed after the fact is what it reports."""
    sess = cnnrt.InferenceSession(str(export_cached("lenet5")), threads=1)
    rep = insp.report(sess)
    fc = [n for n in rep["nodes"] if n["algorithm"] == "fc"]
    assert len(fc) == 1 and "covers the whole input" in fc[0]["algorithm_reason"]
    assert f"{fc[0]['name'][:32]:32s} fc: {fc[0]['algorithm_reason']}" in insp.to_text(rep)
    g = sess.graph
    k = next(i for i, n in enumerate(g.nodes) if n.op == "Conv")
    g.nodes[k] = g.nodes[k].with_attrs(algorithm="im2col_numpy", algorithm_reason="requested")
    rec = insp.report(sess)["nodes"][k]
    assert (rec["algorithm"], rec["algorithm_reason"]) == ("im2col_numpy", "requested")
    assert "algorithm" not in rec["attrs"]
