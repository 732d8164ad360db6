"""pool_before_pointwise: DenseNet's transition (1x1 conv -> 2x2 average pool) pools first."""

from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import GB, ops, run_pass

from cnnrt.passes.pool_before_pointwise import pool_before_pointwise


def _transition(conv_kw=None, pool_kw=None, extra_reader=False, c=8, hw=6):
    b = GB()
    x = b.input("x", (2, c, hw, hw))
    a = b.act("Relu", b.node("ChannelAffine", [x, b.const(_rand(c, 1)), b.const(_rand(c, 2))], (2, c, hw, hw)))
    y = b.conv(a, 4, name="conv", **{"k": 1, **(conv_kw or {})})
    kw = dict(k=2, stride=2, name="pool", **(pool_kw or {}))
    p = b.pool("AveragePool", y, **kw)
    outs = [b.conv(p, 4, k=3, pads=(1, 1, 1, 1), name="next")]
    if extra_reader:
        outs.append(b.act("Relu", y))
    return b.build(outs)


def _rand(n, seed):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_transition_pools_before_its_conv():
    """The conv runs on the pooled pixels (a quarter of the MACs); outputs as before (run_pass
    compares them by the reference interpreter)."""
    g = _transition()
    res = run_pass(pool_before_pointwise, g)
    assert res.fired and ops(res.graph).index("AveragePool") < ops(res.graph).index("Conv")
    conv = res.graph.node("conv")
    assert res.graph.values[conv.inputs[0]].shape == (2, 8, 3, 3)
    assert conv.outputs == g.node("pool").outputs


@pytest.mark.parametrize(
    "conv_kw,pool_kw,extra_reader,reason",
    [
        ({"k": 3, "pads": (1, 1, 1, 1)}, None, False, "not 1x1"),
        ({"activation": "Relu"}, None, False, "activation"),
        (None, {"pads": (1, 1, 1, 1)}, False, "pool is padded"),
        (None, None, True, "consumers"),
    ],
)
def test_guards(conv_kw, pool_kw, extra_reader, reason):
    res = run_pass(pool_before_pointwise, _transition(conv_kw, pool_kw, extra_reader))
    assert not res.fired and reason in res.declined[0][2]


def test_guard_ceil_mode_windows_counting_positions_past_the_input():
    """7x7 pooled 2x2 stride 2 in ceil mode (4x4 out): with count_include_pad the last
    windows divide by 4 over fewer pixels, so the bias would not pass through unchanged."""
    b = GB()
    x = b.input("x", (1, 8, 7, 7))
    y = b.conv(x, 4, k=1, name="conv")
    attrs = dict(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1), count_include_pad=True)
    p = b.node("AveragePool", [y], (1, 4, 4, 4), name="pool", **attrs)
    res = run_pass(pool_before_pointwise, b.build([p]))
    assert not res.fired and "ceil-mode" in res.declined[0][2]
