"""QuantizeLinear, DequantizeLinear, QAdd, QMul, QGlobalAveragePool and QMatMul on the CPU: numpy over
cnnrt.core.quantization's formulas (memory-bound steps at a model's int8 edges; the integer
convolutions, where the time goes, are kernels/cpu/qconv.py's).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.core import quantization as qnt
from cnnrt.core.ops import attr
from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu.vector_ir import byte_table_run, has_vbmi
from cnnrt.kernels.registry import register


def param(graph, node, i: int, default=0) -> np.ndarray:
    """The constant at input ``i`` of ``node`` (``default`` when the port is absent)."""
    if i >= len(node.inputs) or not node.inputs[i]:
        return np.asarray(default)
    return np.asarray(graph.constants[node.inputs[i]])


def scalar(graph, node, i: int) -> int:
    """The per-tensor zero point at input ``i`` (0 when absent) as a Python int."""
    return int(param(graph, node, i).reshape(-1)[0])


_CHUNK = 16384  # elements per parallel task of the elementwise loops
_ROUND = np.float32(12582912.0)  # 1.5 * 2**23: (v + _ROUND) - _ROUND rounds |v| < 2**22 half to even


@njit(inline="always")
def _to_code(f, s, zf, vlo, vhi, flo, fhi):
    """QuantizeLinear of one float32 value: clip(rint(f / s) + z, lo, hi), all in float32 (every
    integer in it exact, so the loops vectorise in float32 lanes); the quotient is clamped to
    one past the output range first (vlo, vhi), which leaves the result alone and keeps the
    rounding trick's operand small."""
    v = min(max(f / s, vlo), vhi)
    return np.int32(min(max(((v + _ROUND) - _ROUND) + zf, flo), fhi))


@njit(inline="always")
def _chunk(v, c):
    """Chunk ``c`` of the flat array ``v`` as its own slice: a loop over a slice from 0
    vectorises, one over ``range(c * _CHUNK, ...)`` of the whole array does not (LLVM keeps
    it scalar, ~10x slower)."""
    return v[c * _CHUNK : min(v.size, (c + 1) * _CHUNK)]


@pjit
def _quantize(x, out, s, z, lo, hi):
    """out = clip(rint(x / s) + z, lo, hi) (:func:`_to_code`)."""
    n = x.size
    zf, flo, fhi = np.float32(z), np.float32(lo), np.float32(hi)
    vlo, vhi = flo - zf - np.float32(1), fhi - zf + np.float32(1)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        xs, ys = _chunk(x, c), _chunk(out, c)
        for i in range(xs.size):
            ys[i] = _to_code(xs[i], s, zf, vlo, vhi, flo, fhi)


@pjit
def _dequantize(q, out, s, z):
    """out = float32(q - z) * s; q - z is exact in float32."""
    n = q.size
    zf = np.float32(z)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        qs, ys = _chunk(q, c), _chunk(out, c)
        for i in range(qs.size):
            ys[i] = (np.float32(qs[i]) - zf) * s


_quantize_serial, _dequantize_serial = serial_twin(_quantize), serial_twin(_dequantize)


def _per_tensor(scale, zp) -> bool:
    return np.asarray(scale).size == 1 and np.asarray(zp).size == 1


@register("QuantizeLinear")
def build_quantize(node, graph):
    axis, dtype = attr(node, "axis"), graph.values[node.outputs[0]].dtype
    scale, zp = param(graph, node, 1), param(graph, node, 2)
    if _per_tensor(scale, zp) and dtype in ("uint8", "int8") and graph.values[node.inputs[0]].dtype == "float32":
        s, z = np.float32(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])
        lo, hi = qnt.QRANGE[dtype]

        def run_flat(ins, outs):
            x = np.ascontiguousarray(ins[0]).reshape(-1)
            if outs[0].flags.c_contiguous:
                kernel = pick(_quantize, _quantize_serial, x.size * 8, num_threads())
                kernel(x, outs[0].reshape(-1), s, z, lo, hi)
            else:
                outs[0][...] = qnt.quantize(ins[0], scale, zp, dtype, axis)

        return run_flat

    def run(ins, outs):
        outs[0][...] = qnt.quantize(ins[0], scale, zp, dtype, axis)

    return run


@register("DequantizeLinear")
def build_dequantize(node, graph):
    axis = attr(node, "axis")
    scale, zp = param(graph, node, 1), param(graph, node, 2)
    if _per_tensor(scale, zp) and graph.values[node.inputs[0]].dtype in ("uint8", "int8"):
        s, z = np.float32(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])

        def run_flat(ins, outs):
            q = np.ascontiguousarray(ins[0]).reshape(-1)
            if outs[0].flags.c_contiguous:
                kernel = pick(_dequantize, _dequantize_serial, q.size * 4, num_threads())
                kernel(q, outs[0].reshape(-1), s, z)
            else:
                outs[0][...] = qnt.dequantize(ins[0], scale, zp, axis)

        return run_flat

    def run(ins, outs):
        outs[0][...] = qnt.dequantize(ins[0], scale, zp, axis)

    return run


@pjit
def _qadd(a, b, out, sa, za, sb, zb, sy, zy, lo, hi):
    """out = clip(rint((float32(a - za) * sa + float32(b - zb) * sb) / sy) + zy, lo, hi), in the
    float32 steps of the numpy formulas, the quotient clamped as in :func:`_quantize`."""
    n = a.size
    zaf, zbf, zf, flo, fhi = np.float32(za), np.float32(zb), np.float32(zy), np.float32(lo), np.float32(hi)
    vlo, vhi = flo - zf - np.float32(1), fhi - zf + np.float32(1)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        as_, bs, ys = _chunk(a, c), _chunk(b, c), _chunk(out, c)
        for i in range(as_.size):
            f = (np.float32(as_[i]) - zaf) * sa + (np.float32(bs[i]) - zbf) * sb
            ys[i] = _to_code(f, sy, zf, vlo, vhi, flo, fhi)


_qadd_serial = serial_twin(_qadd)


@register("QAdd")
def build_qadd(node, graph):
    sa, za, sb, zb, sy, zy = (param(graph, node, i) for i in (1, 2, 4, 5, 6, 7))
    dtype = graph.values[node.outputs[0]].dtype
    lo, hi = node.attrs.get("out_lo"), node.attrs.get("out_hi")
    qlo, qhi = qnt.QRANGE[dtype]
    lo, hi = qlo if lo is None else lo, qhi if hi is None else hi
    if all(v.size == 1 for v in (sa, za, sb, zb, sy, zy)) and dtype in ("uint8", "int8"):
        f32 = [np.float32(v.reshape(-1)[0]) for v in (sa, sb, sy)]
        i32 = [int(v.reshape(-1)[0]) for v in (za, zb, zy)]

        def run_fused(ins, outs):
            a, b, y = np.ascontiguousarray(ins[0]), np.ascontiguousarray(ins[3]), outs[0]
            kernel = pick(_qadd, _qadd_serial, a.size * 8, num_threads())
            kernel(a.reshape(-1), b.reshape(-1), y.reshape(-1), f32[0], i32[0], f32[1], i32[1], f32[2], i32[2], lo, hi)

        return run_fused

    def run(ins, outs):
        f = qnt.dequantize(ins[0], sa, za) + qnt.dequantize(ins[3], sb, zb)
        np.clip(qnt.quantize(f, sy, zy, "int32"), lo, hi, out=outs[0], casting="unsafe")

    return run


@pjit
def _qmul_gate(a, g, out, hw, sa, za, sb, zb, sy, zy, lo, hi):
    """out = quantize(dequantize(a) * dequantize(g)) per (image, channel) plane of ``hw`` codes,
    g one code per plane, in the float32 steps of DequantizeLinear, Mul and :func:`_quantize`
    (so the bytes are the unfused graph's)."""
    zaf, zf, flo, fhi = np.float32(za), np.float32(zy), np.float32(lo), np.float32(hi)
    vlo, vhi = flo - zf - np.float32(1), fhi - zf + np.float32(1)
    for p in prange(g.size):
        gate = (np.float32(g[p]) - np.float32(zb)) * sb
        xs, ys = a[p * hw : (p + 1) * hw], out[p * hw : (p + 1) * hw]
        for i in range(hw):
            ys[i] = _to_code(((np.float32(xs[i]) - zaf) * sa) * gate, sy, zf, vlo, vhi, flo, fhi)


_qmul_gate_serial = serial_twin(_qmul_gate)


@register("QMul")
def build_qmul(node, graph):
    sa, za, sb, zb, sy, zy = (param(graph, node, i) for i in (1, 2, 4, 5, 6, 7))
    dtype = graph.values[node.outputs[0]].dtype
    lo, hi = qnt.QRANGE[dtype]
    n, c, h, w = graph.values[node.inputs[0]].shape
    f32 = [np.float32(v.reshape(-1)[0]) for v in (sa, sb, sy)]
    i32 = [int(v.reshape(-1)[0]) for v in (za, zb, zy)]

    def run(ins, outs):
        a, g, y = np.ascontiguousarray(ins[0]), np.ascontiguousarray(ins[3]), outs[0]
        dst = y if y.flags.c_contiguous else np.empty(y.shape, y.dtype)
        kernel = pick(_qmul_gate, _qmul_gate_serial, a.size * 8, num_threads())
        kernel(
            a.reshape(-1), g.reshape(-1), dst.reshape(-1), h * w, f32[0], i32[0], f32[1], i32[1], f32[2], i32[2], lo, hi
        )
        if dst is not y:
            y[...] = dst

    return run


@pjit
def _qglobal_average_pool(x, out, hw, xz, scale, flo, fhi, zy):
    """out[p] = the requantized exact sum of plane p's ``hw`` codes less hw * xz: float32(sum) *
    scale, clamped to [flo, fhi] (bounds less the zero point), rounded half to even, + zy (MLAS's
    QLinearGlobalAveragePool)."""
    for p in prange(out.size):
        xs = x[p * hw : (p + 1) * hw]
        total = 0
        for i in range(hw):
            total += np.int32(xs[i])
        f = min(max(np.float32(total - hw * xz) * scale, flo), fhi)
        out[p] = np.int32((f + _ROUND) - _ROUND) + zy


_qglobal_average_pool_serial = serial_twin(_qglobal_average_pool)


@register("QGlobalAveragePool")
def build_qglobal_average_pool(node, graph):
    xs, xz, ys, zy = (param(graph, node, i) for i in (1, 2, 3, 4))
    dtype = graph.values[node.outputs[0]].dtype
    n, c, h, w = graph.values[node.inputs[0]].shape
    hw, zy = h * w, int(zy.reshape(-1)[0])
    # MLAS's scale: ScaleInput / (ScaleOutput * ImageSize), in float32
    scale = np.float32(xs.reshape(-1)[0]) / (np.float32(ys.reshape(-1)[0]) * np.float32(hw))
    lo, hi = qnt.QRANGE[dtype]
    flo, fhi = np.float32(lo - zy), np.float32(hi - zy)
    xz = int(xz.reshape(-1)[0])

    def run(ins, outs):
        x, y = np.ascontiguousarray(ins[0]).reshape(-1), outs[0]
        dst = np.empty(y.shape, y.dtype) if not y.flags.c_contiguous else y
        kernel = pick(_qglobal_average_pool, _qglobal_average_pool_serial, x.size, num_threads())
        kernel(x, dst.reshape(-1), hw, xz, scale, flo, fhi, zy)
        if dst is not y:
            y[...] = dst

    return run


@pjit
def _lookup(table, x, out):
    """out = table[x] over flat uint8 codes (the 256-entry tables of passes/fuse_qdq)."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        xs, ys = _chunk(x, c), _chunk(out, c)
        for i in range(xs.size):
            ys[i] = table[xs[i]]


_lookup_serial = serial_twin(_lookup)


@pjit
def _lookup_bytes(table, x, out):
    """:func:`_lookup` for a table of bytes, 64 codes per step (vector_ir.byte_table_run)."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        start = c * _CHUNK
        byte_table_run(table, x, out, start, min(_CHUNK, n - start))


_lookup_bytes_serial = serial_twin(_lookup_bytes)


def lookup_run(table: np.ndarray):
    """The run function of a Gather of a constant 256-entry table by 8-bit codes: x's bits read
    as uint8 index the table (how fuse_qdq lays out an int8 input's table)."""
    table = np.ascontiguousarray(table)
    bytewise = table.itemsize == 1 and has_vbmi()  # one-byte results: 64 lookups per vpermi2b pair
    if bytewise:
        table = table.view(np.uint8)

    def run(ins, outs):
        x = np.ascontiguousarray(ins[1]).view(np.uint8).reshape(-1)
        y = outs[0]
        if not y.flags.c_contiguous:
            y[...] = table[x].view(y.dtype).reshape(y.shape)
            return
        if bytewise:
            kernel = pick(_lookup_bytes, _lookup_bytes_serial, x.size, num_threads())
            kernel(table, x, y.reshape(-1).view(np.uint8))
            return
        kernel = pick(_lookup, _lookup_serial, x.size * 2, num_threads())
        kernel(table, x, y.reshape(-1))

    return run


@register("QMatMul")
def build_qmatmul(node, graph):
    za, zb = param(graph, node, 2), param(graph, node, 5)
    out_dtype = graph.values[node.outputs[0]].dtype
    requant = out_dtype != "int32"
    if requant:
        mult = qnt.requant_multiplier(param(graph, node, 1), param(graph, node, 4), param(graph, node, 6))
        zy = scalar(graph, node, 7)

    def run(ins, outs):
        # float64 holds every int32 accumulator exactly (|products| < 2**16, K far below 2**37)
        a = ins[0].astype(np.float64) - za.astype(np.float64)
        b = ins[3].astype(np.float64) - zb.astype(np.float64).reshape(-1)
        acc = np.matmul(a, b).astype(np.int32)
        if requant:
            outs[0][...] = qnt.requantize(acc, mult, zy, out_dtype, axis=-1)
        else:
            outs[0][...] = acc

    return run
