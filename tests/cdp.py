"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), for page tests.

Nothing is downloaded: the browser is the system's ``chromium`` (Debian package), the
protocol goes over the ``websockets`` sync client. Chromium runs in its own process group
and the whole group is killed on close, so no renderer or helper outlives a test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

BROWSERS = ("chromium", "chromium-browser")


class CdpError(RuntimeError):
    """The browser or a protocol command failed."""


def find_browser() -> str | None:
    """The path of an installed Chromium, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class Browser:
    """One headless Chromium with one page target; ``evaluate`` runs JavaScript in it."""

    def __init__(self, executable: str, start_timeout: float = 30.0) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="kantor-chromium-"))
        self.profile = self.folder / "profile"
        self.log = self.folder / "chromium.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                 "--disable-extensions", "--disable-background-networking",
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows", "--mute-audio",
                 "--window-size=1200,900", f"--user-data-dir={self.profile}",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                 "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group: killed whole on close
        self.pgid = self.process.pid
        self.socket = None
        self._connection = contextlib.ExitStack()
        self._ids = itertools.count(1)
        try:
            self.port = self._devtools_port(start_timeout)
            self.socket = self._connection.enter_context(
                connect(self._page_target(start_timeout), max_size=None,
                        open_timeout=start_timeout))
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float) -> int:
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CdpError(f"chromium exited with {self.process.returncode}: "
                               f"{self.output()[-2000:]}")
            try:
                first = active.read_text().splitlines()[0].strip()
            except (OSError, IndexError):
                first = ""
            if first.isdigit():
                return int(first)
            time.sleep(0.05)
        raise CdpError(f"chromium wrote no {active} within {timeout:.0f} s")

    def _page_target(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list",
                                        timeout=5) as response:
                targets = json.load(response)
            pages = [t for t in targets if t.get("type") == "page"
                     and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            if time.monotonic() > deadline:
                raise CdpError(f"no page target among {targets}")
            time.sleep(0.05)

    def output(self) -> str:
        """What chromium wrote to stdout and stderr so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    # -- the protocol -------------------------------------------------------------------

    def send(self, method: str, timeout: float = 30.0, **params) -> dict:
        """One CDP command; its result (events arriving meanwhile are ignored)."""
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"{method}: no answer within {timeout} s")
            try:
                message = json.loads(self.socket.recv(timeout=left))
            except TimeoutError:
                continue
            if message.get("id") != ident:
                continue
            if "error" in message:
                raise CdpError(f"{method}: {message['error']}")
            return message["result"]

    def evaluate(self, expression: str, timeout: float = 30.0):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True, userGesture=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details["text"]
            raise CdpError(f"{expression!r} threw: {description}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.1):
        """Poll a JavaScript expression until it is truthy; its value. On timeout an
        AssertionError saying the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} still {value!r} after {timeout} s")
            time.sleep(interval)

    def navigate(self, url: str, timeout: float = 15.0) -> None:
        """Load ``url`` as a fresh document (through about:blank, so that a change of
        only the #fragment reloads too) and wait until it has loaded."""
        for address in ("about:blank", url):
            result = self.send("Page.navigate", url=address)
            if result.get("errorText"):
                raise CdpError(f"cannot load {address}: {result['errorText']}")
            self.wait_for(f"location.href === {json.dumps(address)} "
                          "&& document.readyState === 'complete'", timeout=timeout)

    def text(self, element_id: str) -> str:
        """The text content of the element with that id."""
        return self.evaluate(f"document.getElementById({json.dumps(element_id)}).textContent")

    def type_into(self, element_id: str, text: str) -> None:
        """Focus an input, clear it and type ``text`` as keyboard input would."""
        self.evaluate(f"(() => {{ const e = document.getElementById({json.dumps(element_id)});"
                      " e.focus(); e.select(); return true; })()")
        self.send("Input.insertText", text=text)

    def click(self, element_id: str) -> None:
        """A real mouse click (press and release) at the middle of the element, which
        must be visible and on top there."""
        box = self.evaluate(
            f"(() => {{ const e = document.getElementById({json.dumps(element_id)});"
            " e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " const x = r.left + r.width / 2, y = r.top + r.height / 2;"
            " const top = document.elementFromPoint(x, y);"
            " return {x, y, width: r.width, height: r.height,"
            " onTop: top === e || e.contains(top)}; })()")
        if not (box["width"] > 0 and box["height"] > 0 and box["onTop"]):
            raise CdpError(f"#{element_id} is not clickable: {box}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                      button="left", clickCount=1)

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection, kill the browser's whole process group, remove the
        profile. Raises CdpError if any process of the group is still alive."""
        with contextlib.suppress(Exception):  # the browser may already be gone
            self._connection.close()
        self.socket = None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.monotonic() + 5  # helpers end a moment after the browser
            while group_members(self.pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not group_members(self.pgid):
                break
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        left = group_members(self.pgid)
        if left:
            raise CdpError(f"chromium processes left behind: {left}")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
