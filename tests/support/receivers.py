"""What listens to the edge's outputs in tests: a webhook receiver and an MQTT watcher.

`Receiver` is an http.server on 127.0.0.1 in a thread that records every POST; `MqttWatcher` a
paho client that records every (topic, payload, retained) a broker delivers. The broker they
talk to is benchmarks.reliability.tools.Broker (the reliability benchmark starts it too);
`mosquitto_or_skip` finds its executable or skips the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from benchmarks.reliability.tools import find_mosquitto


def mosquitto_or_skip() -> str:
    """The mosquitto executable (installed with apt-get when root and missing), else skip."""
    path = find_mosquitto()
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get update -q && apt-get install -y -q mosquitto", shell=True,
                       capture_output=True, timeout=600, check=False)
        path = find_mosquitto()
    if path is None:
        pytest.skip("mosquitto is not installed and cannot be installed here "
                    "(apt-get install mosquitto)")
    return path


class Receiver:
    """Records every POST; answers with the codes of `plan` first, then 200."""

    def __init__(self, plan: list[int] | None = None) -> None:
        self.plan = list(plan or [])
        self.requests: list[dict[str, Any]] = []
        self.attempts = 0
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.cond:
                    receiver.attempts += 1
                    status = receiver.plan.pop(0) if receiver.plan else 200
                    if status == 200:
                        receiver.requests.append({"path": self.path,
                                                  "headers": dict(self.headers),
                                                  "json": json.loads(body)})
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str = "/hook", auth: str = "") -> str:
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    def wait(self, count: int, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MqttWatcher:
    """A paho client subscribed to `topic` (qos 1), recording every (topic, payload, retained)
    it receives; `login` is (user, password) for a broker with users, `persistent` keeps its
    session (and what was published to it) across a broker restart."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "",
                 persistent: bool = False, login: tuple[str, str] | None = None) -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, str, bool]] = []
        self._cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not persistent)
        if login:
            self.client.username_pw_set(*login)
        self.client.reconnect_delay_set(1, 1)
        self._topic = topic
        self.client.on_connect = lambda c, *_: c.subscribe(self._topic, qos=1)
        self.client.on_subscribe = lambda *_: self._mark_subscribed()
        self.client.on_message = self._on_message
        self.subscribed = False
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.wait(lambda: self.subscribed), "watcher did not subscribe"

    def _mark_subscribed(self) -> None:
        with self._cond:
            self.subscribed = True
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def on(self, topic: str) -> list[str]:
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def retained(self) -> dict[str, str]:
        with self._cond:
            return {t: p for t, p, r in self.messages if r}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
