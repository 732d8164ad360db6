"""A slow, obviously-correct numpy interpreter for IR graphs, used to check that a pass keeps a
graph's meaning (before vs after) without depending on the kernels.

:data:`INTERPRET` has one entry per op of the op table (tests/core/test_op_table.py checks it);
each takes the node, its attributes with the table's defaults filled, the input arrays and the
output shapes, and computes in float64 with tests/reference.py's formulas.
"""

from __future__ import annotations

import numpy as np
from reference import (
    MATH_REFERENCES,
    QUANT_RANGE,
    activation_ref,
    arg_reduce_reference,
    batchnorm_reference,
    conv2d_reference,
    conv_transpose2d_reference,
    depth_to_space_reference,
    dequantize_reference,
    gemm_reference,
    group_norm_reference,
    layer_norm_reference,
    lrn_reference,
    pool_reference,
    qconv_accumulator_reference,
    quantize_reference,
    reduce_reference,
    requantize_reference,
    resize_reference,
    softmax_reference,
    space_to_depth_reference,
    squeeze_excite_reference,
)

from cnnrt.core.ir import Graph, Node
from cnnrt.core.layout import block, unblock
from cnnrt.core.ops import OPS, UNARY_ACTIVATION_OPS, activation_params, op_attrs


def evaluate(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` in float64 numpy; returns the graph outputs cast to their dtypes."""
    env: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in graph.constants.items()}
    env.update(feeds)
    for node in graph.nodes:
        ins = [env[i] if i else None for i in node.inputs]
        outs = [graph.values[o] for o in node.outputs if o]
        res = run_node(node, ins, [o.shape for o in outs])
        for v, r in zip(outs, res):
            r = np.asarray(r)
            assert r.shape == v.shape, (node.name, r.shape, v.shape)
            env[v.name] = r.astype(v.dtype)
    return [env[o] for o in graph.outputs]


def run_node(node: Node, x, shapes) -> list:
    """The outputs of one node from its input arrays (None for an omitted optional input)."""
    return INTERPRET[node.op](node, op_attrs(node), x, shapes)


_COMPARE = {
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
}


def _epilogue(a) -> tuple:
    return a["activation"], a["act_alpha"], a["act_beta"]


def _opt(x, i):
    return x[i] if len(x) > i else None


def _residual_epilogue(y, a, x):
    if _opt(x, 3) is not None:
        y = y + x[3]  # the residual, before the activation
    return [activation_ref(y, *_epilogue(a))]


def _conv(node, a, x, shapes):
    y = conv2d_reference(x[0], x[1], _opt(x, 2), a["strides"], a["pads"], a["dilations"], a["group"])
    return _residual_epilogue(y, a, x)


def _conv_transpose(node, a, x, shapes):
    y = conv_transpose2d_reference(
        x[0], x[1], _opt(x, 2), a["strides"], a["pads"], a["dilations"], a["group"], shapes[0][2:]
    )
    return _residual_epilogue(y, a, x)


def _channel_affine(node, a, x, shapes):
    c = x[0].shape[1]
    # per channel (C,) or per activation (C, H, W) (BN's spatial=0 form)
    shp = (1, -1) + (1,) * (x[0].ndim - 2) if x[1].size == c else (1, *x[0].shape[1:])
    y = x[0] * x[1].astype(np.float64).reshape(shp) + x[2].astype(np.float64).reshape(shp)
    return [activation_ref(y, *_epilogue(a))]


def _gemm(node, a, x, shapes):
    y = gemm_reference(x[0], x[1], _opt(x, 2), a["alpha"], a["beta"], a["trans_a"], a["trans_b"])
    return [activation_ref(y, *_epilogue(a))]


def _pool(mode):
    def run(node, a, x, shapes):
        extra = (
            {"count_include_pad": a["count_include_pad"]} if mode == "avg" else {"storage_order": a["storage_order"]}
        )
        res = pool_reference(x[0], a["kernel"], a["strides"], a["pads"], a["dilations"], shapes[0][2:], mode, **extra)
        if mode == "avg":
            return [res]
        y, idx = res
        return [y, idx][: len(shapes)]

    return run


def _fold(f):
    def run(node, a, x, shapes):
        acc = np.asarray(x[0], np.float64)
        for b in x[1:]:
            acc = f(acc, b)
        return [acc]

    return run


def _slice(node, a, x, shapes):
    index = tuple(slice(s, None if e < 0 else e, st) for s, e, st in zip(a["starts"], a["ends"], a["steps"]))
    return [x[0][index]]


def _split(node, a, x, shapes):
    return np.split(x[0], np.cumsum(a["sizes"])[:-1], axis=a["axis"])


def _pad(node, a, x, shapes):
    n = len(a["pads"]) // 2
    widths = [(a["pads"][i], a["pads"][i + n]) for i in range(n)]
    if a["mode"] == "constant":
        return [np.pad(x[0].astype(np.float64), widths, constant_values=a["value"])]
    return [np.pad(x[0], widths, mode=a["mode"])]


def _block(y, shape):
    """Blocked ``shape`` from NCHW ``y``; channels past y's (a cropped conv's last block) zero."""
    n, cb, h, w, b = shape
    if y.shape[1] < cb * b:
        y = np.concatenate([y, np.zeros((n, cb * b - y.shape[1], h, w), y.dtype)], axis=1)
    return block(y, b)


def _unblock(x):
    """(N, C/B, H, W, B) -> NCHW; other ranks as they are."""
    return x if x is None or x.ndim != 5 else unblock(x)


def _blocked(node, a, x, shapes):
    """The NCHW op on unblocked inputs, its output blocked again."""
    plain = node.replace(op=node.op.removeprefix("Blocked"))
    n, cb, h, w, b = shapes[0]
    c = x[1].shape[0] if node.op == "BlockedConv" else cb * b  # a conv's channels: its weights'
    y = run_node(plain, [_unblock(v) for v in x], [(n, c, h, w)])[0]
    return [_block(np.asarray(y), shapes[0])]


def _blocked_split(node, a, x, shapes):
    """Each piece of the logical channels, blocked with its padding lanes zero."""
    bounds = np.cumsum([0, *a["sizes"]])
    y = _unblock(x[0])
    return [_block(y[:, bounds[k] : bounds[k + 1]], s) for k, s in enumerate(shapes)]


def _blocked_channel_shuffle(node, a, x, shapes):
    """The logical channels concatenated, shuffled in ``groups`` and split, each piece blocked."""
    y = np.concatenate([_unblock(v)[:, :c] for v, c in zip(x, a["sizes"])], axis=1)
    n, c, h, w = y.shape
    g = a["groups"]
    y = y.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    bounds = np.cumsum([0, *a["splits"]])
    return [_block(y[:, bounds[k] : bounds[k + 1]], s) for k, s in enumerate(shapes)]


def _se_acts(a) -> tuple:
    return (a["squeeze"], a["squeeze_alpha"], a["squeeze_beta"]), (a["gate"], a["gate_alpha"], a["gate_beta"])


def _blocked_squeeze_excite(node, a, x, shapes):
    """Blocked: C from W1; the lanes past C are zero in and zero out."""
    c = x[1].shape[1]
    y = squeeze_excite_reference(_unblock(x[0])[:, :c], *x[1:5], *_se_acts(a))
    return [_block(y, shapes[0])]


def _unary(node, a, x, shapes):
    return [activation_ref(x[0], node.op, *activation_params(node.op, a))]


def _qtype(zero_point) -> str:
    return "uint8" if zero_point is None else str(zero_point.dtype)


def _zp(v) -> int:
    return 0 if v is None else int(np.asarray(v).reshape(-1)[0])


def _qconv(a, x):
    geometry = dict(strides=a["strides"], pads=a["pads"], dilations=a["dilations"], group=a["group"])
    acc = qconv_accumulator_reference(x[0], _opt(x, 2), x[3], _opt(x, 5), _opt(x, 8), **geometry)
    if _opt(x, 6) is None:
        return acc
    return requantize_reference(acc, x[1], x[4], x[6], _zp(_opt(x, 7)), _qtype(_opt(x, 7)), a["out_lo"], a["out_hi"])


def _qmatmul(x):
    bz = np.asarray(0 if _opt(x, 5) is None else x[5], np.int64).reshape(-1)
    acc = (np.asarray(x[0], np.int64) - _zp(_opt(x, 2))) @ (np.asarray(x[3], np.int64) - bz)
    if _opt(x, 6) is None:
        return acc.astype(np.int32)
    acc = np.moveaxis(acc, -1, 1) if acc.ndim > 1 else acc
    y = requantize_reference(acc, x[1], x[4], x[6], _zp(_opt(x, 7)), _qtype(_opt(x, 7)))
    return np.moveaxis(y, 1, -1) if y.ndim > 1 else y


def _qadd(a, x):
    f = dequantize_reference(x[0], x[1], _opt(x, 2)) + dequantize_reference(x[3], x[4], _opt(x, 5))
    y = quantize_reference(f, x[6], _opt(x, 7), "int32")
    lo, hi = (None if a["out_lo"] is None else a["out_lo"]), a["out_hi"]
    qlo, qhi = QUANT_RANGE[_qtype(_opt(x, 7))]
    return np.clip(y, qlo if lo is None else lo, qhi if hi is None else hi).astype(_qtype(_opt(x, 7)))


def _qmul(x):
    f = dequantize_reference(x[0], x[1], _opt(x, 2)) * dequantize_reference(x[3], x[4], _opt(x, 5))
    return quantize_reference(f, x[6], _opt(x, 7), _qtype(_opt(x, 7)))


def _qglobal_average_pool(x):
    """MLAS's QLinearGlobalAveragePool: each plane's exact sum less hw * x_zp, times float32
    x_scale / (y_scale * hw), clamped, rounded half to even, plus y_zp."""
    q, zx, zy = x[0], int(np.asarray(_opt(x, 2)).reshape(-1)[0]), _opt(x, 4)
    hw = q.shape[2] * q.shape[3]
    acc = q.astype(np.int64).sum(axis=(2, 3), keepdims=True) - hw * zx
    scale = np.float32(x[1]) / (np.float32(x[3]) * np.float32(hw))
    z = int(np.asarray(zy).reshape(-1)[0])
    lo, hi = QUANT_RANGE[_qtype(zy)]
    f = np.clip(acc.astype(np.float32) * scale, np.float32(lo - z), np.float32(hi - z))
    return (np.rint(f).astype(np.int64) + z).astype(_qtype(zy))


INTERPRET = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": lambda n, a, x, s: [batchnorm_reference(*x[:5], a["epsilon"])],
    "ChannelAffine": _channel_affine,
    "LRN": lambda n, a, x, s: [lrn_reference(x[0], a["size"], a["alpha"], a["beta"], a["bias"])],
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda n, a, x, s: [x[0].astype(np.float64).mean(axis=(2, 3), keepdims=True)],
    "GlobalMaxPool": lambda n, a, x, s: [x[0].max(axis=(2, 3), keepdims=True)],
    "Gemm": _gemm,
    "MatMul": lambda n, a, x, s: [x[0].astype(np.float64) @ x[1]],
    **{op: _unary for op in UNARY_ACTIVATION_OPS},
    "PRelu": lambda n, a, x, s: [np.where(x[0] >= 0, x[0], x[0].astype(np.float64) * x[1])],
    "Add": _fold(np.add),
    "Sub": _fold(np.subtract),
    "Mul": _fold(np.multiply),
    "Div": _fold(np.divide),
    "Sum": _fold(np.add),
    "Max": _fold(np.maximum),
    "Min": _fold(np.minimum),
    "Softmax": lambda n, a, x, s: [softmax_reference(x[0], a["axis"], a["coerce_2d"], a["log"])],
    "Concat": lambda n, a, x, s: [np.concatenate(x, axis=a["axis"])],
    "Split": _split,
    "Slice": _slice,
    "Reshape": lambda n, a, x, s: [x[0].reshape(s[0])],
    "Identity": lambda n, a, x, s: [x[0]],
    "Dropout": lambda n, a, x, s: [x[0]] + [np.ones(shape, bool) for shape in s[1:]],
    "Transpose": lambda n, a, x, s: [np.transpose(x[0], a["perm"])],
    "Pad": _pad,
    "Resize": lambda n, a, x, s: [
        resize_reference(
            x[0], a["scales"], a["mode"], a["coord_mode"], a["nearest_mode"], a["cubic_coeff_a"], a["exclude_outside"]
        )
    ],
    "GroupNormalization": lambda n, a, x, s: [
        activation_ref(group_norm_reference(*x[:3], a["num_groups"], a["epsilon"]), *_epilogue(a))
    ],
    "DepthToSpace": lambda n, a, x, s: [depth_to_space_reference(x[0], a["blocksize"], a["mode"])],
    "SpaceToDepth": lambda n, a, x, s: [space_to_depth_reference(x[0], a["blocksize"], a["mode"])],
    "Shape": lambda n, a, x, s: [np.array(x[0].shape[a["start"] : a["end"]], dtype=np.int64)],
    "ConstantOfShape": lambda n, a, x, s: [np.full(s[0], a["value"])],
    "Gather": lambda n, a, x, s: [np.take(x[0], x[1], axis=a["axis"])],
    "Cast": lambda n, a, x, s: [x[0].astype(a["to"])],
    "ReduceMean": lambda n, a, x, s: [x[0].astype(np.float64).mean(axis=tuple(a["axes"]), keepdims=a["keepdims"])],
    "ReorderToBlocked": lambda n, a, x, s: [_block(x[0], s[0])],
    "ReorderFromBlocked": lambda n, a, x, s: [_unblock(x[0])[:, : s[0][1]]],
    **{op: _blocked for op in OPS if OPS[op].category == "blocked" and op.startswith("Blocked")},
    # math, comparisons, reductions, LayerNormalization
    **{op: lambda n, a, x, s: [MATH_REFERENCES[n.op](x[0].astype(np.float64))] for op in MATH_REFERENCES},
    "Pow": lambda n, a, x, s: [np.power(x[0].astype(np.float64), x[1])],
    **{op: lambda n, a, x, s: [_COMPARE[n.op](x[0], x[1])] for op in _COMPARE},
    "Not": lambda n, a, x, s: [np.logical_not(x[0])],
    "Where": lambda n, a, x, s: [np.where(x[0], x[1], x[2])],
    "Expand": lambda n, a, x, s: [np.broadcast_to(x[0], s[0])],
    **{
        op: lambda n, a, x, s: [reduce_reference(x[0], n.op, a["axes"], a["keepdims"])]
        for op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2")
    },
    **{
        op: lambda n, a, x, s: [arg_reduce_reference(x[0], n.op, a["axis"], a["keepdims"], a["select_last_index"])]
        for op in ("ArgMax", "ArgMin")
    },
    "SqueezeExcite": lambda n, a, x, s: [squeeze_excite_reference(*x[:5], *_se_acts(a))],
    "BlockedSqueezeExcite": _blocked_squeeze_excite,
    "BlockedSplit": _blocked_split,
    "BlockedChannelShuffle": _blocked_channel_shuffle,
    "BlockedConcat": lambda n, a, x, s: [
        _block(np.concatenate([_unblock(v)[:, :c] for v, c in zip(x, a["sizes"])], axis=1), s[0])
    ],
    "QuantizeLinear": lambda n, a, x, s: [quantize_reference(x[0], x[1], _opt(x, 2), _qtype(_opt(x, 2)), a["axis"])],
    "DequantizeLinear": lambda n, a, x, s: [dequantize_reference(x[0], x[1], _opt(x, 2), a["axis"])],
    "QConv": lambda n, a, x, s: [_qconv(a, x)],
    "QMatMul": lambda n, a, x, s: [_qmatmul(x)],
    "QAdd": lambda n, a, x, s: [_qadd(a, x)],
    "QMul": lambda n, a, x, s: [_qmul(x)],
    "QGlobalAveragePool": lambda n, a, x, s: [_qglobal_average_pool(x)],
    "LayerNormalization": lambda n, a, x, s: list(
        layer_norm_reference(x[0], x[1], _opt(x, 2), a["axis"], a["epsilon"])
    )[: len(s)],
}
