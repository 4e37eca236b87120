"""Drive a headless Chromium with real input events over the Chrome DevTools protocol.

`--dump-dom` (tests/edge/test_edge_dashboard.py) can only read a page; pressing keys needs the
DevTools protocol. Over `--remote-debugging-pipe` Chromium reads commands from file descriptor 3
and writes replies and events to descriptor 4, each a JSON message ended by a NUL byte, so no
websocket (and no package) is needed: `Browser` is a minimal client of that pipe.

    with Browser(chromium, tmp_path / "profile") as browser:
        page = browser.open("http://127.0.0.1:8000/")
        browser.wait(page, "document.body.dataset.ready === '1'")
        browser.press(page, "2")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

#: Windows virtual key codes of the keys the tests press (DevTools wants them for keyDown).
KEY_CODES = {**{str(d): 48 + d for d in range(10)}, **{c: ord(c.upper()) for c in
                                                         "abcdefghijklmnopqrstuvwxyz"},
             "Enter": 13}

#: Moves the pipe ends given as argv[1:3] to descriptors 3 and 4 (through copies above 9, so
#: neither end is overwritten by the other's move), then runs argv[3:].
MOVE_FDS = ("import fcntl, os, sys; r, w = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) "
            "for fd in sys.argv[1:3]); os.dup2(r, 3); os.dup2(w, 4); "
            "os.execv(sys.argv[3], sys.argv[3:])")


def find_chromium() -> str | None:
    """Debian's chromium (or Google's) when one is installed."""
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


class Browser:
    """One headless Chromium and its DevTools pipe (a context manager: `close` kills it)."""

    def __init__(self, chromium: str, profile: Path, timeout: float = 20.0) -> None:
        self.timeout = timeout
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "about:blank"]
        # Chromium wants the pipe at exactly 3 and 4: a tiny Python moves the ends there and
        # execs it (preexec_fn could not: subprocess closes unlisted descriptors after it).
        self.process = subprocess.Popen(
            [sys.executable, "-c", MOVE_FDS, str(to_chrome_r), str(from_chrome_w), *args],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = os.fdopen(from_chrome_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Call one DevTools method and wait for its result (AssertionError on an error)."""
        with self._cond:
            self._next_id += 1
            number = self._next_id
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: number in self._replies, self.timeout):
                raise AssertionError(f"no reply to {method} within {self.timeout} s")
            reply = self._replies.pop(number)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply.get("result", {})

    def open(self, url: str, first: str | None = None) -> str:
        """A new tab at `url` (with the script `first` run before the page's own); its session
        id for the other calls."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        if first is not None:
            self.send("Page.enable", {}, session)
            self.send("Page.addScriptToEvaluateOnNewDocument", {"source": first}, session)
        self.send("Page.navigate", {"url": url}, session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                           session)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait(self, session: str, expression: str, timeout: float | None = None) -> Any:
        """Poll `expression` in the page until it is truthy; its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(session, expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} still {value!r} after {timeout} s")
            time.sleep(0.05)

    def press(self, session: str, key: str) -> None:
        """A real key press (keyDown with its text, then keyUp), as a keyboard gives it."""
        code = KEY_CODES[key]
        text = "\r" if key == "Enter" else key
        down = {"type": "keyDown", "key": key, "text": text, "unmodifiedText": text,
                "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        self.send("Input.dispatchKeyEvent", down, session)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key,
                                             "windowsVirtualKeyCode": code}, session)

    def close(self) -> None:
        """Close the browser (`Browser.close`, so its helper processes end with it; killed when
        it does not), let the reader see the pipe's end, then close ours."""
        with contextlib.suppress(AssertionError, OSError):
            self.timeout = 5.0
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        for stream in (self._out, self._in):
            with contextlib.suppress(OSError):
                stream.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
