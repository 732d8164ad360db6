"""Reductions: Softmax/LogSoftmax, ReduceMean/Sum/Max/Min/L2, ArgMax/ArgMin, GlobalAveragePool
and GlobalMaxPool. The Reduce* and Arg* ops are numpy reductions writing into the output."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.kernels._jit import num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu.blas import split_index
from cnnrt.kernels.cpu.elementwise import dtype_of, require_float
from cnnrt.kernels.registry import register

# ---------------------------------------------------------------------------- Softmax


@pjit
def softmax_3d(x, out, log):
    """Softmax along axis 1 of (outer, n, inner) arrays; one (outer, inner) pair per task."""
    outer, n, inner = x.shape
    for t in prange(outer * inner):
        o, j = split_index(t, inner)
        m = -np.inf
        for k in range(n):
            v = x[o, k, j]
            if v > m:
                m = v
        s = 0.0
        if log:
            for k in range(n):
                s += math.exp(x[o, k, j] - m)
            c = m + math.log(s)
            for k in range(n):
                out[o, k, j] = x[o, k, j] - c
        else:
            # each exp once, kept in out (rounded once more: <= 1 ulp): exp is a libm call per
            # element and most of the time
            for k in range(n):
                e = math.exp(x[o, k, j] - m)
                out[o, k, j] = e
                s += e
            r = 1.0 / s
            for k in range(n):
                out[o, k, j] = out[o, k, j] * r


_softmax_3d_serial = serial_twin(softmax_3d)


@register("Softmax")
def build_softmax(node, graph):
    shape = graph.values[node.inputs[0]].shape
    require_float(node, dtype_of(graph, node.inputs[0]))
    axis, log = node.attrs["axis"], bool(node.attrs["log"])
    if node.attrs["coerce_2d"]:
        shape3 = (math.prod(shape[:axis]), math.prod(shape[axis:]), 1)
    else:
        shape3 = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))

    # the serial twin below ~2^19 element-ops: a parallel region costs more than a small softmax
    work = 8 * math.prod(shape)

    def run(ins, outs):
        kern = pick(softmax_3d, _softmax_3d_serial, work, num_threads())
        kern(ins[0].reshape(shape3), outs[0].reshape(shape3), log)

    return run


# ---------------------------------------------------------------------------- ReduceMean


@register("ReduceMean")
def build_reduce_mean(node, graph):
    shape = graph.values[node.inputs[0]].shape
    axes = tuple(node.attrs["axes"])
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))

    def run(ins, outs):
        np.mean(ins[0], axis=axes, keepdims=True, out=outs[0].reshape(kept))

    return run


_REDUCTIONS = {"ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min}


@register("ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2")
def build_reduce(node, graph):
    shape = graph.values[node.inputs[0]].shape
    axes = tuple(node.attrs["axes"])
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    if node.op == "ReduceL2":

        def run_l2(ins, outs):
            out = outs[0].reshape(kept)
            np.sum(np.square(ins[0]), axis=axes, keepdims=True, out=out)
            np.sqrt(out, out=out)

        return run_l2
    f = _REDUCTIONS[node.op]

    def run(ins, outs):
        f(ins[0], axis=axes, keepdims=True, out=outs[0].reshape(kept))

    return run


@register("ArgMax", "ArgMin")
def build_arg_reduce(node, graph):
    shape = graph.values[node.inputs[0]].shape
    axis = int(node.attrs["axis"])
    last = bool(node.attrs.get("select_last_index", False))
    f = np.argmax if node.op == "ArgMax" else np.argmin
    kept = tuple(1 if i == axis else d for i, d in enumerate(shape))

    def run(ins, outs):
        out = outs[0].reshape(kept)
        if not last:
            f(ins[0], axis=axis, keepdims=True, out=out)
            return
        # the last extreme is the first one of the reversed axis
        f(np.flip(ins[0], axis), axis=axis, keepdims=True, out=out)
        np.subtract(shape[axis] - 1, out, out=out)

    return run


# ---------------------------------------------------------------------------- global pools


@pjit
def _global_pool(x, out, is_max, lanes):
    """x (P, S) -> out (P,): mean (accumulated in float64) or max of each row.

    The mean sums in ``lanes`` (a power of 2, 16) float64 lanes (element s into lane s % lanes),
    the lanes then added pairwise: one running sum is a chain of dependent adds that LLVM may
    not reorder without fastmath; lanes are a vector add. ``lanes`` is an argument so the lane
    loop is not unrolled (unrolled, it was not vectorised: an alias check is needed)."""
    p_count, s_count = x.shape
    nb = s_count // lanes
    n_chunks = (p_count + 63) // 64
    for ch in prange(n_chunks):
        acc = np.empty(lanes)
        for p in range(ch * 64, min(p_count, ch * 64 + 64)):
            if is_max:
                best = -np.inf
                for s in range(s_count):
                    v = x[p, s]
                    best = v if v > best else best  # NaN skipped, as in MaxPool
                out[p] = best
                continue
            for k in range(lanes):
                acc[k] = 0.0
            for j in range(nb):
                base = np.uint64(j * lanes)
                for k in range(lanes):  # a runtime trip count: vectorised with an alias check
                    acc[np.uint64(k)] += x[p, base + np.uint64(k)]
            tail = 0.0
            for s in range(nb * lanes, s_count):
                tail += x[p, s]
            w = lanes
            while w > 1:
                w //= 2
                for k in range(w):
                    acc[k] += acc[k + w]
            out[p] = (acc[0] + tail) / s_count


_global_pool_serial = serial_twin(_global_pool)


@register("GlobalAveragePool", "GlobalMaxPool")
def build_global_pool(node, graph):
    shape = graph.values[node.inputs[0]].shape
    if len(shape) < 3:
        raise ValueError(f"{node.op} needs rank >= 3, got {list(shape)}")
    p = shape[0] * shape[1]
    is_max = node.op == "GlobalMaxPool"

    def run(ins, outs):
        x = ins[0].reshape(p, -1)
        pick(_global_pool, _global_pool_serial, x.size, num_threads())(x, outs[0].reshape(p), is_max, 16)

    return run
