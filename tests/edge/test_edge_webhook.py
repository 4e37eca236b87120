"""edge.sinks.webhook against receivers on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.receivers import Receiver

from edge.sinks.webhook import WebhookError, WebhookSink


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (requests time out)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def alert(n: int) -> dict[str, Any]:
    return {"event": "alert", "time": 1764490500.0 + n, "frame": n, "track": n,
            "label": "without_mask", "score": 0.9, "box": [1.0, 2.0, 30.0, 40.0], "frames": 5,
            "snapshot": {"face": f"/snaps/{n}_face.jpg", "frame": f"/snaps/{n}_frame.jpg"}}


def test_every_alert_is_posted_as_json(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url("/hook?token=abc"))
    for n in range(5):
        sink.event(alert(n))
    sink.event({"event": "stats", "people": {}})  # only alerts by default
    sink.write({"frame": 1, "faces": []}, None)
    assert receiver.wait(5)
    sink.close()
    assert [r["json"] for r in receiver.requests] == [alert(n) for n in range(5)]
    assert receiver.requests[0]["path"] == "/hook?token=abc"
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"
    assert sink.summary()["sent"] == 5 and sink.failed == sink.dropped == sink.unsent == 0
    assert "abc" not in repr(sink) and sink.describe().endswith("/hook?***")


def test_retries_with_backoff_until_it_succeeds() -> None:
    receiver = Receiver(plan=[503, 500])
    try:
        sink = WebhookSink(receiver.url(), retries=3, backoff=0.05)
        start = time.monotonic()
        sink.event(alert(1))
        assert receiver.wait(1)
        elapsed = time.monotonic() - start
        sink.close()
        assert receiver.attempts == 3 and receiver.requests[0]["json"] == alert(1)
        assert (sink.sent, sink.retried, sink.failed) == (1, 2, 0)
        assert elapsed >= 0.05 + 0.1  # backoff 0.05 then 0.1
    finally:
        receiver.close()


def test_client_error_is_not_retried() -> None:
    receiver = Receiver(plan=[400])
    try:
        sink = WebhookSink(receiver.url(), retries=3, backoff=0.05)
        sink.event(alert(1))
        assert sink.wait_idle(5)
        sink.close()
        assert (receiver.attempts, sink.failed, sink.retried) == (1, 1, 0)
        assert "HTTP 400" in (sink.last_error or "")
    finally:
        receiver.close()


def test_credentials_become_basic_auth_and_are_never_shown(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sink = WebhookSink(receiver.url(auth="bot:t0p%40secret@"))
    sink.event(alert(1))
    assert receiver.wait(1)
    sink.close()
    header = receiver.requests[0]["headers"]["Authorization"]
    assert base64.b64decode(header.split()[1]).decode() == "bot:t0p@secret"
    dead = WebhookSink(f"http://bot:t0p%40secret@127.0.0.1:{_closed_port()}/x", retries=0)
    dead.event(alert(2))
    assert dead.wait_idle(5)
    dead.close()
    assert dead.failed == 1
    for text in (repr(sink), sink.describe(), json.dumps(sink.summary()),
                 json.dumps(dead.summary()), caplog.text):
        assert "t0p" not in text and "secret" not in text
    assert sink.describe() == f"http://bot:***@127.0.0.1:{receiver.port}/hook"
    for bad in ("ftp://u:t0psecret@h/x", "file:///etc/passwd", "http://u:t0psecret@:80/",
                "http://u:t0psecret@h:port/"):
        with pytest.raises(WebhookError) as err:
            WebhookSink(bad)
        assert "t0psecret" not in str(err.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_or_silent_url_never_blocks_the_loop(silent_port: int) -> None:
    for url in (f"http://127.0.0.1:{_closed_port()}/", f"http://127.0.0.1:{silent_port}/"):
        sink = WebhookSink(url, timeout=0.3, retries=1, backoff=0.05, queue_size=3)
        sink.FLUSH_TIMEOUT = 0.5
        times = []
        for n in range(50):
            start = time.perf_counter()
            sink.event(alert(n))
            times.append(time.perf_counter() - start)
        assert max(times) < 2e-3 and sorted(times)[25] < 2e-4, times
        start = time.monotonic()
        sink.close()
        assert time.monotonic() - start < 1.5
        summary = sink.summary()
        assert summary["dropped"] >= 46 and summary["unsent"] + summary["failed"] >= 1
        sink.event(alert(99))  # after close: ignored, no error


def test_queue_bound_drops_the_oldest(silent_port: int) -> None:
    sink = WebhookSink(f"http://127.0.0.1:{silent_port}/", timeout=1.0, retries=0,
                       queue_size=3)
    sink.FLUSH_TIMEOUT = 0.2
    sink.event(alert(0))
    deadline = time.monotonic() + 2
    while sink._work.items and time.monotonic() < deadline:  # until the worker holds alert 0
        time.sleep(0.01)
    for n in range(1, 10):
        sink.event(alert(n))
    assert sink.dropped == 6
    assert [json.loads(b)["track"] for b in sink._work.items] == [7, 8, 9]
    sink.close()
    assert sink.unsent == 4
