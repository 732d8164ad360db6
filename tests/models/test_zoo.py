"""The model zoo end to end: every net exports, onnxruntime agrees with PyTorch, and the
exported graphs have the structure the engine's passes are written against.

Heavy variants that only repeat another zoo net's layer types (vgg11/16/19 and
vgg16_bn/vgg19_bn: ~550 MB and ~10 s apiece to export and load; resnet101) are
marked slow and skipped unless CNNRT_ZOO_FULL=1; vgg11_bn and resnet50 stand for them.
The numeric test exports each net once (into the zoo's export cache, from the module it
already built) and remembers the graph without its weights: the structural tests and the
engine's zoo tests reuse that export.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from helpers import zoo_params  # noqa: E402

import cnnrt.models as zoo  # noqa: E402
from cnnrt.models.onnx_export import export_module  # noqa: E402
from cnnrt.models.registry import entry  # noqa: E402

# float32 vs float64 PyTorch differs by at most ~1e-4 * max|y| on these nets (worst:
# vgg19_bn), so 1e-3 leaves a 10x margin for onnxruntime's different summation order.
REL_TOL = 1e-3


def _skeleton(name: str) -> torch.nn.Module:
    """The architecture without weights (meta device): free to build, for counting."""
    e = entry(name)
    factory = getattr(importlib.import_module(f"cnnrt.models.{e.module}"), e.factory)
    with torch.device("meta"):
        return factory()


def _count(model: torch.nn.Module, *types: type) -> int:
    return sum(isinstance(m, types) for m in model.modules())


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Both libraries' thread pools spin-wait; on the 2 shared cores of a test machine,
    # alternating (or oversubscribed) pools made these tests ~10x slower than 1 thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _session(model: bytes | str | Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # see _one_torch_thread
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=REL_TOL * max(1.0, float(np.abs(want).max())))


def _skeleton_graph(data: bytes) -> onnx.ModelProto:
    """The exported model without its weights: cheap to keep for structural checks."""
    model = onnx.load_model_from_string(data)
    del model.graph.initializer[:]
    return model


@pytest.fixture(scope="session")
def graphs() -> dict[str, onnx.ModelProto]:
    """name -> weightless exported graph, filled by the numeric test."""
    return {}


@pytest.fixture
def graph_of(graphs: dict[str, onnx.ModelProto]):
    """The weightless default export of a zoo net (exports it if no test has yet)."""

    def get(name: str) -> onnx.ModelProto:
        if name not in graphs:
            graphs[name] = _skeleton_graph(zoo.export_cached(name).read_bytes())
        return graphs[name]

    return get


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("name", zoo_params(zoo.names()))
def test_onnxruntime_matches_torch(name: str, graphs: dict[str, onnx.ModelProto]) -> None:
    model = zoo.build(name)
    # the default export (traced at batch 1, symbolic batch dimension) that the engine's zoo tests read too
    path = zoo.export_cached(name, model=model)  # its weights are in an external data file beside it
    graphs[name] = graph = _skeleton_graph(path.read_bytes())
    sess = _session(path)

    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, out.name) == ("input", "output")
    assert inp.shape[0] == "batch" and out.shape[0] == "batch"
    assert tuple(inp.shape[1:]) == zoo.input_shape(name)[1:]
    assert {o.domain: o.version for o in graph.opset_import}[""] == 17

    # batch 1 is the contract; batch 2 proves the symbolic batch dimension works
    for batch, seed in ((1, 0), (2, 1)):
        x = zoo.sample_input(name, batch, seed)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        (got,) = sess.run(None, {"input": x})
        _assert_matches(got, want)

    peak = float(np.abs(want).max())
    assert 1e-2 <= peak <= 1e3, f"{name}: max|y| = {peak:g}"
    # random-weight nets easily become input-blind (every image, same output);
    # a comparison against such a net would test the weights, not the engine
    assert np.std(want[0] - want[1]) > 0.05 * np.std(want), "output barely depends on input"

    ops = _ops(graph)
    assert ops["BatchNormalization"] == _count(model, torch.nn.BatchNorm2d), "BN folded or lost in export"
    # shapes were made static in the model code; no shape arithmetic may leak into the graph
    assert not {"Shape", "Gather", "If", "Identity"} & set(ops), dict(ops)


# ---------------------------------------------------------------- graph structure


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "googlenet"])
def test_lrn_is_one_node(name: str, graph_of) -> None:
    lrn = [n for n in graph_of(name).graph.node if n.op_type == "LRN"]
    assert len(lrn) == 2
    for node in lrn:
        attrs = _attrs(node)
        assert attrs["size"] == 5
        assert attrs["alpha"] == pytest.approx(1e-4)
        assert attrs["beta"] == pytest.approx(0.75)
        assert attrs["bias"] == pytest.approx(2.0)


def test_relu6_exports_as_clip(graph_of) -> None:
    graph = graph_of("mobilenet_v2").graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["Clip"] == _count(_skeleton("mobilenet_v2"), torch.nn.ReLU6) == 35
    assert "Relu" not in ops
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"}
    for node in (n for n in graph.node if n.op_type == "Clip"):
        assert [float(consts[i]) for i in node.input[1:3]] == [0.0, 6.0]


def test_channel_shuffle_is_reshape_transpose_reshape(graph_of) -> None:
    graph = graph_of("shufflenet").graph
    producer = {o: n for n in graph.node for o in n.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    transposes = [n for n in graph.node if n.op_type == "Transpose"]
    assert len(transposes) == 15  # every unit but the first has a grouped first conv
    for t in transposes:
        assert _attrs(t)["perm"] == [0, 2, 1, 3, 4]
        assert producer[t.input[0]].op_type == "Reshape"
        assert [u.op_type for u in users[t.output[0]]] == ["Reshape"]
    assert _ops(graph_of("shufflenet"))["AveragePool"] == 3  # the stride-2 units' shortcut


def test_silu_and_squeeze_excite(graph_of) -> None:
    ops = _ops(graph_of("efficientnet_b0"))
    skel = _skeleton("efficientnet_b0")
    n_silu, n_gate = _count(skel, torch.nn.SiLU), _count(skel, torch.nn.Sigmoid)
    assert ops["Sigmoid"] == n_silu + n_gate  # SiLU -> Sigmoid + Mul; SE gate -> Sigmoid
    assert ops["Mul"] == n_silu + n_gate  # ... and the gate's Mul
    assert ops["GlobalAveragePool"] == n_gate + 1  # one per SE block, one before the FC


def test_segnet_structure(graph_of) -> None:
    graph = graph_of("segnet").graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["ConvTranspose"] == 3 and ops["Concat"] == 3
    dilations = {tuple(_attrs(n)["dilations"]) for n in graph.node if n.op_type == "Conv"}
    assert {(2, 2), (4, 4)} <= dilations
    kinds = {
        (tuple(a["kernel_shape"]), tuple(a.get("output_padding", (0, 0))), len(n.input))
        for n in graph.node
        if n.op_type == "ConvTranspose"
        for a in [_attrs(n)]
    }
    assert kinds == {((2, 2), (0, 0), 2), ((3, 3), (1, 1), 3), ((4, 4), (0, 0), 3)}


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_older_opsets(name: str) -> None:
    model = zoo.build(name)
    x = zoo.sample_input(name)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for opset in (11, 13):  # 17, the default, is covered above
        data = export_module(model, torch.from_numpy(x), opset=opset)
        proto = onnx.load_model_from_string(data)
        onnx.checker.check_model(proto)
        assert {o.domain: o.version for o in proto.opset_import}[""] == opset
        assert _ops(proto)["BatchNormalization"] == (20 if name == "resnet18" else 0)
        (got,) = _session(data).run(None, {"input": x})
        _assert_matches(got, want)


# ---------------------------------------------------------------- API


def test_fixed_batch_and_path(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "lenet5.onnx"
    proto = zoo.export("lenet5", target, batch=3)
    assert onnx.load(target) == proto
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_value == 3 and not dims[0].dim_param
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [3, 1, 32, 32]
    x = zoo.sample_input("lenet5", batch=3)
    (got,) = _session(proto.SerializeToString()).run(None, {"input": x})
    assert got.shape == (3, 10)


def test_export_cached_reuses_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnrt.models import onnx_export as export_mod

    first = zoo.export_cached("lenet5", cache_dir=tmp_path)
    assert first.is_file() and first.parent == tmp_path

    def no_export(*args, **kwargs):
        raise AssertionError("cache hit expected")

    monkeypatch.setattr(export_mod, "_export_bytes", no_export)
    assert zoo.export_cached("lenet5", cache_dir=tmp_path) == first
    monkeypatch.undo()

    others = {
        zoo.export_cached("lenet5", opset=13, cache_dir=tmp_path),
        zoo.export_cached("lenet5", batch=2, cache_dir=tmp_path),
    }
    assert first not in others and len(others) == 2
    assert not list(tmp_path.glob("*.tmp"))

    monkeypatch.setenv("CNNRT_ZOO_CACHE", str(tmp_path / "env"))
    assert zoo.export_cached("lenet5").parent == tmp_path / "env"


def test_export_cached_keeps_weights_in_aligned_external_data(tmp_path: Path) -> None:
    import cnnrt
    from cnnrt.frontends.loader import load_model, tensor_to_array
    from cnnrt.models import zoo_cache

    path = zoo.export_cached("lenet5", cache_dir=tmp_path)
    data = zoo_cache.data_path(path)
    proto = onnx.load(str(path), load_external_data=False)
    ext = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert ext and all(len(t.raw_data) < zoo_cache.EXTERNAL_MIN_BYTES for t in proto.graph.initializer)
    assert path.stat().st_size < 8192 < data.stat().st_size
    for t in ext:
        info = {e.key: e.value for e in t.external_data}
        assert info["location"] == data.name and int(info["offset"]) % zoo_cache.DATA_ALIGN == 0
    # the weights are views of the mapped data file, not copies, and equal what onnx reads
    loaded, folder = load_model(path)
    full = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    for t in loaded.graph.initializer:
        arr = tensor_to_array(t, folder)
        np.testing.assert_array_equal(arr, full[t.name])
        if t.data_location == onnx.TensorProto.EXTERNAL:
            assert not arr.flags.writeable and not arr.flags.owndata
    x = zoo.sample_input("lenet5", 2)
    (want,) = _session(path).run(None, {"input": x})
    (got,) = cnnrt.InferenceSession(path, threads=1).run(None, {"input": x})
    _assert_matches(got, want)


def test_build_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = zoo.build("resnet18").state_dict(), zoo.build("resnet18").state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not zoo.build("resnet18").training


def test_batchnorm_statistics_are_not_trivial() -> None:
    bns = [m for m in zoo.build("resnet18").modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        assert bn.running_mean.abs().max() > 1e-3
        assert (bn.running_var - 1).abs().max() > 1e-2
        assert (bn.weight - 1).abs().max() > 1e-2
        assert bn.bias.abs().max() > 1e-3


def test_sample_input() -> None:
    x = zoo.sample_input("resnet18", batch=2, seed=3)
    assert x.dtype == np.float32 and x.shape == (2, 3, 224, 224)
    assert np.array_equal(x, zoo.sample_input("resnet18", batch=2, seed=3))
    assert not np.array_equal(x, zoo.sample_input("resnet18", batch=2, seed=4))
    assert zoo.input_shape("lenet5", 5) == (5, 1, 32, 32)
    assert zoo.input_shape("xception") == (1, 3, 299, 299)


def test_names_and_unknown_name() -> None:
    names = zoo.names()
    assert names == sorted(set(names)) and len(names) == 33
    for fn in (zoo.input_shape, zoo.sample_input, zoo.build, zoo.export_cached):
        with pytest.raises(KeyError, match="resnet18"):  # the message lists known names
            fn("resnet17")


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, cnnrt.models as z; z.names(); z.input_shape('vgg16'); "
        "z.sample_input('lenet5'); "
        "assert not {'torch', 'onnx'} & set(sys.modules), 'eager import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Published parameter counts (torchvision / Keras model cards, and for AlexNet, ZFNet and
# LeNet-5 the sums over the papers' layer tables) pin the architectures down.
PUBLISHED_PARAMS = {
    "lenet5": 61_706,
    "alexnet": 60_965_224,
    "zfnet": 62_357_608,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "convnext_tiny": 28_589_128,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
    "shufflenet_v2": 2_278_604,
    "mnasnet1_0": 4_383_312,
    "regnet_y_400mf": 4_344_144,
    "lraspp_mobilenet_v3": 3_221_538,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_reference(name: str) -> None:
    n = sum(p.numel() for p in _skeleton(name).parameters())
    assert n == PUBLISHED_PARAMS[name]


def test_full_xception_matches_keras_parameter_count() -> None:
    from cnnrt.models.xception import xception

    with torch.device("meta"):
        full = xception(middle_repeats=8)
    assert sum(p.numel() for p in full.parameters()) == 22_855_952
