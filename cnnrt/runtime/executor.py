"""Executors: a plan built once (kernel per step, buffers resolved), and a tiny run loop.

:class:`BaseExecutor` holds what every backend shares: each value's array is made once from
the memory plan (a root is a typed view of its arena bytes, an alias is its base without a
copy, a Concat slice is a view of a range of its container), nodes the plan marks as no-ops
(views, in-place Concat) get no step, every other node gets the kernel its backend registered,
and a failing build or run is re-raised naming the node, its ONNX origin and its input shapes.
With ``poison=True`` a step after the last reader of a region fills it with NaN (integers:
their max, bool: True), so reading a dead or wrongly shared region shows up as a wrong answer.

A subclass says what differs: the arena (host or device memory), how constants are bound,
how the three place kinds become arrays, how a region is filled, and how feeds and outputs
cross into and out of the arena. :class:`Executor` is the CPU one (numpy views shaped like
the values); the CUDA one is in cuda_executor.py.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnrt.core import layout
from cnnrt.core.ir import Graph, Node, Value
from cnnrt.errors import (
    BackendUnavailableError,
    CnnrtError,
    InputError,
    KernelError,
    ResourceLimitError,
    UnsupportedOpError,
)
from cnnrt.kernels import get_builder
from cnnrt.kernels._jit import num_threads
from cnnrt.kernels.aligned import SharedScratch, aligned_empty
from cnnrt.kernels.registry import bound
from cnnrt.runtime.native_plan import Segment, schedule
from cnnrt.runtime.plan import MemoryPlan, fmt_bytes
from cnnrt.runtime.returned import MIN_KEPT_BYTES, Returned


@dataclass(frozen=True)
class Step:
    node: Node
    run: object  # KernelFn
    ins: list
    outs: list


class BaseExecutor:
    """Binds every value of ``graph`` to an array (arena view or constant) and a kernel per node."""

    backend: str
    where = ""  # said after the node in error messages (" on cuda")

    def __init__(self, graph: Graph, plan: MemoryPlan, poison: bool = False, memory_limit: int | None = None) -> None:
        self.graph = graph
        self.plan = plan
        self.poison = poison
        live_nodes = [n for n in graph.nodes if not self._is_noop(n)]
        missing = [n for n in live_nodes if get_builder(n.op, self.backend) is None]
        if missing:
            raise UnsupportedOpError(
                f"no {self.backend} kernel for {len(missing)} node(s): "
                + "; ".join(f"{n.name} ({n.op})" for n in missing)
            )
        # kernels first: what they hold (repacked weights, scratch) is counted before the arena exists
        held = KernelMemory(graph, plan, memory_limit)
        runs = {}
        for node in live_nodes:
            runs[node.name] = self._kernel(node)
            held.add(node, runs[node.name])
        held.report()
        self.arena = self._new_arena(plan.arena_bytes)
        self.arrays: dict[str, Any] = self._bind_constants(live_nodes)
        for name in plan.places:
            self._array(name)
        dying = plan.dying_after() if poison else [[] for _ in graph.nodes]
        self.steps: list[Step] = []
        for i, node in enumerate(graph.nodes):
            if not self._is_noop(node):
                self.steps.append(self._step(node, runs[node.name]))
            for root in dying[i]:
                self.steps.append(self._poison_step(node, root))
        self.input_arrays = [self.arrays[i] for i in graph.inputs]
        self.output_arrays = [self.arrays[o] for o in graph.outputs]
        # what the hot loop touches: each step bound to its arrays (kernels.registry.bound)
        self.calls = [bound(s.run, s.ins, s.outs) for s in self.steps]

    # what a backend provides
    def _new_arena(self, nbytes: int) -> Any:
        raise NotImplementedError

    def _bind_constants(self, live_nodes: list[Node]) -> dict[str, Any]:
        raise NotImplementedError

    def _root(self, name: str, v: Value, offset: int) -> Any:
        raise NotImplementedError

    def _alias(self, name: str, v: Value, base_name: str) -> Any:
        raise NotImplementedError

    def _slice(self, name: str, v: Value, place) -> Any:
        raise NotImplementedError

    def _filler(self, region: Any, value) -> object:
        raise NotImplementedError

    def _is_noop(self, node: Node) -> bool:
        return node.name in self.plan.noop_nodes

    # shared machinery
    def _array(self, name: str) -> Any:
        """The array of an arena value, following the plan's places (made once, then cached)."""
        arr = self.arrays.get(name)
        if arr is not None:
            return arr
        v = self.graph.values[name]
        place = self.plan.places[name]
        if place.kind == "buffer":
            arr = self._root(name, v, self.plan.buffers[name].offset)
        elif place.kind == "alias":
            arr = self._alias(name, v, place.base)
        else:
            arr = self._slice(name, v, place)
        self.arrays[name] = arr
        return arr

    def _kernel(self, node: Node):
        try:
            return get_builder(node.op, self.backend)(node, self.graph)
        except CnnrtError:
            raise
        except MemoryError:
            raise ResourceLimitError(self._describe(node, "out of memory building its kernel")) from None
        except Exception as e:
            raise KernelError(self._describe(node, f"kernel build failed: {type(e).__name__}: {e}")) from e

    def _step(self, node: Node, run) -> Step:
        ins = [self.arrays[i] if i else None for i in node.inputs]
        outs = [self.arrays[o] if o else None for o in node.outputs]
        return Step(node, run, ins, outs)

    def _poison_step(self, node: Node, root: str) -> Step:
        """After ``node``, fill the dead region of ``root`` with NaN (ints: max, bool: True)."""
        region = self.arrays[root]
        dt = np.dtype(region.dtype)
        value = dt.type(np.nan if dt.kind in "fc" else True if dt.kind == "b" else np.iinfo(dt).max)
        return Step(node.replace(name=f"{node.name}/poison:{root}", op="Poison"), self._filler(region, value), [], [])

    def _scheduled(self) -> list:
        """The bound calls a run makes through its schedule (a subclass may run the last apart)."""
        return self.calls

    def _schedule(self) -> list[tuple[int, Any]]:
        """What a run calls: (index of the first step, callable) pairs; a callable is a step's
        own call or a native plan's Segment over the steps from that index on."""
        return list(enumerate(self._scheduled()))

    def _run_steps(self) -> None:
        """Every scheduled step in order; a failure is re-raised naming the step's node."""
        i = 0
        try:
            for i, call in self._schedule():  # noqa: B007  (i names the failing step)
                failed = call()
                if isinstance(call, Segment) and failed:  # one of its kernels raised: that step again, for its error
                    i += failed - 1
                    self.calls[i]()
                    raise KernelError(self._describe(self.steps[i].node, "its kernel failed in the native plan"))
        except Exception as e:
            self._raise_failure(i, e)

    def _raise_failure(self, i: int, e: Exception) -> None:
        """Re-raise ``e``, raised by step ``i``'s kernel: a CnnrtError as it is, anything else
        as one naming the step's node."""
        if isinstance(e, CnnrtError):
            raise e
        if isinstance(e, MemoryError):
            raise ResourceLimitError(self._describe(self.steps[i].node, "out of memory in its kernel")) from None
        raise KernelError(self._describe(self.steps[i].node, f"{type(e).__name__}: {e}")) from e

    def _describe(self, node: Node, what: str) -> str:
        shapes = ", ".join(f"{i}{list(self.graph.values[i].shape)}" for i in node.inputs if i)
        return f"node {node.name!r} ({node.op}, from ONNX {list(node.origin)}){self.where} with inputs {shapes}: {what}"


def check_block_widths(graph: Graph) -> None:
    """Raise BackendUnavailableError when a channel-blocked value of ``graph`` has blocks of
    another width than this CPU's vectors (kernels/cpu/conv_common.block_size): the CPU
    kernels take one vector of channels per block, so a graph optimised where vectors differ
    (an optimized_model_filepath file written with AVX-512, 16 float32 lanes per block, run
    with AVX2, 8) would have its blocks read at the wrong width."""
    from cnnrt.kernels.cpu.conv_common import block_size

    wrong = sorted(
        {
            (v.layout, v.dtype, block_size(v.dtype))
            for v in graph.values.values()
            if layout.is_blocked(v) and layout.block_of(v.layout) != block_size(v.dtype)
        }
    )
    if wrong:
        found = ", ".join(f"{lay} ({dt}: this CPU's blocks are {b} lanes)" for lay, dt, b in wrong)
        raise BackendUnavailableError(
            f"graph {graph.name!r} was optimised for another CPU's vector width: its channel-blocked values are "
            f"{found}; optimise the model again on this machine (from its ONNX source)"
        )


class Executor(BaseExecutor):
    """The CPU executor: values are numpy views of one aligned host arena, shaped like the values."""

    def __init__(
        self,
        graph: Graph,
        plan: MemoryPlan,
        backend: str = "cpu",
        poison: bool = False,
        memory_limit: int | None = None,
        native: bool = True,
    ) -> None:
        self.backend = backend
        if backend == "cpu":
            check_block_widths(graph)
        super().__init__(graph, plan, poison, memory_limit)
        self.native = native
        self._schedules: dict[int, list] = {}
        self.native_declined: list[tuple[str, str]] = []  # (first node of a run left in Python, why)
        self.returned = Returned(self.output_arrays)
        self.tail_output = self._tail_output()

    def _tail_output(self) -> int | None:
        """The index of the graph output the last step writes straight into the array the run
        returns, if any: a large output (runtime/returned.py) that the last step alone writes
        to its own arena buffer. Its copy out of the arena is then saved: LR-ASPP's 34 MB
        segmentation map at batch 8. Not in poison mode, whose steps check the arena."""
        if self.poison or not self.steps:
            return None
        node = self.steps[-1].node
        written = [o for o in node.outputs if o]
        if len(written) != 1 or self.graph.outputs.count(written[0]) != 1:
            return None
        name = written[0]
        k = self.graph.outputs.index(name)
        if self.plan.places[name].kind != "buffer" or self.output_arrays[k].nbytes < MIN_KEPT_BYTES:
            return None
        return k

    def _scheduled(self) -> list:
        return self.calls if self.tail_output is None else self.calls[:-1]

    def _schedule(self) -> list[tuple[int, Any]]:
        """The native plan for this run's thread count (runtime/native_plan.py), made on the
        first run with that count; the Python loop when the session asked for it."""
        if not self.native:
            return super()._schedule()
        nthreads = num_threads()
        parts = self._schedules.get(nthreads)
        if parts is None:
            parts, declined = schedule(self._scheduled(), nthreads)
            self.native_declined += [(self.steps[i].node.name, why) for i, why in declined]
            self._schedules[nthreads] = parts
        return parts

    def _new_arena(self, nbytes: int) -> np.ndarray:
        return aligned_empty(nbytes, np.uint8)

    def _bind_constants(self, live_nodes: list[Node]) -> dict[str, Any]:
        return dict(self.graph.constants)

    def _root(self, name: str, v: Value, offset: int) -> np.ndarray:
        return self._checked(v, self.arena[offset : offset + v.nbytes].view(v.dtype).reshape(v.shape))

    def _alias(self, name: str, v: Value, base_name: str) -> np.ndarray:
        arr = self._array(base_name).view()
        arr.shape = v.shape  # raises instead of copying
        return self._checked(v, arr)

    def _slice(self, name: str, v: Value, place) -> np.ndarray:
        """A numpy view of a range of the container: strided when the axes in front are not all 1."""
        base = self._array(place.base)
        index = [slice(None)] * base.ndim
        index[place.axis] = slice(place.start, place.start + v.shape[place.axis])
        return self._checked(v, base[tuple(index)])

    @staticmethod
    def _checked(v: Value, arr: np.ndarray) -> np.ndarray:
        assert arr.dtype == np.dtype(v.dtype) and arr.shape == v.shape
        return arr

    def _filler(self, region: np.ndarray, value) -> object:
        def fill(ins, outs):
            region.fill(value)

        return fill

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Copy feeds in, run every step, return copies of the outputs (the arena is reused)."""
        for name, dst, src in zip(self.graph.inputs, self.input_arrays, feeds):
            try:
                np.copyto(dst, src)
            except (ValueError, TypeError) as e:  # a feed the graph was not built for
                raise InputError(
                    f"input {name!r} of shape {list(np.shape(src))} does not fit the graph input of shape "
                    f"{list(self.graph.values[name].shape)}: {e}"
                ) from None
        self._run_steps()
        try:
            outs = [self.returned.array(k) for k in range(len(self.output_arrays))]
        except MemoryError:
            nbytes = sum(o.nbytes for o in self.output_arrays)
            raise ResourceLimitError(f"out of memory for the outputs ({fmt_bytes(nbytes)})") from None
        for k, (dst, src) in enumerate(zip(outs, self.output_arrays)):
            if k == self.tail_output:
                self._run_tail(dst)
            else:
                np.copyto(dst, src)
        return outs

    def _run_tail(self, out: np.ndarray) -> None:
        """The last step, writing the tail output into ``out`` (bound afresh: ``out`` may be a
        new array each run, and the bound call must not outlive the run, lest it keep ``out``
        from being reused)."""
        i = len(self.steps) - 1
        step = self.steps[i]
        try:
            bound(step.run, step.ins, [out])()
        except Exception as e:
            self._raise_failure(i, e)


class KernelMemory:
    """What the kernels of a graph hold besides the arena and the graph's constants, found by
    walking each kernel's closure: repacked weights (Winograd's transformed weights apart) and
    scratch. Each buffer counts once, however many kernels share it; with ``memory_limit`` the
    build is refused at the first kernel that takes the total (arena, constants, kernels) past it.
    """

    def __init__(self, graph: Graph, plan: MemoryPlan, memory_limit: int | None) -> None:
        self.plan = plan
        self.limit = memory_limit
        self.seen: set[int] = {id(_base(a)) for a in graph.constants.values()}
        self.bytes = {"winograd": 0, "prepacked": 0, "scratch": 0}
        self.total = plan.arena_bytes + plan.constant_bytes + plan.folded_bytes

    def add(self, node: Node, run: Any) -> None:
        kind = "winograd" if node.attrs.get("algorithm") == "winograd" else "prepacked"
        for arr, is_scratch in _held_arrays(run):
            b = _base(arr)
            if id(b) in self.seen:
                continue
            self.seen.add(id(b))
            self.bytes["scratch" if is_scratch else kind] += b.nbytes
            self.total += b.nbytes
        if self.limit is not None and self.total > self.limit:
            raise ResourceLimitError(
                f"node {node.name!r} ({node.op}): its kernel's buffers take the session to {fmt_bytes(self.total)} "
                f"(arena, constants, repacked weights and scratch), above the memory limit of "
                f"{fmt_bytes(self.limit)} (InferenceSession(memory_limit=...) or CNNRT_MEMORY_LIMIT bytes raise it)"
            )

    def report(self) -> None:
        self.plan.winograd_bytes = self.bytes["winograd"]
        self.plan.prepacked_bytes = self.bytes["prepacked"]
        self.plan.scratch_bytes = self.bytes["scratch"]


def _base(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _held_arrays(obj: Any, depth: int = 0):
    """(array, is shared scratch) for every numpy array a kernel closure reaches through
    closures, defaults, bound methods and containers."""
    if depth > 8:
        return
    if isinstance(obj, np.ndarray):
        yield obj, False
    elif isinstance(obj, SharedScratch):
        yield obj.array, True
    elif isinstance(obj, types.FunctionType):
        for cell in obj.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            yield from _held_arrays(contents, depth + 1)
        for d in obj.__defaults__ or ():
            yield from _held_arrays(d, depth + 1)
    elif isinstance(obj, types.MethodType):
        yield from _held_arrays(obj.__func__, depth + 1)
        yield from _held_arrays(obj.__self__, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _held_arrays(x, depth + 1)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _held_arrays(x, depth + 1)
