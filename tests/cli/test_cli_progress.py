"""The progress helpers draw only on a TTY (or when forced), and clean up after themselves."""

from __future__ import annotations

import io
import time

from cnnrt.tools.progress import Progress, Spinner


def test_progress_silent_when_not_a_tty():
    buf = io.StringIO()
    with Progress(3, "bench", stream=buf) as p:
        for _ in range(3):
            p.update(note="x")
    assert buf.getvalue() == ""


def test_progress_draws_and_erases_when_enabled():
    buf = io.StringIO()
    with Progress(4, "bench", stream=buf, enabled=True) as p:
        p.update(2, note="lenet5")
        assert "2/4" in p.line() and "lenet5" in p.line()
    text = buf.getvalue()
    assert "\r" in text and "[" in text
    assert text.endswith("\r")  # the last write clears the line


def test_spinner_silent_when_not_a_tty_and_draws_when_forced():
    buf = io.StringIO()
    with Spinner("building", stream=buf):
        time.sleep(0.05)
    assert buf.getvalue() == ""
    buf = io.StringIO()
    with Spinner("building", stream=buf, enabled=True, interval=0.01):
        time.sleep(0.1)
    assert "building" in buf.getvalue()


def _fresh_kernel():
    """A Numba function no cache holds: calling it compiles once."""
    import numba

    @numba.njit(cache=False)
    def add_one(x):
        return x + 1

    return add_one


def test_compile_progress_counts_and_summarises_off_a_tty():
    from cnnrt.tools.progress import CompileProgress

    buf = io.StringIO()
    f = _fresh_kernel()
    with CompileProgress("first run", stream=buf) as p:
        f(1)
        f(2)  # compiled already: not counted again
    assert p.watch.count == 1 and p.watch.seconds > 0 and p.watch.kernels[0][0].endswith("add_one")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and "compiled 1 kernel(s)" in lines[0] and "\r" not in buf.getvalue()
    buf = io.StringIO()
    with CompileProgress("second", stream=buf):
        f(3)
    assert buf.getvalue() == ""  # nothing compiled, nothing said


def test_compile_progress_names_the_kernel_on_a_tty():
    import threading

    from cnnrt.tools.progress import CompileProgress

    buf = io.StringIO()
    f = _fresh_kernel()
    with CompileProgress("first run", stream=buf, enabled=True, interval=0.005) as p:
        drawn = threading.Event()
        orig = p.watch.on_event

        def slow(kind, name, seconds):  # hold the compile open until a frame names it
            if kind == "start":
                deadline = time.perf_counter() + 5
                while "compiling" not in buf.getvalue() and time.perf_counter() < deadline:
                    time.sleep(0.005)
                drawn.set()

        p.watch.on_event = slow
        f(1)
        p.watch.on_event = orig
    assert drawn.is_set() and "compiling" in buf.getvalue() and "add_one" in buf.getvalue()
