"""A slow, obviously-correct numpy interpreter for IR graphs, used to check that a pass
keeps a graph's meaning (before vs after) without depending on the kernels."""

from __future__ import annotations

import math

import numpy as np
from reference_ops import act_ref, conv_ref, conv_transpose_ref

from cnnrt.core.ir import Graph, Node
from cnnrt.core.layout import block, unblock


def _unary_params(node: Node) -> tuple[float, float]:
    from cnnrt.core.ops import activation_params

    return activation_params(node.op, node.attrs)


def _windows(x: np.ndarray, kernel, strides, pads, dilations, fill: float, out_hw) -> np.ndarray:
    """(N, C, OH, OW, kh, kw) patches of x padded with ``fill``."""
    t, left, b, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=fill)
    oh, ow = out_hw
    kh, kw = kernel
    n, c = x.shape[:2]
    out = np.full((n, c, oh, ow, kh, kw), fill, dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            rows = i * dilations[0] + strides[0] * np.arange(oh)
            cols = j * dilations[1] + strides[1] * np.arange(ow)
            ok_r, ok_c = rows < xp.shape[2], cols < xp.shape[3]
            sub = np.full((n, c, oh, ow), fill)
            sub[:, :, ok_r[:, None] & ok_c[None, :]] = xp[:, :, rows[ok_r]][:, :, :, cols[ok_c]].reshape(n, c, -1)
            out[..., i, j] = sub
    return out


def _conv(x, w, b, attrs):
    return conv_ref(x, w, b, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"])


def _conv_transpose(x, w, b, attrs, out_shape):
    """The IR keeps no output_padding: it is whatever the output shape adds past the pads."""
    s, d, p = attrs["strides"], attrs["dilations"], attrs["pads"]
    natural = [s[i] * (x.shape[2 + i] - 1) + d[i] * (w.shape[2 + i] - 1) + 1 for i in range(2)]
    extra = [out_shape[2 + i] + p[i] + p[i + 2] - natural[i] for i in range(2)]
    return conv_transpose_ref(x, w, b, s, p, d, attrs["group"], extra)


def evaluate(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` in float64 numpy; returns the graph outputs cast to their dtypes."""
    env: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in graph.constants.items()}
    env.update(feeds)
    for node in graph.nodes:
        ins = [env[i] if i else None for i in node.inputs]
        outs = [graph.values[o] for o in node.outputs if o]
        res = _run(node, ins, [o.shape for o in outs])
        for v, r in zip(outs, res):
            r = np.asarray(r)
            assert r.shape == v.shape, (node.name, r.shape, v.shape)
            env[v.name] = r.astype(v.dtype)
    return [env[o] for o in graph.outputs]


def _unblock(x):
    """(N, C/B, H, W, B) -> NCHW; other ranks as they are."""
    return x if x is None or x.ndim != 5 else unblock(x)


def _block(y, shape):
    """Blocked ``shape`` from NCHW ``y``; channels past y's (a cropped conv's last block) zero."""
    n, cb, h, w, b = shape
    if y.shape[1] < cb * b:
        y = np.concatenate([y, np.zeros((n, cb * b - y.shape[1], h, w), y.dtype)], axis=1)
    return block(y, b)


def _run(node: Node, x, shapes):
    op, a = node.op, node.attrs
    if op == "ReorderToBlocked":
        return [_block(x[0], shapes[0])]
    if op == "ReorderFromBlocked":
        return [_unblock(x[0])[:, : shapes[0][1]]]
    if op.startswith("Blocked"):  # the NCHW op on unblocked inputs, its output blocked again
        plain = node.replace(op=op.removeprefix("Blocked"))
        n, cb, h, w, b = shapes[0]
        c = x[1].shape[0] if op == "BlockedConv" else cb * b  # a conv's channels: its weights'
        y = _run(plain, [_unblock(v) for v in x], [(n, c, h, w)])[0]
        return [_block(np.asarray(y), shapes[0])]
    ep = (a.get("activation", "none"), a.get("act_alpha", 0.0), a.get("act_beta", 0.0))
    if op == "Conv":
        y = _conv(x[0], x[1], x[2] if len(x) > 2 else None, a)
        if len(x) > 3 and x[3] is not None:
            y = y + x[3]
        return [act_ref(y, *ep)]
    if op == "ConvTranspose":
        return [act_ref(_conv_transpose(x[0], x[1], x[2] if len(x) > 2 else None, a, shapes[0]), *ep)]
    if op == "BatchNormalization":
        c = x[0].shape[1]
        shp = (1, c) + (1,) * (x[0].ndim - 2)
        s, b, m, v = (p.astype(np.float64).reshape(shp) for p in x[1:5])
        return [(x[0] - m) / np.sqrt(v + a["epsilon"]) * s + b]
    if op == "ChannelAffine":
        c = x[0].shape[1]
        # per channel (C,) or per activation (C, H, W) (BN's spatial=0 form)
        shp = (1, -1) + (1,) * (x[0].ndim - 2) if x[1].size == c else (1, *x[0].shape[1:])
        return [act_ref(x[0] * x[1].astype(np.float64).reshape(shp) + x[2].astype(np.float64).reshape(shp), *ep)]
    if op == "Gemm":
        A = x[0].T if a.get("trans_a") else x[0]
        B = x[1].T if a.get("trans_b") else x[1]
        y = a.get("alpha", 1.0) * (A.astype(np.float64) @ B.astype(np.float64))
        if len(x) > 2 and x[2] is not None:
            y = y + a.get("beta", 1.0) * x[2]
        return [act_ref(y, *ep)]
    if op == "MatMul":
        return [x[0].astype(np.float64) @ x[1]]
    if op in ("Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu"):
        return [act_ref(x[0], op, *_unary_params(node))]
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        return [f(x[0].astype(np.float64), x[1])]
    if op == "Sum":
        return [sum(v.astype(np.float64) for v in x)]
    if op in ("Identity", "Dropout"):
        return [x[0]] + [np.ones(s, bool) for s in shapes[1:]]
    if op == "Reshape":
        return [x[0].reshape(shapes[0])]
    if op == "Transpose":
        return [np.transpose(x[0], a["perm"])]
    if op == "Concat":
        return [np.concatenate(x, axis=a["axis"])]
    if op == "Pad":
        n = len(a["pads"]) // 2
        widths = [(a["pads"][i], a["pads"][i + n]) for i in range(n)]
        if a.get("mode", "constant") == "constant":
            return [np.pad(x[0].astype(np.float64), widths, constant_values=a.get("value", 0.0))]
        return [np.pad(x[0], widths, mode=a["mode"])]
    if op == "MaxPool":
        pat = _windows(
            x[0].astype(np.float64), a["kernel"], a["strides"], a["pads"], a["dilations"], -math.inf, shapes[0][2:]
        )
        return [pat.max(axis=(4, 5))]
    if op == "AveragePool":
        pat = _windows(
            x[0].astype(np.float64), a["kernel"], a["strides"], a["pads"], a["dilations"], np.nan, shapes[0][2:]
        )
        if a.get("count_include_pad"):
            t, left, b, r = a["pads"]
            inner = np.pad(np.ones(x[0].shape[2:]), ((t, b), (left, r)), constant_values=0.0)
            ones = _windows(
                inner[None, None], a["kernel"], a["strides"], (0, 0, 0, 0), a["dilations"], np.nan, shapes[0][2:]
            )
            count = np.sum(~np.isnan(ones), axis=(4, 5))
            return [np.nansum(pat, axis=(4, 5)) / count]
        return [np.nanmean(pat, axis=(4, 5))]
    if op == "GlobalAveragePool":
        return [x[0].mean(axis=(2, 3), keepdims=True)]
    if op == "Shape":
        return [np.array(x[0].shape[a.get("start", 0) : a.get("end")], dtype=np.int64)]
    if op == "Gather":
        return [np.take(x[0], x[1], axis=a["axis"])]
    raise NotImplementedError(op)
