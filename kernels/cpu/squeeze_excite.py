"""SqueezeExcite and BlockedSqueezeExcite: a squeeze-and-excitation block as one step.

y[n, c] = x[n, c] * gate(W2 squeeze(W1 mean_hw(x[n]) + B1) + B2)[c] (passes/fuse_se.py makes
the op from GlobalAveragePool -> 1x1 Conv -> 1x1 Conv -> Mul). One jitted call does it all,
image by image: the pooled means, the two matvecs and the activations (at most a few hundred
thousand MACs), then the scaling. The images are its tasks (kernels.cpu.threaded), so the
threads share a batch, a native plan's region runs it with the steps around it, and an image
is one thread's: at batch 1 the block is one task, as its few hundred thousand elements cost
less than waking a second thread. Where the unfused block had a pool, two convs, a Mul and
the reorders around it, each its own step, this is one.

NCHW is the blocked layout with one lane, so both forms share the kernel: x is (N, CB, HW, B)
flat, B = 1 for NCHW. In the blocked form C comes from W1, not from CB*B: the lanes of a last
block past C hold zeros and get a zero gate, so they stay zero.

The matvecs run as axpys over transposed weights (rows of W1ᵀ and W2ᵀ added into float64
accumulators), so the inner loops vectorise without reassociating a sum.
"""

from __future__ import annotations

import numba
import numpy as np

from cnnrt.core.ir import BF16
from cnnrt.core.ops import ACTIVATIONS, op_attrs
from cnnrt.kernels._jit import njit
from cnnrt.kernels.cpu.activation import act_inplace, act_scalar
from cnnrt.kernels.cpu.blas import share
from cnnrt.kernels.cpu.conv_common import readonly
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.kernels.cpu.native_call import native_call
from cnnrt.kernels.cpu.reduce import _global_pool_serial as _row_means
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.cpu.vector_ir import affine_run, pixel_reduce
from cnnrt.kernels.registry import KernelFn, register, run_of

LANES = 16  # float64 partial sums per NCHW plane (an argument: reduce.py says why)
PLANES = 8  # NCHW planes per pooling task
CHUNK = 1024  # elements of one scaling task


@njit
def _squeeze_excite_worker(
    part, parts, _form, x, y, w1t, b1, w2t, b2, pooled, lanes, hidden, acc, gate, neg_zero, dims, acts
):
    """This part's share of the images (kernels.cpu.threaded): per image, pool, gate and scale.
    x, y flat (N, CB, HW, B); w1t (C, R), w2t (R, C); pooled (N*CB*B,) of x's dtype; lanes:
    LANES; hidden (parts, R), acc (parts, CB*B) float64 scratch, a row per part; gate,
    neg_zero (N*CB*B,) of x's dtype, the latter all -0.0. dims = (N, CB, HW, B, C, R); acts =
    (squeeze kind, alpha, beta, gate kind, alpha, beta)."""
    n_img, cb, hw, b, c, r = dims
    k1, a1, be1, k2, a2, be2 = acts
    ks, kg = np.int64(k1), np.int64(k2)
    width = cb * b
    hid, ac = hidden[part], acc[part]
    per = max(1, CHUNK // b)
    chunks = (hw + per - 1) // per
    first, end = share(part, parts, n_img)
    for n in range(first, end):
        # 1. the means, per plane (NCHW: a channel; blocked: a block of B channels)
        if b * x.itemsize == VECTOR_BYTES:
            for p in range(n * cb, (n + 1) * cb):
                pixel_reduce(x, p * hw * b, hw, pooled, p * b, False)
        elif b == 1:  # NCHW: reduce.py's row means, on chunks of planes
            x2 = x.reshape((n_img * cb, hw))
            for p0 in range(n * cb, (n + 1) * cb, PLANES):
                p1 = min((n + 1) * cb, p0 + PLANES)
                _row_means(x2[p0:p1], pooled[p0:p1], False, lanes)
        else:  # blocked, B not the vector width (float64 on AVX2): lane by lane
            for p in range(n * cb, (n + 1) * cb):
                base = p * hw * b
                for lane in range(b):
                    total = 0.0
                    for q in range(hw):
                        total += x[base + q * b + lane]
                    pooled[p * b + lane] = total / hw
        # 2. the gates: squeeze matvec + activation, excite matvec + activation
        for j in range(r):
            hid[j] = b1[j]
        for ch in range(c):
            v = np.float64(pooled[n * width + ch])
            for j in range(r):
                hid[j] += w1t[ch, j] * v
        for j in range(r):
            hid[j] = act_scalar(hid[j], ks, a1, be1)
        for ch in range(c):
            ac[ch] = b2[ch]
        for j in range(r):
            h = hid[j]
            for ch in range(c):
                ac[ch] += w2t[j, ch] * h
        for ch in range(c):
            gate[n * width + ch] = ac[ch]
        act_inplace(gate[n * width : n * width + c], kg, a2, be2)
        for ch in range(c, width):
            gate[n * width + ch] = 0.0
        # 3. the scaling, plane by plane in chunks of pixels
        for t in range(n * cb * chunks, (n + 1) * cb * chunks):
            p = t // chunks
            s0 = (t - p * chunks) * per
            s1 = min(hw, s0 + per)
            if b * x.itemsize == VECTOR_BYTES:
                # explicit vectors: y is x (the plan runs the block in place), and with the two the
                # same LLVM's overlap check sent its vectorised loop to the scalar one
                # (x * g + -0.0 is x * g, signed zeros included)
                affine_run(x, (p * hw + s0) * b, y, (p * hw + s0) * b, s1 - s0, gate, neg_zero, p * b, -np.inf, np.inf)
                continue
            # views and unsigned offsets: with int64 ones into the flat arrays LLVM left these scalar
            xs = x[(p * hw + s0) * b : (p * hw + s1) * b]
            ys = y[(p * hw + s0) * b : (p * hw + s1) * b]
            if b == 1:
                gv = gate[p]
                for q in range(s1 - s0):
                    ys[q] = xs[q] * gv
            else:
                gl = gate[p * b : (p + 1) * b]
                for q in range(s1 - s0):
                    o = np.uint64(q * b)
                    for lane in range(b):
                        ys[o + np.uint64(lane)] = xs[o + np.uint64(lane)] * gl[lane]


_squeeze_excite, _squeeze_excite_serial = threaded(_squeeze_excite_worker)


@register("SqueezeExcite", "BlockedSqueezeExcite")
def build_squeeze_excite(node, graph) -> KernelFn:
    """X (N, C, H, W) or blocked (N, CB, H, W, B) -> Y of X's shape (float32, or a bf16
    activation); W1 (R, C), B1 (R,), W2 (C, R), B2 (C,), constant (fuse_se makes them so)."""
    xs = tuple(graph.values[node.inputs[0]].shape)
    dt = np.dtype(graph.values[node.inputs[0]].dtype)
    ws = [graph.constants.get(i) for i in node.inputs[1:5]]
    if any(w is None for w in ws):
        raise ValueError(f"{node.op} {node.name!r}: W1, B1, W2, B2 must be constants")
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in ws)
    r, c = w1.shape
    if node.op == "BlockedSqueezeExcite":
        if len(xs) != 5 or not (xs[1] - 1) * xs[4] < c <= xs[1] * xs[4]:
            raise ValueError(f"{node.op} {node.name!r}: X {list(xs)} does not hold {c} channels in blocks")
        n, cb, h, w, b = xs
    else:
        if len(xs) != 4 or xs[1] != c:
            raise ValueError(f"{node.op} {node.name!r}: X {list(xs)} does not have W1's {c} channels")
        n, cb, h, w, b = (*xs, 1)
    if w2.shape != (c, r) or b1.shape != (r,) or b2.shape != (c,):
        raise ValueError(f"{node.op} {node.name!r}: weights {[a.shape for a in (w1, b1, w2, b2)]} for C={c}, R={r}")
    a = op_attrs(node)
    acts = []
    for kind in ("squeeze", "gate"):
        if a[kind] not in ACTIVATIONS:
            raise ValueError(f"{node.op} {node.name!r}: unknown {kind} activation {a[kind]!r}")
        acts += [float(ACTIVATIONS[a[kind]]), float(a[f"{kind}_alpha"]), float(a[f"{kind}_beta"])]
    w1t = readonly(np.ascontiguousarray(w1.T.astype(dt)))
    w2t = readonly(np.ascontiguousarray(w2.T.astype(dt)))
    b1c, b2c = readonly(b1.astype(dt)), readonly(b2.astype(dt))
    pooled = np.zeros(n * cb * b, dt)
    gate = np.zeros(n * cb * b, dt)
    neg_zero = readonly(np.full(n * cb * b, -0.0, dt))
    parts = numba.config.NUMBA_NUM_THREADS
    hidden, acc = np.zeros((parts, r)), np.zeros((parts, cb * b))
    dims = np.array([n, cb, h * w, b, c, r], np.int64)
    acts_arr = np.array(acts)
    size = n * cb * h * w * b

    # a bf16 output (passes/precision.py: read by bf16 convs only), rounded by affine_run's store
    bf16_out = graph.values[node.outputs[0]].dtype == BF16
    if bf16_out and (dt != np.float32 or b * dt.itemsize != VECTOR_BYTES):
        raise ValueError(f"{node.op} {node.name!r}: a bf16 output needs float32 vector blocks")

    def bind(ins, outs):
        # the work of one pass over x, as the GlobalAveragePool and the Mul it replaces counted
        # theirs; the tasks are images, so one image runs on one thread
        x, y = ins[0].reshape(-1), outs[0].reshape(-1)
        y = y.view(np.uint16) if bf16_out else y
        args = (x, y, w1t, b1c, w2t, b2c, pooled, LANES, hidden, acc, gate, neg_zero, dims, acts_arr)
        work = size if n > 1 else 0
        return native_call(
            _squeeze_excite, _squeeze_excite_serial, work, lambda nthreads: (min(nthreads, parts), (), *args)
        )

    return run_of(bind)
