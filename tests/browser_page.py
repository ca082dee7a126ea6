"""Open a local page in headless Chromium and collect what a person would meet: its console
errors, uncaught exceptions, failed loads, and a screenshot.

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe``: commands go in
on file descriptor 3 and answers and events come out on descriptor 4, as JSON messages ended by a
NUL byte. This needs no Python package (no websocket client, no Selenium or Playwright browser
download, which this project's machines cannot fetch) and reports errors by kind:
``Runtime.exceptionThrown`` (uncaught exceptions), ``Runtime.consoleAPICalled`` of type error or
assert, and ``Log.entryAdded`` at level error (a resource that failed to load, a blocked request).
Reading ``--enable-logging=stderr`` instead would not tell ``console.error`` from ``console.log``
(both print as ``INFO:CONSOLE``), and its format changes between Chromium versions.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class PageError(RuntimeError):
    pass


class _Pipe:
    def __init__(self, binary: str, width: int, height: int):
        cmd_r, self._cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
        self._out_r, out_w = os.pipe()  # Chromium writes on fd 4, we read
        def wire():  # in the child: the pipes on fds 3 and 4, whatever numbers they got here
            cmd, out = os.dup(cmd_r), os.dup(out_w)  # first out of the way of 3 and 4
            for fd, target in ((cmd, 3), (out, 4)):
                os.dup2(fd, target)
                os.set_inheritable(target, True)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, close_fds=False)  # Python's own fds are close-on-exec anyway
        os.close(cmd_r)
        os.close(out_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise PageError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return True
        while True:
            try:
                event = self._next(deadline)
            except TimeoutError:
                return False
            self.events.append(event)
            if event.get("method") == method:
                return True

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds`` (late errors)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.events.append(self._next(deadline))
            except TimeoutError:
                return

    def _next(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self._out_r], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise PageError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (PageError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass


def open_page(path, width: int = 1280, height: int = 2000, full_page: bool = False,
              binary: str | None = None, timeout: float = 60.0) -> tuple[list[str], bytes]:
    """Load ``path`` (a local file) and return (errors, PNG screenshot bytes). ``errors`` holds
    one line per uncaught exception, console error and failed load."""
    binary = binary or find_chromium()
    if binary is None:
        raise PageError("no Chromium found")
    pipe = _Pipe(binary, width, height)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            pipe.send(domain, session=session)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        if not pipe.wait_for("Page.loadEventFired", timeout):
            raise PageError(f"the page did not finish loading in {timeout:.0f}s")
        pipe.drain(0.5)  # the page's load handler runs now; its console errors follow the event
        params = {"format": "png"}
        if full_page:
            size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        png = base64.b64decode(pipe.send("Page.captureScreenshot", params, session=session, timeout=timeout)["data"])
        return _errors(pipe.events), png
    finally:
        pipe.close()


def _errors(events) -> list[str]:
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("uncaught: " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log: {entry.get('text', '')} {entry.get('url', '')}".strip())
    return out
