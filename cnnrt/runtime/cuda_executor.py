"""The CUDA executor: one device arena laid out by the memory plan, weights uploaded once.

What differs from the CPU :class:`~cnnrt.runtime.executor.Executor` (the steps, poison steps,
run loop and error wrapping are the shared :class:`~cnnrt.runtime.executor.BaseExecutor`):
host<->device copies happen only at the graph's inputs and outputs, and every value is bound
to a flat 1-D device array: a root is a typed view of its arena bytes, an alias is its base
array, a Concat slice is a range of its container (contiguous slices only); the constants
the live nodes read are uploaded when the executor is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.ops import VIEW_OPS
from cnnrt.errors import BackendUnavailableError, InputError, KernelError, UnsupportedOpError
from cnnrt.kernels.cuda.device import cuda_unavailable_reason, device_array, is_device_array, upload_flat
from cnnrt.runtime.executor import BaseExecutor
from cnnrt.runtime.plan import MemoryPlan


class CudaExecutor(BaseExecutor):
    """Binds every value of ``graph`` to a flat device array and a CUDA kernel per node."""

    backend = "cuda"
    where = " on cuda"

    def __init__(self, graph: Graph, plan: MemoryPlan, poison: bool = False) -> None:
        why = cuda_unavailable_reason()
        if why:
            raise BackendUnavailableError(f"backend='cuda' cannot run here: {why}")
        super().__init__(graph, plan, poison)
        self.input_values = [graph.values[i] for i in graph.inputs]
        self.output_values = [graph.values[o] for o in graph.outputs]

    def _is_noop(self, node: Node) -> bool:
        """A view with a second output (Dropout's mask) still runs: its copy is onto itself,
        and the mask must be written."""
        if node.name not in self.plan.noop_nodes:
            return False
        return not (node.op in VIEW_OPS and len([o for o in node.outputs if o]) > 1)

    def _new_arena(self, nbytes: int) -> Any:
        return device_array(max(nbytes, 1), np.uint8)

    def _bind_constants(self, live_nodes: list[Node]) -> dict[str, Any]:
        used = {i for n in live_nodes for i in n.inputs if i} | set(self.graph.outputs)
        return {name: upload_flat(arr) for name, arr in self.graph.constants.items() if name in used}

    def _root(self, name: str, v: Value, offset: int) -> Any:
        return self.arena[offset : offset + v.nbytes].view(np.dtype(v.dtype))

    def _alias(self, name: str, v: Value, base_name: str) -> Any:
        base = self._array(base_name)
        if np.dtype(base.dtype) != np.dtype(v.dtype) or base.size < v.size:
            raise KernelError(
                f"value {name!r} cannot alias {base_name!r}: {v.dtype}{list(v.shape)} vs {base.dtype}[{base.size}]"
            )
        return base if base.size == v.size else base[: v.size]

    def _slice(self, name: str, v: Value, place) -> Any:
        """A range of the Concat output: contiguous only behind leading 1s."""
        bshape = self.graph.values[place.base].shape
        if int(np.prod(bshape[: place.axis], dtype=np.int64)) != 1:
            raise UnsupportedOpError(
                f"value {name!r} is a strided slice of {place.base!r} (axis {place.axis} of {list(bshape)}); "
                "the CUDA kernels write contiguous outputs only"
            )
        start = place.start * int(np.prod(bshape[place.axis + 1 :], dtype=np.int64))
        return self._array(place.base)[start : start + v.size]

    def _filler(self, region: Any, value) -> object:
        from cnnrt.kernels.cuda.common import launcher_1d
        from cnnrt.kernels.cuda.tensor import _fill

        n = region.size
        launch = launcher_1d(_fill, n)

        def fill(ins, outs):
            launch(region, n, value)

        return fill

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
        self._run_steps()
        if return_device:
            outs = []
            for src, v in zip(self.output_arrays, self.output_values):
                d = device_array(src.shape, src.dtype)
                d.copy_to_device(src)
                outs.append(d.reshape(v.shape))
            return outs
        return [src.copy_to_host().reshape(v.shape) for src, v in zip(self.output_arrays, self.output_values)]


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
