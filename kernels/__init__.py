"""Kernel registry keyed by (op, backend).

A kernel *builder* takes a node and its graph at plan-build time (shapes known, constants
available for prepacking) and returns ``run(ins, outs)``, which reads the input arrays and
writes into the preallocated output arrays. Missing kernels are found when the plan is
built, never halfway through a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KernelFn = Callable[[list[Any], list[Any]], None]
Builder = Callable[..., KernelFn]

_BUILDERS: dict[tuple[str, str], Builder] = {}


def register(*ops: str, backend: str = "cpu") -> Callable[[Builder], Builder]:
    """Decorator: ``builder(node, graph) -> run(ins, outs)`` for each op in ``ops``."""

    def deco(fn: Builder) -> Builder:
        for op in ops:
            _BUILDERS[(op, backend)] = fn
        return fn

    return deco


def _load(backend: str) -> None:
    if backend == "cpu":
        from . import cpu  # noqa: F401
    elif backend == "cuda":
        from . import cuda  # noqa: F401


def get_builder(op: str, backend: str = "cpu") -> Builder | None:
    _load(backend)
    return _BUILDERS.get((op, backend))


def supported(backend: str = "cpu") -> list[str]:
    _load(backend)
    return sorted(op for op, b in _BUILDERS if b == backend)
