"""Modules that read the op table act on what it declares, for ops they do not name themselves."""

from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import GB, assert_same_outputs, ops

from cnnrt.core.ops import OPS
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.passes.block_layout import block_layout
from cnnrt.tools.costs import accumulation_length, node_macs


def test_block_layout_logs_an_op_that_is_not_blocked_capable():
    b = GB()
    x = b.input("x", (1, 16, 6, 6))
    y = b.conv(x, 16, name="c1")
    y = b.act("Softmax", y, name="softmax", axis=1)
    y = b.conv(y, 16, name="c2")
    y = b.conv(y, 16, name="c3")
    before = b.build([y])
    assert not OPS["Softmax"].blocked and not OPS["Softmax"].blocked_form
    res = block_layout(before, vector_bytes=64)
    seq = ops(res.graph)
    assert seq[seq.index("Softmax") - 1 : seq.index("Softmax") + 1] == ["ReorderFromBlocked", "Softmax"]
    assert any(
        name == "softmax" and "Softmax is not blocked-capable in the op table" in why for _, name, why in res.declined
    )
    assert_same_outputs(before, res.graph)


@pytest.mark.parametrize("size", [5, 7])
def test_block_layout_keeps_lrn_blocked_up_to_size_5(size):
    """GoogLeNet's and AlexNet's LRN (size 5) stays blocked between its convs; a wider window
    reads NCHW, logged with the reason."""
    b = GB()
    x = b.input("x", (1, 16, 6, 6))
    y = b.conv(x, 16, name="c1")
    y = b.act("LRN", y, name="lrn", size=size, alpha=1e-4, beta=0.75, bias=1.0)
    y = b.conv(y, 16, name="c2")
    before = b.build([y])
    res = block_layout(before, vector_bytes=64)
    seq = ops(res.graph)
    if size == 5:
        assert "BlockedLRN" in seq and "LRN" not in seq and "ReorderFromBlocked" not in seq[: seq.index("BlockedLRN")]
    else:
        assert seq[seq.index("LRN") - 1 : seq.index("LRN") + 1] == ["ReorderFromBlocked", "LRN"]
        assert any(name == "lrn" and "at most 5 channels" in why for _, name, why in res.declined)
    if VECTOR_BYTES == 64:
        assert_same_outputs(before, res.graph)


def _two_convs(m1: int, m2: int):
    """(plain graph, its blocked form by 16 lanes, the blocked second conv) of 16 -> m1 -> m2
    channel 3x3 convs on 6x6."""
    b = GB()
    x = b.input("x", (1, 16, 6, 6))
    y = b.conv(x, m1, name="c1")
    y = b.conv(y, m2, name="c2")
    plain = b.build([y])
    blocked = block_layout(plain, vector_bytes=64).graph
    return plain, blocked, blocked.node("c2")


def test_blocked_forms_cost_what_their_plain_ops_do():
    plain, blocked, conv = _two_convs(32, 32)
    assert conv.op == "BlockedConv"
    assert node_macs(conv, blocked) == node_macs(plain.node("c2"), plain) == 36 * 32 * 32 * 9
    assert accumulation_length(conv, blocked) == 32 * 9 + 1
    assert np.prod(blocked.values[conv.outputs[0]].shape) == 32 * 36


def test_padding_lanes_cost_nothing():
    """24 -> 40 channels blocked by 16: the padded weights (48, 32, 3, 3) and output
    (N, 3, H, W, 16) hold zero lanes, not work; the MACs and sums are the NCHW conv's."""
    plain, blocked, conv = _two_convs(24, 40)
    assert conv.op == "BlockedConv" and blocked.values[conv.inputs[1]].shape == (48, 32, 3, 3)
    assert node_macs(conv, blocked) == node_macs(plain.node("c2"), plain) == 36 * 40 * 24 * 9
    assert accumulation_length(conv, blocked) == accumulation_length(plain.node("c2"), plain) == 24 * 9 + 1
