"""Kernels that run a per-thread worker: :func:`threaded` makes the parallel and serial
wrappers, which call the worker by its address (:func:`call_worker`)."""

from __future__ import annotations

import types as pytypes

import numba
from numba import prange, typeof
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils, types
from numba.extending import intrinsic

from cnnrt.kernels._jit import JIT_FLAGS, PARALLEL_FLAGS
from cnnrt.kernels.cpu.native_call import kernel_abi, native_address


@intrinsic
def call_worker(typingctx, fnaddr, t, nthreads, form, args):
    """``worker(t, nthreads, form, *args)`` for the worker compiled at ``fnaddr`` for exactly
    those types, t and nthreads as int64 (:meth:`Threaded.address`): a call by address,
    so the kernel making it does not link the worker's code into its own; an exception the
    worker raised propagates."""
    if not (isinstance(fnaddr, types.Integer) and isinstance(args, types.BaseTuple)):
        return None
    sig = types.none(fnaddr, t, nthreads, form, args)

    def codegen(context, builder, sig, llargs):
        addr, t_v, n_v, form_v, tup = llargs
        argtys = (types.int64, types.int64, sig.args[3], *sig.args[4])
        values = [
            context.cast(builder, t_v, sig.args[1], types.int64),
            context.cast(builder, n_v, sig.args[2], types.int64),
            form_v,
            *(builder.extract_value(tup, i) for i in range(len(sig.args[4]))),
        ]
        call_conv = context.call_conv
        fnty = kernel_abi(context, argtys)[1]
        callee = builder.inttoptr(addr, fnty.as_pointer())
        retptr = cgutils.alloca_once(builder, fnty.args[0].pointee)
        excinfo = cgutils.alloca_once(builder, fnty.args[1].pointee)
        packed = call_conv._get_arg_packer(argtys).as_arguments(builder, values)
        code = builder.call(callee, [retptr, excinfo, *packed])
        status = call_conv._get_return_status(builder, code, builder.load(excinfo))
        with cgutils.if_unlikely(builder, status.is_error):
            call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return sig, codegen


def _on_threads(fnaddr, nthreads, form, *args):
    for t in prange(nthreads):
        _call(fnaddr, t, nthreads, form, args)  # noqa: F821  (bound by :func:`threaded`)


def _in_turn(fnaddr, nthreads, form, *args):
    for t in range(nthreads):
        _call(fnaddr, t, nthreads, form, args)  # noqa: F821  (bound by :func:`threaded`)


class Threaded:
    """A kernel ``k(nthreads, form, *args)`` made by :func:`threaded`: ``kernel``, its compiled
    wrapper, runs ``worker`` (a Numba dispatcher) for every thread t < nthreads, called by the
    address of the worker compiled for these arguments (:func:`call_worker`)."""

    def __init__(self, kernel, worker) -> None:
        self.kernel = kernel
        self.worker = worker  # a native plan's region calls the worker itself, per task
        self._addresses: dict[tuple, int] = {}

    @property
    def targetoptions(self) -> dict:
        return self.kernel.targetoptions

    def address(self, args: tuple) -> int:
        """The worker's address for ``args`` = (nthreads, form, *rest), compiled on first use."""
        try:  # Numba's own type key (dtype, ndim, layout, writability): 0.5 us, typeof 100 us
            key = compute_fingerprint(args)
        except ValueError:  # an argument it has no fingerprint for
            key = tuple(typeof(a) for a in args)
        addr = self._addresses.get(key)
        if addr is None:
            addr = self._addresses[key] = native_address(self.worker, (0, *args))[0]
        return addr

    def native(self, args: tuple) -> tuple:
        """(the compiled wrapper, its arguments) of the call ``k(*args)``: what a native plan calls."""
        return self.kernel, (self.address(args), *args)

    def __call__(self, *args) -> None:
        self.kernel(self.address(args), *args)


def threaded(worker):
    """(parallel, serial) kernels ``k(nthreads, form, *args)`` (:class:`Threaded`) that run
    ``worker(t, nthreads, form, *args)`` for every thread t < nthreads: at once on Numba's
    pool, or in turn on the calling thread. ``form``: a tuple whose type selects a compiled
    variant (() when the kernel has none); it goes apart from ``args``, which hold no tuple: a
    parallel region cannot take a tuple inside its arguments' tuple.

    A heavy kernel keeps its per-thread work out of the prange body this way. Numba compiles a
    prange body into a function that each wrapping library (three of them) optimizes again
    after linking it, and its disk cache keeps the outermost copy: for the blocked conv that
    copy had 23% more instructions and 70% more stack accesses than the one a fresh compile
    runs, and the kernel loaded from the cache took 1.08-1.09x the time of the same kernel
    compiled in the process (AMD Zen 5, MobileNetV2's blocked convs alone). The worker runs
    as a function of its own, optimized once, and the wrappers call it by its address
    (:func:`call_worker`, the address looked up by the arguments' types, 0.5 us) instead of
    linking its code into theirs: linked, each wrapper's library optimized the worker again
    and generated its machine code again, which made most of a cold kernel's compile time
    (README, "Per-thread work outside the prange body"). The two wrappers are copies of one
    template under the worker's name, so the disk cache keeps each kernel's apart (as
    :func:`cnnrt.kernels._jit.serial_twin`)."""
    f = worker.py_func

    def wrap(template, suffix, flags):
        g = pytypes.FunctionType(template.__code__, {"_call": call_worker, "prange": prange}, f.__name__ + suffix)
        g.__qualname__ = f.__qualname__ + suffix
        g.__module__ = f.__module__
        g.__doc__ = f.__doc__
        return numba.njit(**flags)(g)

    parallel = Threaded(wrap(_on_threads, "_threads", PARALLEL_FLAGS), worker)
    return parallel, Threaded(wrap(_in_turn, "_in_turn", JIT_FLAGS), worker)
