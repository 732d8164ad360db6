"""Which converter turns an ONNX node into IR, per op type and opset.

Converter modules register their functions with :func:`onnx_op`; an op may have several,
each valid from its ``since`` opset until the next one. The converter modules are imported
here on first use (by name, so this module depends on none of them).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import ConvertContext

Converter = Callable[["ConvertContext"], None]

_CONVERTER_MODULES = ("ops_elementwise", "ops_image", "ops_nn", "ops_quant", "ops_reduce", "ops_resize", "ops_tensor")
_REGISTRY: dict[str, list[tuple[int, Converter]]] = {}


def onnx_op(op_type: str, since: int = 1) -> Callable[[Converter], Converter]:
    """Register a converter for ``op_type`` valid from opset ``since`` until a newer one."""

    def deco(fn: Converter) -> Converter:
        _REGISTRY.setdefault(op_type, []).append((since, fn))
        _REGISTRY[op_type].sort(key=lambda t: t[0])
        return fn

    return deco


@functools.cache
def _load_converters() -> None:
    for name in _CONVERTER_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def converter_for(op_type: str, opset: int) -> Converter | None:
    """The converter with the newest ``since`` not above ``opset`` (None if there is none)."""
    _load_converters()
    best = None
    for since, fn in _REGISTRY.get(op_type, ()):
        if since <= opset:
            best = fn
    return best


def onnx_op_types() -> list[str]:
    """The ONNX op types (default domain) that have a converter for some opset, sorted."""
    _load_converters()
    return sorted(_REGISTRY)
