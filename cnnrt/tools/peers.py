"""Other CPU inference engines as bench peers (optional: ``pip install -e '.[peers]'``).

OpenVINO's CPU plugin is the engine a CPU user would pick besides onnxruntime. On CPUs with
bfloat16 or float16 arithmetic it computes in that precision by default, which is not the
comparison cnnrt (float32 throughout) asks for, so the plain ``openvino`` backend forces
``INFERENCE_PRECISION_HINT=f32``; ``openvino-bf16`` / ``openvino-f16`` ask for the reduced
precision instead (and are checked against onnxruntime with the bound of that precision,
tools/bench.py's ``tolerance``, so a too-coarse answer shows as WRONG). Apart from precision and
``INFERENCE_NUM_THREADS`` (set like the other peers' thread counts) every setting is
OpenVINO's default. The package is imported only when one of these backends is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cnnrt.errors import CnnrtError

# backend name -> OpenVINO's INFERENCE_PRECISION_HINT
OPENVINO_PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-f16": "f16"}
BACKENDS = tuple(OPENVINO_PRECISIONS)


class PeerMissing(CnnrtError):
    """A peer engine's package is not installed."""


def _openvino():
    try:
        import openvino
    except ImportError as e:
        raise PeerMissing(
            f"the openvino backend needs the openvino package ({e}); install it with pip install -e '.[peers]'"
        ) from None
    return openvino


def openvino_runner(
    backend: str, path, feeds: dict[str, np.ndarray], threads: int, cache: dict
) -> Callable[[], Sequence[np.ndarray]]:
    """A zero-argument callable running the ONNX model at ``path`` on ``feeds`` with OpenVINO's
    CPU plugin at the precision ``backend`` names (the module doc). The model is reshaped to
    the feeds' shapes (a static shape is what OpenVINO compiles best); compiled models are
    kept in ``cache`` per backend and shapes."""
    if backend not in OPENVINO_PRECISIONS:
        raise CnnrtError(f"unknown OpenVINO backend {backend!r}; choose from {', '.join(BACKENDS)}")
    key = (backend, tuple((k, v.shape) for k, v in sorted(feeds.items())))
    request = cache.get(key)
    if request is None:
        ov = _openvino()
        core = ov.Core()
        model = core.read_model(str(path))
        model.reshape({name: list(x.shape) for name, x in feeds.items()})
        config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[backend], "INFERENCE_NUM_THREADS": int(threads)}
        request = core.compile_model(model, "CPU", config).create_infer_request()
        cache[key] = request
    n_out = len(request.model_outputs)

    def run():
        request.infer(feeds)
        return [request.get_output_tensor(i).data.copy() for i in range(n_out)]

    return run
