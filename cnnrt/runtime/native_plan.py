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


class Segment:
    """One generated function over consecutive steps (``first`` is the first one's index in the
    executor's calls); calling it returns 0, or 1 + the index within the segment of the step
    whose kernel raised (the steps after it did not run)."""

    def __init__(self, natives: list[tuple], first: int) -> None:
        import llvmlite.binding as llvm
        from llvmlite import ir
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.registry import cpu_target

        from cnnrt.kernels.cpu.native_call import emit_call, native_address

        self.first = first
        self.count = len(natives)
        context = cpu_target.target_context
        name = f"cnnrt_segment_{next(_names)}"
        module = context.codegen()._create_empty_module(name)
        i64 = ir.IntType(64)
        fn = ir.Function(module, ir.FunctionType(i64, []), name)
        builder = ir.IRBuilder(fn.append_basic_block("entry"))
        keep = []  # what the constants point into lives as long as the segment
        for k, calls in enumerate(natives):
            for ns in calls:
                for arr, index, value in ns.sets:
                    if arr.dtype != np.int64 or arr.ndim != 1:
                        raise TypeError(f"a native plan stores into 1-D int64 arrays, not {arr.dtype} {arr.shape}")
                    where = arr.ctypes.data + int(index) * arr.strides[0]
                    builder.store(i64(int(value)), builder.inttoptr(i64(where), i64.as_pointer()))
                fnaddr, typed = native_address(ns.kernel, ns.args)
                with builder.if_then(emit_call(context, builder, fnaddr, typed), likely=False):
                    builder.ret(i64(k + 1))
                keep.append(ns)
        builder.ret(i64(0))
        # Straight-line calls gain nothing from optimisation: compiled without it, by an engine
        # of the segment's own (a 111-step segment: 15 ms, against 130 ms through Numba's O3)
        with global_compiler_lock:
            target = llvm.Target.from_default_triple().create_target_machine(opt=0, codemodel="jitdefault")
            self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(str(module)), target)
            self.engine.finalize_object()
            address = self.engine.get_function_address(name)
        self.keep = keep
        self.entry = ctypes.CFUNCTYPE(ctypes.c_int64)(address)

    def __call__(self) -> int:
        return self.entry()


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
            parts.append((i, Segment(forms[i:j], i)))
        except Exception as e:  # noqa: BLE001  (the steps still run, as Python calls)
            declined.append((i, f"{type(e).__name__}: {e}"))
            parts.extend((k, calls[k]) for k in range(i, j))
        i = j
    return parts, declined
