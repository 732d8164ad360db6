"""Cache-line aligned buffers.

numpy's allocator aligns to 16 bytes: a 64-byte vector load from such a buffer straddles two
cache lines every time. The arena, scratch buffers and packed weights come from here instead,
so every tensor the planner places at a multiple of 64 bytes really starts on a cache line.
"""

from __future__ import annotations

import weakref

import numpy as np

LINE = 64


def aligned_empty(shape, dtype) -> np.ndarray:
    """np.empty(shape, dtype) whose data starts on a LINE-byte boundary."""
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dt.itemsize + LINE, np.uint8)
    start = -raw.ctypes.data % LINE
    return raw[start : start + count * dt.itemsize].view(dt).reshape(shape)


def aligned_zeros(shape, dtype) -> np.ndarray:
    a = aligned_empty(shape, dtype)
    a[...] = 0
    return a


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, aligned copy of ``a``."""
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def per_thread_shape(threads: int, size: int, dtype) -> tuple[int, int]:
    """(threads, size'): one row per thread of at least ``size``, rows starting on lines."""
    per_line = LINE // np.dtype(dtype).itemsize
    return threads, -(-max(size, 1) // per_line) * per_line


def per_thread(threads: int, size: int, dtype) -> np.ndarray:
    """Zeroed (threads, size') scratch, one aligned row per thread (size' >= size)."""
    return aligned_zeros(per_thread_shape(threads, size, dtype), dtype)


class SharedScratch:
    """A scratch buffer shared by the kernels of one graph: its steps run one at a time, so
    no two use it at once. Each kernel asks at build time for the bytes it needs (the buffer
    grows to the largest request) and takes its view at run time, after every build.

    Per-layer scratch went cold between uses: a layer's first touch of its own buffer wrote
    to lines no cache held (ResNet-50's padded conv inputs, 0.1-2 MB each, 53 of them)."""

    def __init__(self) -> None:
        self.array = aligned_empty(LINE, np.uint8)

    def request(self, size: int, dtype) -> None:
        nbytes = size * np.dtype(dtype).itemsize
        if nbytes > self.array.nbytes:
            self.array = aligned_empty(nbytes, np.uint8)

    def view(self, shape, dtype) -> np.ndarray:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        return self.array[: count * dt.itemsize].view(dt).reshape(shape)


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_scratch(owner, name: str, shape, dtype) -> SharedScratch:
    """The ``name`` scratch of ``owner`` (a graph), grown to hold ``shape`` of ``dtype``;
    ``owner`` None gives a private one."""
    if owner is None:
        scratch = SharedScratch()
    else:
        scratch = _SHARED.setdefault(owner, {}).setdefault(name, SharedScratch())
    scratch.request(int(np.prod(shape, dtype=np.int64)), dtype)
    return scratch
