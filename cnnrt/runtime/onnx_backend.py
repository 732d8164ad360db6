"""The ``onnx.backend`` API over :class:`cnnrt.InferenceSession`, for ONNX's backend test suite.

``prepare`` imports the model once; ``BackendRep.run`` binds the inputs positionally to the
model's graph inputs (as the suite feeds them) and compiles, on first sight of each set of
input shapes, a plan for exactly those shapes. Inputs that cnnrt must know at import time
(Reshape's shape, Slice bounds, ...) are compiled in: see :data:`PARAMETER_SLOTS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from cnnrt.errors import BackendUnavailableError
from cnnrt.runtime.session import InferenceSession

_IR_VERSION = 10  # what run_node's wrapper model declares (onnxruntime 1.31 reads <= 13)


# Inputs that cnnrt's converters need at import time (they become IR attributes). The
# backend suite feeds them as graph inputs, so the rep compiles a specialised model with the
# fed values as initializers (one per distinct set of values).
PARAMETER_SLOTS = {
    "Clip": (1, 2),
    "ConvInteger": (1, 2, 3),
    "DequantizeLinear": (1, 2),
    "MatMulInteger": (2, 3),
    "QLinearConv": (1, 2, 3, 4, 5, 6, 7, 8),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "QuantizeLinear": (1, 2),
    "ConstantOfShape": (0,),
    "Dropout": (1, 2),
    "Expand": (1,),
    "Pad": (1, 2, 3),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ReduceL2": (1,),
    "Reshape": (1,),
    "Resize": (1, 2, 3),
    "Slice": (1, 2, 3, 4),
    "Split": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Upsample": (1,),
}


def parameter_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs (not initializers) that feed a PARAMETER_SLOTS position directly."""
    g = model.graph
    real = {i.name for i in g.input} - {t.name for t in g.initializer}
    found = {
        n.input[k]
        for n in g.node
        if n.domain in ("", "ai.onnx")
        for k in PARAMETER_SLOTS.get(n.op_type, ())
        if k < len(n.input) and n.input[k] in real
    }
    return sorted(found)


def specialise(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` where the graph inputs in ``values`` are initializers holding them."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name not in values]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in values.items())
    return m


class CnnrtRep(BackendRep):
    """A prepared model: ``run(inputs)`` returns the outputs as a namedtuple."""

    def __init__(self, model: onnx.ModelProto, backend: str, options: dict) -> None:
        self.model = model
        self.backend = backend
        self.options = options
        self.input_names = [i.name for i in model.graph.input]
        self.output_names = [o.name for o in model.graph.output]
        self.parameters = parameter_inputs(model)
        self._outputs = namedtupledict("Outputs", self.output_names)
        self._sessions: dict[tuple, InferenceSession] = {}
        if not self.parameters:
            self._sessions[()] = InferenceSession(model, backend=backend, **options)

    def _session(self, feeds: dict[str, np.ndarray]) -> InferenceSession:
        missing = [p for p in self.parameters if p not in feeds]
        if missing:
            raise ValueError(f"inputs {missing} must be given (they are compiled into the plan)")
        key = tuple((p, feeds[p].dtype.str, feeds[p].shape, feeds[p].tobytes()) for p in self.parameters)
        session = self._sessions.get(key)
        if session is None:
            model = specialise(self.model, {p: feeds[p] for p in self.parameters})
            session = self._sessions[key] = InferenceSession(model, backend=self.backend, **self.options)
        return session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, Mapping):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            if len(inputs) > len(self.input_names):
                raise ValueError(f"got {len(inputs)} inputs; the model has {len(self.input_names)}: {self.input_names}")
            # Positional, over graph.input as listed (IR-3 models list initializers there too).
            feeds = {k: np.asarray(v) for k, v in zip(self.input_names, inputs)}
        session = self._session(feeds)
        outs = session.run(None, {k: v for k, v in feeds.items() if k not in self.parameters})
        return self._outputs(*outs)


class CnnrtBackend(Backend):
    """cnnrt as an ``onnx.backend.base.Backend`` (device "CPU"; "CUDA" once it can run)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> CnnrtRep:
        if not cls.supports_device(device):
            raise BackendUnavailableError(f"cnnrt cannot run on device {device!r} here")
        backend = "cuda" if Device(device).type == DeviceType.CUDA else "cpu"
        options = {k: kwargs[k] for k in ("opt_level", "threads", "disabled_passes") if k in kwargs}
        return CnnrtRep(model, backend, options)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU", outputs_info=None, **kwargs: Any
    ) -> tuple[Any, ...]:
        """Run one node by wrapping it in a one-node model (inputs bound to its non-empty input names)."""
        opset = int(kwargs.pop("opset_version", onnx.defs.onnx_opset_version()))
        names = [n for n in node.input if n]
        arrays = [np.asarray(a) for a in inputs]
        if len(arrays) != len(names):
            raise ValueError(f"node {node.name or node.op_type!r} has inputs {names}, got {len(arrays)} arrays")
        graph = helper.make_graph(
            [node],
            "run_node",
            [
                helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                for n, a in zip(names, arrays)
            ],
            [helper.make_empty_tensor_value_info(o) for o in node.output if o],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=_IR_VERSION)
        return cls.run_model(model, arrays, device, **kwargs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            kind = Device(device).type
        except (AttributeError, ValueError):
            return False
        if kind == DeviceType.CPU:
            return True
        if kind == DeviceType.CUDA:
            return _cuda_runs()
        return False


def _cuda_runs() -> bool:
    from cnnrt.kernels import supported

    try:
        from cnnrt.kernels.cuda.device import cuda_unavailable_reason
    except ImportError:
        return False
    return cuda_unavailable_reason() is None and bool(supported("cuda"))


# module-level functions, so ``onnx.backend.test.BackendTest(cnnrt.runtime.onnx_backend, ...)`` works
prepare = CnnrtBackend.prepare
run_model = CnnrtBackend.run_model
run_node = CnnrtBackend.run_node
supports_device = CnnrtBackend.supports_device
is_compatible = CnnrtBackend.is_compatible
