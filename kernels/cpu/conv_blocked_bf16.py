"""The bf16 operands of a blocked conv (conv_blocked.py with ``precision="bf16"``).

The arena stays float32: a bf16 conv converts its blocked input into a bf16 copy laid out
as the float32 padded copy would be (zero border included), in the same pass over the input
that copy takes, so the conversion costs one streaming read of the input per conv and no
extra node; the weights are packed bf16 once, at build (microkernel_bf16.pack_bf16). The
register tile (microkernel_bf16) reads both and accumulates in float32.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.errors import BackendUnavailableError
from cnnrt.kernels._jit import pick, pjit, serial_twin
from cnnrt.kernels.aligned import shared_scratch
from cnnrt.kernels.cpu.conv_common import readonly
from cnnrt.kernels.cpu.microkernel_bf16 import LANES, bf16_vectors, pack_bf16

PRECISIONS = ("f32", "bf16")


def bf16_unsupported_reason() -> str:
    """Why this CPU cannot run bf16 kernels ("" when it can): they need AVX-512 BF16."""
    from llvmlite import binding as ll

    try:
        features = ll.get_host_cpu_features()
    except RuntimeError:
        return "the host CPU's features cannot be read"
    if not features.get("avx512bf16", False):
        return "the CPU lacks AVX-512 BF16 (vdpbf16ps)"
    return ""


def check_bf16_cpu() -> None:
    """BackendUnavailableError when precision="bf16" cannot run on this CPU."""
    why = bf16_unsupported_reason()
    if why:
        raise BackendUnavailableError(f'precision="bf16" cannot run here: {why}; use precision="f32"')


@pjit
def _to_bf16_planes(x, xp, pt, pl, lanes, wp_l, per_plane, per_n):
    """xp (bf16 bits) from x (the float32 input's bits, (N, P, H, W*lanes), rows of whole
    vectors): each plane of per_plane elements (per_n per image) holds x's rounded to nearest
    even (microkernel_bf16.bf16_vectors) at row pt, column pl*lanes, zeros around. Every
    element is written (the buffer is shared)."""
    n_count, p_count, h, wl = x.shape
    for q in prange(n_count * p_count):
        n = q // p_count
        p = q - n * p_count
        plane = n * per_n + p * per_plane
        top = plane + pt * wp_l
        xp[plane:top] = 0
        left = pl * lanes
        src = x[n, p].reshape(h * wl)
        for ih in range(h):
            row = top + ih * wp_l
            xp[row : row + left] = 0
            bf16_vectors(src, ih * wl, xp, row + left, wl)
            xp[row + left + wl : row + wp_l] = 0
        xp[top + h * wp_l : plane + per_plane] = 0


_to_bf16_planes_serial = serial_twin(_to_bf16_planes)


class Bf16Operands:
    """A bf16 blocked conv's packed weights and the maker of its bf16 input copy."""

    def __init__(self, spec, geo, wp_f32, nr: int, owner) -> None:
        check_bf16_cpu()
        if wp_f32 is None:
            raise ValueError("a bf16 blocked conv needs constant weights (they are packed bf16 at build)")
        if geo.layout_lanes % LANES or geo.kstep % 2:
            raise ValueError("a bf16 blocked conv needs a blocked input (channel pairs side by side, rows of whole vectors)")
        self.weights = readonly(pack_bf16(wp_f32, geo.kstep, nr))
        self.length = spec.n * geo.per_n
        self.xp = shared_scratch(owner, "conv_blocked.bf16_input", (self.length,), np.uint16)
        self.spec, self.geo = spec, geo

    def input(self, x: np.ndarray, nthreads: int) -> np.ndarray:
        """The bf16 (padded) copy of the float32 blocked input ``x``, flat."""
        s, g = self.spec, self.geo
        dst = self.xp.view((self.length,), np.uint16)
        kern = pick(_to_bf16_planes, _to_bf16_planes_serial, x.size * 8, nthreads)
        src = x.reshape(s.n, g.planes, s.h, s.w * g.layout_lanes).view(np.uint32)
        kern(src, dst, s.pt, s.pl, g.layout_lanes, g.wp * g.layout_lanes, g.plane, g.per_n)
        return dst
