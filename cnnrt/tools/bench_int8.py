"""int8 in the bench: cnnrt, onnxruntime and OpenVINO on the same QDQ file (the zoo's
``--quantize int8`` export), with cnnrt float32 on the float file beside them.

Agreement is judged in quantization steps, not float32's rtol: the step is the scale of the
last QuantizeLinear before the graph output (the classifier's input), and an engine agrees
when max|diff| against onnxruntime stays within ``INT8_STEPS`` of them, propagated through the
float head as ``step * max_row |W|_1`` (a one-step change of every input moves an output by at
most that much).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

INT8_STEPS = 1.0


def output_step(path) -> float:
    """The bound one quantization step of the head's input puts on an output (see the module doc)."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"][-1]
    step = float(np.asarray(inits[q.input[1]]).reshape(-1)[0])
    weights = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    head = weights[-1] if weights else None
    if head is None or inits[head.input[0]].ndim != 2:
        return step
    zp = inits.get(head.input[2], 0) if len(head.input) > 2 else 0
    w = inits[head.input[0]].astype(np.float64) - np.asarray(zp, np.float64).reshape(-1, 1)
    w = w * np.asarray(inits[head.input[1]], np.float64).reshape(-1, 1)
    return step * float(np.abs(w).sum(axis=1).max())


def int8_runners(
    name: str, batch: int, threads: int, openvino: bool = True
) -> tuple[dict, dict[str, np.ndarray], float]:
    """({engine: zero-argument run}, feeds, output step) for zoo model ``name`` (OpenVINO left out
    when ``openvino`` is false)."""
    import cnnrt
    from cnnrt.models import sample_input
    from cnnrt.models.onnx_export import export_cached
    from cnnrt.models.quantize import quantize_cached
    from cnnrt.tools.peers import openvino_runner
    from cnnrt.tools.timing import ort_session

    f32, q8 = export_cached(name, batch=batch), quantize_cached(name, batch=batch)
    feeds = {"input": sample_input(name, batch, seed=11)}
    c32 = cnnrt.InferenceSession(str(f32), threads=threads)
    c8 = cnnrt.InferenceSession(str(q8), threads=threads)
    o8 = ort_session(q8, threads)
    runners = {
        "cnnrt-f32": lambda: c32.run(None, feeds),
        "cnnrt-int8": lambda: c8.run(None, feeds),
        "onnxruntime-int8": lambda: o8.run(None, feeds),
    }
    if openvino:
        runners["openvino-int8"] = openvino_runner("openvino", q8, feeds, threads, {})
    return runners, feeds, output_step(q8)
