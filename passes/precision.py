"""precision: mark the nodes that run in bfloat16 when a session asks for ``precision="bf16"``.

A marked node carries ``precision="bf16"`` (absent: float32), which its kernel reads and
``cnnrt inspect`` shows. Activations stay float32 but between bf16 convs: a bf16 conv
converts a float32 input to bf16 in the copy it makes of it anyway
(kernels/cpu/conv_blocked_bf16.py) and writes float32, so the nodes around it need no
conversion node. An output that only bf16 readers read (bf16 convs, as their input or
their residual; float32 depthwise convs, whose sums stay float32, and MaxPools with a bf16
output, as their input) is stored bf16 instead (dtype ir.BF16, :func:`_bf16_activations`):
rounded once by its producer's store, half the bytes through memory, read without a copy by
an unpadded reader. An in-place Concat of such outputs (GoogLeNet's modules, SqueezeNet's
fires) is bf16 when its readers are: the branches write their slices rounded.

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
(kernels/cpu/conv_amx.py), the stems too (their taps fold into the tile's channels; a stem's
``stem`` algorithm becomes ``direct``); its input copy has another layout, so the
copy-sharing key below tells the two apart. There a conv smaller than
:data:`AMX_MIN_REDUCTION` / :data:`AMX_MIN_OUTPUTS` stays float32 (a 3-channel 3x3 stem too).

Requires: select_algorithm has run (it reads ``algorithm``). Guarantees: nodes unchanged
but for the ``precision``, ``bf16_tile`` and ``bf16_copied`` attributes and Winograd (or, on
AMX, stem) -> direct, values but for the dtype of the bf16 activations; numerics change by
the bf16 rounding of the marked convs' inputs and weights (the point of the option), and of
the residuals they read: a bf16 activation read as an input is the rounding its readers would
make of the float32 one; read as a residual (ResNet's and MobileNetV2's residual stream,
which a bf16 conv's input copy had converted on every block) it adds one rounding, 2**-9 of
the residual. The error against float32 stays below OpenVINO bf16's (every activation bf16
there) on average; the README's bfloat16 section has the figures.
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

# an AMX conv pays per output element an epilogue through the tile's scratch and per input
# element the bf16 copy; it gains per MAC. Below a reduction (C x taps) of 64 or M x taps of 64
# MobileNetV2's AMX convs took longer than float32 (2 threads, batch 1, each step timed by
# `cnnrt profile`: 16 -> 96 at 112x112 0.40 against 0.28 ms, 24 -> 144 at 56x56 0.20 against
# 0.15, 192 -> 32 at 28x28 0.088 against 0.068; 64 -> 384 and 192 -> 64 at 14x14 ran faster)
AMX_MIN_REDUCTION = 64
AMX_MIN_OUTPUTS = 64
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
    m, cg = graph.constants[node.inputs[1]].shape[:2]
    taps = int(np.prod(graph.constants[node.inputs[1]].shape[2:]))
    on_amx = _on_amx(node, graph)
    if not is_blocked(graph.values[node.inputs[0]]) and taps < MIN_STEM_TAPS and not on_amx:
        return f"stem with {taps} taps: the bf16 tile measured no faster than float32 below {MIN_STEM_TAPS}"
    if on_amx and (cg * taps < AMX_MIN_REDUCTION or m * taps < AMX_MIN_OUTPUTS):
        return (
            f"small for AMX: a reduction of {cg * taps} and {m} outputs x {taps} taps (below {AMX_MIN_REDUCTION} "
            "either way its copy and epilogue outweigh the tile's products)"
        )
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


def _pool(node, graph: Graph, ops=("BlockedMaxPool", "BlockedAveragePool")) -> bool:
    """A float32 blocked pool of ``ops`` whose blocks are the vector lane kernel's
    (blocked_window.py), which reads a bf16 input widened and can round its stores to bf16."""
    if node.op not in ops or graph.values[node.inputs[0]].dtype not in ("float32", BF16):
        return False
    return graph.values[node.inputs[0]].shape[-1] == block_size(np.float32)


def _squeeze_excite(node, graph: Graph) -> bool:
    """A float32 BlockedSqueezeExcite on vector blocks, whose scaling store can round to bf16."""
    x = graph.values[node.inputs[0]]
    return node.op == "BlockedSqueezeExcite" and x.dtype == "float32" and x.shape[-1] == block_size(np.float32)


def _f32_tile_conv(node) -> bool:
    """A float32 ungrouped BlockedConv on the register tile (a 3x3 stem of more than 16
    channels: SqueezeNet's, MobileNetV2's, EfficientNet's), whose epilogue can round its
    stores to bf16 as the bf16 tile's does."""
    return (
        node.op == "BlockedConv"
        and node.attrs.get("algorithm") == "direct"
        and node.attrs.get("precision") != "bf16"
        and int(node.attrs.get("group", 1)) == 1
    )


def _f32_stem(node) -> bool:
    """A float32 3-channel stem (conv_stem.py) without a residual, whose rows can be stored
    rounded to bf16 after any activation (MobileNetV3's 16-channel stems)."""
    ins = node.inputs
    return node.op == "BlockedConv" and node.attrs.get("algorithm") == "stem" and (len(ins) < 4 or not ins[3])


def _affine(node, graph: Graph) -> bool:
    """A float32 BlockedChannelAffine (blocked.py), whose vector store can round to bf16."""
    return node.op == "BlockedChannelAffine" and graph.values[node.inputs[0]].dtype == "float32"


def _reads_bf16(node, port: int, graph: Graph, values: dict) -> bool:
    """Whether ``node`` can read a bf16 activation at input ``port``: a blocked conv's input,
    a bf16 conv's residual (its epilogue widens the residual's bits as it loads them), or the
    input of a MaxPool whose output is bf16 (``values``: the dtypes decided so far): the max
    of rounded values is the rounded max, so the rounding moves from its output to its input."""
    if port == 3:
        return _vector_bf16_conv(node) and is_blocked(graph.values[node.inputs[3]])
    if port != 0 or not is_blocked(graph.values[node.inputs[0]]):
        return False
    if _pool(node, graph, ("BlockedMaxPool",)):
        return values[node.outputs[0]].dtype == BF16
    return _vector_bf16_conv(node) or _row_depthwise(node, graph)


def _bf16_activations(nodes: list, graph: Graph, fired: list) -> dict:
    """The values that hold bf16 (ir.BF16) instead of float32: an output read by nothing
    but bf16 readers (:func:`_reads_bf16`), so the producer rounds once where its readers
    would each round their copy, and the activation crosses memory at half the bytes
    (ResNet's 1x1 -> 3x3 -> 1x1 inside a bottleneck and its residual stream, GoogLeNet's
    reduce convs, DenseNet's bottlenecks, SqueezeNet's squeezes, MobileNetV2's expanded
    tensors). Writers (:func:`_writes_bf16`): bf16 convs on the vector tile, float32 ones
    where every reader would round the output anyway (a bf16 conv's input, a bf16 MaxPool:
    SqueezeNet's 3x3 stem; MobileNetV2's, read by a depthwise conv, stays float32), the
    3-channel stem kernel (MobileNetV3's), the row-blocked
    depthwise conv (float32 sums between a bf16 input and output: its output's rounding is
    the one the next bf16 conv's copy would make), a blocked ChannelAffine (DenseNet's BN +
    ReLU before each bottleneck's 1x1 conv), blocked pools and squeeze-excitations (their
    scaling's store rounds: EfficientNet's, before each project conv). The producer's activation must
    be one it applies before its rounding store and its channels fill whole blocks; a graph
    output or anything else read by another op stays float32. Then each in-place Concat
    whose pieces all come from writers and whose readers read bf16 is bf16 with its pieces
    (a piece read besides the Concat by bf16 readers only). Returns the graph's values with
    those retyped."""
    readers: dict[str, list] = {}
    for node in nodes:
        for i, v in enumerate(node.inputs):
            if v:
                readers.setdefault(v, []).append((node, i))
    values = dict(graph.values)

    def reads_bf16(value: str, besides=None) -> bool:  # every reader but ``besides`` reads bf16
        uses = [(r, i) for r, i in readers.get(value, []) if r is not besides]
        return bool(uses) and all(_reads_bf16(r, i, graph, values) for r, i in uses)

    def retype(value: str) -> None:
        values[value] = dataclasses.replace(values[value], dtype=BF16)
        fired.append(("bf16 activation", value))

    def rounds_anyway(value: str) -> bool:  # every reader would round it: a bf16 conv's input copy, a bf16 MaxPool
        return all(
            i == 0 and (_vector_bf16_conv(r) or _pool(r, graph, ("BlockedMaxPool",))) for r, i in readers.get(value, [])
        )

    writers = {node.outputs[0]: node for node in nodes if _writes_bf16(node, graph)}
    for out in reversed(writers):  # readers first: a MaxPool reads bf16 once its output is bf16
        # a float32 conv's output is rounded only where that moves a rounding its readers make
        # anyway (a depthwise conv or a residual would read it rounded once more)
        if reads_bf16(out) and (not _f32_tile_conv(writers[out]) or rounds_anyway(out)):
            retype(out)
    for node in nodes:  # an in-place Concat of bf16 writers' outputs that bf16 readers read
        if node.op != "Concat" or not node.attrs.get("in_place") or not _whole_blocks(node.outputs[0], graph):
            continue
        pieces = node.inputs
        if len(set(pieces)) < len(pieces) or not all(x in writers for x in pieces) or not reads_bf16(node.outputs[0]):
            continue
        # a piece read besides the Concat: by bf16 readers only (it is one value, the slice)
        if all(all(r is node for r, _ in readers[x]) or reads_bf16(x, node) for x in pieces):
            for x in pieces:
                retype(x)
            retype(node.outputs[0])
    return values


def _whole_blocks(value: str, graph: Graph) -> bool:
    """A blocked value, not a graph output, whose channels fill whole blocks (no padding lanes)."""
    v = graph.values[value]
    if value in graph.outputs or not is_blocked(v):
        return False
    logical = graph.values.get(v.logical)
    channels = logical.shape[1] if logical is not None else v.shape[1] * v.shape[-1]
    return channels % v.shape[-1] == 0


def _writes_bf16(node, graph: Graph) -> bool:
    """Whether ``node`` can store its output as a bf16 activation: a bf16 or float32 conv on
    the vector tile whose activation the tile applies, a float32 3-channel stem, or a row-blocked
    depthwise conv, blocked ChannelAffine, blocked pool or squeeze-excitation ending at a
    clamp, into whole blocks."""
    act = node.attrs.get("activation", "none")
    if _vector_bf16_conv(node) or _f32_tile_conv(node):
        if act != "none" and not tile_act(ACTIVATIONS[act], np.float32):
            return False
    elif _f32_stem(node):
        pass  # any activation: it runs on the float32 rows before the rounding store
    elif not (
        (_row_depthwise(node, graph) or _affine(node, graph) or _pool(node, graph) or _squeeze_excite(node, graph))
        and act in _NARROW_ACTIVATIONS
    ):
        return False
    return _whole_blocks(node.outputs[0], graph)


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
