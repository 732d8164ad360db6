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


def _any_size_on_amx(monkeypatch):
    """Lift AMX's size rule (precision.AMX_MIN_REDUCTION / AMX_MIN_OUTPUTS) for tests whose toy
    convs are smaller than it and that test the marks or copies, not the rule."""
    monkeypatch.setattr(pp, "AMX_MIN_REDUCTION", 0)
    monkeypatch.setattr(pp, "AMX_MIN_OUTPUTS", 0)


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
    _any_size_on_amx(monkeypatch)
    g, log = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    amx = {n.name for n in g.nodes if n.attrs.get("bf16_tile") == "amx"}
    assert amx == BF16_CONVS | {"stem"}
    stem = next(n for n in g.nodes if n.name == "stem")
    assert (stem.attrs["precision"], stem.attrs["algorithm"]) == ("bf16", "direct")
    declined = {node for _, node, _ in log.declined["precision"]}
    assert "dw" in declined and "head" in declined and "stem" not in declined


def test_small_convs_stay_float32_on_amx(monkeypatch):
    """On AMX a conv runs bf16 only from a reduction (C x taps) of 64 and M x taps of 64: the
    3-channel 3x3 stem (27) and the 96 -> 40 pointwise conv (48 x 1: its weights padded to
    whole blocks) stay float32 and say why;
    the 64-channel 3x3s and the 64 -> 96 shortcut run on the tiles."""
    monkeypatch.setattr(pp, "amx_unsupported_reason", lambda: "")
    g, log = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    assert {n.name for n in g.nodes if n.attrs.get("bf16_tile") == "amx"} == {"conv_a", "conv_b", "shortcut"}
    declined = {node: why for _, node, why in log.declined["precision"]}
    assert "a reduction of 27 and 64 outputs x 9 taps" in declined["stem"]
    assert "a reduction of 96 and 48 outputs x 1 taps" in declined["pw"]


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
    _any_size_on_amx(monkeypatch)
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
    is the same, bit for bit, as with every conv copying its own input. (The value stays
    float32 here: as a bf16 activation the 1x1s would read it as it lies, without a copy.)"""
    from pass_helpers import GB

    from cnnrt.passes import block_layout as bl

    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    monkeypatch.setattr(pp, "_bf16_activations", lambda nodes, graph, fired: dict(graph.values))
    _any_size_on_amx(monkeypatch)
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


def _activation_chain():
    """bf16 convs whose outputs are read in each of the ways that keep a value float32 or not."""
    from pass_helpers import GB

    b = GB()
    x = b.input("x", (2, 32, 8, 8))
    a = b.conv(x, 32, k=1, pad=0, name="a", activation="Relu")  # read by b only: bf16
    y = b.conv(a, 32, k=3, name="b", activation="Clip", min=0.0, max=6.0)  # read by c and as d's residual: bf16
    c = b.conv(y, 32, k=1, pad=0, name="c")  # read by d only: bf16
    d = b.conv(c, 32, k=1, pad=0, name="d", residual=y, activation="Sigmoid")  # read by e only: bf16
    e = b.conv(d, 40, k=1, pad=0, name="e", activation="Relu")  # 40 channels: padding lanes
    f = b.conv(e, 32, k=3, name="f", activation="Relu")  # read by the MaxPool and g
    pool = b.pool("MaxPool", f, k=2, stride=2)
    g = b.conv(f, 32, k=1, pad=0, name="g", activation="Relu")  # a graph output
    return b.build([pool, g])


def _bf16_values(g) -> set[str]:
    producers = {o: n.name for n in g.nodes for o in n.outputs}
    return {producers[v] for v, val in g.values.items() if val.dtype == "bfloat16"}


def test_bf16_activations_only_between_bf16_convs(monkeypatch):
    """A bf16 conv's output is stored bf16 when every reader is a bf16 conv on the vector
    tile reading it as its input or its residual (or a row-blocked depthwise conv reading it
    as its input), its epilogue ends at a clamp and its channels fill whole blocks; never on
    AMX (that tile reads and writes float32). A float32 conv's only where its readers would
    round it anyway (test_stem_writes_bf16_for_the_max_pool_after_it)."""
    from cnnrt.passes import block_layout as bl

    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    monkeypatch.setattr(pp, "amx_unsupported_reason", lambda: "the CPU lacks AMX-BF16 (test)")
    low, log = run_pipeline(_activation_chain(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    assert _bf16_values(low) == {"a", "b", "c", "d"}
    assert {v for what, v in log.fired["precision"] if what == "bf16 activation"} == {
        n.outputs[0] for n in low.nodes if n.name in ("a", "b", "c", "d")
    }
    # the 3x3 reading a's bf16 copies it into its zero border; d reads c's as it lies
    assert not any(n.attrs.get("bf16_copied") for n in low.nodes)
    zoo, _ = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    # readers: conv_b, the shortcut, the depthwise conv (float32 sums, bf16 in and out), pw;
    # the float32 3x3 stem stays float32: conv_b reads it as its residual, which would add a rounding
    assert _bf16_values(zoo) == {"conv_a", "conv_b", "shortcut", "dw"}
    monkeypatch.setattr(pp, "amx_unsupported_reason", lambda: "")
    amx, _ = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    assert not _bf16_values(amx)


def _with_and_without_bf16_activations(g, monkeypatch):
    """(the bf16 graph, its outputs, the outputs of the same graph with every activation
    float32) for the host's vectors, AMX left out (its convs read and write float32)."""
    from cnnrt.passes import block_layout as bl

    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    monkeypatch.setattr(pp, "amx_unsupported_reason", lambda: "the CPU lacks AMX-BF16 (test)")
    low, _ = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
    feeds = feeds_for(low)
    got = Executor(low, plan_memory(low)).run([feeds[i] for i in low.inputs])
    monkeypatch.setattr(pp, "_bf16_activations", lambda nodes, graph, fired: dict(graph.values))
    f32, _ = run_pipeline(g, 2, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
    assert not _bf16_values(f32)
    want = Executor(f32, plan_memory(f32)).run([feeds[i] for i in f32.inputs])
    return low, got, want


def _inputs_only(node, port, graph, values):
    """pp._reads_bf16 without the residual port: every bf16 activation read as an input."""
    return port != 3 and _READS_BF16(node, port, graph, values)


_READS_BF16 = pp._reads_bf16


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_bf16_activations_round_once_where_each_reader_would(monkeypatch):
    """With bf16 activations read as inputs the result is, bit for bit, the one of float32
    activations that every reader rounds to bf16: the producer rounds the same float32 sums
    (these reductions are one chunk either way) to nearest even, as the reader's copy would."""
    monkeypatch.setattr(pp, "_reads_bf16", _inputs_only)
    low, got, want = _with_and_without_bf16_activations(_activation_chain(), monkeypatch)
    assert _bf16_values(low) == {"a", "c", "d"}  # d's Sigmoid applied before its rounding store
    for gv, wv in zip(got, want):
        assert np.array_equal(gv, wv)


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_bf16_residual_adds_one_rounding(monkeypatch):
    """A bf16 activation read as a residual (ResNet's and MobileNetV2's blocks: the residual
    stream between bf16 convs) is the one value rounded where float32 activations would not
    be: d's result moves by that rounding (at most 2**-9 of the residual), no further."""
    from pass_helpers import GB

    b = GB()
    x = b.input("x", (2, 32, 8, 8))
    a = b.conv(x, 32, k=1, pad=0, name="a", activation="Relu")
    y = b.conv(a, 32, k=3, name="b")  # read by c as its input and by d as its residual
    c = b.conv(y, 32, k=1, pad=0, name="c", activation="Relu")
    d = b.conv(c, 32, k=1, pad=0, name="d", residual=y)  # a graph output: float32
    low, got, want = _with_and_without_bf16_activations(b.build([d]), monkeypatch)
    assert _bf16_values(low) == {"a", "b", "c"}
    node = next(n for n in low.nodes if n.name == "d")
    assert low.values[node.inputs[3]].dtype == "bfloat16"
    # c reads y rounded either way; d's sums are the same, its residual moves by y's rounding
    moved, scale = np.abs(got[0] - want[0]).max(), np.abs(want[0]).max()
    assert 0 < moved <= 2.0**-7 * scale, (moved, scale)


def test_bf16_activations_survive_the_optimised_file(monkeypatch):
    """An optimised graph written as ONNX (optimized_model_filepath) keeps its bf16
    activations: their value infos say BFLOAT16, and read back they are bf16 again."""
    import onnx
    from onnx import numpy_helper

    from cnnrt.frontends.ir_onnx import graph_from_onnx, graph_to_onnx
    from cnnrt.passes import block_layout as bl

    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    monkeypatch.setattr(pp, "amx_unsupported_reason", lambda: "the CPU lacks AMX-BF16 (test)")
    low, _ = run_pipeline(_activation_chain(), 2, vector_bytes=64, backend="cpu", precision="bf16")
    proto = graph_to_onnx(low, 17)
    stored = {vi.name for vi in proto.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16}
    assert stored == {v for v, val in low.values.items() if val.dtype == "bfloat16"} != set()
    back = graph_from_onnx(proto, {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer})
    assert _bf16_values(back) == {"a", "b", "c", "d"}


def _inverted_residual():
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project (+ the block's input)."""
    from pass_helpers import GB

    b = GB()
    x = b.input("x", (1, 32, 16, 16))
    s = b.conv(x, 32, k=1, pad=0, name="s", activation="Relu")
    e = b.conv(s, 96, k=1, pad=0, name="expand", activation="Clip", min=0.0, max=6.0)
    d = b.conv(e, 96, group=96, name="dw", activation="Clip", min=0.0, max=6.0)
    p = b.conv(d, 32, k=1, pad=0, name="project", residual=s)
    return b.build([p])


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_depthwise_conv_reads_and_writes_bf16_activations(monkeypatch):
    """The row-blocked depthwise conv (float32 sums) reads the expand conv's bf16 output and
    writes bf16 for the project conv: the expanded tensors cross memory at half the bytes,
    and the result is bit for bit the float32-activation one (s, read by the project conv as
    its residual too, kept float32 here: test_bf16_residual_adds_one_rounding)."""
    monkeypatch.setattr(pp, "_reads_bf16", _inputs_only)
    low, got, want = _with_and_without_bf16_activations(_inverted_residual(), monkeypatch)
    assert _bf16_values(low) == {"expand", "dw"}
    dw = next(n for n in low.nodes if n.name == "dw")
    assert dw.attrs["algorithm"] == "depthwise" and "precision" not in dw.attrs  # float32 sums
    assert np.array_equal(got[0], want[0])


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
@pytest.mark.parametrize(("channels", "algorithm"), [(16, "stem"), (64, "direct")])
def test_stem_writes_bf16_for_the_max_pool_after_it(monkeypatch, channels, algorithm):
    """SqueezeNet's start: a float32 3x3 stem (16 channels: conv_stem.py; 64: the register
    tile) stores its output rounded when only a MaxPool with a bf16 output reads it, and the
    MaxPool reads it as it lies: bit for bit the float32-activation result (the max of
    rounded values is the rounded max)."""
    from pass_helpers import GB

    b = GB()
    x = b.input("x", (2, 3, 18, 17))
    stem = b.conv(x, channels, k=3, stride=2, name="stem", activation="Relu")
    pool = b.pool("MaxPool", stem, k=3, stride=2, name="pool")
    g = b.build([b.conv(pool, 32, k=1, pad=0, name="squeeze", activation="Relu")])
    monkeypatch.setattr(pp, "_reads_bf16", _inputs_only)
    low, got, want = _with_and_without_bf16_activations(g, monkeypatch)
    assert next(n for n in low.nodes if n.name == "stem").attrs["algorithm"] == algorithm
    assert {"stem", "pool"} <= _bf16_values(low)
    assert np.array_equal(got[0], want[0])


def _dense_layer():
    """DenseNet's layer: Concat -> BN -> ReLU -> 1x1 conv -> 3x3 conv, into the next Concat."""
    from pass_helpers import GB

    b = GB()
    x = b.input("x", (1, 32, 12, 12))
    a = b.conv(x, 32, k=3, name="a", activation="Relu")
    cat = b.concat([x, a], name="cat")
    r = b.act("Relu", b.bn(cat, name="norm"), name="relu")
    y = b.conv(r, 64, k=1, pad=0, name="conv1", activation="Relu")
    z = b.conv(y, 32, k=3, name="conv2")
    return b.build([b.concat([cat, z], name="cat2")])


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_channel_affine_writes_bf16_for_the_conv_after_it(monkeypatch):
    """The BN + ReLU before a bottleneck (a blocked ChannelAffine) stores bf16 when only bf16
    convs read it: its store rounds what the 1x1 conv's copy would have rounded, bit for bit."""
    low, got, want = _with_and_without_bf16_activations(_dense_layer(), monkeypatch)
    affine = next(n for n in low.nodes if n.op == "BlockedChannelAffine")
    assert low.values[affine.outputs[0]].dtype == "bfloat16"
    assert _bf16_values(low) - {affine.name} == {"conv1"}  # a and conv2 write into Concats
    assert np.array_equal(got[0], want[0])


def _inception():
    """GoogLeNet's module, twice: four branches (1x1, 1x1 -> 3x3, MaxPool -> 1x1) into a
    Concat that the next module's convs and MaxPool read; the last Concat is the output."""
    from pass_helpers import GB

    b = GB()
    x = b.input("x", (2, 32, 8, 8))
    y = b.conv(x, 32, k=1, pad=0, name="stem", activation="Relu")
    for m in ("m1", "m2"):
        one = b.conv(y, 16, k=1, pad=0, name=f"{m}.one", activation="Relu")
        red = b.conv(y, 16, k=1, pad=0, name=f"{m}.red", activation="Relu")
        three = b.conv(red, 32, k=3, name=f"{m}.three", activation="Relu")
        pool = b.pool("MaxPool", y, k=3, stride=1, pads=(1, 1, 1, 1), name=f"{m}.pool")
        proj = b.conv(pool, 16, k=1, pad=0, name=f"{m}.proj", activation="Relu")
        y = b.concat([one, three, proj], name=f"{m}.cat")
    return b.build([y])


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_concat_and_max_pool_of_bf16_activations(monkeypatch):
    """An in-place Concat whose pieces bf16 convs write and whose readers read bf16 holds
    bf16 (the branches write their slices rounded, the next module's 1x1 convs read it as it
    lies); a MaxPool reads bf16 when its output is bf16 (a max of rounded values is the
    rounded max). The stem's output, read by convs and a MaxPool, is bf16; the last Concat, a
    graph output, and its pieces stay float32. The result is, bit for bit, the
    float32-activation one."""
    low, got, want = _with_and_without_bf16_activations(_inception(), monkeypatch)
    cats = [n for n in low.nodes if n.op == "Concat"]
    assert [n.attrs.get("in_place") for n in cats] == [True, True]
    assert low.values[cats[0].outputs[0]].dtype == "bfloat16"  # read by m2's convs and MaxPool
    assert low.values[cats[1].outputs[0]].dtype == "float32"  # the graph's output
    bf16 = _bf16_values(low)
    assert {"stem", "m1.pool", "m2.pool", "m1.one", "m1.three", "m1.proj"} <= bf16
    assert not {"m2.one", "m2.three", "m2.proj"} & bf16  # pieces of the float32 Concat
    assert np.array_equal(got[0], want[0])


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_max_pool_keeps_float32_input_for_a_float32_output(monkeypatch):
    """A MaxPool whose output stays float32 (a graph output here; DenseNet's stem pool, whose
    output is a Concat's piece) reads float32: its input rounded would round its output too."""
    from pass_helpers import GB

    b = GB()
    x = b.input("x", (1, 32, 8, 8))
    y = b.conv(x, 32, k=1, pad=0, name="a", activation="Relu")
    pool = b.pool("MaxPool", y, k=3, stride=2, pads=(1, 1, 1, 1), name="pool")
    low, got, want = _with_and_without_bf16_activations(b.build([pool]), monkeypatch)
    assert not _bf16_values(low)
    assert np.array_equal(got[0], want[0])
