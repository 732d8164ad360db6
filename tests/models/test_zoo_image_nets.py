"""The zoo's image-to-image nets export to the ONNX ops they are in the zoo for, and cnnrt
imports those as the IR ops that stand for them (numeric checks: test_zoo.py, which compares
onnxruntime with PyTorch, and test_zoo_vs_onnxruntime.py)."""

from __future__ import annotations

from collections import Counter

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

import cnnrt  # noqa: E402
import cnnrt.models as zoo  # noqa: E402


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_style_transfer_exports_instance_norm_reflection_pads_and_nearest_resize():
    path = zoo.export_cached("style_transfer")
    nodes = onnx.load(path).graph.node
    ops = Counter(n.op_type for n in nodes)
    assert ops["InstanceNormalization"] == 15 and ops["Conv"] == 16 and ops["Resize"] == 2
    assert {_attrs(n)["mode"] for n in nodes if n.op_type == "Pad"} == {b"reflect"}
    assert {_attrs(n)["mode"] for n in nodes if n.op_type == "Resize"} == {b"nearest"}
    graph = cnnrt.InferenceSession(path, opt_level=0).graph
    norms = [n for n in graph.nodes if n.op == "GroupNormalization"]
    assert len(norms) == 15
    assert all(n.attrs["num_groups"] == graph.values[n.inputs[0]].shape[1] for n in norms)  # one group per channel
    # optimised, each InstanceNorm + Relu is one step (fuse_epilogue)
    fused = cnnrt.InferenceSession(path).graph.op_counts()
    assert "Relu" not in fused and fused["GroupNormalization"] == 15


def test_espcn_pixel_shuffle_is_depth_to_space_crd():
    path = zoo.export_cached("espcn")
    [d2s] = [n for n in onnx.load(path).graph.node if n.op_type == "DepthToSpace"]
    assert _attrs(d2s) == {"blocksize": 3, "mode": b"CRD"}
    graph = cnnrt.InferenceSession(path).graph
    [node] = [n for n in graph.nodes if n.op == "DepthToSpace"]
    assert node.attrs == {"blocksize": 3, "mode": "CRD"}
    assert graph.values[node.outputs[0]].shape == (1, 1, 192, 192)
