"""One-node ONNX models for the converter tests, run by cnnrt at opt_level=0 (each IR node runs
its own kernel) and checked against onnxruntime."""

from __future__ import annotations

import numpy as np
from helpers import IR_VERSION, ort_run
from onnx import helper, numpy_helper

import cnnrt


def make_model(nodes, inputs, outputs, inits=(), opset=13, ir_version=IR_VERSION):
    """inputs: (name, dtype, shape); outputs: names (types left to inference); inits: (name, array)."""
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(d)), s) for n, d, s in inputs]
    graph = helper.make_graph(
        nodes,
        "test",
        vis,
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def cnnrt_run(model, feeds, **kw):
    return cnnrt.InferenceSession(model, opt_level=0, **kw).run(None, feeds)


def check(model, feeds, rtol=1e-6, atol=1e-6):
    """cnnrt and onnxruntime agree on every output (values, shape and dtype)."""
    got, ref = cnnrt_run(model, feeds), ort_run(model, feeds)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape, (g.dtype, g.shape, r.dtype, r.shape)
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
    return got
