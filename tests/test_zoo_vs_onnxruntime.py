"""Every zoo model, end to end, at batch 1 and batch 4: cnnrt must match onnxruntime.

Bound: max|cnnrt - ort| <= 1e-3 * max(1, max|ort|). The same session serves both batch
sizes, so re-planning for a new shape is exercised too. The run goes through the native plan
(runs of steps as one compiled call), which must give the Python loop's bits.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close_to, assert_native_plan_matches_python_loop, zoo_params

import cnnrt
from cnnrt.tools.timing import ort_session

pytest.importorskip("torch", reason="the zoo needs torch (pip install -e '.[zoo]')")
from cnnrt import models  # noqa: E402


@pytest.mark.parametrize("name", zoo_params(models.names()))
def test_zoo_model_matches_onnxruntime(name):
    path = models.export_cached(name)
    sess = cnnrt.InferenceSession(path)
    ort = ort_session(path)
    for batch in (1, 4):
        x = models.sample_input(name, batch=batch, seed=batch)
        [got] = sess.run(None, {"input": x})
        [ref] = ort.run(None, {"input": x})
        assert np.isfinite(ref).all()
        assert_close_to(got, ref)
        assert_native_plan_matches_python_loop(sess, {"input": x}, [got])
