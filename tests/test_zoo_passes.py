"""The passes on the whole zoo: each pass disabled in turn and all on, in poison mode, must
match onnxruntime; with all passes on, the arena stays within 5% of the peak-live lower bound
and BN and standalone epilogue ops are gone from the nets where they must fuse.

A pass that rewrote nothing with all passes on (its pass-log entry is empty) leaves the graph
it is given as it is, so disabling it builds the all-on graph again: only the passes that fired
are disabled in turn (4-6 of the 15 on a zoo net)."""

from __future__ import annotations

import onnx
import pytest
from helpers import ZOO_ONCE, assert_close_to, zoo_params

import cnnrt
from cnnrt.passes.pipeline import pass_names
from cnnrt.tools.timing import ort_session

pytest.importorskip("torch", reason="the zoo needs torch (pip install -e '.[zoo]')")
from cnnrt import models  # noqa: E402

FULLY_FUSED = {"resnet50", "vgg11_bn", "vgg16_bn", "googlenet", "mobilenet_v2"}


@pytest.mark.parametrize("name", zoo_params([n for n in models.names() if n not in ZOO_ONCE]))
def test_each_pass_disabled_in_turn_matches_onnxruntime_in_poison_mode(name):
    path = models.export_cached(name)
    x = models.sample_input(name, batch=1, seed=3)
    [ref] = ort_session(path).run(None, {"input": x})
    model = onnx.load(str(path))  # parsed once for all the sessions
    sess = cnnrt.InferenceSession(model, poison=True)
    assert_close_to(sess.run(None, {"input": x})[0], ref)
    # the memory goal is for the default pipeline (greedy placement without zero-copy
    # concat reaches 1.056x on densenet121)
    plan = sess.plan
    assert plan.arena_bytes <= 1.05 * plan.peak_live_bytes, (plan.arena_bytes, plan.peak_live_bytes)
    if name in FULLY_FUSED:
        ops = sess.graph.op_counts()
        left = {op: ops[op] for op in ("BatchNormalization", "Relu", "Clip", "Add", "Sum") if op in ops}
        assert not left, f"{name} still has {left}"
    fired = [p for p in pass_names() if sess.pass_log.fired.get(p)]
    assert fired, "no pass rewrote anything"
    for disabled in fired:
        [got] = cnnrt.InferenceSession(model, disabled_passes=[disabled], poison=True).run(None, {"input": x})
        assert_close_to(got, ref)
