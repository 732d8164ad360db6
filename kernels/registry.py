"""The kernel registry: which builder computes an op on a backend.

A leaf module: the kernel modules import :func:`register` from here, and ``cnnrt.kernels``
loads them by name on first use, so registering never imports back into a package that is
still being imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from typing import Any

KernelFn = Callable[[list[Any], list[Any]], None]
Builder = Callable[..., KernelFn]


def bound(run: KernelFn, ins: list, outs: list) -> Callable[[], None]:
    """The step ``run(ins, outs)`` as a call without arguments, for an executor whose arrays
    stay the same from run to run. A kernel may offer ``run.bind(ins, outs)``: the same step
    with what depends only on the arrays (flat views, strides, its compiled kernel's argument
    list) worked out once; a batch-1 conv's Python wrapper cost 2-3 us per call, as much as
    some of MobileNetV2's steps compute. The bind must not hold ``run``: run -> bind -> run
    is a reference cycle, and the kernel's packed weights would outlive a dropped session
    until the cyclic collector's next full pass (:func:`run_of` builds run around bind)."""
    bind = getattr(run, "bind", None)
    return bind(ins, outs) if bind is not None else partial(run, ins, outs)


def run_of(bind: Callable[[list, list], Callable[[], None]]) -> KernelFn:
    """The step ``run(ins, outs)`` of a kernel built around ``bind(ins, outs) -> call`` (what
    :func:`bound` asks for), the bind offered on it."""

    def run(ins, outs):
        bind(ins, outs)()

    run.bind = bind
    return run


_BUILDERS: dict[tuple[str, str], Builder] = {}
BACKENDS = ("cpu", "cuda")


def register(*ops: str, backend: str = "cpu") -> Callable[[Builder], Builder]:
    """Decorator: ``builder(node, graph) -> run(ins, outs)`` for each op in ``ops``."""

    def deco(fn: Builder) -> Builder:
        for op in ops:
            _BUILDERS[(op, backend)] = fn
        return fn

    return deco


def _load(backend: str) -> None:
    if backend in BACKENDS:
        importlib.import_module(f"cnnrt.kernels.{backend}")  # importing the package registers its kernels


def get_builder(op: str, backend: str = "cpu") -> Builder | None:
    _load(backend)
    return _BUILDERS.get((op, backend))


def supported(backend: str = "cpu") -> list[str]:
    _load(backend)
    return sorted(op for op, b in _BUILDERS if b == backend)
