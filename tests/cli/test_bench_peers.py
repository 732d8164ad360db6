"""OpenVINO as a bench peer (tools/peers.py): its answers agree with onnxruntime's, float32
is what the plain backend asks for, and a missing package is a skip with the install hint."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from cnnrt.tools import peers
from cnnrt.tools.bench import Skip, make_runner
from cnnrt.tools.timing import max_rel_error, ort_session


def test_openvino_agrees_with_onnxruntime_at_two_batches(tiny_path):
    pytest.importorskip("openvino", reason="the peers extra: pip install -e '.[peers]'")
    cache: dict = {}
    ort = ort_session(tiny_path, threads=1)
    for batch in (1, 3):
        feeds = {"x": np.random.default_rng(batch).standard_normal((batch, 3, 8, 8), dtype=np.float32)}
        [got] = make_runner("openvino", tiny_path, None, feeds, 1, cache)()
        [ref] = ort.run(None, feeds)
        assert max_rel_error(got, ref) <= 1e-5
    request = next(iter(cache.values()))
    assert str(request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"


def test_missing_openvino_is_a_skip_naming_the_extra(tiny_path, monkeypatch):
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(Skip, match=r"pip install -e '\.\[peers\]'"):
        make_runner("openvino-bf16", tiny_path, None, {"x": np.zeros((1, 3, 8, 8), np.float32)}, 1, {})
    assert set(peers.BACKENDS) == {"openvino", "openvino-bf16", "openvino-f16"}
