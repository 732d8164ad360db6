"""One model through cnnrt (no graph passes: the kernels alone) and through onnxruntime."""

from __future__ import annotations

from helpers import ort_run

import cnnrt


def run_both(model, feeds: dict) -> tuple[list, list]:
    """(cnnrt's outputs at opt_level=0, onnxruntime's), shapes and dtypes checked equal."""
    got = cnnrt.InferenceSession(model, opt_level=0).run(None, feeds)
    want = ort_run(model, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
    return got, want
