"""`cnnrt inspect`: the conv algorithm each layer runs with, the pass log per node, the memory plan,
the DOT, SVG and PNG pictures, and the output format chosen by flag or suffix."""

from __future__ import annotations

import json
import shutil
import subprocess
from xml.etree import ElementTree

import onnx
import pytest
from inspect_models import STEM_OUT, small_resnet

import cnnrt
from cnnrt.cli import main
from cnnrt.models import export_cached
from cnnrt.tools import inspect as insp

FUSED = "block.b/Conv+BatchNormalization+residual+Relu"


def test_report_names_the_conv_algorithm_per_layer():
    sess = cnnrt.InferenceSession(str(export_cached("lenet5")), threads=1)
    rep = insp.report(sess)
    convs = [n["algorithm"] for n in rep["nodes"] if n["op"] in ("Conv", "BlockedConv")]
    # 1->6 and 6->16 5x5 convs: direct (blocked where 6 channels are most of a block: 8 with
    # AVX2, not 16); 16x5x5 -> 120 covers its whole input: a Gemm
    assert convs == ["direct", "direct", "fc"]
    assert all(n["algorithm"] is None for n in rep["nodes"] if n["op"] not in ("Conv", "BlockedConv"))
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
    assert "BlockedConv/winograd        +bias +residual Relu" in insp.to_text(rep)


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


# -- the pictures, the pass log per node, the memory plan, and the output format --


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(model path, session, report) of the small residual net."""
    path = tmp_path_factory.mktemp("pictures") / "small.onnx"
    onnx.save(small_resnet(), path)
    sess = cnnrt.InferenceSession(str(path), threads=1)
    return path, sess, insp.report(sess)


def test_pass_log_entries_sit_under_the_nodes_they_concern(small):
    _, _, rep = small
    by = {n["name"]: n["passes"] for n in rep["nodes"]}
    fused = by[FUSED]
    assert ("fuse_epilogue", "fired", "Conv + Add -> Conv(residual)") in {
        (p["pass"], p["kind"], p["rule"]) for p in fused
    }
    assert {p["pass"] for p in fused} == {"fold_batchnorm", "fuse_epilogue", "block_layout", "select_algorithm"}
    [decline] = [p for p in by["head/Flatten"] if p["kind"] == "declined"]
    assert decline["pass"] == "block_layout" and "not blocked-capable" in decline["reason"]
    # a constant the pass removed belongs to no node; the unblocking reshape inherits no entry
    assert not any(p["pass"] == "eliminate_dead_nodes" for ps in by.values() for p in ps)
    assert by["gap/unblock"] == []


def test_memory_report_names_producers_and_peaks_where_the_planner_says(small):
    _, sess, rep = small
    m = rep["memory"]
    assert max(m["live_bytes"]) == sess.plan.peak_live_bytes
    made = {b["tensor"]: (b["producer"], b["producer_op"]) for b in m["buffers"]}
    assert made["x"] == (None, "graph input")
    assert made[STEM_OUT] == ("stem/Conv+BatchNormalization+Relu", "BlockedConv")


def test_dot_escapes_once_and_labels_edges_with_shapes(small):
    _, _, rep = small
    dot = insp.to_dot(rep)
    assert "\\\\n" not in dot  # the old double escape
    # a 3-channel 3x3 conv to 16 channels runs the stem kernel (conv_algorithm.choose)
    assert '"BlockedConv/stem\\nstem/Conv\\n+bias Relu"' in dot
    assert '[label="input x\\n1x3x16x16", shape=ellipse' in dot and '"output logits\\n1x10"' in dot
    edges = [line for line in dot.splitlines() if " -> " in line]
    # x, stem, block.a, block.b (and the skip from stem), pool, gap, unblock, flatten, gemm, logits
    assert len(edges) == 10 and all('[label="1x' in e for e in edges)
    assert insp._dot_str('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=dot, text=True, check=True, capture_output=True)


def test_svg_picture_from_the_suffix_with_searchable_text(small, tmp_path, capsys):
    path, _, _ = small
    out = tmp_path / "g.svg"
    assert main(["inspect", str(path), "-o", str(out), "--opt-level", "0"]) == 0
    root = ElementTree.parse(out).getroot()
    texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"input x", "output logits", "block/Add", "BatchNormalization", "1x16x16x16", "1x10"} <= texts
    png = tmp_path / "g.png"
    assert main(["inspect", str(path), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_plot_is_labelled(small, tmp_path, capsys):
    path, _, _ = small
    out = tmp_path / "mem.svg"
    assert main(["inspect", str(path), "--memory-plot", str(out), "-o", str(tmp_path / "r.json")]) == 0
    root = ElementTree.parse(out).getroot()
    texts = " | ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for want in ("made by BlockedConv", "made by graph input", STEM_OUT, "peak live", "arena", "live bytes"):
        assert want in texts, want
    colours = {
        e.get("style") for e in root.iter("{http://www.w3.org/2000/svg}path") if "fill: #" in (e.get("style") or "")
    }
    assert len(colours) >= 4  # one per producer op, not one for all
    assert json.loads((tmp_path / "r.json").read_text())["nodes"][0]["name"] == "stem/Conv+BatchNormalization+Relu"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "g.foo"], "cannot tell the format from the suffix"),
        (["--format", "text", "-o", "g.svg"], "--format text does not match -o 'g.svg' (its suffix means svg)"),
        (["--format", "png"], "--format png needs -o PATH"),
        (["--memory-plot", "m.txt"], "--memory-plot 'm.txt': use a .png, .svg or .pdf file name"),
        (["-o", "nope/g.svg"], "does not exist"),
        (["--json", "."], "'.' is a folder, not a file name"),
        (["--profile"], "--profile colours the html inspector"),
    ],
)
def test_bad_outputs_fail_in_one_line_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"")  # exists, so the check of the outputs is reached; never loaded
    assert main(["inspect", "m.onnx", *args]) == 1  # checked before the model is loaded
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # nothing written


def test_output_format_follows_the_suffix_or_the_flag():
    assert insp.output_format(None, None) == "text"
    assert insp.output_format(None, "a/b.HTML") == "html"
    assert insp.output_format(None, "g.gv") == "dot"
    assert insp.output_format("json", "report") == "json"  # no suffix: the flag decides
    assert insp.output_format("svg", "g.svg") == "svg"
