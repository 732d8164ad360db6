"""The bf16 operands of a blocked conv (conv_blocked.py with ``precision="bf16"``).

A float32 input is converted into a bf16 copy laid out as the float32 padded copy would be
(zero border included), in the same pass over the input that copy takes, so the conversion
costs one streaming read of the input per conv and no extra node; a bf16 activation
(passes/precision.py: a bf16 conv's output only bf16 convs read) is that layout already,
read as it lies or copied into the zero border. The weights are packed bf16 once, at build
(microkernel_bf16.pack_bf16). The register tile (microkernel_bf16) reads both and
accumulates in float32. A blocked input holds its
channel pairs side by side already; an NCHW one (a 3-channel stem) is copied blocked by
channel pairs (:class:`PairedStem`), so the stem runs the same tile.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.errors import BackendUnavailableError
from cnnrt.kernels._jit import pick, pjit, serial_twin
from cnnrt.kernels.aligned import shared_scratch
from cnnrt.kernels.cpu.conv_blocked_plan import pack_weights
from cnnrt.kernels.cpu.conv_common import pad_copy_step, readonly
from cnnrt.kernels.cpu.microkernel_bf16 import LANES, bf16_run, pack_bf16
from cnnrt.kernels.cpu.native_call import NativeStep

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
def _to_bf16_pairs(x, xp, pt, pl, wp, per_plane, per_n):
    """xp (bf16 bits) from an NCHW input (x: the float32 bits, (N, C, H, W)): plane q of
    image n (per_plane elements, per_n per image) holds channels 2q and 2q+1 side by side
    per pixel (a zero channel past C), rounded as microkernel_bf16.bf16_run, the image at
    row pt, column pl of rows of wp pixels, zeros around. Every element is written."""
    n_count, c_count, h, w = x.shape
    pairs = (c_count + 1) // 2
    row_l, left = 2 * wp, 2 * pl
    for q in prange(n_count * pairs):
        n = q // pairs
        p = q - n * pairs
        plane = n * per_n + p * per_plane
        top = plane + pt * row_l
        xp[plane:top] = 0
        rounded = np.empty(2 * w, np.uint16)
        rounded[w:] = 0
        for ih in range(h):
            row = top + ih * row_l
            xp[row : row + left] = 0
            bf16_run(x[n, 2 * p, ih], 0, rounded, 0, w)
            if 2 * p + 1 < c_count:
                bf16_run(x[n, 2 * p + 1, ih], 0, rounded, w, w)
            dst = xp[row + left : row + left + 2 * w]
            for k in range(w):
                dst[2 * k] = rounded[k]
                dst[2 * k + 1] = rounded[w + k]
            xp[row + left + 2 * w : row + row_l] = 0
        xp[top + h * row_l : plane + per_plane] = 0


_to_bf16_pairs_serial = serial_twin(_to_bf16_pairs)


class PairedStem:
    """The addressing (conv_blocked_plan.Geometry's fields) of a bf16 conv on an NCHW input
    (a stem: 3 channels, not a whole block). Its bf16 copy (:func:`_to_bf16_pairs`) is
    blocked by channel pairs, (N, ceil(C/2), HP, WP, 2), so each tap's reduction is
    ceil(C/2) pairs, one ``vdpbf16ps`` each, read a plane apart (a_ks = half a plane: the
    tile's pair stride is 2 a_ks). An odd C gets a zero channel with zero weights: its
    products are 0 x 0, never 0 x Inf, so non-finite inputs give what float32 gives."""

    def __init__(self, spec) -> None:
        s = spec
        self.padded = True  # the bf16 copy is made anyway: always zero-bordered
        self.hp = max(s.h + s.pt + s.pb, (s.oh - 1) * s.sh + (s.kh - 1) * s.dh + 1)
        self.wp = max(s.w + s.pl + s.pr, (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1)
        self.layout_lanes = 2
        self.planes = (s.c + 1) // 2
        self.plane = self.hp * self.wp * 2
        self.kstep = 2 * self.planes
        self.a_ks = self.plane // 2
        self.a_rs = s.sw * 2
        self.a_row = s.sh * self.wp * 2
        taps = [(i * s.dh * self.wp + j * s.dw) * 2 for i in range(s.kh) for j in range(s.kw)]
        self.taps = np.array(taps, np.int64)
        self.per_n = self.planes * self.plane

    def pack(self, w: np.ndarray, nr: int) -> np.ndarray:
        """(M, C, kh, kw) float32 weights packed as the tile reads them (channel pairs)."""
        m, c, kh, kw = w.shape
        even = np.zeros((m, self.kstep, kh, kw), np.float32)
        even[:, :c] = w
        return pack_bf16(pack_weights(even, nr, self.kstep), self.kstep, nr)


class Bf16Operands:
    """A bf16 blocked conv's packed weights and the maker of its bf16 input copy."""

    def __init__(self, spec, geo, wp_f32, w_const, nr: int, owner, copied: bool = False, bf16_in: bool = False) -> None:
        """``geo``: the float32 conv's addressing; a blocked input keeps it (channel pairs lie
        side by side in a block), an NCHW one gets :class:`PairedStem`'s (:attr:`geo`).
        ``copied``: the shared buffer holds this input's copy already, made by the bf16 conv
        before this one on the same value (passes/precision.py), so :meth:`input` only reads it.
        ``bf16_in``: the input is a bf16 activation (blocked), read as it lies when the conv
        has no padding, else copied into the zero border without conversion."""
        check_bf16_cpu()
        if bf16_in and geo.layout_lanes == 1:
            raise ValueError("a bf16 activation is channel-blocked; this conv reads NCHW")
        if wp_f32 is None:
            raise ValueError("a bf16 blocked conv needs constant weights (they are packed bf16 at build)")
        self.stem = geo.layout_lanes == 1
        if self.stem:
            geo = PairedStem(spec)
            self.weights = readonly(geo.pack(w_const, nr))
        elif geo.layout_lanes % LANES or geo.kstep % 2:
            raise ValueError("a bf16 blocked conv needs channel pairs side by side (whole blocks of channels)")
        else:
            self.weights = readonly(pack_bf16(wp_f32, geo.kstep, nr))
        self.length = spec.n * geo.per_n
        self.xp = shared_scratch(owner, "conv_blocked.bf16_input", (self.length,), np.uint16)
        self.spec, self.geo = spec, geo
        self.copied, self.bf16_in = copied, bf16_in

    def input(self, x: np.ndarray, nthreads: int) -> np.ndarray:
        """The bf16 input the tile reads, flat: ``x`` itself when it is bf16 and needs no
        border, else its (padded) bf16 copy (from float32 ``x``: blocked, or NCHW for a stem)."""
        dst, steps = self.input_steps(x, nthreads)
        for step in steps:
            step.run()
        return dst

    def input_steps(self, x: np.ndarray, nthreads: int) -> tuple[np.ndarray, tuple]:
        """:meth:`input` as (the array, the kernel calls that fill it): a native plan makes
        the calls before the conv's."""
        s, g = self.spec, self.geo
        if self.bf16_in and not g.padded:
            return x.reshape(-1).view(np.uint16), ()
        dst = self.xp.view((self.length,), np.uint16)
        if self.copied:
            return dst, ()
        if self.stem:
            kern = pick(_to_bf16_pairs, _to_bf16_pairs_serial, x.size * 8, nthreads)
            args = (x.reshape(s.n, s.c, s.h, s.w).view(np.uint32), dst, s.pt, s.pl, g.wp, g.plane, g.per_n)
            return dst, (NativeStep(kern, args),)
        # a bf16 activation's bits copied into the border, a float32 input's rounded
        return dst, (pad_copy_step(x.view(np.uint16 if self.bf16_in else np.uint32), dst, s, g, nthreads),)
