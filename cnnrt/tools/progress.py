"""A tiny progress bar and spinner for long CLI work, drawn on stderr only when it is a TTY.

When stderr is a file or a pipe (CI logs, tests, ``2> log``) nothing is drawn while the work
runs, so captured output stays clean; the commands print their own one-line results on
stdout. CompileProgress adds one summary line on stderr when kernels were compiled.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """``with Progress(total, "bench") as p: ... p.update(note="lenet5 b1 t1")``.

    Redraws one line in place (``\\r``) with a bar, a count, elapsed time and a note;
    the line is erased on exit. ``enabled=None`` means "only if the stream is a TTY".
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_tty(self.stream) if enabled is None else enabled
        self.done = 0
        self.note = ""
        self.start = time.perf_counter()
        self._last_len = 0

    def __enter__(self) -> Progress:
        self.draw()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_note(self, note: str) -> None:
        """Say what is being worked on now, without advancing."""
        self.note = note
        self.draw()

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done = min(self.done + n, self.total) if self.total else self.done + n
        if note is not None:
            self.note = note
        self.draw()

    def line(self, width: int = 24) -> str:
        elapsed = time.perf_counter() - self.start
        if self.total:
            frac = self.done / self.total
            filled = int(round(frac * width))
            bar = "#" * filled + "-" * (width - filled)
            return f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s {self.note}".strip()
        return f"{self.label} {self.done} {elapsed:5.1f}s {self.note}".strip()

    def draw(self) -> None:
        if not self.enabled:
            return
        text = self.line()[:119]
        pad = max(self._last_len - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._last_len = len(text)

    def close(self) -> None:
        if self.enabled and self._last_len:
            self.stream.write("\r" + " " * self._last_len + "\r")
            self.stream.flush()
            self._last_len = 0


class Spinner:
    """``with Spinner("building resnet50"):`` shows the label and elapsed seconds while work runs.

    For single long calls that report no progress themselves (session build, JIT): a daemon
    thread redraws every ``interval`` seconds. Draws nothing unless the stream is a TTY.
    """

    FRAMES = "|/-\\"

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None, interval: float = 0.2):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_tty(self.stream) if enabled is None else enabled
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._len = 0

    def _loop(self) -> None:
        start = time.perf_counter()
        i = 0
        while not self._stop.wait(self.interval if i else 0):
            text = self.text(self.FRAMES[i % 4], time.perf_counter() - start)
            pad = max(self._len - len(text), 0)
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()
            self._len = len(text)
            i += 1

    def text(self, frame: str, elapsed: float) -> str:
        return f"{frame} {self.label} {elapsed:5.1f}s"

    def __enter__(self) -> Spinner:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r" + " " * self._len + "\r")
            self.stream.flush()


class CompileProgress:
    """``with CompileProgress("first run of resnet50"):`` around work that may compile kernels.

    On a TTY, one line redrawn in place says which kernel is compiling, how many are done and
    for how long; elsewhere nothing is drawn while it runs, and one summary line is written at
    the end if anything was compiled (where the compiled kernels are cached, so the wait is
    explained once). ``.watch`` holds the counts afterwards (kernels.jit_watch.CompileWatch).
    """

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None, interval: float = 0.2):
        from cnnrt.kernels.jit_watch import CompileWatch

        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream) if enabled is None else enabled
        self.watch = CompileWatch()
        self._spinner = _CompileSpinner(label, self.watch, self.stream, self.tty, interval)
        self.start = 0.0

    def __enter__(self) -> CompileProgress:
        self.start = time.perf_counter()
        self.watch.__enter__()
        self._spinner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._spinner.__exit__(*exc)
        self.watch.__exit__(*exc)
        if self.watch.count and exc[0] is None:
            self.stream.write(self.summary() + "\n")
            self.stream.flush()

    def summary(self) -> str:
        import os

        w = self.watch
        where = os.environ.get("NUMBA_CACHE_DIR", "Numba's default cache")
        return (
            f"cnnrt: compiled {w.count} kernel(s) in {w.seconds:.1f} s "
            f"(of {time.perf_counter() - self.start:.1f} s); cached in {where}, so later starts load them"
        )


class _CompileSpinner(Spinner):
    """A Spinner whose line also names the kernel compiling now and counts the finished ones."""

    def __init__(self, label, watch, stream, enabled, interval):
        super().__init__(label, stream, enabled, interval)
        self.watch = watch

    def text(self, frame: str, elapsed: float) -> str:
        w = self.watch
        now = f", compiling {w.current}" if w.current else ""
        done = f", {w.count} kernel(s) compiled ({w.seconds:.1f} s)" if w.count else ""
        return f"{frame} {self.label} {elapsed:5.1f}s{done}{now}"[:119]
