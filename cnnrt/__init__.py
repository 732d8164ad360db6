"""cnnrt: a graph-compiled inference engine for convolutional neural networks."""

from __future__ import annotations

from cnnrt.kernels._jit import configure_env_defaults

configure_env_defaults()  # before numba / BLAS load: see kernels/_jit.py

from cnnrt.errors import CnnrtError  # noqa: E402
from cnnrt.runtime.session import InferenceSession, NodeArg  # noqa: E402

__all__ = ["CnnrtError", "InferenceSession", "NodeArg"]
__version__ = "0.1.0"
