"""The CUDA executor: one device arena laid out by the memory plan, weights uploaded once.

Mirrors :class:`cnnrt.runtime.executor.Executor`: a list of steps built once (kernel per node,
buffers resolved), and a small run loop. Host<->device copies happen only at the graph's
inputs and outputs. Every value is bound to a flat 1-D device array: a root is a typed
view of its arena bytes, an alias is its base array, a Concat slice is a range of its
container (contiguous slices only); constants are uploaded when the executor is built.
Nodes the plan marks as no-ops (aliased views, in-place Concat) get no step; with
``poison=True`` dead regions are filled with NaN after their last reader, as on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnrt.core.ir import Graph, Node
from cnnrt.core.ops import VIEW_OPS
from cnnrt.errors import BackendUnavailableError, CnnrtError, InputError, KernelError, UnsupportedOpError
from cnnrt.kernels import get_builder
from cnnrt.kernels.cuda.device import cuda_unavailable_reason, device_array, is_device_array, upload_flat
from cnnrt.runtime.plan import MemoryPlan


@dataclass(frozen=True)
class Step:
    node: Node
    run: object  # KernelFn over flat device arrays
    ins: list
    outs: list


class CudaExecutor:
    """Binds every value of ``graph`` to a flat device array and a CUDA kernel per node."""

    backend = "cuda"

    def __init__(self, graph: Graph, plan: MemoryPlan, poison: bool = False) -> None:
        why = cuda_unavailable_reason()
        if why:
            raise BackendUnavailableError(f"backend='cuda' cannot run here: {why}")
        self.graph = graph
        self.plan = plan
        self.poison = poison
        live_nodes = [n for n in graph.nodes if not _is_noop(n, plan)]
        missing = [n for n in live_nodes if get_builder(n.op, "cuda") is None]
        if missing:
            raise UnsupportedOpError(
                f"no cuda kernel for {len(missing)} node(s): " + "; ".join(f"{n.name} ({n.op})" for n in missing)
            )
        self.arena = device_array(max(plan.arena_bytes, 1), np.uint8)
        self.arrays: dict[str, Any] = {}
        used = {i for n in live_nodes for i in n.inputs if i} | set(graph.outputs)
        for name, arr in graph.constants.items():
            if name in used:
                self.arrays[name] = upload_flat(arr)
        for name in plan.places:
            self._array(name)
        dying = plan.dying_after() if poison else [[] for _ in graph.nodes]
        self.steps: list[Step] = []
        for i, node in enumerate(graph.nodes):
            if not _is_noop(node, plan):
                try:
                    run = get_builder(node.op, "cuda")(node, graph)
                except CnnrtError:
                    raise
                except Exception as e:
                    raise KernelError(
                        _describe(node, graph, f"cuda kernel build failed: {type(e).__name__}: {e}")
                    ) from e
                ins = [self.arrays[i] if i else None for i in node.inputs]
                outs = [self.arrays[o] if o else None for o in node.outputs]
                self.steps.append(Step(node, run, ins, outs))
            for root in dying[i]:
                self.steps.append(self._poison_step(node, root))
        self.input_values = [graph.values[i] for i in graph.inputs]
        self.input_arrays = [self.arrays[i] for i in graph.inputs]
        self.output_values = [graph.values[o] for o in graph.outputs]
        self.output_arrays = [self.arrays[o] for o in graph.outputs]

    def _array(self, name: str):
        """The flat device array of an arena value, following the plan's places."""
        arr = self.arrays.get(name)
        if arr is not None:
            return arr
        v = self.graph.values[name]
        place = self.plan.places[name]
        if place.kind == "buffer":
            off = self.plan.buffers[name].offset
            arr = self.arena[off : off + v.nbytes].view(np.dtype(v.dtype))
        elif place.kind == "alias":
            base = self._array(place.base)
            if np.dtype(base.dtype) != np.dtype(v.dtype) or base.size < v.size:
                raise KernelError(
                    f"value {name!r} cannot alias {place.base!r}: {v.dtype}{list(v.shape)} vs {base.dtype}[{base.size}]"
                )
            arr = base if base.size == v.size else base[: v.size]
        else:  # a slice of a Concat output along place.axis: contiguous only behind leading 1s
            bshape = self.graph.values[place.base].shape
            if int(np.prod(bshape[: place.axis], dtype=np.int64)) != 1:
                raise UnsupportedOpError(
                    f"value {name!r} is a strided slice of {place.base!r} (axis {place.axis} of {list(bshape)}); "
                    "the CUDA kernels write contiguous outputs only"
                )
            start = place.start * int(np.prod(bshape[place.axis + 1 :], dtype=np.int64))
            arr = self._array(place.base)[start : start + v.size]
        self.arrays[name] = arr
        return arr

    def _poison_step(self, node: Node, root: str) -> Step:
        """After ``node``, fill the dead region of ``root`` with NaN (ints: max, bool: True)."""
        from cnnrt.kernels.cuda.common import launcher_1d
        from cnnrt.kernels.cuda.tensor import _fill

        region = self.arrays[root]
        dt = np.dtype(region.dtype)
        value = dt.type(np.nan if dt.kind in "fc" else True if dt.kind == "b" else np.iinfo(dt).max)
        n = region.size
        launch = launcher_1d(_fill, n)

        def fill(ins, outs):
            launch(region, n, value)

        return Step(node.replace(name=f"{node.name}/poison:{root}", op="Poison"), fill, [], [])

    def run(self, feeds: Sequence[Any], return_device: bool = False) -> list[Any]:
        """Copy feeds in, run every step, return the outputs.

        ``feeds`` are numpy arrays or numba device arrays (copied device-to-device into the
        arena), in ``graph.inputs`` order. Outputs are fresh numpy arrays, or with
        ``return_device=True`` fresh device arrays (copies: the arena is reused by the next
        run) shaped like the outputs, so a caller can keep data on the GPU.
        """
        if len(feeds) != len(self.input_arrays):
            raise InputError(f"expected {len(self.input_arrays)} feeds ({self.graph.inputs}), got {len(feeds)}")
        for dst, src, v in zip(self.input_arrays, feeds, self.input_values):
            _copy_in(dst, src, v)
        i = 0
        try:
            for i, step in enumerate(self.steps):  # noqa: B007  (i names the failing step)
                step.run(step.ins, step.outs)
        except CnnrtError:
            raise
        except Exception as e:
            raise KernelError(_describe(self.steps[i].node, self.graph, f"{type(e).__name__}: {e}")) from e
        if return_device:
            outs = []
            for src, v in zip(self.output_arrays, self.output_values):
                d = device_array(src.shape, src.dtype)
                d.copy_to_device(src)
                outs.append(d.reshape(v.shape))
            return outs
        return [src.copy_to_host().reshape(v.shape) for src, v in zip(self.output_arrays, self.output_values)]


def _is_noop(node: Node, plan: MemoryPlan) -> bool:
    """The plan made this node's step unnecessary. A view with a second output (Dropout's
    mask) still runs: its copy is onto itself, and the mask must be written."""
    if node.name not in plan.noop_nodes:
        return False
    return not (node.op in VIEW_OPS and len([o for o in node.outputs if o]) > 1)


def _copy_in(dst, src, v) -> None:
    """Copy one feed (host or device array) into its flat arena slot."""
    if is_device_array(src):
        if tuple(src.shape) != tuple(v.shape) or np.dtype(src.dtype) != np.dtype(v.dtype):
            raise InputError(
                f"device feed {v.name!r} is {src.dtype}{list(src.shape)}, expected {v.dtype}{list(v.shape)}"
            )
        if not hasattr(src, "copy_to_host"):  # another library's CUDA array: wrap it (real GPU only)
            from numba import cuda

            src = cuda.as_cuda_array(src)
        dst.copy_to_device(src.reshape(dst.shape))
        return
    arr = np.ascontiguousarray(src, dtype=np.dtype(v.dtype))
    if arr.size != dst.size:
        raise InputError(f"feed {v.name!r} has {arr.size} elements, expected {v.dtype}{list(v.shape)}")
    dst.copy_to_device(arr.reshape(-1))


def _describe(node: Node, graph: Graph, what: str) -> str:
    shapes = ", ".join(f"{i}{list(graph.values[i].shape)}" for i in node.inputs if i)
    return f"node {node.name!r} ({node.op}, from ONNX {list(node.origin)}) on cuda with inputs {shapes}: {what}"
