"""Run IR nodes through CudaExecutor, and the numpy references the CUDA kernels are checked against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnrt.cuda_executor import CudaExecutor
from cnnrt.ir import Graph, Node, Value
from cnnrt.plan import plan_memory


def run_op(
    op: str, inputs: Sequence[np.ndarray | None], outputs, attrs=None, const: Sequence[int] = (), executor=False
):
    """Run one ``op`` node on CUDA. ``outputs``: list of shapes or (shape, dtype); ``const``:
    indices of inputs bound as graph constants (the rest are fed). Returns numpy outputs
    (and the executor when ``executor=True``)."""
    names, values, consts, feeds, feed_names = [], {}, {}, [], []
    for k, a in enumerate(inputs):
        if a is None:
            names.append("")
            continue
        name = f"in{k}"
        names.append(name)
        a = np.asarray(a)
        values[name] = Value(name, tuple(a.shape), str(a.dtype))
        if k in const:
            consts[name] = a
        else:
            feeds.append(a)
            feed_names.append(name)
    out_names = []
    for k, o in enumerate(outputs):
        shape, dtype = o if (isinstance(o, tuple) and len(o) == 2 and isinstance(o[1], str)) else (o, "float32")
        out_names.append(f"out{k}")
        values[f"out{k}"] = Value(f"out{k}", tuple(int(d) for d in shape), dtype)
    node = Node(op, tuple(names), tuple(out_names), dict(attrs or {}), name=f"{op.lower()}0", origin=(f"{op}_0",))
    graph = Graph([node], values, consts, feed_names, out_names)
    graph.verify()
    ex = CudaExecutor(graph, plan_memory(graph))
    outs = ex.run(feeds)
    return (outs, ex) if executor else outs


def rand(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def tol_for(k_len: int, dtype=np.float32) -> float:
    """Relative bound for a float32 sum of ``k_len`` products: ~sqrt(k) * eps, with margin."""
    return float(8 * np.finfo(dtype).eps * np.sqrt(max(k_len, 1)) + 1e-6)


def assert_close(got, ref, rel):
    """max|got - ref| <= rel * max(1, max|ref|) (the project's bound), shapes equal."""
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:g} * {scale:.3e}"


# --------------------------------------------------------------------- numpy references


def act_ref(x, name="none", alpha=0.0, beta=0.0):
    x = x.astype(np.float64)
    if name == "none":
        return x
    if name == "Relu":
        return np.maximum(x, 0)
    if name == "LeakyRelu":
        return np.where(x >= 0, x, x * alpha)
    if name == "Clip":
        return np.clip(x, alpha, beta)
    if name == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "HardSigmoid":
        return np.clip(alpha * x + beta, 0, 1)
    if name == "HardSwish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Elu":
        return np.where(x >= 0, x, alpha * (np.exp(x) - 1))
    if name == "SiLU":
        return x / (1 + np.exp(-x))
    raise ValueError(name)


def conv_out(size, k, s, d, p0, p1):
    return (size + p0 + p1 - (k - 1) * d - 1) // s + 1


def conv_ref(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1):
    """Direct convolution in float64: one shifted, strided window view per kernel tap."""
    n, c, h, wd = x.shape
    oc, icg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    oh, ow = conv_out(h, kh, sh, dh, pt, pb), conv_out(wd, kw, sw, dw, pl, pr)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    out = np.zeros((n, oc, oh, ow))
    ocg = oc // group
    for g in range(group):
        xs = xp[:, g * icg : (g + 1) * icg]
        ws = w[g * ocg : (g + 1) * ocg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
                out[:, g * ocg : (g + 1) * ocg] += np.einsum("ncij,oc->noij", patch, ws[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def conv_transpose_ref(
    x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, output_padding=(0, 0)
):
    """Scatter form in float64: every input pixel adds its weighted kernel window."""
    n, c, h, wd = x.shape
    _, ocg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    fh = (h - 1) * sh + (kh - 1) * dh + 1 + output_padding[0]
    fw = (wd - 1) * sw + (kw - 1) * dw + 1 + output_padding[1]
    full = np.zeros((n, ocg * group, fh, fw))
    icg = c // group
    for g in range(group):
        xs = x[:, g * icg : (g + 1) * icg].astype(np.float64)
        ws = w[g * icg : (g + 1) * icg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("ncij,co->noij", xs, ws[:, :, i, j])
                full[
                    :,
                    g * ocg : (g + 1) * ocg,
                    i * dh : i * dh + sh * (h - 1) + 1 : sh,
                    j * dw : j * dw + sw * (wd - 1) + 1 : sw,
                ] += contrib
    out = full[:, :, pt : fh - pb, pl : fw - pr]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out


def pool_windows(x, kernel, strides, pads, dilations, out_hw, fill):
    """(windows [n, c, oh, ow, kh*kw], in_input mask, in_padded mask) for pooling refs."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dilations
    oh, ow = out_hw
    win = np.full((n, c, oh, ow, kh * kw), fill, np.float64)
    inside = np.zeros((oh, ow, kh * kw), bool)
    padded = np.zeros((oh, ow, kh * kw), bool)
    index = np.full((n, c, oh, ow, kh * kw), -1, np.int64)
    for a in range(oh):
        for bcol in range(ow):
            for i in range(kh):
                for j in range(kw):
                    ih, iw = a * sh - pt + i * dh, bcol * sw - pl + j * dw
                    t = i * kw + j
                    padded[a, bcol, t] = -pt <= ih < h + pb and -pl <= iw < w + pr
                    if 0 <= ih < h and 0 <= iw < w:
                        inside[a, bcol, t] = True
                        win[:, :, a, bcol, t] = x[:, :, ih, iw]
                        index[:, :, a, bcol, t] = ih * w + iw
    return win, inside, padded, index


def pool_out(size, k, s, d, p0, p1, ceil_mode):
    span = (k - 1) * d + 1
    avail = size + p0 + p1 - span
    out = (-(-avail // s) if ceil_mode else avail // s) + 1
    if ceil_mode and (out - 1) * s >= size + p0:
        out -= 1
    return out
