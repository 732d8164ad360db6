"""cnnrt's intermediate representation: Values, Nodes and the Graph that owns them.

Edges are value names. A Graph keeps its nodes in topological order; constants (weights)
live in ``Graph.constants`` as numpy arrays and are not produced by any node. Every shape
is concrete: the frontend resolves symbolic dimensions for the input shapes a session runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16", the dtype of BF16 values)
import numpy as np

from cnnrt.core.layout import is_blocked
from cnnrt.core.ops import OPS, infer
from cnnrt.errors import GraphError

Shape = tuple[int, ...]

# The dtype of a value holding bfloat16 activations: a bf16 conv's output that only bf16
# convs read (passes/precision.py). It stands for the float32 value rounded to bf16: the
# layout, blocks and shape are the float32 value's, and the convs around it compute float32.
BF16 = "bfloat16"


def compute_dtype(dtype: str) -> str:
    """The dtype a kernel computes a value of ``dtype`` in: float32 for :data:`BF16`."""
    return "float32" if dtype == BF16 else dtype


@dataclass(frozen=True)
class Value:
    """A tensor edge: name, concrete shape and numpy dtype name (``"float32"``, ``"int64"``...).

    ``layout`` says how the shape stores its tensor (cnnrt.core.layout): ``"nchw"`` as it is,
    ``"nchw16c"`` a channel-blocked (N, C/16, H, W, 16) copy of the NCHW value named ``logical``.
    """

    name: str
    shape: Shape
    dtype: str = "float32"
    layout: str = "nchw"
    logical: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python ints: np.prod would wrap silently past 2**63

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Node:
    """One operation. ``inputs`` may contain ``""`` for an omitted optional input.

    ``attrs`` is treated as immutable: rewrite with :meth:`with_attrs` / ``dataclasses.replace``.
    ``origin`` holds the names of the ONNX nodes this node stands for (several after fusion).
    """

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    origin: tuple[str, ...] = ()

    def with_attrs(self, **changes: Any) -> Node:
        return dataclasses.replace(self, attrs={**self.attrs, **changes})

    def replace(self, **changes: Any) -> Node:
        return dataclasses.replace(self, **changes)


class Graph:
    """Nodes in topological order, value table, constants, graph inputs and outputs."""

    def __init__(
        self,
        nodes: Iterable[Node],
        values: Mapping[str, Value],
        constants: Mapping[str, np.ndarray],
        inputs: Iterable[str],
        outputs: Iterable[str],
        name: str = "graph",
    ) -> None:
        self.nodes: list[Node] = list(nodes)
        self.values: dict[str, Value] = dict(values)
        self.constants: dict[str, np.ndarray] = dict(constants)
        self.inputs: list[str] = list(inputs)
        self.outputs: list[str] = list(outputs)
        self.name = name

    # -- derived maps (recomputed on demand: graphs are small, passes rewrite freely) --

    def producers(self) -> dict[str, Node]:
        """Value name -> node that defines it."""
        return {out: n for n in self.nodes for out in n.outputs if out}

    def consumers(self) -> dict[str, list[Node]]:
        """Value name -> nodes reading it (a node appears once per input slot)."""
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    users.setdefault(i, []).append(n)
        return users

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def copy(self) -> Graph:
        """Shallow copy: new containers, shared (immutable) nodes and constant arrays."""
        return Graph(self.nodes, self.values, self.constants, self.inputs, self.outputs, self.name)

    def to_networkx(self):
        """A networkx DiGraph view (node names as vertices), built on demand."""
        import networkx as nx

        g = nx.DiGraph()
        prod = self.producers()
        for n in self.nodes:
            g.add_node(n.name, op=n.op)
            for i in n.inputs:
                if i in prod:
                    g.add_edge(prod[i].name, n.name, value=i)
        return g

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    # -- invariants --

    def verify(self) -> None:
        """Raise :class:`GraphError` unless the graph is well formed.

        Checks: unique node names, one definition per value, nodes in topological order
        (which also rules out cycles), every input defined, every used value has a Value
        entry, constants agree with their Value's shape and dtype, outputs defined, and every
        node is an IR op with the ports and attributes its definition requires, outputs the
        dtype its definition fixes (comparisons bool, ArgMax int64), reads
        channel-blocked values only if its definition allows, and has output shapes that agree
        with its shape inference (cnnrt.core.ops).
        """
        defined: set[str] = set(self.inputs) | set(self.constants)
        if len(set(self.inputs) & set(self.constants)):
            raise GraphError(f"values both graph input and constant: {sorted(set(self.inputs) & set(self.constants))}")
        seen_names: set[str] = set()
        for name, arr in self.constants.items():
            v = self.values.get(name)
            if v is None:
                raise GraphError(f"constant {name!r} has no Value entry")
            if tuple(arr.shape) != v.shape or arr.dtype != np.dtype(v.dtype):
                raise GraphError(
                    f"constant {name!r} is {arr.dtype}{list(arr.shape)} but its Value says {v.dtype}{list(v.shape)}"
                )
        for name in self.inputs:
            if name not in self.values:
                raise GraphError(f"graph input {name!r} has no Value entry")
        for n in self.nodes:
            if not n.name:
                raise GraphError(f"a {n.op} node has no name")
            if n.name in seen_names:
                raise GraphError(f"two nodes are named {n.name!r}")
            seen_names.add(n.name)
            if n.op not in OPS:
                raise GraphError(f"node {n.name!r} has op {n.op!r}, which is not an IR op (cnnrt.core.ops.OPS)")
            d = OPS[n.op]
            if not (d.blocked or d.view):  # blocked values are read only where the table allows
                for i in n.inputs:
                    if i in self.values and is_blocked(self.values[i]):
                        raise GraphError(
                            f"node {n.name!r} ({n.op}) reads {i!r} in layout {self.values[i].layout}, "
                            "but the op table does not declare it blocked-capable"
                        )
            for i in n.inputs:
                if i and i not in defined:
                    raise GraphError(
                        f"node {n.name!r} ({n.op}) reads {i!r}, which is not defined before it "
                        "(undefined value or a cycle)"
                    )
            for o in n.outputs:
                if not o:
                    continue
                if o in defined:
                    raise GraphError(f"value {o!r} is defined twice (again by node {n.name!r})")
                if o not in self.values:
                    raise GraphError(f"node {n.name!r} output {o!r} has no Value entry")
                if d.output_dtype and self.values[o].dtype != d.output_dtype:
                    raise GraphError(
                        f"node {n.name!r} ({n.op}) output {o!r} is {self.values[o].dtype}, but {n.op} gives {d.output_dtype}"
                    )
                defined.add(o)
            self._check_shapes(n, infer(n, [self.values[i] if i else None for i in n.inputs]))
        for o in self.outputs:
            if o not in defined:
                raise GraphError(f"graph output {o!r} is never defined")

    def _check_shapes(self, node: Node, inferred: list) -> None:
        for o, want in zip(node.outputs, inferred):
            if not o or want is None:
                continue
            have = self.values[o].shape
            if len(have) != len(want) or any(w is not None and h != w for h, w in zip(have, want)):
                shown = ["?" if w is None else w for w in want]
                raise GraphError(
                    f"node {node.name!r} ({node.op}) output {o!r} has shape {list(have)}, "
                    f"but its inputs and attributes give {shown}"
                )

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, inputs={self.inputs}, outputs={self.outputs})"

    def summary(self) -> str:
        """One line per node: name, op, inputs -> outputs with shapes."""
        lines = []
        for n in self.nodes:
            outs = ", ".join(f"{o}{list(self.values[o].shape)}" for o in n.outputs if o)
            lines.append(f"{n.name}: {n.op}({', '.join(n.inputs)}) -> {outs}")
        return "\n".join(lines)
