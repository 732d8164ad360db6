"""ConvNeXt and ECA blocks as torch exports them, scaled down (the zoo's convnext_tiny and
eca_resnet18 run once at full size in tests/test_zoo_vs_onnxruntime.py) so that every pass can
be disabled in turn (poison mode) and still match onnxruntime. ConvNeXt loads with no
unsupported node at the opsets that write LayerNorm as LayerNormalization (17) and as its
decomposition (13); the passes fuse the decomposition and the erf GELU back, and the
channels-last Linears become Gemms with the GELU as their epilogue."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close_to

import cnnrt
from cnnrt.passes.pipeline import pass_names
from cnnrt.tools.timing import ort_session

torch = pytest.importorskip("torch", reason="the zoo needs torch (pip install -e '.[zoo]')")
from cnnrt.models.convnext import _convnext  # noqa: E402
from cnnrt.models.eca_resnet import ECABasicBlock  # noqa: E402
from cnnrt.models.factory import init_weights  # noqa: E402
from cnnrt.models.onnx_export import export_module  # noqa: E402

SHAPE = (3, 32, 32)


def _matches_with_each_pass_disabled(data: bytes, x: np.ndarray, ref: np.ndarray) -> None:
    for disabled in pass_names():
        [got] = cnnrt.InferenceSession(data, disabled_passes=[disabled], poison=True).run(None, {"input": x})
        assert_close_to(got, ref)


@pytest.fixture(scope="module")
def small_convnext():
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        model = _convnext((1, 1, 2, 1), (16, 24, 32, 48), num_classes=10)
        init_weights(model)
    return model.eval()


@pytest.mark.parametrize("opset", [17, 13])
def test_small_convnext_fuses_and_matches_onnxruntime_with_each_pass_disabled(small_convnext, opset):
    data = export_module(small_convnext, torch.zeros(1, *SHAPE), opset=opset)
    sess = cnnrt.InferenceSession(data)
    ops = sess.graph.op_counts()
    assert ops["LayerNormalization"] == 1 + 3 + 5 + 1  # stem, downsamples, blocks, head
    # each block's Linear, GELU, Linear: two Gemms (flatten_matmul), the GELU their epilogue
    gelu_gemms = [n for n in sess.graph.nodes if n.op == "Gemm" and n.attrs["activation"] == "Gelu"]
    assert len(gelu_gemms) == 5 and ops["Gemm"] == 2 * 5 + 1
    assert not {"Erf", "Pow", "Sqrt", "ReduceMean", "Div", "MatMul", "Gelu"} & set(ops), ops
    ort = ort_session(data)
    xs = {b: np.random.default_rng(b).standard_normal((b, *SHAPE), dtype=np.float32) for b in (1, 4)}
    refs = {b: ort.run(None, {"input": x})[0] for b, x in xs.items()}
    for b in (1, 4):
        assert_close_to(sess.run(None, {"input": xs[b]})[0], refs[b])
    _matches_with_each_pass_disabled(data, xs[1], refs[1])


def test_small_eca_blocks_match_onnxruntime_with_each_pass_disabled():
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(1)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), ECABasicBlock(16, 16), ECABasicBlock(16, 32, 2)
        )
        init_weights(model)
    data = export_module(model.eval(), torch.zeros(1, *SHAPE))
    sess = cnnrt.InferenceSession(data)
    assert sess.graph.op_counts()["Expand"] == 2  # the gate, broadcast to the block's output
    x = np.random.default_rng(2).standard_normal((2, *SHAPE), dtype=np.float32)
    [ref] = ort_session(data).run(None, {"input": x})
    assert_close_to(sess.run(None, {"input": x})[0], ref)
    _matches_with_each_pass_disabled(data, x, ref)
