"""Executor: a plan built once (kernel per step, buffers resolved), and a tiny run loop.

Every value's array is made once from the memory plan: a root is a typed view of its arena
bytes, an alias is its base reshaped (never a copy), a slice is a numpy view of a range of
its container (strided when the axes in front of the slice are not all 1). Nodes the plan
marks as no-ops (views, in-place Concat) get no step. With ``poison=True`` a step after the
last reader of a region fills it with NaN (integers: their max, bool: True), so reading a
dead or wrongly shared region shows up as a wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnrt.core.ir import Graph, Node
from cnnrt.errors import CnnrtError, KernelError, UnsupportedOpError
from cnnrt.kernels import get_builder
from cnnrt.kernels.aligned import aligned_empty
from cnnrt.runtime.plan import MemoryPlan


@dataclass(frozen=True)
class Step:
    node: Node
    run: object  # KernelFn
    ins: list
    outs: list


class Executor:
    """Binds every value of ``graph`` to an array (arena view or constant) and a kernel per node."""

    def __init__(self, graph: Graph, plan: MemoryPlan, backend: str = "cpu", poison: bool = False) -> None:
        self.graph = graph
        self.plan = plan
        self.backend = backend
        self.poison = poison
        live_nodes = [n for n in graph.nodes if n.name not in plan.noop_nodes]
        missing = [n for n in live_nodes if get_builder(n.op, backend) is None]
        if missing:
            raise UnsupportedOpError(
                f"no {backend} kernel for {len(missing)} node(s): " + "; ".join(f"{n.name} ({n.op})" for n in missing)
            )
        self.arena = aligned_empty(plan.arena_bytes, np.uint8)
        self.arrays: dict[str, np.ndarray] = dict(graph.constants)
        for name in plan.places:
            self._array(name)
        dying = plan.dying_after() if poison else [[] for _ in graph.nodes]
        self.steps: list[Step] = []
        for i, node in enumerate(graph.nodes):
            if node.name not in plan.noop_nodes:
                try:
                    run = get_builder(node.op, backend)(node, graph)
                except CnnrtError:
                    raise
                except Exception as e:
                    raise KernelError(_describe(node, graph, f"kernel build failed: {type(e).__name__}: {e}")) from e
                ins = [self.arrays[i] if i else None for i in node.inputs]
                outs = [self.arrays[o] if o else None for o in node.outputs]
                self.steps.append(Step(node, run, ins, outs))
            for root in dying[i]:
                self.steps.append(self._poison_step(node, root))
        self.input_arrays = [self.arrays[i] for i in graph.inputs]
        self.output_arrays = [self.arrays[o] for o in graph.outputs]
        # what the hot loop touches: no attribute lookups per step
        self._calls = [(s.run, s.ins, s.outs) for s in self.steps]

    def _array(self, name: str) -> np.ndarray:
        arr = self.arrays.get(name)
        if arr is not None:
            return arr
        v = self.graph.values[name]
        place = self.plan.places[name]
        if place.kind == "buffer":
            buf = self.plan.buffers[name]
            arr = self.arena[buf.offset : buf.offset + v.nbytes].view(v.dtype).reshape(v.shape)
        elif place.kind == "alias":
            arr = self._array(place.base).view()
            arr.shape = v.shape  # raises instead of copying
        else:
            base = self._array(place.base)
            index = [slice(None)] * base.ndim
            index[place.axis] = slice(place.start, place.start + v.shape[place.axis])
            arr = base[tuple(index)]
        assert arr.dtype == np.dtype(v.dtype) and arr.shape == v.shape
        self.arrays[name] = arr
        return arr

    def _poison_step(self, node: Node, root: str) -> Step:
        buf = self.plan.buffers[root]
        v = self.graph.values[root]
        region = self.arena[buf.offset : buf.offset + v.nbytes].view(v.dtype)
        dt = region.dtype
        value = np.nan if dt.kind in "fc" else True if dt.kind == "b" else np.iinfo(dt).max

        def fill(ins, outs):
            region.fill(value)

        return Step(node.replace(name=f"{node.name}/poison:{root}", op="Poison"), fill, [], [])

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Copy feeds in, run every step, return copies of the outputs (the arena is reused)."""
        for dst, src in zip(self.input_arrays, feeds):
            np.copyto(dst, src)
        i = 0
        try:
            for i, (run, ins, outs) in enumerate(self._calls):  # noqa: B007  (i names the failing step)
                run(ins, outs)
        except CnnrtError:
            raise
        except Exception as e:
            raise KernelError(_describe(self.steps[i].node, self.graph, f"{type(e).__name__}: {e}")) from e
        return [np.array(o, copy=True) for o in self.output_arrays]


def _describe(node: Node, graph: Graph, what: str) -> str:
    shapes = ", ".join(f"{i}{list(graph.values[i].shape)}" for i in node.inputs if i)
    return f"node {node.name!r} ({node.op}, from ONNX {list(node.origin)}) with inputs {shapes}: {what}"
