"""Small helpers to build IR graphs by hand and to check a pass on them."""

from __future__ import annotations

import numpy as np
from ir_reference import evaluate

from cnnrt.core.ir import Graph, Node, Value


class GB:
    """Graph builder: ``x = b.input("x", shape)``, ``y = b.conv(x, 8)``, ``g = b.build([y])``."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Node] = []
        self.values: dict[str, Value] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.inputs: list[str] = []
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    def shape(self, v: str) -> tuple[int, ...]:
        return self.values[v].shape

    def input(self, name: str, shape, dtype: str = "float32") -> str:
        self.values[name] = Value(name, tuple(shape), dtype)
        self.inputs.append(name)
        return name

    def const(self, array, name: str | None = None) -> str:
        name = name or self._name("c")
        arr = np.ascontiguousarray(array)
        self.values[name] = Value(name, arr.shape, str(arr.dtype))
        self.constants[name] = arr
        return name

    def rand(self, *shape, low=-1.0, high=1.0) -> str:
        return self.const(self.rng.uniform(low, high, size=shape).astype(np.float32))

    def node(self, op: str, inputs, shapes, dtype: str = "float32", name: str | None = None, n_out: int = 1, **attrs):
        name = name or self._name(op)
        shapes = (
            [tuple(shapes)]
            if isinstance(shapes, tuple) and (not shapes or isinstance(shapes[0], int))
            else [tuple(s) for s in shapes]
        )
        outs = []
        for k, s in enumerate(shapes):
            o = f"{name}_out{k}" if k else f"{name}_out"
            self.values[o] = Value(o, s, dtype)
            outs.append(o)
        self.nodes.append(Node(op, tuple(inputs), tuple(outs), dict(attrs), name, (name,)))
        return outs[0] if len(outs) == 1 else outs

    def conv(
        self,
        x,
        cout,
        k=3,
        stride=1,
        pad=None,
        group=1,
        bias=True,
        dilation=1,
        name=None,
        weight=None,
        residual=None,
        **extra,
    ):
        """A Conv with a random constant weight (or ``weight``, any value), a random bias unless
        ``bias=False``, and optionally a ``residual`` input added before the activation."""
        n, c, h, w = self.shape(x)
        pad = k // 2 if pad is None else pad
        pads = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
        oh = (h + pads[0] + pads[2] - dilation * (k - 1) - 1) // stride + 1
        ow = (w + pads[1] + pads[3] - dilation * (k - 1) - 1) // stride + 1
        wname = weight or self.rand(cout, c // group, k, k)
        ins = [x, wname] + ([self.rand(cout)] if bias else [])
        if residual:
            ins += [""] * (3 - len(ins)) + [residual]
        attrs = dict(
            strides=(stride, stride),
            pads=pads,
            dilations=(dilation, dilation),
            group=group,
            kernel=(k, k),
            activation="none",
            act_alpha=0.0,
            act_beta=0.0,
        )
        attrs.update(extra)
        return self.node("Conv", ins, (n, cout, oh, ow), name=name, **attrs)

    def bn(self, x, name=None, eps=1e-5):
        c = self.shape(x)[1]
        params = [
            self.rand(c, low=0.5, high=1.5),
            self.rand(c),
            self.rand(c, low=-0.5, high=0.5),
            self.rand(c, low=0.5, high=2.0),
        ]
        return self.node("BatchNormalization", [x, *params], self.shape(x), name=name, epsilon=eps)

    def act(self, op, x, name=None, **attrs):
        return self.node(op, [x], self.shape(x), name=name, **attrs)

    def add(self, a, b, name=None, op="Add"):
        return self.node(op, [a, b], np.broadcast_shapes(self.shape(a), self.shape(b)), name=name)

    def gemm(self, x, n_out, bias=True, trans_b=1, name=None):
        m, k = self.shape(x)
        w = self.rand(n_out, k) if trans_b else self.rand(k, n_out)
        ins = [x, w] + ([self.rand(n_out)] if bias else [])
        return self.node(
            "Gemm",
            ins,
            (m, n_out),
            name=name,
            alpha=1.0,
            beta=1.0,
            trans_a=0,
            trans_b=trans_b,
            activation="none",
            act_alpha=0.0,
            act_beta=0.0,
        )

    def pool(self, op, x, k=3, stride=1, pads=(0, 0, 0, 0), name=None, **extra):
        n, c, h, w = self.shape(x)
        oh = (h + pads[0] + pads[2] - k) // stride + 1
        ow = (w + pads[1] + pads[3] - k) // stride + 1
        attrs = dict(kernel=(k, k), strides=(stride, stride), pads=tuple(pads), dilations=(1, 1))
        if op == "AveragePool":
            attrs["count_include_pad"] = False
        attrs.update(extra)
        return self.node(op, [x], (n, c, oh, ow), name=name, **attrs)

    def pad(self, x, hw=(1, 1, 1, 1), value=0.0, mode="constant", name=None, pads=None):
        n, c, h, w = self.shape(x)
        t, left, b, r = hw
        pads = pads or (0, 0, t, left, 0, 0, b, r)
        shape = tuple(d + pads[i] + pads[i + 4] for i, d in enumerate((n, c, h, w)))
        return self.node("Pad", [x], shape, name=name, mode=mode, pads=tuple(pads), value=value)

    def concat(self, xs, axis=1, name=None):
        shape = list(self.shape(xs[0]))
        shape[axis] = sum(self.shape(x)[axis] for x in xs)
        return self.node("Concat", xs, tuple(shape), name=name, axis=axis)

    def build(self, outputs) -> Graph:
        g = Graph(self.nodes, self.values, self.constants, self.inputs, outputs, "test")
        g.verify()
        return g


def feeds_for(graph: Graph, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i: rng.standard_normal(graph.values[i].shape).astype(graph.values[i].dtype) for i in graph.inputs}


def assert_same_outputs(before: Graph, after: Graph, feeds=None, rtol: float = 2e-5) -> None:
    """The two graphs compute the same outputs (reference interpreter, float32 rounding)."""
    feeds = feeds or feeds_for(before)
    want = evaluate(before, feeds)
    got = evaluate(after, feeds)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        finite = np.abs(w[np.isfinite(w)])
        scale = float(finite.max()) if finite.size else 0.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * max(scale, 1.0))


def run_pass(fn, graph: Graph, check: bool = True):
    """Run a pass, verify the result, check the input graph was not modified, compare numerics."""
    nodes = list(graph.nodes)
    consts = {k: v.copy() for k, v in graph.constants.items()}
    res = fn(graph)
    res.graph.verify()
    assert graph.nodes == nodes, "the pass modified its input graph"
    for k, v in consts.items():
        assert np.array_equal(graph.constants[k], v, equal_nan=True), f"constant {k} was mutated"
    if check:
        assert_same_outputs(graph, res.graph)
    return res


def ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]
