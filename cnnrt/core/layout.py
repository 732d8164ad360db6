"""Tensor layouts: plain NCHW and the channel-blocked NCHWc.

A blocked value stores a logical NCHW tensor in blocks of B channels (one CPU vector of
channels) as (N, ceil(C/B), H, W, B); its :class:`~cnnrt.core.ir.Value` carries the layout
(``"nchw<B>c"``) and the name of the NCHW value it stores (``Value.logical``), so passes,
kernels and tools read both from the Value instead of from its name.

When C is not a multiple of B the last block is partly used: its lanes past C (the padding
lanes) hold zeros, whatever the inputs. Every kernel that writes a blocked value keeps them
zero: the per-channel ops because they map zeros to zero there (passes/block_layout.py pads
weights, biases and affine parameters with zeros and keeps ops whose result at 0 is not 0
off padded values), the dense convs by storing 0 there (their zero weights for a padding
channel still meet every input channel, and 0 x Inf is NaN). No kernel moves a padding lane
into a real channel (a conv's weights for padding input channels are zero, the other ops
are per channel, reorders crop), so a NaN there would reach every real channel of the next
conv.
"""

from __future__ import annotations

import re

import numpy as np

NCHW = "nchw"
_BLOCKED = re.compile(r"^nchw(\d+)c$")


def blocked(block: int) -> str:
    """The layout name for channel blocks of ``block``."""
    return f"nchw{block}c"


def block_of(layout: str) -> int:
    """Channels per block of ``layout``; 0 for a plain layout."""
    m = _BLOCKED.match(layout)
    return int(m.group(1)) if m else 0


def is_blocked(value) -> bool:
    """Whether ``value`` (a Value) is stored channel-blocked."""
    return block_of(value.layout) > 0


def blocks(channels: int, block: int) -> int:
    """Blocks of ``block`` lanes that hold ``channels`` channels (the last one partly used)."""
    return -(-channels // block)


def logical_shape(shape, channels: int | None = None) -> tuple[int, ...]:
    """NCHW shape of a stored one: (N, C/B, H, W, B) -> (N, C, H, W), C = ``channels`` when
    they fill the last block partly (a cropped conv's output), else all; 4-D as it is."""
    if len(shape) == 5:
        n, cb, h, w, b = shape
        c = channels if channels is not None and (cb - 1) * b < channels <= cb * b else cb * b
        return (n, c, h, w)
    return tuple(shape)


def unblock(a: np.ndarray, channels: int | None = None) -> np.ndarray:
    """(N, CB, H, W, B) -> the NCHW array it stores, its first ``channels`` (default all)."""
    n, cb, h, w, b = a.shape
    return np.ascontiguousarray(a.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w)[:, :channels])


def block(a: np.ndarray, lanes: int) -> np.ndarray:
    """NCHW -> (N, ceil(C/lanes), H, W, lanes), padding lanes zero (numpy; the kernel is
    ReorderToBlocked's)."""
    n, c, h, w = a.shape
    cb = blocks(c, lanes)
    padded = np.zeros((n, cb * lanes, h, w), a.dtype)
    padded[:, :c] = a
    return np.ascontiguousarray(padded.reshape(n, cb, lanes, h, w).transpose(0, 1, 3, 4, 2))
