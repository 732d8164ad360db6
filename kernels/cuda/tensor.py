"""Data-movement CUDA kernels: Concat, Split, Slice, Transpose, Pad, Gather, views and shape ops,
DepthToSpace and SpaceToDepth.

Concat and Split are one strided row copy per input/output. Slice and Transpose are one
strided gather: each output index maps to ``base + sum(coord[d] * istride[d])`` with the
strides worked out on the host (Transpose permutes them, Slice scales them by the step,
DepthToSpace/SpaceToDepth permute those of a 6-D view of the input).
Reshape/Identity/Dropout are views: the executor skips them when the plan aliased their
output to their input; otherwise (a constant input) they copy.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cnnrt.core.op_shapes import block_rearrangement
from cnnrt.errors import ShapeError, UnsupportedOpError
from cnnrt.kernels.registry import register

from .common import c_strides, int_array, launcher_1d, shape_of, size_of, split_index, strided_offset
from .device import upload_flat
from .elementwise import _copy

PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2}


@cuda.jit
def _copy_rows(src, dst, n, row, src_row, src_off, dst_row, dst_off):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        r, c = split_index(i, row)
        dst[dst_off + r * dst_row + c] = src[src_off + r * src_row + c]


@cuda.jit
def _gather_strided(x, y, n, rank, oshape, istr, base):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = x[base + strided_offset(i, rank, oshape, istr)]


@cuda.jit
def _pad(x, y, n, rank, oshape, ishape, istr, begin, mode, value):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        rem = i
        ix = 0
        inside = True
        for d in range(rank - 1, -1, -1):
            dim = oshape[d]
            j = rem % dim - begin[d]
            rem = rem // dim
            length = ishape[d]
            if j < 0 or j >= length:
                if mode == 0:
                    inside = False
                    j = 0
                elif mode == 1:  # reflect about the edge elements (period 2 * (length - 1))
                    if length == 1:
                        j = 0
                    else:
                        period = 2 * (length - 1)
                        j = j % period
                        if j >= length:
                            j = period - j
                else:  # edge
                    j = 0 if j < 0 else length - 1
            ix += j * istr[d]
        if inside:
            y[i] = x[ix]
        else:
            y[i] = value


@cuda.jit
def _fill(y, n, value):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = value


@cuda.jit
def _gather_axis(data, idx, y, n, nidx, inner, axis_len):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = i % inner
        j = (i // inner) % nidx
        outer = i // (inner * nidx)
        k = idx[j]
        if k < 0:
            k += axis_len
        y[i] = data[(outer * axis_len + k) * inner + r]


def _scalar(value, dtype):
    """A scalar attribute (Python number or 0-d/1-element array) in ``dtype``."""
    arr = np.asarray(0 if value is None else value).reshape(-1)
    return np.dtype(dtype).type(arr[0] if arr.size else 0)


def _axis(node, rank: int) -> int:
    axis = int(node.attrs.get("axis", 0))
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"node {node.name!r} ({node.op}): axis {axis} is out of range for rank {rank}")
    return axis % max(rank, 1)


def _row_copies(shape, axis: int, parts) -> list[tuple]:
    """Concat/Split as row copies: the tensor ``shape`` is ``outer`` rows of its ``axis`` times the
    inner size, part k of ``parts`` ((size along axis, present?)) a column range of them; per
    present non-empty part (k, launch, elements, row length, element offset in the row)."""
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    steps, off = [], 0
    for k, (d, present) in enumerate(parts):
        row = d * inner
        if present and row:
            steps.append((k, launcher_1d(_copy_rows, outer * row), outer * row, row, off * inner))
        off += d
    return steps


@register("Concat", backend="cuda")
def build_concat(node, graph):
    out = shape_of(graph, node.outputs[0])
    axis = _axis(node, len(out))
    parts = [(shape_of(graph, name)[axis] if name else 0, bool(name)) for name in node.inputs]
    steps, dst_row = _row_copies(out, axis, parts), int(np.prod(out[axis:], dtype=np.int64))

    def run(ins, outs):
        for k, launch, n, row, dst_off in steps:
            launch(ins[k], outs[0], n, row, row, 0, dst_row, dst_off)

    return run


@register("Split", backend="cuda")
def build_split(node, graph):
    shape = shape_of(graph, node.inputs[0])
    axis = _axis(node, len(shape))
    sizes = [
        shape_of(graph, name)[axis] if name else int(node.attrs["sizes"][k]) for k, name in enumerate(node.outputs)
    ]
    steps = _row_copies(shape, axis, [(d, bool(name)) for d, name in zip(sizes, node.outputs)])
    src_row = int(np.prod(shape[axis:], dtype=np.int64))

    def run(ins, outs):
        for k, launch, n, row, src_off in steps:
            launch(ins[0], outs[k], n, row, src_row, src_off, row, 0)

    return run


def _strided_gather(graph, node, oshape, istr, base: int):
    n = size_of(graph, node.outputs[0])
    rank = max(len(oshape), 1)
    d_oshape, d_istr = int_array(oshape), int_array(istr)
    launch = launcher_1d(_gather_strided, n)
    return lambda ins, outs: launch(ins[0], outs[0], n, rank, d_oshape, d_istr, base)


@register("Transpose", backend="cuda")
def build_transpose(node, graph):
    ishape = shape_of(graph, node.inputs[0])
    perm = node.attrs.get("perm")
    perm = list(range(len(ishape)))[::-1] if perm is None else [int(p) % len(ishape) for p in perm]
    st = c_strides(ishape)
    return _strided_gather(graph, node, [ishape[p] for p in perm], [st[p] for p in perm], 0)


@register("DepthToSpace", "SpaceToDepth", backend="cuda")
def build_block_rearrangement(node, graph):
    view, perm = block_rearrangement(
        node.op, node.attrs["blocksize"], node.attrs.get("mode", "DCR"), shape_of(graph, node.inputs[0])
    )
    st = c_strides(view)
    return _strided_gather(graph, node, [view[p] for p in perm], [st[p] for p in perm], 0)


@register("Slice", backend="cuda")
def build_slice(node, graph):
    ishape = shape_of(graph, node.inputs[0])
    oshape = shape_of(graph, node.outputs[0])
    rank = len(ishape)
    starts = [int(s) for s in node.attrs["starts"]]
    steps = [int(s) for s in node.attrs.get("steps") or [1] * len(starts)]
    if len(starts) != rank or len(steps) != rank:
        raise UnsupportedOpError(
            f"node {node.name!r} (Slice): expected one start/step per axis ({rank}), got {starts}, {steps}"
        )
    st = c_strides(ishape)
    base = 0
    for d in range(rank):
        if oshape[d] > 0:
            s = starts[d] + ishape[d] if starts[d] < 0 else starts[d]
            s = min(max(s, 0), ishape[d] - 1)
            last = s + (oshape[d] - 1) * steps[d]
            if not 0 <= last < ishape[d]:
                raise ShapeError(f"node {node.name!r} (Slice): axis {d} start {s} step {steps[d]} leaves the input")
            base += s * st[d]
    return _strided_gather(graph, node, oshape, [s * k for s, k in zip(st, steps)], base)


@register("Pad", backend="cuda")
def build_pad(node, graph):
    ishape = shape_of(graph, node.inputs[0])
    oshape = shape_of(graph, node.outputs[0])
    pads = [int(p) for p in node.attrs["pads"]]
    mode = node.attrs.get("mode", "constant")
    if mode not in PAD_MODES:
        raise UnsupportedOpError(f"node {node.name!r} (Pad): mode {mode!r} is not supported")
    if len(pads) != 2 * len(ishape):
        raise ShapeError(f"node {node.name!r} (Pad): pads {pads} do not fit rank {len(ishape)}")
    if mode == "reflect" and any(p >= d for p, d in zip(pads, list(ishape) * 2)):
        raise ShapeError(
            f"node {node.name!r} (Pad): reflect padding {pads} must be smaller than the input {list(ishape)}"
        )
    value = _scalar(node.attrs.get("value", 0), graph.values[node.outputs[0]].dtype)
    n = size_of(graph, node.outputs[0])
    rank = max(len(ishape), 1)
    tables = [int_array(t) for t in (oshape, ishape, c_strides(ishape), pads[: len(ishape)])]
    code = PAD_MODES[mode]
    launch = launcher_1d(_pad, n)
    return lambda ins, outs: launch(ins[0], outs[0], n, rank, *tables, code, value)


@register("Reshape", "Identity", "Dropout", backend="cuda")
def build_view(node, graph):
    n = size_of(graph, node.outputs[0])
    launch = launcher_1d(_copy, n)
    mask = node.outputs[1] if len(node.outputs) > 1 and node.outputs[1] else None
    fill_mask = launcher_1d(_fill, size_of(graph, mask)) if mask else None
    nm = size_of(graph, mask) if mask else 0
    true = np.dtype(graph.values[mask].dtype).type(1) if mask else None

    def run(ins, outs):
        launch(ins[0], outs[0], n)
        if fill_mask is not None:
            fill_mask(outs[1], nm, true)

    return run


@register("Shape", backend="cuda")
def build_shape(node, graph):
    shape = shape_of(graph, node.inputs[0])
    start, end = node.attrs.get("start"), node.attrs.get("end")
    vals = np.asarray(shape[slice(start, end)], dtype=graph.values[node.outputs[0]].dtype)
    if vals.size != size_of(graph, node.outputs[0]):
        raise ShapeError(
            f"node {node.name!r} (Shape): {vals.size} dims do not fit output {list(shape_of(graph, node.outputs[0]))}"
        )
    if vals.size == 0:
        return lambda ins, outs: None
    src = upload_flat(vals)
    n = vals.size
    launch = launcher_1d(_copy, n)
    return lambda ins, outs: launch(src, outs[0], n)


@register("ConstantOfShape", backend="cuda")
def build_constant_of_shape(node, graph):
    out = node.outputs[0]
    v = _scalar(node.attrs.get("value", 0), graph.values[out].dtype)
    n = size_of(graph, out)
    launch = launcher_1d(_fill, n)
    return lambda ins, outs: launch(outs[0], n, v)


@register("Gather", backend="cuda")
def build_gather(node, graph):
    data, indices = node.inputs[:2]
    dshape = shape_of(graph, data)
    axis = _axis(node, len(dshape))
    axis_len = dshape[axis]
    if graph.is_constant(indices):
        idx = graph.constants[indices]
        if idx.size and (idx.min() < -axis_len or idx.max() >= axis_len):
            raise ShapeError(f"node {node.name!r} (Gather): indices outside [-{axis_len}, {axis_len}) on axis {axis}")
    nidx = size_of(graph, indices)
    inner = int(np.prod(dshape[axis + 1 :], dtype=np.int64))
    n = size_of(graph, node.outputs[0])
    launch = launcher_1d(_gather_axis, n)
    return lambda ins, outs: launch(ins[0], ins[1], outs[0], n, nidx, inner, axis_len)
