"""A minimal W3C WebDriver client for the HTML inspector's browser test: Debian's chromium driven
through chromedriver's HTTP API with urllib, so the suite needs no browser-automation package.

Only what the test uses: open a page, find elements by CSS selector, click, hover, type, run a
script, read the browser console and take a screenshot.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# the flags that work on a machine without a display or network (and as root)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
]
_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference


def browser_missing() -> str | None:
    """Why no browser test can run here, or None when chromium and chromedriver are installed."""
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists() and not shutil.which(Path(exe).name):
            return f"{exe} is not installed (apt-get install chromium chromium-driver; .ci/run installs them)"
    return None


class WebDriverError(RuntimeError):
    pass


class Browser:
    """One headless chromium session (a fresh profile), closed on ``close()`` / context exit."""

    def __init__(self, timeout: float = 60.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="cnnrt-chromium-")
        driver = shutil.which("chromedriver") or CHROMEDRIVER
        self.driver = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._wait_ready()
            caps = {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": shutil.which("chromium") or CHROMIUM,
                    "args": [*CHROMIUM_ARGS, f"--user-data-dir={self.profile}"],
                },
                "goog:loggingPrefs": {"browser": "ALL"},
            }
            value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
            self.session = f"/session/{value['sessionId']}"
        except BaseException:
            self._stop()
            raise

    def _wait_ready(self) -> None:
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.1)
        raise WebDriverError(f"chromedriver did not answer on {self.base} within {self.timeout} s")

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            detail = json.loads(e.read() or b"{}").get("value", {})
            raise WebDriverError(f"{method} {path}: {detail.get('error')}: {detail.get('message')}") from None

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, self.session + path, body)

    def open(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[_ELEMENT]

    def find_all(self, css: str) -> list[str]:
        return [e[_ELEMENT] for e in self.cmd("POST", "/elements", {"using": "css selector", "value": css})]

    def click(self, element: str) -> None:
        self.cmd("POST", f"/element/{element}/click", {})

    def hover(self, element: str) -> None:
        """Move the mouse to the element's centre (W3C actions)."""
        move = {"type": "pointerMove", "duration": 0, "origin": {_ELEMENT: element}, "x": 0, "y": 0}
        pointer = {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [move]}
        self.cmd("POST", "/actions", {"actions": [pointer]})

    def type(self, element: str, text: str) -> None:
        self.cmd("POST", f"/element/{element}/value", {"text": text})

    def text(self, element: str) -> str:
        return self.cmd("GET", f"/element/{element}/text")

    def script(self, js: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": js, "args": list(args)})

    def console(self) -> list[dict]:
        """The browser console's entries since the last call (chromedriver's log endpoint)."""
        return self.cmd("POST", "/se/log", {"type": "browser"})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def _stop(self) -> None:
        self.driver.terminate()
        try:
            self.driver.wait(10)
        except subprocess.TimeoutExpired:
            self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def close(self) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self._stop()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
