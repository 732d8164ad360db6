"""A tiny progress bar and spinner for long CLI work, drawn on stderr only when it is a TTY.

When stderr is a file or a pipe (CI logs, tests, ``2> log``) nothing is drawn at all, so
captured output stays clean; the commands print their own one-line results on stdout.
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
            text = f"{self.FRAMES[i % 4]} {self.label} {time.perf_counter() - start:5.1f}s"
            self.stream.write("\r" + text)
            self.stream.flush()
            self._len = len(text)
            i += 1

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
