"""precision: mark the nodes that run in bfloat16 when a session asks for ``precision="bf16"``.

A marked node carries ``precision="bf16"`` (absent: float32), which its kernel reads and
``cnnrt inspect`` shows. Activations stay float32 but between bf16 convs: a bf16 conv
converts a float32 input to bf16 in the copy it makes of it anyway
(kernels/cpu/conv_blocked_bf16.py) and writes float32, so the nodes around it need no
conversion node. An output that only bf16-reading convs read (bf16 convs, as their input
or their residual, and float32 depthwise convs, whose sums stay float32, as their input) is
stored bf16 instead (dtype ir.BF16, :func:`_bf16_activations`): rounded once by its
producer's store, half the bytes through memory, read without a copy by an unpadded reader.

Marked: channel-blocked convs on the register tile (``BlockedConv`` with algorithm
``direct``) with constant weights, where the FLOPs are (3x3, 1x1, strided, and the stems
reading NCHW with 5x5 taps or more, whose bf16 copy pairs channels:
conv_blocked_bf16.PairedStem), and Gemms with a constant B (fully connected heads: a
stream through B, halved in bf16; kernels/cpu/gemm_bf16.py). A
``winograd`` one becomes ``direct``: the Winograd transforms scale values by up to 10x
before the products, so with an 8-bit mantissa its error is several times the direct
conv's. Left in float32, each logged with the reason: depthwise convs (memory-bound, a few
percent of a net's MACs), grouped convs (block-diagonal weights: no bf16 tile), 3x3
stems (:data:`MIN_STEM_TAPS`) and every other op.

On a CPU with AMX tiles every marked ungrouped BlockedConv also gets ``bf16_tile="amx"``
(kernels/cpu/conv_amx.py), the stems with 3x3 taps too (their taps fold into the tile's
channels; a stem's ``stem`` algorithm becomes ``direct``); its input copy has another layout,
so the copy-sharing key below tells the two apart.

Requires: select_algorithm has run (it reads ``algorithm``). Guarantees: nodes unchanged
but for the ``precision``, ``bf16_tile`` and ``bf16_copied`` attributes and Winograd (or, on
AMX, stem) -> direct, values but for the dtype of the bf16 activations; numerics change by
the bf16 rounding of the marked convs' inputs and weights (the point of the option), and of
the residuals they read: a bf16 activation read as an input is the rounding its readers would
make of the float32 one; read as a residual (ResNet's and MobileNetV2's residual stream,
which a bf16 conv's input copy had converted on every block) it adds one rounding, 2**-9 of
the residual. Against float32 onnxruntime (precision_accuracy, Zen 5) ResNet-50 moved 1.10e-2
-> 1.09e-2, ResNet-18 4.9e-3 -> 5.1e-3, MobileNetV2 1.82e-2 -> 1.73e-2 (OpenVINO bf16:
1.14e-2, 6.7e-3, 2.51e-2); batch 1, 2 threads: 0.95-0.97x the time.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cnnrt.core.ir import BF16, Graph
from cnnrt.core.layout import is_blocked
from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels.conv_spec import spec_from_node
from cnnrt.kernels.cpu.conv_amx import amx_shape_reason
from cnnrt.kernels.cpu.conv_common import block_size
from cnnrt.kernels.cpu.depthwise_blocked import applies as depthwise_applies
from cnnrt.kernels.cpu.gemm_bf16 import bf16_gemm_reason
from cnnrt.kernels.cpu.microkernel import tile_act
from cnnrt.kernels.cpu.microkernel_amx import amx_unsupported_reason

from . import PassResult

# an NCHW stem runs bf16 from 5x5 taps on: ResNet's 7x7 stem measured 0.6-0.75x float32's
# time on the bf16 tile, a 3x3 one (MobileNetV2's, SqueezeNet's) no faster, for more rounding
MIN_STEM_TAPS = 25

STEM_ON_AMX = "bf16 on AMX: the stem's taps fold into the channels of the tile's rows"
WINOGRAD_DECLINED = "bf16: Winograd's transforms amplify the 8-bit-mantissa rounding; the direct register tile"


def _on_amx(node, graph: Graph) -> bool:
    """Whether a bf16 BlockedConv runs on the AMX tiles: the CPU has them and
    kernels/cpu/conv_amx.py has a kernel for the conv."""
    if node.op != "BlockedConv" or amx_unsupported_reason():
        return False
    return not amx_shape_reason(spec_from_node(node, graph), is_blocked(graph.values[node.inputs[0]]))


def _why_f32(node, graph: Graph) -> str | None:
    """Why ``node`` stays float32 under bf16 (None: it runs bf16)."""
    if node.op == "Gemm":
        if node.inputs[1] not in graph.constants:
            return "Gemm: B is not constant (bf16 weights are packed at build)"
        a = graph.values[node.inputs[0]]
        k = a.shape[0] if node.attrs.get("trans_a", 0) else a.shape[1]
        return bf16_gemm_reason(k, bool(node.attrs.get("trans_a", 0)), a.dtype)
    if node.op != "BlockedConv":
        return None if node.op not in ("Conv", "MatMul") else "no bf16 kernel for this op (NCHW)"
    if node.attrs.get("algorithm") == "depthwise":
        return "depthwise: memory-bound, no dot products to pair"
    if node.attrs.get("algorithm") == "grouped":
        return "grouped: no bf16 kernel for block-diagonal weights"
    if node.attrs.get("algorithm") == "stem" and not _on_amx(node, graph):
        return "stem: the 3-channel stem kernel is float32 only"
    if node.inputs[1] not in graph.constants:
        return "weights are not constant (bf16 weights are packed at build)"
    taps = int(np.prod(graph.constants[node.inputs[1]].shape[2:]))
    if not is_blocked(graph.values[node.inputs[0]]) and taps < MIN_STEM_TAPS and not _on_amx(node, graph):
        return f"stem with {taps} taps: the bf16 tile measured no faster than float32 below {MIN_STEM_TAPS}"
    return ""


_NO_COPY = ("no copy",)  # a bf16 activation read as it lies: the shared buffer is left as it was


def _copy_key(node, graph: Graph) -> tuple | None:
    """What fixes the bf16 copy of a bf16 conv's input: the value and, when padded, the
    padding and window (they size the zero border: conv_blocked_bf16), always with the
    strides for the AMX tile's copy (its stride phases: conv_amx); None for a bf16 node
    whose copy is laid out otherwise (a stem's channel pairs, a Gemm's rows);
    :data:`_NO_COPY` for an unpadded conv reading a bf16 activation."""
    if node.op != "BlockedConv" or not is_blocked(graph.values[node.inputs[0]]):
        return None
    pads = tuple(node.attrs.get("pads", (0, 0, 0, 0)))
    amx = node.attrs.get("bf16_tile") == "amx"
    if graph.values[node.inputs[0]].dtype == BF16 and not any(pads):
        return _NO_COPY
    if not any(pads) and not amx:
        return (node.inputs[0],)
    window = tuple(graph.constants[node.inputs[1]].shape[2:])
    strides, dilations = tuple(node.attrs.get("strides", (1, 1))), tuple(node.attrs.get("dilations", (1, 1)))
    return (node.inputs[0], pads, window, strides, dilations, amx)


def _share_copies(nodes: list, graph: Graph, fired: list) -> list:
    """Every bf16 node writes its input's bf16 copy into one scratch buffer per graph, in
    node order (the executor's). A bf16 conv whose copy would equal the one in the buffer
    (the same value, copied alike, no other bf16 node between) is marked ``bf16_copied`` and
    reads it instead of converting again: GoogLeNet's branch convs on one input, ResNet's
    first conv and downsample of a block. A value's contents do not change while it is live."""
    out, current = [], None  # current: the copy key of what the scratch holds
    for node in nodes:
        if node.attrs.get("precision") != "bf16":
            out.append(node)
            continue
        key = _copy_key(node, graph)
        if key is _NO_COPY:
            out.append(node)
            continue
        if key is not None and key == current:
            node = node.with_attrs(bf16_copied=True)
            fired.append(("bf16 input copy shared", node.name))
        current = key
        out.append(node)
    return out


# activations a bf16 output of the depthwise conv or the ChannelAffine can end with (a clamp,
# then the rounding store); a bf16 conv's tile applies any of its own (microkernel.tile_act)
_NARROW_ACTIVATIONS = ("none", "Relu", "Clip")


def _vector_bf16_conv(node) -> bool:
    """A bf16 BlockedConv on the vector tile (conv_blocked.py)."""
    return (
        node.op == "BlockedConv"
        and node.attrs.get("precision") == "bf16"
        and node.attrs.get("bf16_tile") != "amx"
        and node.attrs.get("algorithm") == "direct"
    )


def _row_depthwise(node, graph: Graph) -> bool:
    """A float32 depthwise BlockedConv on the row-blocked kernel (depthwise_blocked.py), which
    widens a bf16 input exactly as it loads it and can round its stores to bf16."""
    if node.op != "BlockedConv" or node.attrs.get("algorithm") != "depthwise":
        return False
    spec = spec_from_node(node, graph)
    return spec.dtype == "float32" and depthwise_applies(spec, block_size(spec.dtype))


def _affine(node, graph: Graph) -> bool:
    """A float32 BlockedChannelAffine (blocked.py), whose vector store can round to bf16."""
    return node.op == "BlockedChannelAffine" and graph.values[node.inputs[0]].dtype == "float32"


def _reads_bf16(node, port: int, graph: Graph) -> bool:
    """Whether ``node`` can read a bf16 activation at input ``port``: a blocked conv's input,
    or a bf16 conv's residual (its epilogue widens the residual's bits as it loads them)."""
    if port == 3:
        return _vector_bf16_conv(node) and is_blocked(graph.values[node.inputs[3]])
    if port != 0 or not is_blocked(graph.values[node.inputs[0]]):
        return False
    return _vector_bf16_conv(node) or _row_depthwise(node, graph)


def _bf16_activations(nodes: list, graph: Graph, fired: list) -> dict:
    """The values that hold bf16 (ir.BF16) instead of float32: an output read by nothing
    but convs that read bf16 (:func:`_reads_bf16`), so the producer rounds once where its
    readers would each round their copy, and the activation crosses memory at half the bytes (ResNet's 1x1 -> 3x3 -> 1x1 inside a bottleneck, GoogLeNet's
    reduce convs, DenseNet's bottlenecks, SqueezeNet's squeezes, MobileNetV2's expanded
    tensors). Writers and readers: bf16 convs on the vector tile, and the row-blocked
    depthwise conv (float32 sums between a bf16 input and output: its output's rounding is
    the one the next bf16 conv's copy would make); writers also: a blocked ChannelAffine
    (DenseNet's BN + ReLU before each bottleneck's 1x1 conv, which then reads it without
    converting it). The producer's activation must be one it applies before its rounding
    store (a clamp, :data:`_NARROW_ACTIVATIONS`; any of the tile's for a bf16 conv: the SiLU of
    EfficientNet's expand convs, the HardSwish of MobileNetV3's) and its channels fill whole
    blocks (no padding lanes to zero); a graph output, a Concat slice or anything else read
    by another op stays float32. Returns the graph's values with those retyped."""
    readers: dict[str, list] = {}
    for node in nodes:
        for i, v in enumerate(node.inputs):
            if v:
                readers.setdefault(v, []).append((node, i))
    values = dict(graph.values)
    for node in nodes:
        act = node.attrs.get("activation", "none")
        if _vector_bf16_conv(node):
            if act != "none" and not tile_act(ACTIVATIONS[act], np.float32):
                continue
        elif not ((_row_depthwise(node, graph) or _affine(node, graph)) and act in _NARROW_ACTIVATIONS):
            continue
        out = node.outputs[0]
        v = graph.values[out]
        logical = graph.values.get(v.logical)
        channels = logical.shape[1] if logical is not None else v.shape[1] * v.shape[-1]
        if out in graph.outputs or not is_blocked(v) or channels % v.shape[-1]:
            continue
        uses = readers.get(out, [])
        if uses and all(_reads_bf16(r, i, graph) for r, i in uses):
            values[out] = dataclasses.replace(v, dtype=BF16)
            fired.append(("bf16 activation", out))
    return values


def mark_precision(graph: Graph, precision: str) -> PassResult:
    """Mark bf16 nodes for ``precision`` ("f32": nothing to do); see the module docstring."""
    if precision == "f32":
        return PassResult(graph, False)
    nodes, fired, declined = [], [], []
    for node in graph.nodes:
        why = _why_f32(node, graph)
        if why:
            declined.append(("bf16", node.name, why))
        if why != "":
            nodes.append(node)
            continue
        changes = {"precision": precision}
        if _on_amx(node, graph):
            changes["bf16_tile"] = "amx"
        if node.attrs.get("algorithm") == "winograd":
            changes.update(algorithm="direct", algorithm_reason=WINOGRAD_DECLINED)
        if node.attrs.get("algorithm") == "stem":
            changes.update(algorithm="direct", algorithm_reason=STEM_ON_AMX)
        nodes.append(node.with_attrs(**changes))
        fired.append((f"{node.op} -> {precision}", node.name))
    values = _bf16_activations(nodes, graph, fired)
    graph = Graph(nodes, values, graph.constants, graph.inputs, graph.outputs, graph.name)
    nodes = _share_copies(nodes, graph, fired)
    new = Graph(nodes, values, graph.constants, graph.inputs, graph.outputs, graph.name)
    return PassResult(new, bool(fired), fired, declined)
