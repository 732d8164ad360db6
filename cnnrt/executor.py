"""Executor: a plan built once (kernel per step, buffers resolved), and a tiny run loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnrt.kernels import get_builder

from .errors import CnnrtError, KernelError, UnsupportedOpError
from .ir import Graph, Node
from .plan import MemoryPlan


@dataclass(frozen=True)
class Step:
    node: Node
    run: object  # KernelFn
    ins: list
    outs: list


class Executor:
    """Binds every value of ``graph`` to an array (arena view or constant) and a kernel per node."""

    def __init__(self, graph: Graph, plan: MemoryPlan, backend: str = "cpu") -> None:
        self.graph = graph
        self.plan = plan
        self.backend = backend
        missing = [n for n in graph.nodes if get_builder(n.op, backend) is None]
        if missing:
            raise UnsupportedOpError(
                f"no {backend} kernel for {len(missing)} node(s): "
                + "; ".join(f"{n.name} ({n.op})" for n in missing)
            )
        self.arena = np.empty(max(plan.arena_bytes, 1), dtype=np.uint8)
        self.arrays: dict[str, np.ndarray] = {}
        for name, arr in graph.constants.items():
            self.arrays[name] = arr
        for name, r in plan.alias_of.items():
            v = graph.values[name]
            buf = plan.buffers[r]
            raw = self.arena[buf.offset : buf.offset + v.nbytes]
            self.arrays[name] = raw.view(v.dtype).reshape(v.shape)
        self.steps: list[Step] = []
        for node in graph.nodes:
            try:
                run = get_builder(node.op, backend)(node, graph)
            except CnnrtError:
                raise
            except Exception as e:
                raise KernelError(_describe(node, graph, f"kernel build failed: {type(e).__name__}: {e}")) from e
            ins = [self.arrays[i] if i else None for i in node.inputs]
            outs = [self.arrays[o] if o else None for o in node.outputs]
            self.steps.append(Step(node, run, ins, outs))
        self.input_arrays = [self.arrays[i] for i in graph.inputs]
        self.output_arrays = [self.arrays[o] for o in graph.outputs]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Copy feeds in, run every step, return copies of the outputs (the arena is reused)."""
        for dst, src in zip(self.input_arrays, feeds):
            np.copyto(dst, src)
        i = 0
        try:
            for i, step in enumerate(self.steps):  # noqa: B007  (i names the failing step)
                step.run(step.ins, step.outs)
        except CnnrtError:
            raise
        except Exception as e:
            raise KernelError(_describe(self.steps[i].node, self.graph, f"{type(e).__name__}: {e}")) from e
        return [np.array(o, copy=True) for o in self.output_arrays]


def _describe(node: Node, graph: Graph, what: str) -> str:
    shapes = ", ".join(f"{i}{list(graph.values[i].shape)}" for i in node.inputs if i)
    return f"node {node.name!r} ({node.op}, from ONNX {list(node.origin)}) with inputs {shapes}: {what}"
