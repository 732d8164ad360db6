"""cnnrt: a graph-compiled inference engine for convolutional neural networks.

``import cnnrt as ort`` gives onnxruntime's API: InferenceSession, SessionOptions, RunOptions,
GraphOptimizationLevel, ExecutionMode, ExecutionOrder, get_available_providers, and
``cnnrt.backend`` (the ``onnx.backend`` API, loaded on first use).
"""

from __future__ import annotations

from typing import Any

from cnnrt.kernels._jit import configure_env_defaults

configure_env_defaults()  # before numba / BLAS load: see kernels/_jit.py

from cnnrt.errors import CnnrtError  # noqa: E402
from cnnrt.runtime.model_info import ModelMetadata, NodeArg  # noqa: E402
from cnnrt.runtime.session import InferenceSession  # noqa: E402
from cnnrt.runtime.session_options import (  # noqa: E402
    PROVIDERS,
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    RunOptions,
    SessionOptions,
)

__all__ = [
    "CnnrtError",
    "ExecutionMode",
    "ExecutionOrder",
    "GraphOptimizationLevel",
    "InferenceSession",
    "ModelMetadata",
    "NodeArg",
    "RunOptions",
    "SessionOptions",
    "backend",
    "get_all_providers",
    "get_available_providers",
]
__version__ = "0.1.0"


def get_all_providers() -> list[str]:
    return list(PROVIDERS)


def get_available_providers() -> list[str]:
    """The providers that can run here (CUDA only with a GPU or numba's simulator)."""
    from cnnrt.kernels.cuda.device import cuda_unavailable_reason

    return [p for p, b in PROVIDERS.items() if b == "cpu" or not cuda_unavailable_reason()]


def __getattr__(name: str) -> Any:
    # the onnx.backend API needs onnx.backend's machinery: loaded when first asked for
    if name == "backend":
        from cnnrt.runtime import onnx_backend

        return onnx_backend
    raise AttributeError(f"module 'cnnrt' has no attribute {name!r}")
