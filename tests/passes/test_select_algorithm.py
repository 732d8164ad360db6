"""select_algorithm: every conv node gets the algorithm its backend's kernel runs and why;
an ``algorithm`` already on a node is the override, checked; the kernels and inspect read it."""

from __future__ import annotations

import pytest
from pass_helpers import GB, feeds_for

from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.conv_spec import spec_from_node
from cnnrt.kernels.cpu import conv_algorithm as cpu_rules
from cnnrt.passes.pipeline import run_pipeline
from cnnrt.runtime.executor import Executor
from cnnrt.runtime.plan import plan_memory


def _zoo_like():
    """The conv kinds of the zoo's models: a 3-channel stem, Winograd-sized 3x3s, a strided
    1x1 shortcut, a depthwise 3x3, a pointwise 1x1 and an FC-as-conv head (batch 8: the 3x3s'
    32 tiles are enough for Winograd)."""
    b = GB()
    x = b.input("x", (8, 3, 16, 16))
    stem = b.conv(x, 64, k=3, stride=2, name="stem", activation="Relu")  # 64 x 8 x 8
    a = b.conv(stem, 64, name="conv_a", activation="Relu")
    y = b.conv(a, 64, name="conv_b", residual=stem, activation="Relu")
    short = b.conv(y, 96, k=1, stride=2, pad=0, name="shortcut")  # 96 x 4 x 4
    dw = b.conv(short, 96, group=96, name="dw", activation="Relu")
    pw = b.conv(dw, 40, k=1, pad=0, name="pw")
    head = b.conv(pw, 10, k=4, pad=0, name="head")  # covers its 4x4 input: one pixel
    return b.build([head])


CONVS = ("stem", "conv_a", "conv_b", "shortcut", "dw", "pw", "head")


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("vector_bytes", [None, 64])
def test_every_conv_gets_its_algorithm_and_reason(opt_level, vector_bytes):
    g, log = run_pipeline(_zoo_like(), opt_level, vector_bytes=vector_bytes, backend="cpu")
    convs = {n.name: n for n in g.nodes if n.op in ("Conv", "BlockedConv")}
    assert set(convs) == set(CONVS)
    for name, node in convs.items():
        spec = spec_from_node(node, g)
        assert node.attrs["algorithm"] in cpu_rules.ALGORITHMS[node.op], name
        assert cpu_rules.computes(spec, node.attrs["algorithm"], node.op, g.values[node.inputs[0]].layout != "nchw")
        assert node.attrs["algorithm_reason"], name
    assert {name for _, name in log.fired["select_algorithm"]} == set(CONVS)
    if opt_level == 0 or vector_bytes is None:  # NCHW throughout
        got = {name: convs[name].attrs["algorithm"] for name in CONVS}
        assert got == {
            "stem": "direct",
            "conv_a": "winograd",
            "conv_b": "winograd",
            "shortcut": "im2col",
            "dw": "depthwise",
            "pw": "pointwise",
            "head": "fc",
        }


def test_blocked_convs_get_the_blocked_kernels():
    g, _ = run_pipeline(_zoo_like(), 2, vector_bytes=64, backend="cpu")
    algo = {n.name: (n.op, n.attrs["algorithm"]) for n in g.nodes if "algorithm" in n.attrs}
    # NCHW input: no blocked Winograd; the stem kernel where it takes 64 outputs (AVX2)
    assert algo["stem"] == ("BlockedConv", "stem" if cpu_rules.STEM_MAX_OUTPUTS >= 64 else "direct")
    assert algo["conv_a"] == ("BlockedConv", "winograd")
    assert algo["dw"] == ("BlockedConv", "depthwise")
    assert algo["head"] == ("Conv", "fc")


def test_cuda_backend_uses_its_own_rule():
    g, _ = run_pipeline(_zoo_like(), 2, backend="cuda")
    algo = {n.name: n.attrs["algorithm"] for n in g.nodes if n.op == "Conv"}
    assert algo["dw"] == "direct" and algo["pw"] == "pointwise" and algo["conv_a"] == "implicit_gemm"


def test_an_override_is_kept_and_read_by_the_kernel(monkeypatch):
    g = _zoo_like()
    g.nodes = [n.with_attrs(algorithm="im2col_numpy") if n.name == "conv_a" else n for n in g.nodes]
    g, log = run_pipeline(g, 0, backend="cpu")
    conv_a = next(n for n in g.nodes if n.name == "conv_a")
    assert (conv_a.attrs["algorithm"], conv_a.attrs["algorithm_reason"]) == ("im2col_numpy", "requested")
    assert ("Conv -> im2col_numpy: requested", "conv_a") in log.fired["select_algorithm"]
    # the kernel builds what the attribute names, without choosing again
    monkeypatch.setattr(cpu_rules, "choose", lambda *a, **k: pytest.fail("a kernel chose again"))
    Executor(g, plan_memory(g)).run([feeds_for(g)[i] for i in g.inputs])


@pytest.mark.parametrize("backend, algorithm", [("cpu", "pointwise"), ("cpu", "no_such"), ("cuda", "pointwise")])
def test_an_override_that_cannot_compute_the_layer_names_the_node(backend, algorithm):
    g = _zoo_like()
    g.nodes = [n.with_attrs(algorithm=algorithm) if n.name == "conv_b" else n for n in g.nodes]
    with pytest.raises(UnsupportedOpError, match=rf"node 'conv_b' \(Conv\).*{algorithm}"):
        run_pipeline(g, 2, backend=backend)
