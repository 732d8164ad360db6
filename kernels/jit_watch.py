"""Watching Numba compile: how many kernels a piece of work compiled, how long that took, and
which one is compiling now (for progress lines).

Numba announces each real compilation (a cache miss; loading from the on-disk cache is not
one) with a ``numba:compile`` event, in the thread that compiles; nested compilations (helpers
a kernel calls) are counted in their outermost kernel. A watch counts the compilations of the
thread that entered it only (a tiered start compiles in a thread of its own, beside runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def kernel_name(dispatcher) -> str:
    f = getattr(dispatcher, "py_func", None)
    if f is None:
        return repr(dispatcher)
    return f"{f.__module__.removeprefix('cnnrt.kernels.')}.{f.__qualname__}"


class CompileWatch:
    """``with CompileWatch() as w: ...`` then ``w.count``, ``w.seconds``, ``w.kernels``.

    ``on_event(kind, name, seconds)`` is called with kind "start" (seconds 0) and "end" for
    every outermost compilation; ``w.current`` names the one in progress (None between them).
    """

    def __init__(self, on_event: Callable[[str, str, float], None] | None = None) -> None:
        self.on_event = on_event
        self.count = 0
        self.seconds = 0.0
        self.kernels: list[tuple[str, float]] = []
        self.current: str | None = None
        self._depth = 0
        self._t0 = 0.0
        self._listener = None
        self._thread = threading.get_ident()

    def _start(self, event) -> None:
        if threading.get_ident() != self._thread:
            return
        self._depth += 1
        if self._depth == 1:
            self._t0 = time.perf_counter()
            self.current = kernel_name(event.data["dispatcher"])
            if self.on_event is not None:
                self.on_event("start", self.current, 0.0)

    def _end(self, event) -> None:
        if threading.get_ident() != self._thread:
            return
        self._depth -= 1
        if self._depth == 0:
            dt = time.perf_counter() - self._t0
            name = self.current or kernel_name(event.data["dispatcher"])
            self.count += 1
            self.seconds += dt
            self.kernels.append((name, dt))
            self.current = None
            if self.on_event is not None:
                self.on_event("end", name, dt)

    def __enter__(self) -> CompileWatch:
        from numba.core import event as ev

        watch = self
        self._thread = threading.get_ident()

        class _Listener(ev.Listener):
            def on_start(self, event):
                watch._start(event)

            def on_end(self, event):
                watch._end(event)

        self._listener = _Listener()
        ev.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc) -> None:
        from numba.core import event as ev

        ev.unregister("numba:compile", self._listener)
        self._listener = None
