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
