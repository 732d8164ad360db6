"""precision: under bf16 the blocked register-tile convs (Winograd ones become direct) are
marked and run bf16, every other node stays float32 with its reason logged; float32 marks
nothing. Numerics: within the bf16 rounding of the float32 result, and not equal to it."""

from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import feeds_for
from test_select_algorithm import _zoo_like

from cnnrt.kernels.cpu.conv_blocked_bf16 import bf16_unsupported_reason
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.passes import precision as pp
from cnnrt.passes.pipeline import run_pipeline
from cnnrt.passes.precision import WINOGRAD_DECLINED
from cnnrt.runtime.executor import Executor
from cnnrt.runtime.plan import plan_memory

BF16_CONVS = {"conv_a", "conv_b", "shortcut", "pw"}  # blocked input, constant weights, on the tile
# the tests that run the kernels block for this host's vectors (the others: AVX-512's)


def _run(g):
    feeds = feeds_for(g)
    return Executor(g, plan_memory(g)).run([feeds[i] for i in g.inputs])[0]


def test_bf16_marks_the_tile_convs_and_logs_the_rest(monkeypatch):
    monkeypatch.setattr(pp, "amx_unsupported_reason", lambda: "the CPU lacks AMX-BF16 (test)")
    g, log = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    marked = {n.name for n in g.nodes if n.attrs.get("precision") == "bf16"}
    assert marked == BF16_CONVS
    conv_a = next(n for n in g.nodes if n.name == "conv_a")
    assert (conv_a.attrs["algorithm"], conv_a.attrs["algorithm_reason"]) == ("direct", WINOGRAD_DECLINED)
    declined = {node: why for _, node, why in log.declined["precision"]}
    assert "stem" in declined and "dw" in declined and "head" in declined  # a 3x3 stem: float32
    assert "precision" in log.order
    assert not any("bf16_tile" in n.attrs for n in g.nodes)


def test_bf16_on_amx_runs_the_stem_and_the_tile_convs_there(monkeypatch):
    """With AMX tiles every bf16 conv is marked for them, the 3x3 stem too (its kw taps
    fold into channels, conv_amx.FoldedGeometry); depthwise and the head stay float32."""
    monkeypatch.setattr(pp, "amx_unsupported_reason", lambda: "")
    g, log = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    amx = {n.name for n in g.nodes if n.attrs.get("bf16_tile") == "amx"}
    assert amx == BF16_CONVS | {"stem"}
    stem = next(n for n in g.nodes if n.name == "stem")
    assert (stem.attrs["precision"], stem.attrs["algorithm"]) == ("bf16", "direct")
    declined = {node for _, node, _ in log.declined["precision"]}
    assert "dw" in declined and "head" in declined and "stem" not in declined


def test_f32_marks_nothing():
    g, log = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu")
    assert not any("precision" in n.attrs for n in g.nodes) and "precision" not in log.order


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_bf16_runs_within_bf16_rounding_of_f32():
    f32, _ = run_pipeline(_zoo_like(), 2, vector_bytes=VECTOR_BYTES, backend="cpu")
    bf16, _ = run_pipeline(_zoo_like(), 2, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
    want, got = _run(f32), _run(bf16)
    rel = np.abs(got - want).max() / np.abs(want).max()
    # 4 bf16 convs in a chain, each rounding inputs and weights to 8 bits (2^-9 relative)
    assert 1e-5 < rel < 4 * 2 * 2.0**-8, rel


def _grouped(monkeypatch):
    """A 1x1 conv, then a grouped conv of groups of 8, both blocked, as f32 and bf16 graphs."""
    from pass_helpers import GB

    from cnnrt.passes import block_layout as bl

    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    b = GB()
    x = b.input("x", (1, 32, 6, 6))
    e = b.conv(x, 32, k=1, name="expand", activation="Relu")
    g = b.build([b.conv(e, 32, group=4, name="grouped", activation="Relu")])
    f32, _ = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu")
    low, log = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
    return f32, low, log


def test_grouped_convs_stay_float32_under_bf16(monkeypatch):
    """Grouped blocked convs (groups of 8) have no bf16 kernel: logged, left float32."""
    _, low, log = _grouped(monkeypatch)
    node = next(n for n in low.nodes if n.name == "grouped")
    assert node.attrs["algorithm"] == "grouped" and "precision" not in node.attrs
    assert "grouped" in {node: why for _, node, why in log.declined["precision"]}["grouped"]
    assert next(n for n in low.nodes if n.name == "expand").attrs["precision"] == "bf16"


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_grouped_conv_after_a_bf16_conv_runs_within_its_rounding(monkeypatch):
    """The grouped conv runs float32 on the bf16 conv's float32 output."""
    f32, low, _ = _grouped(monkeypatch)
    np.testing.assert_allclose(_run(low), _run(f32), rtol=0.05, atol=0.05)


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_a_7x7_stem_runs_bf16(monkeypatch):
    """A 7x7 stem on its NCHW input is marked (its bf16 copy pairs channels) and runs within
    the bf16 rounding of float32; a 3x3 one stays float32 (test_bf16_marks_...)."""
    from pass_helpers import GB

    from cnnrt.passes import block_layout as bl

    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    b = GB()
    x = b.input("x", (1, 3, 15, 14))
    g = b.build([b.conv(x, 32, k=7, stride=2, pad=3, name="stem7", activation="Relu")])
    f32, _ = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu")
    low, _ = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
    node = next(n for n in low.nodes if n.name == "stem7")
    assert node.op == "BlockedConv" and node.attrs["precision"] == "bf16"
    want, got = _run(f32), _run(low)
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert 1e-5 < rel < 2 * 2.0**-8, rel


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_bf16_convs_on_one_value_share_its_copy(monkeypatch):
    """Of four convs reading one value, the second 1x1 reads the first's bf16 copy; the 3x3
    (another zero border) copies again, and the last 1x1 cannot share across it. The result
    is the same, bit for bit, as with every conv copying its own input."""
    from pass_helpers import GB

    from cnnrt.passes import block_layout as bl

    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    b = GB()
    x = b.input("x", (2, 32, 7, 6))
    a = b.conv(x, 32, k=1, name="a", activation="Relu")
    outs = [b.conv(a, 32, k=1, name="one"), b.conv(a, 48, k=1, name="two")]
    outs += [b.conv(a, 32, k=3, name="three"), b.conv(a, 32, k=1, name="four")]
    g = b.build(outs)
    low, log = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
    shared = {n.name for n in low.nodes if n.attrs.get("bf16_copied")}
    assert shared == {"two"}, shared
    assert ("bf16 input copy shared", "two") in log.fired["precision"]
    feeds = feeds_for(low)
    got = Executor(low, plan_memory(low)).run([feeds[i] for i in low.inputs])
    monkeypatch.setattr(pp, "_share_copies", lambda nodes, graph, fired: nodes)
    own, _ = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
    assert not any(n.attrs.get("bf16_copied") for n in own.nodes)
    want = Executor(own, plan_memory(own)).run([feeds[i] for i in own.inputs])
    for gv, wv in zip(got, want):
        assert np.array_equal(gv, wv)
