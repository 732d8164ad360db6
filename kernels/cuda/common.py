"""Shared pieces of the CUDA kernels: the activation epilogue, constants, small host helpers.

Conventions every CUDA builder follows (see kernels/cuda/__init__.py): ``run(ins, outs)``
receives *flat 1-D* device arrays (the executor hands out flat views of the arena and of
the uploaded constants); shapes come from ``graph.values`` at build time and reach the
kernels as scalar arguments or small int64 device arrays uploaded once.

Float constants are numpy float32 scalars so that float32 tensors stay in float32 on the
device (a bare ``1.0`` literal is float64 to numba and would promote the arithmetic).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.activation import activation_formula

from . import config
from .device import is_simulator, upload_flat

F0 = np.float32(0.0)
F1 = np.float32(1.0)
F6 = np.float32(6.0)
HALF = np.float32(0.5)
NEG_INF = np.float32(-np.inf)


# numba 0.68's built-in CUDA target cannot compile the builtin min()/max() (their overloads
# take *args, which its device-function compiler rejects): use these in kernels instead.
@cuda.jit(device=True, inline=True)
def dmin(a, b):
    return a if a < b else b


@cuda.jit(device=True, inline=True)
def dmax(a, b):
    return a if a > b else b


@cuda.jit(device=True, inline=True)
def split_index(i, n):
    """(i // n, i % n) of a non-negative index, with one division."""
    q = i // n
    return q, i - q * n


@cuda.jit(device=True, inline=True)
def plane_index(i, H, W):
    """(plane, h, w) of flat index ``i`` of a (planes, H, W) tensor."""
    q, w = split_index(i, W)
    p, h = split_index(q, H)
    return p, h, w


@cuda.jit(device=True, inline=True)
def nchw_index(i, C, H, W):
    """(n, c, h, w) of flat index ``i`` of an (N, C, H, W) tensor."""
    p, h, w = plane_index(i, H, W)
    n, c = split_index(p, C)
    return n, c, h, w


@cuda.jit(device=True, inline=True)
def tile_origin(t, per_batch, tiles_n, tile):
    """Tile ``t`` of a batch of problems, each ``per_batch`` tiles in rows of ``tiles_n``:
    (problem, first row, first column), tiles ``tile`` square."""
    b, rem = split_index(t, per_batch)
    r, c = split_index(rem, tiles_n)
    return b, r * tile, c * tile


@cuda.jit(device=True, inline=True)
def strided_offset(i, rank, shape, strides):
    """Where row-major index ``i`` of ``shape`` lies in an array with element ``strides``."""
    off = 0
    for d in range(rank - 1, -1, -1):
        i, j = split_index(i, shape[d])
        off += j * strides[d]
    return off


@cuda.jit(device=True, inline=True)
def valid_taps(o, s, pad, d, k, size):
    """Taps [t0, t1) of output ``o``'s window (start o*s - pad, step d, k taps) inside [0, size)."""
    start = o * s - pad
    t0 = 0 if start >= 0 else (d - 1 - start) // d
    t1 = k if start + (k - 1) * d < size else (size - 1 - start) // d + 1
    return t0, dmax(t0, t1)


@cuda.jit(device=True, inline=True)
def stage_tile(dst, src, off, x0, nx, sx, k0, nk, sk, first, step, bx, bk, k_fast, zero):
    """One thread's share (elements first, first + step, ...) of staging a bk x bx block of a
    GEMM operand in shared memory: dst[kk, xx] = src[off + x*sx + k*sk] at x = x0 + xx,
    k = k0 + kk, zero past nx or nk. ``k_fast``: consecutive threads take consecutive k (when
    that is the operand's contiguous axis), else consecutive x: coalesced loads either way."""
    for e in range(first, bx * bk, step):
        if k_fast:
            xx, kk = split_index(e, bk)
        else:
            kk, xx = split_index(e, bx)
        x = x0 + xx
        k = k0 + kk
        dst[kk, xx] = src[off + x * sx + k * sk] if (x < nx and k < nk) else zero


@cuda.jit(device=True, inline=True)
def tile_products(acc, sa, sb, bk, micro, tb, tx, ty):
    """acc[i, j] += sum over the staged k of sa[k, ty + i*tb] * sb[k, tx + j*tb]: a thread's
    micro x micro outputs, strided by the tb x tb thread block so neighbours read neighbours."""
    for kk in range(bk):
        for i in range(micro):
            av = sa[kk, ty + i * tb]
            for j in range(micro):
                acc[i, j] += av * sb[kk, tx + j * tb]


def configure(kernel, blocks, threads):
    """``kernel[blocks, threads]``: every launch is configured here (the PTX check hooks it).

    The simulator's ``kernel[...]`` sets the geometry on the shared kernel object and returns
    it, so a configuration made at build time would be overwritten by later builders; there
    the geometry is applied at each launch instead.
    """
    if is_simulator():
        return lambda *args: kernel[blocks, threads](*args)
    return kernel[blocks, threads]


# Activation ``kind`` of one value: kernels/activation.py's formulas with float32 constants
act = activation_formula(F0, F1, F6, HALF, math.tanh)


def epilogue_params(node, dtype) -> tuple[int, object, object]:
    """(kind, alpha, beta) of a node's fused activation, scalars in the tensor's dtype."""
    name = node.attrs.get("activation", "none") or "none"
    if name not in ACTIVATIONS:
        raise UnsupportedOpError(f"node {node.name!r} ({node.op}): unknown fused activation {name!r}")
    t = np.dtype(dtype).type
    return ACTIVATIONS[name], t(node.attrs.get("act_alpha", 0.0)), t(node.attrs.get("act_beta", 0.0))


def require_float(node, graph, *names: str) -> np.dtype:
    """The dtype shared by ``names`` (default: the first input); raise unless it is float."""
    names = names or (node.inputs[0],)
    dtypes = {np.dtype(graph.values[n].dtype) for n in names if n}
    if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
        raise UnsupportedOpError(
            f"node {node.name!r} ({node.op}): the CUDA kernel needs one floating-point dtype, got {sorted(map(str, dtypes))}"
        )
    return next(iter(dtypes))


def int_array(values) -> object:
    """Upload a small int64 table (shapes, strides, offsets); never empty, so kernels get an array."""
    arr = np.asarray(list(values) or [0], dtype=np.int64)
    return upload_flat(arr)


def launcher_1d(kernel, n: int):
    """``kernel`` configured for a grid-stride loop over ``n`` items (geometry from config)."""
    blocks, threads = config.current().grid_1d(n)
    return configure(kernel, blocks, threads)


def launcher_tiles(kernel, tiles: int):
    """``kernel`` configured for a tile-stride loop over ``tiles`` output tiles."""
    blocks, threads = config.current().grid_tiles(tiles)
    return configure(kernel, blocks, threads)


def c_strides(shape) -> list[int]:
    """Element strides of a C-contiguous array of ``shape``."""
    out, acc = [], 1
    for d in reversed(tuple(shape)):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


def shape_of(graph, name: str) -> tuple[int, ...]:
    return tuple(int(d) for d in graph.values[name].shape)


def size_of(graph, name: str) -> int:
    return int(np.prod(shape_of(graph, name), dtype=np.int64))
