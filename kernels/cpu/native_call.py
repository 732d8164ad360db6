"""Calling compiled kernels from generated native code: the pieces of a native plan.

A step of the executor's Python loop pays for the call itself: a Numba dispatcher call
types and unboxes every argument (1.3-1.7 us for a blocked conv's 15), and the step's own
wrapper adds more; on MobileNetV3-Small's 46 steps that is a tenth of the run. A native
plan (``cnnrt/runtime/native_plan.py``) runs consecutive steps in one generated function
instead, built here: each step's arguments are LLVM constants (an array is Numba's array
struct on borrowed memory, no meminfo: the executor keeps the memory alive), passed to the
kernel's compiled function by address with Numba's own calling convention, for exactly the
types that function was compiled for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic

from cnnrt.kernels._jit import pjit


@dataclass(frozen=True)
class NativeStep:
    """One kernel call as a native plan makes it: ``kernel(*args)`` (a Numba dispatcher
    returning None), after storing each ``(int64 array, index, value)`` of ``sets``. A bound
    step offers ``call.native(nthreads)``: the tuple of its calls in order, or None when this
    binding has Python work between them."""

    kernel: Any
    args: tuple
    sets: tuple = ()

    def run(self) -> None:
        """The call from Python."""
        for arr, index, value in self.sets:
            arr[index] = value
        self.kernel(*self.args)


def native_call(parallel, serial, work: float, args_for, sets: tuple = ()):
    """A step's call without arguments: ``pick(parallel, serial, work, nthreads)`` run on
    ``args_for(nthreads)``, offered to a native plan too (``call.native``). ``sets`` are
    stored before each call (task counters back to 0)."""
    from cnnrt.kernels._jit import num_threads, pick

    def call():
        nthreads = num_threads()
        for arr, index, value in sets:
            arr[index] = value
        pick(parallel, serial, work, nthreads)(*args_for(nthreads))

    def native(nthreads):
        return (NativeStep(pick(parallel, serial, work, nthreads), args_for(nthreads), sets),)

    call.native = native
    return call


def native_address(dispatcher, args: tuple) -> tuple[int, tuple]:
    """(address of the native function of ``dispatcher`` for ``args``, compiled now if it was
    not; the argument types it takes, *args packed into one tuple and defaults omitted, each
    with the Python value it stands for: ``(type, value)``)."""
    import inspect

    import numba

    if not hasattr(dispatcher, "overloads"):  # a kernels.cpu.threaded.Threaded: its wrapper's call
        dispatcher, args = dispatcher.native(args)
    pysig, folded = dispatcher._compiler.fold_argument_types(tuple(numba.typeof(a) for a in args), {})
    folded = tuple(folded)
    cres = dispatcher.overloads.get(folded)
    if cres is None:
        dispatcher.compile(folded)
        cres = dispatcher.overloads[folded]
    params = list(pysig.parameters.values())
    values = []
    for i, t in enumerate(folded):
        if params[i].kind is inspect.Parameter.VAR_POSITIONAL:
            values.append((t, tuple(args[i:])))
        elif isinstance(t, types.Omitted):
            values.append((t, t.value))
        else:
            values.append((t, args[i]))
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name), tuple(values)


def flat_arguments(context, ty, value) -> list:
    """The LLVM constants Numba's calling convention passes for ``value`` of type ``ty``: an
    array's struct fields (no meminfo, no parent: the memory is borrowed), a tuple's elements
    in order, a scalar as itself, a bool as a byte, an omitted default as nothing."""
    from llvmlite import ir

    if isinstance(ty, types.Array):
        meminfo, parent, nitems, itemsize, data, *dims = kernel_abi(context, (ty,))[0]
        return [
            ir.Constant(meminfo, None),
            ir.Constant(parent, None),
            nitems(value.size),
            itemsize(value.itemsize),
            ir.Constant(ir.IntType(64), value.ctypes.data).inttoptr(data),
            *(t(d) for t, d in zip(dims, (*value.shape, *value.strides))),
        ]
    if isinstance(ty, types.BaseTuple):
        return [c for t, v in zip(ty, value) for c in flat_arguments(context, t, v)]
    if isinstance(ty, types.Omitted):
        return []
    if isinstance(ty, types.Boolean):
        return [ir.Constant(ir.IntType(8), int(bool(value)))]
    if isinstance(ty, (types.Integer, types.Float)):
        return [context.get_constant(ty, value)]
    raise TypeError(f"a native plan cannot pass {value!r} ({ty})")


@functools.lru_cache(maxsize=4096)
def kernel_abi(context, argtys: tuple) -> tuple[list, Any]:
    """(the LLVM types the arguments of types ``argtys`` are flattened to, the LLVM type of a
    function taking them and returning None): made once per signature, as one kernel serves
    many steps."""
    flat = list(context.get_arg_packer(argtys).argument_types)
    return flat, context.call_conv.get_function_type(types.none, argtys)


def emit_call(context, builder, fnaddr: int, typed: tuple, first=None):
    """Call the kernel at ``fnaddr`` (returning None) on ``typed`` ((type, value) pairs, from
    :func:`native_address`); the i1 that is true when it raised. ``first``: an LLVM value of
    the first flattened argument's type passed in place of its constant (a run-time value: a
    task index, a function's address)."""
    argtys = tuple(t for t, _ in typed)
    args = [c for t, v in typed for c in flat_arguments(context, t, v)]
    if first is not None:
        args[0] = first
    expected, fnty = kernel_abi(context, argtys)
    if [a.type for a in args] != expected:  # a mismatch would not raise: it would crash
        raise TypeError(f"arguments {[str(a.type) for a in args]} are not the ABI of {argtys}: {expected}")
    call_conv = context.call_conv
    callee = builder.inttoptr(context.get_constant(types.uintp, fnaddr), fnty.as_pointer())
    retptr = cgutils.alloca_once(builder, fnty.args[0].pointee)
    excinfo = cgutils.alloca_once(builder, fnty.args[1].pointee)
    code = builder.call(callee, [retptr, excinfo, *args])
    return call_conv._get_return_status(builder, code, builder.load(excinfo)).is_error


@intrinsic
def _call_region(typingctx, fnaddr, task):
    """``fnaddr(task)``: a generated function ``i64 (i64)`` called by its address."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, sig, args):
        from llvmlite import ir

        i64 = ir.IntType(64)
        fn = builder.inttoptr(args[0], ir.FunctionType(i64, [i64]).as_pointer())
        return builder.call(fn, [args[1]])

    return sig, codegen


@pjit
def run_region(fnaddr, nthreads, status):
    """One parallel region in which each of ``nthreads`` threads calls the generated function
    at ``fnaddr`` with its index; ``status[0]``: what a nonzero return said (runtime/
    native_plan.py: the failing step). Numba's pool may run two indices on one thread in
    turn: the region's work is claimed, not assigned by index, so it completes either way."""
    for t in prange(nthreads):
        r = _call_region(fnaddr, t)
        if r != 0:
            status[0] = r
