"""The native plan: runs of consecutive steps as one compiled call, no Python between them.

A bound step may offer ``call.native(nthreads)``, a tuple of :class:`~cnnrt.kernels.cpu.
native_call.NativeStep` (its compiled kernels, their arguments, values to store first). Each
maximal run of such steps becomes one generated LLVM function with no arguments: it stores
the steps' settings and calls each kernel's compiled function by address, its arguments
constants (arrays on the executor's memory). Straight-line code of calls compiles in
milliseconds, so a plan is generated when a session first runs with a thread count and is
never cached. A step without a native form stays a Python call between the runs.

Why: on a mobile net at batch 1 the Python loop's per-step cost (the step's wrapper, the
dispatcher typing and unboxing 15 arguments, the loop) is 3-8 us against 5-30 us of work.
"""

from __future__ import annotations

import ctypes
import itertools
import os

import numpy as np

ENV = "CNNRT_NATIVE_PLAN"


def from_env() -> bool:
    """The default of a session's ``native_plan`` option: on unless ``CNNRT_NATIVE_PLAN=0``."""
    return os.environ.get(ENV, "1") not in ("", "0")


_names = itertools.count()


REGIONS = True  # steps between plain calls share one parallel region (False: A/B of the regions)


class Segment:
    """One generated function over consecutive steps (``first`` is the first one's index in the
    executor's calls); calling it returns 0, or 1 + the index within the segment of the step
    whose kernel raised (the steps after it did not run).

    On more than one thread, runs of steps share one parallel region (:meth:`_region`): each
    thread runs a generated function that goes through the steps, claiming their tasks and
    waiting, spinning, until the step's last task is done before the next step. A kernel
    that opens its own parallel region (a prange kernel without a task worker) is called
    between regions. Why: Numba's TBB workers sleep as soon as a region ends; the next
    kernel's region wakes them, 10-15 us on a 2-core KVM guest when its step follows 20 us
    of other work (1.4 us back to back), which cost a 1x1 conv at 56x56 a quarter of its
    time on two threads."""

    def __init__(self, natives: list[tuple], first: int, nthreads: int = 1) -> None:
        import llvmlite.binding as llvm
        from llvmlite import ir
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.registry import cpu_target

        self.first = first
        self.count = len(natives)
        self.context = cpu_target.target_context
        self.name = f"cnnrt_segment_{next(_names)}"
        self.module = self.context.codegen()._create_empty_module(self.name)
        i64 = ir.IntType(64)
        fn = ir.Function(self.module, ir.FunctionType(i64, []), self.name)
        builder = ir.IRBuilder(fn.append_basic_block("entry"))
        units = [(k, ns) for k, calls in enumerate(natives) for ns in calls]
        regions = nthreads > 1 and REGIONS
        groups = _regions(units) if regions else [(False, [u]) for u in units]
        # 64-byte lines: per unit (tasks claimed, tasks done), then the error word, then the
        # status word of kernels/cpu/native_call.run_region
        self.lines = np.zeros(8 * (len(units) + 2) + 8, np.int64)
        self.base = -(-self.lines.ctypes.data // 64) * 64
        self.err_line = len(units)
        self.status = self.lines[(self.base - self.lines.ctypes.data) // 8 + 8 * (self.err_line + 1) :][:1]
        self.regions = 0
        self.pause = _pause(self.module) if regions else None
        unit_index = 0
        for in_region, group in groups:
            if not in_region:
                k, ns = group[0]
                self._sets(builder, ns)
                fnaddr, typed = _address(ns)
                with builder.if_then(self._call(builder, fnaddr, typed), likely=False):
                    builder.ret(i64(k + 1))
            else:
                self._region(builder, group, unit_index, nthreads)
            unit_index += len(group)
        builder.ret(i64(0))
        # Straight-line calls gain nothing from optimisation: compiled without it, by an engine
        # of the segment's own (a 111-step segment: 15 ms, against 130 ms through Numba's O3)
        with global_compiler_lock:
            target = llvm.Target.from_default_triple().create_target_machine(opt=0, codemodel="jitdefault")
            self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(str(self.module)), target)
            self.engine.finalize_object()
            address = self.engine.get_function_address(self.name)
        self.keep = [ns for _, ns in units]  # what the constants point into lives as long as the segment
        del self.module, self.context, self.pause
        self.entry = ctypes.CFUNCTYPE(ctypes.c_int64)(address)

    def __call__(self) -> int:
        return self.entry()

    def _word(self, builder, line: int, word: int = 0):
        from llvmlite import ir

        i64 = ir.IntType(64)
        return builder.inttoptr(i64(self.base + 64 * line + 8 * word), i64.as_pointer())

    def _sets(self, builder, ns) -> None:
        from llvmlite import ir

        i64 = ir.IntType(64)
        for arr, index, value in ns.sets:
            if arr.dtype != np.int64 or arr.ndim != 1:
                raise TypeError(f"a native plan stores into 1-D int64 arrays, not {arr.dtype} {arr.shape}")
            where = arr.ctypes.data + int(index) * arr.strides[0]
            builder.store(i64(int(value)), builder.inttoptr(i64(where), i64.as_pointer()))

    def _call(self, builder, fnaddr, typed, first=None):
        from cnnrt.kernels.cpu.native_call import emit_call

        return emit_call(self.context, builder, fnaddr, typed, first)

    def _region(self, builder, group: list, unit0: int, nthreads: int) -> None:
        """The steps of ``group`` in one parallel region (kernels/cpu/native_call.run_region):
        a generated function every thread runs; per step it claims tasks (a task worker's
        indices, or the whole serial kernel as one task) until none is left, then spins until
        all are done. A task that raises leaves 1 + its step's index in the error word; every
        thread returns it after that step, and the segment returns it."""
        from llvmlite import ir

        from cnnrt.kernels.cpu.native_call import run_region

        i64 = ir.IntType(64)
        rfn = ir.Function(self.module, ir.FunctionType(i64, [i64]), f"{self.name}_region{self.regions}")
        self.regions += 1
        rb = ir.IRBuilder(rfn.append_basic_block("entry"))
        pause = self.pause
        err = self._word(rb, self.err_line)
        for u, (k, ns) in enumerate(group):
            worker, ntasks = _tasks(ns)
            line = unit0 + u
            builder.store(i64(0), self._word(builder, line, 0))
            builder.store(i64(0), self._word(builder, line, 1))
            self._sets(builder, ns)
            claimed, done = self._word(rb, line, 0), self._word(rb, line, 1)
            claim, body, wait, spin, after = (
                rfn.append_basic_block(f"s{u}_{b}") for b in ("claim", "body", "wait", "spin", "after")
            )
            rb.branch(claim)
            rb.position_at_end(claim)
            i = rb.atomic_rmw("add", claimed, i64(1), "monotonic")
            rb.cbranch(rb.icmp_signed("<", i, i64(ntasks)), body, wait)
            rb.position_at_end(body)
            if worker is ns.kernel:
                fnaddr, typed = _address(ns)
                raised = self._call(rb, fnaddr, typed)
            else:
                fnaddr, typed = _address(ns, worker, (0, *ns.args))
                raised = self._call(rb, fnaddr, typed, first=i)
            with rb.if_then(raised, likely=False):
                rb.store_atomic(i64(k + 1), err, "monotonic", 8)
            rb.atomic_rmw("add", done, i64(1), "release")
            rb.branch(claim)
            rb.position_at_end(wait)
            rb.cbranch(rb.icmp_signed("<", rb.load_atomic(done, "acquire", 8), i64(ntasks)), spin, after)
            rb.position_at_end(spin)
            if pause is not None:
                rb.call(pause, [])
            rb.branch(wait)
            rb.position_at_end(after)
            failed = rb.load_atomic(err, "acquire", 8)
            with rb.if_then(rb.icmp_signed("!=", failed, i64(0)), likely=False):
                rb.ret(failed)
        rb.ret(i64(0))
        status = self._word(builder, self.err_line + 1)
        builder.store(i64(0), self._word(builder, self.err_line))
        builder.store(i64(0), status)
        fnaddr, typed = _address(None, run_region, (0, nthreads, self.status))
        self._call(builder, fnaddr, typed, first=builder.ptrtoint(rfn, i64))
        result = builder.load(status)
        with builder.if_then(builder.icmp_signed("!=", result, i64(0)), likely=False):
            builder.ret(result)


def _tasks(ns):
    """(task worker, number of tasks) of a step whose kernel runs its work as tasks
    (kernels.cpu.threaded), None for a kernel with its own parallel region; a serial kernel:
    (its kernel, 1)."""
    worker = getattr(ns.kernel, "worker", None)
    if worker is not None:
        return worker, int(ns.args[0])
    if _parallel(ns.kernel):
        return None
    return ns.kernel, 1


def _regions(units: list) -> list[tuple[bool, list]]:
    """``units`` ((step, NativeStep) in order) cut into (in a region, units) groups: a kernel
    with its own parallel region alone, not in a region; runs of the others together, but a
    run ends before a step that stores into a word an earlier step of the run stores into
    (the stores happen before the region). A run of serial kernels only stays out of a region,
    one unit per group: it would open a parallel region where there was none (LeNet-5)."""
    runs: list[list] = []
    words: set = set()
    for u in units:
        own = _tasks(u[1]) is None
        keys = {arr.ctypes.data + int(i) * arr.strides[0] for arr, i, _ in u[1].sets}
        if own or not runs or _tasks(runs[-1][0][1]) is None or keys & words:
            runs.append([u])
            words = set()
        else:
            runs[-1].append(u)
        words |= keys
    groups: list[tuple[bool, list]] = []
    for run in runs:
        if _tasks(run[0][1]) is not None and any(_parallel(ns.kernel) for _, ns in run):
            groups.append((True, run))
        else:
            groups += [(False, [u]) for u in run]
    return groups


def _parallel(kernel) -> bool:
    return bool(kernel.targetoptions.get("parallel"))


def _address(ns, kernel=None, args=None):
    from cnnrt.kernels.cpu.native_call import native_address

    return native_address(kernel or ns.kernel, ns.args if args is None else args)


def _pause(module):
    """``llvm.x86.sse2.pause`` declared in ``module`` (the spin-wait hint), None off x86."""
    import llvmlite.binding as llvm
    from llvmlite import ir

    if not llvm.get_process_triple().startswith(("x86_64", "i686", "i386")):
        return None
    return ir.Function(module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")


def schedule(calls: list, nthreads: int) -> tuple[list[tuple[int, object]], list[tuple[int, str]]]:
    """What a run calls on ``nthreads`` threads: (index of the first step, callable) pairs,
    segments for the runs of steps with a native form, the other steps as they are; and the
    (step index, reason) of each run that stayed in Python because its segment did not build."""
    parts: list[tuple[int, object]] = []
    declined: list[tuple[int, str]] = []
    forms = [native(nthreads) if (native := getattr(call, "native", None)) else None for call in calls]
    i = 0
    while i < len(calls):
        if forms[i] is None:
            parts.append((i, calls[i]))
            i += 1
            continue
        j = i + 1
        while j < len(calls) and forms[j] is not None:
            j += 1
        try:
            parts.append((i, Segment(forms[i:j], i, nthreads)))
        except Exception as e:  # noqa: BLE001  (the steps still run, as Python calls)
            declined.append((i, f"{type(e).__name__}: {e}"))
            parts.extend((k, calls[k]) for k in range(i, j))
        i = j
    return parts, declined
