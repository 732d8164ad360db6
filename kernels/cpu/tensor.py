"""Data-movement kernels: views, Concat, Split, Slice, Transpose, Pad, Gather, Shape, ConstantOfShape,
DepthToSpace and SpaceToDepth (a transposition of a 6-D view of the input).

Pure data movement goes through numpy with the output preallocated; Pad is a Numba gather
through per-axis index tables (one kernel for constant, edge and reflect).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.core.const_eval import pad_widths, slice_index
from cnnrt.core.op_shapes import block_rearrangement
from cnnrt.kernels._jit import pjit
from cnnrt.kernels.cpu.blas import split_index
from cnnrt.kernels.cpu.quant import lookup_run
from cnnrt.kernels.registry import register


@register("Reshape", "Identity", "Dropout")
def build_view(node, graph):
    shape = graph.values[node.outputs[0]].shape

    def run(ins, outs):
        # The planner aliases a view's output to its input; only a view of a constant (or a
        # graph input the planner could not alias) needs the copy.
        x, out = ins[0], outs[0]
        if out.size and x.ctypes.data != out.ctypes.data:
            np.copyto(out, x.reshape(shape))

    return run


def _axis_slices(rank: int, axis: int, sizes) -> list[tuple[slice, ...]]:
    out, start = [], 0
    for s in sizes:
        out.append((slice(None),) * axis + (slice(start, start + s),) + (slice(None),) * (rank - axis - 1))
        start += s
    return out


@register("Concat")
def build_concat(node, graph):
    axis = node.attrs["axis"]
    rank = len(graph.values[node.outputs[0]].shape)
    slices = _axis_slices(rank, axis, [graph.values[i].shape[axis] for i in node.inputs])

    def run(ins, outs):
        out = outs[0]
        for x, s in zip(ins, slices):
            out[s] = x

    return run


@register("Split")
def build_split(node, graph):
    rank = len(graph.values[node.inputs[0]].shape)
    slices = _axis_slices(rank, node.attrs["axis"], node.attrs["sizes"])

    def run(ins, outs):
        x = ins[0]
        for out, s in zip(outs, slices):
            np.copyto(out, x[s])

    return run


@register("Slice")
def build_slice(node, graph):
    a = node.attrs
    idx = slice_index(a["starts"], a["ends"], a["steps"])

    def run(ins, outs):
        np.copyto(outs[0], ins[0][idx])

    return run


@register("Transpose")
def build_transpose(node, graph):
    perm = tuple(node.attrs["perm"])

    def run(ins, outs):
        np.copyto(outs[0], ins[0].transpose(perm))

    return run


@register("DepthToSpace", "SpaceToDepth")
def build_block_rearrangement(node, graph):
    view, perm = block_rearrangement(
        node.op, node.attrs["blocksize"], node.attrs.get("mode", "DCR"), graph.values[node.inputs[0]].shape
    )
    out_view = tuple(view[p] for p in perm)

    def run(ins, outs):
        np.copyto(outs[0].reshape(out_view), ins[0].reshape(view).transpose(perm))

    return run


@register("Gather")
def build_gather(node, graph):
    axis = node.attrs["axis"]
    table = graph.constants.get(node.inputs[0])
    if table is not None and table.shape == (256,) and graph.values[node.inputs[1]].dtype in ("uint8", "int8"):
        return lookup_run(table)  # an 8-bit lookup table (passes/fuse_qdq)

    def run(ins, outs):
        # mode="raise": an index outside [-n, n) is an error (re-raised naming the node).
        np.take(ins[0], ins[1], axis=axis, out=outs[0])

    return run


@register("Shape")
def build_shape(node, graph):
    shape = graph.values[node.inputs[0]].shape
    value = np.array(shape[node.attrs.get("start", 0) : node.attrs.get("end")], dtype=np.int64)

    def run(ins, outs):
        outs[0][...] = value

    return run


@register("ConstantOfShape")
def build_constant_of_shape(node, graph):
    value = np.asarray(node.attrs["value"]).astype(graph.values[node.outputs[0]].dtype)

    def run(ins, outs):
        outs[0].fill(value)

    return run


# ---------------------------------------------------------------------------- Pad


@pjit
def pad_gather_4d(x, out, i0, i1, i2, i3, value):
    """out[a, b, c, d] = x[i0[a], i1[b], i2[c], i3[d]], or ``value`` where an index is -1."""
    n0, n1, n2, n3 = out.shape
    for t in prange(n0 * n1):
        a, b = split_index(t, n1)
        ia, ib = i0[a], i1[b]
        for c in range(n2):
            ic = i2[c]
            if ia < 0 or ib < 0 or ic < 0:
                for d in range(n3):
                    out[a, b, c, d] = value
            else:
                for d in range(n3):
                    j = i3[d]
                    out[a, b, c, d] = x[ia, ib, ic, j] if j >= 0 else value


def pad_index(n: int, begin: int, end: int, mode: str) -> np.ndarray:
    """Source index for each output position along one axis (-1: the constant value)."""
    j = np.arange(-begin, n + end, dtype=np.int64)
    if mode == "edge":
        return np.clip(j, 0, n - 1)
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j > n - 1, 2 * (n - 1) - j, j)
    return np.where((j >= 0) & (j < n), j, -1)


def _merge_unpadded(shape, widths):
    """Merge neighbouring axes that are not padded, so most pads fit the 4-D kernel."""
    dims, pads = [], []
    for d, w in zip(shape, widths):
        if dims and w == (0, 0) and pads[-1] == (0, 0):
            dims[-1] *= d
        else:
            dims.append(d)
            pads.append(w)
    return dims, pads


@register("Pad")
def build_pad(node, graph):
    a = node.attrs
    mode = a["mode"]
    xshape = graph.values[node.inputs[0]].shape
    dtype = np.dtype(graph.values[node.outputs[0]].dtype)
    widths = pad_widths(a["pads"])
    dims, pads = _merge_unpadded(xshape, widths)
    if len(dims) > 4 or dtype == np.float16:  # rare (numba has no float16): numpy.pad allocates

        def run_numpy(ins, outs):
            if mode == "constant":
                np.copyto(outs[0], np.pad(ins[0], widths, mode="constant", constant_values=a["value"]))
            else:
                np.copyto(outs[0], np.pad(ins[0], widths, mode=mode))

        return run_numpy
    dims = [1] * (4 - len(dims)) + dims
    pads = [(0, 0)] * (4 - len(pads)) + pads
    tables = [pad_index(n, b, e, mode) for n, (b, e) in zip(dims, pads)]
    oshape = tuple(len(t) for t in tables)
    value = dtype.type(a["value"])
    if math.prod(oshape) == 0:
        return lambda ins, outs: None

    def run(ins, outs):
        pad_gather_4d(ins[0].reshape(dims), outs[0].reshape(oshape), *tables, value)

    return run
