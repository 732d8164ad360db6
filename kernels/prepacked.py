"""Weights repacked at build (register-tile panels, Winograd transforms), kept by the plan cache.

A kernel builder asks :func:`prepacked` for the packed form of a constant weight. Outside a
:class:`PackStore` it packs; inside one it returns what the store was loaded with for that
array (the plan cache, runtime/plan_cache.py, reads them with the graph) or packs and records
the result, so the plan cache can write it beside the graph. The store knows an array by its
data address, shape, strides and dtype: the graph's constants are alive, and unchanged, for
as long as a build is under way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar

import numpy as np

_STORE: ContextVar[PackStore | None] = ContextVar("cnnrt_prepacked", default=None)


def _identity(w: np.ndarray, tag: tuple) -> tuple:
    return (w.__array_interface__["data"][0], w.shape, w.strides, w.dtype.str, tag)


class PackStore:
    """Packed weights by (constant, packing): ``loaded`` from a cache, ``made`` by this build."""

    def __init__(self, constants: Mapping[str, np.ndarray], loaded: list[tuple[str, tuple, np.ndarray]] = ()):
        self.constants = constants
        self.loaded = {_identity(constants[name], tag): packed for name, tag, packed in loaded}
        self.made: list[tuple[np.ndarray, tuple, np.ndarray]] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[PackStore]:
        token = _STORE.set(self)
        try:
            yield self
        finally:
            _STORE.reset(token)

    def records(self) -> list[tuple[str, tuple, np.ndarray]]:
        """(constant name, packing tag, packed array) of what this build packed from graph constants."""
        names = {_identity(a, ()): n for n, a in self.constants.items() if isinstance(a, np.ndarray)}
        out = []
        for w, tag, packed in self.made:
            name = names.get(_identity(w, ()))
            if name is not None:
                out.append((name, tag, packed))
        return out


def prepacked(w: np.ndarray, tag: tuple, pack: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``pack(w)`` for a constant weight ``w``; ``tag`` names the packing and its parameters."""
    store = _STORE.get()
    if store is None:
        return pack(w)
    hit = store.loaded.get(_identity(w, tag))
    if hit is not None:
        return hit
    packed = pack(w)
    store.made.append((w, tag, packed))
    return packed
