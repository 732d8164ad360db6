"""The arrays a CPU run hands back: new arrays the caller owns, whose pages are not new.

A run returns its outputs as arrays of the caller's (the arena is reused by the next run). A
large new array costs more than its copy: each 4 KB page is faulted in and zeroed by the
kernel on first touch. LR-ASPP's 8 x 21 x 224 x 224 output (34 MB) took 3.0 ms to copy into a
new array and 2.4 ms into one already touched, of a 40 ms run (2 threads). So the arrays of
large outputs are kept once returned, and an array the caller has since dropped (nothing but
this keeper refers to it) is handed out again. An array the caller still holds, or any view,
memoryview or tensor made from it, is never reused: each of those refers to it.
"""

from __future__ import annotations

import sys

import numpy as np

# below this an output is a plain new array: malloc reuses small blocks, and their copy is cheap
MIN_KEPT_BYTES = 1 << 20
# arrays kept per output: two let `out = session.run(...)` in a loop reuse the array of the
# run before last (the last one is still bound to `out` while the next run fills its own)
KEPT = 2
# references to a kept array the caller has dropped, while _free asks: the keeper's list,
# the loop's variable and getrefcount's argument
_ONLY_KEEPER = 3


class Returned:
    """New arrays for the outputs of one executor, shaped and typed as ``like``."""

    def __init__(self, like: list[np.ndarray]) -> None:
        self.like = [(a.shape, a.dtype, a.nbytes >= MIN_KEPT_BYTES) for a in like]
        self.kept: list[list[np.ndarray]] = [[] for _ in like]

    def array(self, k: int) -> np.ndarray:
        """An array for output ``k`` that no one else refers to: a kept one the caller dropped,
        else a new one (kept in place of the oldest)."""
        shape, dtype, keep = self.like[k]
        if not keep:
            return np.empty(shape, dtype)
        kept = self.kept[k]
        free = self._free(kept)
        if free is not None:
            return free
        arr = np.empty(shape, dtype)  # owns its memory: every view made from it refers to it
        kept.append(arr)
        if len(kept) > KEPT:
            kept.pop(0)
        return arr

    @staticmethod
    def _free(kept: list[np.ndarray]) -> np.ndarray | None:
        for arr in kept:
            if sys.getrefcount(arr) == _ONLY_KEEPER:
                return arr
        return None
