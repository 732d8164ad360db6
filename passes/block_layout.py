"""block_layout: run the convolution chains in the channel-blocked layout (NCHWc).

A blocked value stores a logical NCHW tensor in blocks of B channels (one CPU vector of
channels: 16 float32 with AVX-512) as (N, ceil(C/B), H, W, B), the lanes of a last partial
block zero (cnnrt.core.layout states the invariant and who keeps it). Convs in that layout read
and write whole channel vectors (kernels/cpu/conv_blocked.py): no copy-out, strides and
padding free, and pools, BN affines, residual adds and channel Concats stay in it between
them, so the reorders are paid once at the chain's edges — onnxruntime's NCHWc transformer
is the model (the layout is what its convs were measured 1.2-2x faster with).

Rules, in topological order (each value's blocked twin is named ``<value>/nchw<B>c``; its
Value carries the layout and the logical value it stores, cnnrt.core.layout):

- A value is blockable when rank 4, float, and its padding lanes are at most MAX_PAD_FRACTION
  of its channels (24 -> 32 channels is; a 3-channel image is not: stems read NCHW).
- ``Conv`` -> ``BlockedConv`` when ungrouped, depthwise, or grouped with groups that tile the
  channel blocks (conv_blocked_plan.grouped_span: RegNet's 8 per group) with a blockable output and no
  algorithm override; its input is the blocked twin, or a ``ReorderToBlocked`` of it when
  blockable, else the NCHW value itself (stems: 3 input channels). A residual input is
  reordered to blocked if it is not already. Where input or output has padding lanes the
  weights and bias (constants) get zero rows and columns for them, so every conv kernel sees
  whole blocks (a depthwise or grouped conv's group count grows with its channels) and writes act(0) = 0
  there (the dense kernels store 0 past the output's logical channels: Inf inputs would make
  0 x Inf = NaN); a fused activation with act(0) != 0 (Sigmoid, HardSigmoid) on a padded
  output is cropped as below, other grouped convs stay NCHW (logged).
- A conv whose output is not blockable (a 1000-class head) or whose padding lanes would not
  stay zero, on a blocked input, becomes a ``BlockedConv`` writing whole blocks (zero
  weights past M) read only by a ``ReorderFromBlocked`` that crops.
- ``MaxPool``, ``AveragePool``, ``GlobalAveragePool``, ``GlobalMaxPool``, ``LRN`` (float32,
  size <= 5: GoogLeNet's and AlexNet's; larger windows are logged and read NCHW), per-channel
  ``ChannelAffine`` -> their ``Blocked`` form when the input is blocked already (an affine's
  parameters zero padded: constants only when padded; its activation must keep 0 at 0).
- Elementwise ops (activations, Add/Sub/Mul/Div, Sum/Max/Min) whose inputs all have the
  output's shape (N, C, H, W) or (N, C, 1, 1) (a squeeze-and-excitation gate: its blocked
  (N, C/B, 1, 1, B) broadcasts over the pixels as numpy does) stay the same op on blocked
  values when an input of the output's shape is blocked (the others get reordered, a
  (N, C, 1, 1) of whole blocks by a Reshape view); on padded values only when they map zeros to zero (not Sigmoid,
  nor Div: 0/0). A channel ``Split`` of a blocked value -> ``BlockedSplit`` (each piece
  blocked with zero padding lanes) when every piece is blockable. Channel Concats too: as
  ``Concat`` when every input but the last is whole blocks (the blocked tensors concatenate
  as they are), else as ``BlockedConcat``, which places each input's channels by lane.
- A channel shuffle (Reshape (N, G, C/G, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape) of a
  channel Concat with a blocked input, with the channel Split that alone reads it, -> one
  ``BlockedChannelShuffle`` from the blocked inputs to the blocked pieces (ShuffleNet's unit
  boundary), when each intermediate has that one reader.
- Graphs where fewer than MIN_BLOCKED_CONVS convs could be blocked stay as they are.
- Any other reader of a blocked value gets its NCHW version from one ``ReorderFromBlocked``
  (a Reshape view when H = W = 1 and C is whole blocks: (N, C/B, 1, 1, B) and (N, C, 1, 1)
  are the same bytes), and so do graph outputs.

Requires: the fusion passes done (it runs once, after the pipeline's fixed point: the
rewrite rules match NCHW ops). Guarantees: every logical value keeps its name and shape
where it is read in NCHW; numerics unchanged (the kernels compute the same sums).
"""

from __future__ import annotations

import numpy as np

from cnnrt.core import layout
from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.ops import OPS, evaluate_node, op_attrs, op_def
from cnnrt.kernels.conv_spec import spec_from_node
from cnnrt.kernels.cpu.conv_blocked_plan import grouped_span
from cnnrt.kernels.cpu.vector_ir import LRN_REACH

from . import PassResult

RULE = "NCHW -> channel-blocked"
# What may run on blocked values is the op table's (cnnrt.core.ops): an op it does not
# declare blocked-capable reads NCHW, and the rewrite logs why its input was reordered.
BLOCKED_FORMS = {op: d.blocked_form for op, d in OPS.items() if d.blocked_form}
ELEMENTWISE = tuple(op for op, d in OPS.items() if d.blocked == "elementwise")
CHANNEL_CONCAT = tuple(op for op, d in OPS.items() if d.blocked == "channel_concat")
# A lone blocked conv pays two reorders and extra steps for one layer (LeNet-5's middle conv,
# a small model where each step counts): the whole graph stays NCHW below this many.
MIN_BLOCKED_CONVS = 2
# Padding lanes a value may carry, as a fraction of its channels: 24 -> 32 (a third more
# bytes and MACs) keeps a chain blocked; 8 -> 16 or a 3-channel image would double or
# quintuple the work, where the NCHW kernels or a reorder cost less.
MAX_PAD_FRACTION = 0.5
# Fused activations (cnnrt.core.ops.ACTIVATIONS) whose value at 0 is 0, so a padding lane
# stays zero through them (checked against the reference formulas in the tests); Clip when
# its bounds hold 0, HardSigmoid when its beta is not positive. Sigmoid gives 0.5 there.
ZERO_AT_ZERO = frozenset({"none", "Relu", "LeakyRelu", "HardSwish", "Tanh", "Elu", "SiLU", "Gelu"})


def keeps_zero(activation: str, alpha: float = 0.0, beta: float = 0.0) -> bool:
    """Whether the fused ``activation`` (alpha, beta as the epilogue's) maps 0 to 0."""
    if activation == "HardSigmoid":  # clamp(alpha * 0 + beta, 0, 1)
        return beta <= 0.0
    return activation in ZERO_AT_ZERO or (activation == "Clip" and alpha <= 0.0 <= beta)


def node_keeps_zero(node: Node) -> bool:
    """Whether ``node`` maps all-zero inputs to zero: its fused activation, or the op itself
    (an activation op by the formula, any other by the op table's evaluator; an op with
    neither is assumed not to)."""
    if "activation" in node.attrs:
        return keeps_zero(node.attrs["activation"], node.attrs.get("act_alpha", 0.0), node.attrs.get("act_beta", 0.0))
    if node.op in ZERO_AT_ZERO:
        return True
    if node.op == "Clip":
        a = op_attrs(node)
        return keeps_zero("Clip", float(a["min"]), float(a["max"]))
    ins = [np.zeros(1, np.float32) for _ in node.inputs]
    res = evaluate_node(node, ins, [Value(o, (1,)) for o in node.outputs if o])
    return res is not None and all(not np.any(r) for r in res)


def twin_name(name: str, block: int) -> str:
    """The name of logical value ``name``'s blocked twin."""
    return f"{name}/{layout.blocked(block)}"


class _Rewriter:
    def __init__(self, graph: Graph, vector_bytes: int) -> None:
        self.graph = graph
        self.vector_bytes = vector_bytes
        self.values = dict(graph.values)
        self.constants = dict(graph.constants)
        self.replaced: set[str] = set()  # constants given a zero-padded copy
        self.nodes: list[Node] = []
        self.blocked: dict[str, str] = {}  # logical value -> blocked twin
        self.plain: set[str] = set(graph.inputs) | set(graph.constants)  # NCHW form exists
        self.taken = {n.name for n in graph.nodes}
        self.fired: list[tuple[str, str]] = []
        self.declined: list[tuple[str, str, str]] = []
        self.readers: dict[str, list[Node]] = {}
        for n in graph.nodes:
            for i in set(n.inputs):
                self.readers.setdefault(i, []).append(n)
        self.absorbed: set[str] = set()  # nodes a fused blocked op computes already

    def block(self, name: str) -> int | None:
        """B for a value that can be blocked (rank 4, float, padding within MAX_PAD_FRACTION), else None."""
        v = self.values[name]
        if len(v.shape) != 4 or v.dtype not in ("float32", "float64"):
            return None
        b = self.vector_bytes // np.dtype(v.dtype).itemsize
        c = v.shape[1]  # no kernel takes 0 blocks
        return b if c > 0 and layout.blocks(c, b) * b - c <= MAX_PAD_FRACTION * c else None

    def padded(self, name: str) -> bool:
        """Whether logical value ``name``'s blocked twin has padding lanes."""
        twin = self.values[self.blocked[name]]
        return twin.shape[1] * twin.shape[4] != self.values[name].shape[1]

    def _name(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            i += 1
            name = f"{base}:{i}"
        self.taken.add(name)
        return name

    def twin(self, name: str) -> str:
        """Declare the blocked twin of logical value ``name`` (its Value entry)."""
        v = self.values[name]
        b = self.block(name)
        n, c, h, w = v.shape
        twin = twin_name(name, b)
        self.values[twin] = Value(twin, (n, layout.blocks(c, b), h, w, b), v.dtype, layout.blocked(b), name)
        self.blocked[name] = twin
        return twin

    def to_blocked(self, name: str, origin) -> str:
        if name in self.blocked:
            return self.blocked[name]
        twin = self.twin(name)
        b = layout.block_of(self.values[twin].layout)
        if self.values[name].shape[2:] == (1, 1) and not self.padded(name):  # the same bytes: a view
            node = Node(
                "Reshape", (name,), (twin,), {"shape": self.values[twin].shape}, self._name(f"{twin}/view"), origin
            )
        else:
            node = Node("ReorderToBlocked", (name,), (twin,), {"block": b}, self._name(f"{twin}/reorder"), origin)
        self.nodes.append(node)
        return twin

    def to_plain(self, name: str) -> str:
        if not name or name in self.plain or name not in self.blocked:
            return name
        twin = self.blocked[name]
        v = self.values[name]
        producer = next((n for n in reversed(self.nodes) if twin in n.outputs), None)
        origin = producer.origin if producer is not None else ()
        if v.shape[2:] == (1, 1) and not self.padded(name):  # the same bytes: a view, no step
            node = Node("Reshape", (twin,), (name,), {"shape": v.shape}, self._name(f"{name}/unblock"), origin)
        else:
            node = Node("ReorderFromBlocked", (twin,), (name,), {}, self._name(f"{name}/unblock"), origin)
        self.nodes.append(node)
        self.plain.add(name)
        return name

    def emit(self, node: Node, op: str, inputs) -> None:
        """``node`` as ``op`` on ``inputs``, its outputs blocked twins."""
        outs = tuple(self.twin(o) if o else o for o in node.outputs)
        self.nodes.append(node.replace(op=op, inputs=tuple(inputs), outputs=outs))
        self.fired.append((f"{node.op} -> {op}" if op != node.op else f"{op} on blocked values", node.name))

    def refuse(self, node: Node) -> None:
        """Log a node with a blocked input whose op the table does not declare blocked-capable
        (the rules above log their own guards)."""
        d = op_def(node.op)  # an op outside the table is an error, not an NCHW reader
        if any(i in self.blocked for i in node.inputs) and not (d.blocked or d.blocked_form or node.op == "Conv"):
            self.declined.append((RULE, node.name, f"{node.op} is not blocked-capable in the op table: it reads NCHW"))

    def plain_node(self, node: Node) -> None:
        self.nodes.append(node.replace(inputs=tuple(self.to_plain(i) for i in node.inputs)))
        self.plain.update(o for o in node.outputs if o)

    # -- per op kind --

    def conv(self, node: Node) -> bool:
        x, w = node.inputs[0], node.inputs[1]
        y = node.outputs[0]
        group = int(node.attrs.get("group", 1))
        xv, wv = self.values[x], self.values[w]
        if len(xv.shape) != 4 or len(wv.shape) != 4 or xv.shape[1] == 0:  # no input channels: bias only
            return False
        if spec_from_node(node, self.graph).covers_input:
            return False  # one output pixel: a Gemm ("fc") does it better
        if self.block(y) is None:
            return self.conv_cropped(node)
        if "algorithm" in node.attrs:
            self.declined.append((RULE, node.name, "an algorithm override keeps it NCHW"))
            return False
        c = xv.shape[1]
        depthwise = group > 1 and group == c == wv.shape[0]
        grouped = group > 1 and not depthwise
        if grouped and grouped_span(wv.shape[1], wv.shape[0] // group, group, self.block(x) or 0) is None:
            why = f"grouped conv (group {group}): its groups do not tile blocked channels, no blocked kernel"
            self.declined.append((RULE, node.name, why))
            return False
        if (depthwise or grouped) and self.block(x) is None:
            return False
        if wv.shape[0] % self.block(y) and not node_keeps_zero(node):
            if not depthwise and x in self.blocked:
                return self.conv_cropped(node)  # only the cropping reorder reads its padding lanes
            why = f"activation {node.attrs.get('activation')} is not 0 at 0: padding lanes of {y!r} would not stay zero"
            self.declined.append((RULE, node.name, why))
            return False
        blocked_in = x in self.blocked or bool(self.block(x))
        params = self.padded_params(node, blocked_in, pad_out=True)
        if params is None:
            return False
        xin = self.to_blocked(x, node.origin) if blocked_in else x
        ins = [xin, *params[0]]
        if len(node.inputs) > 3 and node.inputs[3]:
            ins.append(self.to_blocked(node.inputs[3], node.origin))
        self.emit(node.with_attrs(**params[1]), "BlockedConv", ins)
        return True

    def pad_constant(self, name: str, shape: tuple[int, ...]) -> str:
        """A copy of constant ``name`` grown to ``shape`` with zeros (once per name and shape)."""
        new = f"{name}/pad{'x'.join(map(str, shape))}"
        if new not in self.constants:
            src = self.constants[name]
            pad = np.zeros(shape, src.dtype)
            pad[tuple(slice(0, k) for k in src.shape)] = src
            self.constants[new] = pad
            self.values[new] = Value(new, shape, self.values[name].dtype)
            self.replaced.add(name)
        return new

    def padded_params(self, node: Node, blocked_in: bool, pad_out: bool):
        """((W, B), attribute changes) of conv ``node`` with zero weights and bias for padding
        lanes: input channels when it reads a blocked input with them, output channels when
        ``pad_out`` (a depthwise conv's are both, and its group with them). None (logged) when
        there are padding lanes and W or B is not a constant."""
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        bias = node.inputs[2] if len(node.inputs) > 2 else ""
        wc = self.graph.values[w].shape
        m, cg = wc[0], wc[1]
        grouped = int(node.attrs.get("group", 1)) > 1  # depthwise or groups of cg channels
        b = self.block(y) or layout.block_of(self.values[self.blocked[x]].layout)
        cin = self.values[x].shape[1]
        mp = layout.blocks(m, b) * b if pad_out or grouped else m
        cp = cg if grouped else (layout.blocks(cin, b) * b if blocked_in else cin)
        if (mp, cp) == (m, cg):
            return (w, bias), {}
        if w not in self.constants or (bias and bias not in self.constants):
            self.declined.append((RULE, node.name, "runtime weights or bias cannot be padded to whole blocks"))
            return None
        padded = (self.pad_constant(w, (mp, cp, *wc[2:])), self.pad_constant(bias, (mp,)) if bias else bias)
        return padded, ({"group": mp // cg} if grouped else {})

    def conv_cropped(self, node: Node) -> bool:
        """A conv with M not whole blocks on a blocked input (SqueezeNet's 1000-class 1x1): it
        writes whole blocks (the channels past M from zero weights) into a twin that only a
        cropping ReorderFromBlocked reads, which gives the NCHW value."""
        x, y = node.inputs[0], node.outputs[0]
        v = self.values[y]
        if x not in self.blocked or int(node.attrs.get("group", 1)) != 1 or "algorithm" in node.attrs:
            return False
        if (len(node.inputs) > 3 and node.inputs[3]) or len(v.shape) != 4 or v.shape[1] == 0:
            return False
        params = self.padded_params(node, True, pad_out=False)
        if params is None:
            return False
        b = layout.block_of(self.values[self.blocked[x]].layout)
        n, m, h, w = v.shape
        twin = twin_name(y, b)
        self.values[twin] = Value(twin, (n, layout.blocks(m, b), h, w, b), v.dtype, layout.blocked(b), y)
        self.nodes.append(node.replace(op="BlockedConv", inputs=(self.blocked[x], *params[0]), outputs=(twin,)))
        self.nodes.append(Node("ReorderFromBlocked", (twin,), (y,), {}, self._name(f"{y}/unblock"), node.origin))
        self.plain.add(y)
        self.fired.append(("Conv -> BlockedConv (cropped to its channels)", node.name))
        return True

    def follows(self, node: Node) -> bool:
        """Pools, per-channel affines and LRN (float32, size <= 5) on a blocked input."""
        x = node.inputs[0]
        if x not in self.blocked or len(self.values[x].shape) != 4 or len([o for o in node.outputs if o]) != 1:
            return False  # (MaxPool's Indices output has no blocked form)
        c = self.values[x].shape[1]
        params = list(node.inputs[1:])
        if node.op == "LRN":
            size = int(node.attrs["size"])
            if self.values[x].dtype != "float32" or size > 2 * LRN_REACH + 1:
                self.declined.append(
                    (
                        RULE,
                        node.name,
                        f"LRN of size {size} ({self.values[x].dtype}): the blocked kernel sums float32 windows of at most {2 * LRN_REACH + 1} channels",
                    )
                )
                return False
        if node.op == "ChannelAffine":
            if any(self.values[i].size != c for i in params[:2]):
                return False  # per-activation parameters (BN's spatial=0 form)
            if self.padded(x):
                params = self.padded_affine(node)
                if params is None:
                    return False
        self.emit(node, BLOCKED_FORMS[node.op], [self.blocked[x], *params])
        return True

    def padded_affine(self, node: Node) -> list[str] | None:
        """A ChannelAffine's scale and shift zero padded to its blocks, or None (logged)."""
        why = None
        if not node_keeps_zero(node):
            why = f"activation {node.attrs.get('activation')} is not 0 at 0: padding lanes would not stay zero"
        elif any(i not in self.constants for i in node.inputs[1:3]):
            why = "runtime scale or shift cannot be padded to whole blocks"
        if why:
            self.declined.append((RULE, node.name, why))
            return None
        twin = self.values[self.blocked[node.inputs[0]]]
        cp = twin.shape[1] * twin.shape[4]
        return [self.pad_constant(i, (cp,)) for i in node.inputs[1:3]]

    def elementwise(self, node: Node) -> bool:
        shape = self.values[node.outputs[0]].shape
        ins = [i for i in node.inputs if i]
        if (
            not any(i in self.blocked and self.values[i].shape == shape for i in ins)
            or self.block(node.outputs[0]) is None
        ):
            return False
        per_channel = (*shape[:2], 1, 1)  # a squeeze-and-excitation gate: (N, C/B, 1, 1, B) broadcasts the same
        if any(i in self.graph.constants or self.values[i].shape not in (shape, per_channel) for i in ins):
            return False
        b = self.block(node.outputs[0])
        if shape[1] % b and not node_keeps_zero(node):
            self.declined.append((RULE, node.name, f"{node.op} is not 0 at 0: padding lanes would not stay zero"))
            return False
        self.emit(node, node.op, [self.to_blocked(i, node.origin) for i in ins])
        return True

    def concat(self, node: Node) -> bool:
        out = node.outputs[0]
        if self.block(out) is None or int(node.attrs["axis"]) % 4 != 1:
            return False
        if not any(i in self.blocked for i in node.inputs):
            return False
        if any(i in self.graph.constants or self.block(i) is None for i in node.inputs):
            return False
        b = self.block(out)
        ins = [self.to_blocked(i, node.origin) for i in node.inputs]
        if any(self.values[i].shape[1] % b for i in node.inputs[:-1]):
            # padding lanes of an input would sit among real channels: each is placed by lane
            sizes = [self.values[i].shape[1] for i in node.inputs]
            self.emit(node.with_attrs(sizes=sizes), "BlockedConcat", ins)
        else:
            self.emit(node, "Concat", ins)
        return True

    def split(self, node: Node) -> bool:
        """A channel Split of a blocked value: every piece blocked (BlockedSplit)."""
        x = node.inputs[0]
        if x not in self.blocked or len(self.values[x].shape) != 4 or int(node.attrs["axis"]) % 4 != 1:
            return False
        if any(o and self.block(o) is None for o in node.outputs):
            self.declined.append((RULE, node.name, "a piece has too few channels for whole blocks"))
            return False
        self.emit(node, "BlockedSplit", [self.blocked[x]])
        return True

    def sole_reader(self, name: str) -> Node | None:
        """The one node reading ``name`` when nothing else (no graph output) does."""
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.graph.outputs else None

    def match_shuffle(self, x: str):
        """(groups, [Reshape, Transpose, Reshape, Split?]) when ``x`` (N, C, H, W) is read only by
        a channel shuffle, Reshape (N, G, C/G, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape
        (N, C, H, W), itself read only by a channel Split or by anything (no Split); else None."""
        shape = self.values[x].shape
        r1 = self.sole_reader(x)
        if len(shape) != 4 or r1 is None or r1.op != "Reshape":
            return None
        n, c, h, w = shape
        s1 = self.values[r1.outputs[0]].shape
        if len(s1) != 5 or s1[1] < 2 or (s1[0], s1[1] * s1[2], *s1[3:]) != (n, c, h, w):
            return None
        t = self.sole_reader(r1.outputs[0])
        if t is None or t.op != "Transpose" or tuple(t.attrs["perm"]) != (0, 2, 1, 3, 4):
            return None
        r2 = self.sole_reader(t.outputs[0])
        if r2 is None or r2.op != "Reshape" or self.values[r2.outputs[0]].shape != shape:
            return None
        chain = [r1, t, r2]
        sp = self.sole_reader(r2.outputs[0])
        if sp is not None and sp.op == "Split" and int(sp.attrs["axis"]) % 4 == 1:
            chain.append(sp)
        return s1[1], chain

    def shuffle(self, node: Node) -> bool:
        """A channel Concat that starts a channel shuffle, with the Split after it: one
        BlockedChannelShuffle of the blocked inputs into blocked pieces (ShuffleNet's unit
        boundary: one step instead of five and their reorders)."""
        if int(node.attrs["axis"]) % 4 != 1:
            return False
        ins, start = list(node.inputs), node.outputs[0]
        found = self.match_shuffle(start)
        if found is None or not any(i in self.blocked for i in ins):
            return False
        groups, chain = found
        chain.insert(0, node)
        outs = chain[-1].outputs
        dtypes = {self.values[v].dtype for v in [*ins, *outs] if v}
        if len(dtypes) != 1 or any(i in self.graph.constants or self.block(i) is None for i in ins):
            return False
        if any(o and self.block(o) is None for o in outs):
            self.declined.append((RULE, node.name, "a shuffled piece has too few channels for whole blocks"))
            return False
        splits = chain[-1].attrs["sizes"] if chain[-1].op == "Split" else [self.values[start].shape[1]]
        attrs = {"sizes": [self.values[i].shape[1] for i in ins], "groups": groups, "splits": list(splits)}
        xs = [self.to_blocked(i, node.origin) for i in ins]
        ys = tuple(self.twin(o) if o else o for o in outs)
        origin = tuple(o for n in chain for o in n.origin)
        name = next(n.name for n in chain if n.op == "Transpose")
        self.nodes.append(Node("BlockedChannelShuffle", tuple(xs), ys, attrs, name, origin))
        self.absorbed.update(n.name for n in chain)
        self.fired.append((" + ".join(n.op for n in chain) + " -> BlockedChannelShuffle", name))
        return True

    def run(self) -> Graph:
        for node in self.graph.nodes:
            if node.name in self.absorbed:
                continue
            if node.op in CHANNEL_CONCAT and self.shuffle(node):
                continue
            done = False
            if node.op == "Conv":
                done = self.conv(node)
            elif node.op == "Split":
                done = self.split(node)
            elif node.op in BLOCKED_FORMS:
                done = self.follows(node)
            elif node.op in ELEMENTWISE:
                done = self.elementwise(node)
            elif node.op in CHANNEL_CONCAT:
                done = self.concat(node)
            if not done:
                self.refuse(node)
                self.plain_node(node)
        for o in self.graph.outputs:
            self.to_plain(o)
        used = {i for n in self.nodes for i in n.inputs} | set(self.graph.outputs) | set(self.graph.inputs)
        used |= {o for n in self.nodes for o in n.outputs}
        # a padded constant replaces its source; the logical values of twins stay declared
        # (cnnrt compare crops a twin to its logical channels)
        consts = {k: v for k, v in self.constants.items() if k in used or k not in self.replaced}
        used |= {self.values[k].logical for k in used if k in self.values and self.values[k].logical}
        values = {k: v for k, v in self.values.items() if k in used or k in consts}
        return Graph(self.nodes, values, consts, self.graph.inputs, self.graph.outputs, self.graph.name)


def block_layout(graph: Graph, vector_bytes: int = 64) -> PassResult:
    """Rewrite conv chains to the blocked layout; see the module docstring."""
    if any(n.op.startswith("Blocked") for n in graph.nodes):
        return PassResult(graph, False)
    rw = _Rewriter(graph, vector_bytes)
    new = rw.run()
    convs = sum("-> BlockedConv" in rule for rule, _ in rw.fired)
    if convs < MIN_BLOCKED_CONVS:
        why = f"{convs} conv(s) could be blocked, fewer than {MIN_BLOCKED_CONVS}: reorders would cost more"
        return PassResult(graph, False, [], [*rw.declined, (RULE, graph.name, why)] if convs else rw.declined)
    return PassResult(new, True, rw.fired, rw.declined)
