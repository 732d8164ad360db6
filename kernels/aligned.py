"""Cache-line aligned buffers.

numpy's allocator aligns to 16 bytes: a 64-byte vector load from such a buffer straddles two
cache lines every time. The arena, scratch buffers and packed weights come from here instead,
so every tensor the planner places at a multiple of 64 bytes really starts on a cache line.
"""

from __future__ import annotations

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


def per_thread(threads: int, size: int, dtype) -> np.ndarray:
    """Zeroed (threads, size') scratch, one aligned row per thread (size' >= size)."""
    per_line = LINE // np.dtype(dtype).itemsize
    return aligned_zeros((threads, -(-max(size, 1) // per_line) * per_line), dtype)
