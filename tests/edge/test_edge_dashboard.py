"""The live dashboard (`edge.sinks.dashboard`): page, stream, state, snapshots, authentication,
viewers, and the page itself in a real headless Chromium. Everything runs over loopback."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.sinks.dashboard import (
    ALERTS_KEPT,
    BOUNDARY,
    DashboardServer,
    ServeAuth,
    check_exposure,
    is_loopback,
    parse_serve_auth,
)
from edge.sinks.outputs import OutputError

USER, PASSWORD, TOKEN = "ann", "s3cret:pw", "tok-3f9a.b7~Z"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def frame(value: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, : size[0] // 2] = value % 256
    cv2.putText(image, str(value), (size[0] // 2 + 4, size[1] // 2), 0, 1.0, (255, 255, 255), 2)
    return image


def get(server: DashboardServer, path: str, authorization: str | None = None,
        timeout: float = 5.0) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Status, headers and body of GET `path`, sent as it is (no normalisation); a 200 stream is
    closed after its headers."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": authorization} if authorization
                     else {})
        reply = conn.getresponse()
        streaming = reply.getheader("Content-Type", "").startswith("multipart/")
        body = b"" if streaming else reply.read()
        return reply.status, reply.msg, body
    finally:
        conn.close()


def read_part(stream: Any) -> bytes:
    assert stream.readline().strip() == f"--{BOUNDARY}".encode()
    headers = {}
    while (line := stream.readline().strip()):
        key, value = line.decode().split(":", 1)
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = stream.read(int(headers["content-length"]))
    stream.readline()
    return body


@contextlib.contextmanager
def publishing(server: DashboardServer, period: float = 0.01,
               make: Callable[[int], np.ndarray] = frame,
               faces: list[dict[str, Any]] | None = None) -> Iterator[None]:
    """Frames (with `faces` in their records) written into `server` from a thread while the block
    runs."""
    stop = threading.Event()

    def run() -> None:
        i = 0
        while not stop.is_set():
            server.write({"frame": i, "time": time.time(), "fps": 25.0, "faces": faces or []},
                         make(i))
            i += 1
            time.sleep(period)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    path = tmp_path / "snaps" / "alert-7-face.jpg"
    path.parent.mkdir()
    _, jpeg = cv2.imencode(".jpg", frame(99, (48, 48)))
    path.write_bytes(jpeg.tobytes())
    (tmp_path / "snaps" / "not-an-alert.jpg").write_bytes(b"private")
    (tmp_path / "secret.txt").write_text("private")
    return path


def alert(track: int, snapshot: Path | None = None, label: str = "without_mask") -> dict[str, Any]:
    event: dict[str, Any] = {"event": "alert", "time": 1732390000.0 + track, "frame": 10 * track,
                             "track": track, "label": label, "score": 0.93, "box": [1, 2, 3, 4],
                             "frames": 15}
    if snapshot is not None:
        event["snapshot"] = {"face": str(snapshot), "frame": str(snapshot)}
    return event


def stats(people: dict[str, int], compliance: float | None) -> dict[str, Any]:
    return {"event": "stats", "time": time.time(), "frame": 5, "people": people,
            "total": sum(people.values()), "compliance": compliance, "now": {}, "fps": 24.5}


# --- pages without credentials on loopback -----------------------------------------------------

def test_page_frame_and_stream_over_loopback_and_other_paths_404() -> None:
    server = DashboardServer("127.0.0.1", 0, source="test <cam>")
    try:
        with publishing(server):
            assert server.url.startswith("http://127.0.0.1:") and server.port > 0
            status, headers, page = get(server, "/")
            html = page.decode()
            assert status == 200 and '<img src="/stream.mjpg"' in html
            assert "test &lt;cam&gt;" in html and "<cam>" not in html  # escaped
            assert "http://" not in html and "https://" not in html  # nothing from elsewhere
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            status, headers, jpeg = get(server, "/frame.jpg")
            assert status == 200 and headers["Content-Type"] == "image/jpeg"
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (120, 160, 3)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/stream.mjpg")
            stream = conn.getresponse()
            assert stream.getheader("Content-Type").startswith("multipart/x-mixed-replace")
            first, second = read_part(stream), read_part(stream)
            conn.close()
            assert first != second  # the stream moves on with new frames
            for path in ("/nothing", "/api", "/api/state/x", "/snapshots/", "/stream.mjpg/x"):
                assert get(server, path)[0] == 404, path
    finally:
        server.close()


# --- authentication ----------------------------------------------------------------------------

PATHS = ("/", "/stream.mjpg", "/api/state", "/frame.jpg", "/snapshots/1-face.jpg")


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_every_path_needs_the_credentials(kind: str, snapshot_file: Path) -> None:
    auth = parse_serve_auth(f"{USER}:{PASSWORD}" if kind == "basic" else f"token:{TOKEN}")
    server = DashboardServer("127.0.0.1", 0, auth=auth)
    server.event(alert(1, snapshot_file))
    right = [basic(USER, PASSWORD)] if kind == "basic" else [f"Bearer {TOKEN}",
                                                               basic("anyone", TOKEN)]
    wrong = [None, basic(USER, "wrong"), basic("bob", PASSWORD), basic(USER, PASSWORD + "x"),
             f"Bearer {PASSWORD}", f"Bearer {TOKEN}x", "Basic !!!notbase64", "Digest x=1", ""]
    if kind == "token":
        wrong += [basic(USER, PASSWORD), f"Bearer {TOKEN[:-1]}"]
    else:
        wrong += [f"Bearer {TOKEN}", basic(PASSWORD, USER)]
    try:
        with publishing(server):
            for path in (*PATHS, "/nothing"):
                for header in wrong:
                    status, headers, body = get(server, path, header)
                    assert status == 401, (path, header)
                    assert headers.get_all("WWW-Authenticate")[0].startswith('Basic realm=')
                    assert PASSWORD.encode() not in body and TOKEN.encode() not in body
                for header in right:
                    status, _, body = get(server, path, header)
                    assert status == (404 if path == "/nothing" else 200), (path, header)
            status, _, body = get(server, "/snapshots/1-face.jpg", right[0])
            assert body == snapshot_file.read_bytes()
    finally:
        server.close()


def test_credentials_parse_and_never_show() -> None:
    auth = parse_serve_auth(f"{USER}:{PASSWORD}")  # the password may contain ':'
    assert (auth.kind, auth.user, auth.secret) == ("basic", USER, PASSWORD)
    token = parse_serve_auth(f"Token:{TOKEN}\n")
    assert (token.kind, token.secret) == ("token", TOKEN)
    for value in (auth, token):
        assert PASSWORD not in repr(value) and TOKEN not in repr(value) and USER not in repr(value)
        assert PASSWORD not in str(value) and TOKEN not in str(value)
    for bad, reason in (("Q7nocolon", "no ':'"), ("Q7ann:", "empty"), (":Q7pw", "user name"),
                        ("token:", "empty"), ("token:Q7 b", "without spaces"),
                        ("Q7an\tn:Q7pw", "control")):
        with pytest.raises(ValueError, match=reason) as info:
            parse_serve_auth(bad)
        message = str(info.value)
        assert "\n" not in message and message.startswith("bad serve credentials: ")
        assert "Q7" not in message  # the text given is never repeated
    with pytest.raises(ValueError):
        ServeAuth("digest")
    server = DashboardServer("127.0.0.1", 0, auth=auth)
    try:
        assert PASSWORD not in repr(server) and "basic" in repr(server)
    finally:
        server.close()


def test_exposure_beyond_loopback_needs_credentials_or_an_explicit_opt_out() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host)
        check_exposure(host, None, insecure=False)
    for host in ("0.0.0.0", "", "::", "192.168.1.20", "board.local"):
        assert not is_loopback(host)
        with pytest.raises(ValueError) as info:
            check_exposure(host, None, insecure=False)
        assert "--serve-auth" in str(info.value) and "--serve-insecure" in str(info.value)
        assert "MASKEDGE_SERVE_AUTH" in str(info.value) and "\n" not in str(info.value)
        check_exposure(host, None, insecure=True)
        check_exposure(host, parse_serve_auth("token:abc"), insecure=False)
    with pytest.raises(OutputError, match="--serve-auth"):  # refused before binding anything
        DashboardServer("0.0.0.0", 0)


# --- snapshots ---------------------------------------------------------------------------------

def test_snapshots_only_for_files_named_by_alerts(snapshot_file: Path, tmp_path: Path) -> None:
    server = DashboardServer("127.0.0.1", 0)
    server.event(alert(1, snapshot_file))
    server.event(alert(2, tmp_path / "deleted-since.jpg"))
    try:
        links = server.state()["alerts"][1]["snapshots"]
        assert links == {"face": "/snapshots/1-face.jpg", "frame": "/snapshots/1-frame.jpg"}
        status, headers, body = get(server, links["face"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert body == snapshot_file.read_bytes()
        refused = ["/snapshots/../secret.txt", "/snapshots/..%2Fsecret.txt",
                   "/snapshots/%2e%2e/%2e%2e/secret.txt", "/snapshots/not-an-alert.jpg",
                   "/snapshots/alert-7-face.jpg", f"/snapshots/{snapshot_file}",
                   f"/snapshots/{str(snapshot_file).replace('/', '%2F')}",
                   "/snapshots/1-face.jpg/../../secret.txt", "/snapshots/2-face.jpg",
                   "/snapshots/3-face.jpg", "/snapshots//etc/passwd", "/../secret.txt"]
        for path in refused:
            status, _, body = get(server, path)
            assert status == 404 and b"private" not in body, path
        for track in range(3, 3 + ALERTS_KEPT):  # alert 1 falls out of the list, and its files
            server.event(alert(track, snapshot_file))
        assert get(server, "/snapshots/1-face.jpg")[0] == 404
        assert get(server, f"/snapshots/{ALERTS_KEPT + 2}-face.jpg")[0] == 200
    finally:
        server.close()


# --- state -------------------------------------------------------------------------------------

def test_api_state_reflects_frames_stats_and_alerts(snapshot_file: Path) -> None:
    server = DashboardServer("127.0.0.1", 0, source="door")
    try:
        status, _, body = get(server, "/api/state")
        empty = json.loads(body)
        assert status == 200 and empty["counts"] == [] and empty["compliance"] is None
        assert empty["alerts"] == [] and empty["frame"] is None
        faces = [{"label": "with_mask"}, {"label": "without_mask"}, {"label": "with_mask"}]
        server.write({"frame": 41, "time": 5.0, "fps": 12.5, "faces": faces}, None)
        server.event(stats({"with_mask": 7, "without_mask": 2, "mask_weared_incorrect": 1}, 0.7))
        server.event(alert(3, snapshot_file))
        server.event(alert(4, label="mask_weared_incorrect"))
        server.event({"event": "something-new"})  # ignored
        state = json.loads(get(server, "/api/state")[2])
        assert state["source"] == "door" and state["frame"] == 41 and state["fps"] == 12.5
        assert state["counts"] == [
            {"label": "with_mask", "people": 7, "now": 2},
            {"label": "without_mask", "people": 2, "now": 1},
            {"label": "mask_weared_incorrect", "people": 1, "now": 0}]
        assert state["total"] == 10 and state["compliance"] == 0.7
        assert [a["track"] for a in state["alerts"]] == [4, 3]  # newest first
        newest, older = state["alerts"]
        assert newest["label"] == "mask_weared_incorrect" and newest["snapshots"] == {}
        assert older == {"time": 1732390003.0, "frame": 30, "track": 3, "label": "without_mask",
                         "score": 0.93, "snapshots": {"face": "/snapshots/1-face.jpg",
                                                      "frame": "/snapshots/1-frame.jpg"}}
        assert str(snapshot_file) not in json.dumps(state)  # paths stay on the device
        for track in range(5, 5 + 2 * ALERTS_KEPT):
            server.event(alert(track))
        state = server.state()
        assert len(state["alerts"]) == ALERTS_KEPT and state["alerts_total"] == 2 + 2 * ALERTS_KEPT
    finally:
        server.close()


# --- viewers -----------------------------------------------------------------------------------

def test_viewer_cap_gives_503_and_a_closed_viewer_frees_its_slot() -> None:
    server = DashboardServer("127.0.0.1", 0, max_viewers=2)
    conns = []
    try:
        with publishing(server, period=0.02):
            for _ in range(2):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
                conn.request("GET", "/stream.mjpg")
                reply = conn.getresponse()
                assert reply.status == 200
                read_part(reply)
                conns.append((conn, reply))
            status, headers, body = get(server, "/stream.mjpg")
            assert status == 503 and headers["Retry-After"] and b"at most 2" in body
            assert get(server, "/api/state")[0] == 200  # the cap is on streams only
            conn, reply = conns.pop()
            reply.close()
            conn.close()
            wait_until(lambda: server.viewers == 1, 5.0, "the closed viewer's slot is freed")
            status, _, _ = get(server, "/stream.mjpg")
            assert status == 200
    finally:
        for conn, _ in conns:
            conn.close()
        server.close()


def _noise_frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size[1], size[0], 3), np.uint8) for _ in range(count)]


def _reader(port: int, stop: threading.Event, counts: list[int], index: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/stream.mjpg")
    reply = conn.getresponse()
    try:
        while not stop.is_set():
            read_part(reply)
            counts[index] += 1
    finally:
        reply.close()
        conn.close()


def _stuck_viewer(port: int) -> socket.socket:
    """A stream viewer that asks for the stream and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    return sock


def test_many_and_stuck_viewers_never_slow_write_and_threads_are_reaped() -> None:
    server = DashboardServer("127.0.0.1", 0, max_viewers=30, send_timeout=0.5)
    baseline = threading.active_count()
    frames = _noise_frames(6, (320, 240))
    stop, counts = threading.Event(), [0] * 20
    readers = [threading.Thread(target=_reader, args=(server.port, stop, counts, i), daemon=True)
               for i in range(20)]
    stuck: list[socket.socket] = []
    try:
        for thread in readers:
            thread.start()
        stuck = [_stuck_viewer(server.port) for _ in range(5)]
        wait_until(lambda: server.viewers == 25, 5.0, "25 viewers connect")
        durations, i, started = [], 0, time.monotonic()
        while time.monotonic() - started < 3.0:
            record = {"frame": i, "faces": [{"label": "with_mask"}]}
            t0 = time.perf_counter()
            server.write(record, frames[i % len(frames)])
            durations.append(time.perf_counter() - t0)
            i += 1
            time.sleep(0.03)
        assert server.viewers == 20  # the stuck ones were dropped by the send timeout
        assert min(counts) >= 10, counts  # every reader kept getting frames
        durations.sort()
        print(f"{len(durations)} writes: median {1e3 * durations[len(durations) // 2]:.3f} ms, "
              f"max {1e3 * durations[-1]:.3f} ms; frames per reader {min(counts)}-{max(counts)}")
        assert durations[len(durations) // 2] < 0.002, durations[-5:]
        assert durations[-1] < 0.05, durations[-5:]
    finally:
        stop.set()
        for sock in stuck:
            sock.close()
        with publishing(server, period=0.03):  # readers leave after their next frame
            for thread in readers:
                thread.join(timeout=10)
    wait_until(lambda: server.viewers == 0, 5.0, "every viewer is forgotten")
    wait_until(lambda: threading.active_count() <= baseline, 5.0,
               "the thread count returns to its baseline")
    server.close()
    assert not server._thread.is_alive()


# --- a real browser ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and possible."""
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        for args in (["update", "-q"], ["install", "-y", "-q", "chromium"]):
            subprocess.run(["apt-get", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=900, check=False)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("no chromium, and it could not be installed with apt-get (not root, or no "
                    "network): apt-get install chromium to run the browser test")
    return found


def dump_dom(chromium: str, url: str, profile: Path, budget_ms: int = 3500) -> str:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", f"--user-data-dir={profile}",
               f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=45)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def counts_in(dom: str) -> dict[str, tuple[int, int]]:
    rows = re.findall(r'<tr data-label="([^"]+)"[^>]*>.*?<td class="n people">(\d+)</td>'
                      r'<td class="n now">(\d+)</td></tr>', dom)
    return {label: (int(people), int(now)) for label, people, now in rows}


def test_dashboard_in_headless_chromium_updates_counts_and_plays_the_stream(
        chromium: str, tmp_path: Path, snapshot_file: Path) -> None:
    server = DashboardServer("127.0.0.1", 0, source="lobby",
                             auth=parse_serve_auth(f"{USER}:{PASSWORD}"))
    server.event(stats({"with_mask": 4, "without_mask": 1}, 0.8))
    served: list[int] = []
    state = server.state

    def counting_state() -> dict[str, Any]:
        reply = state()
        served.append(reply["people"].get("with_mask", 0))
        return reply

    server.state = counting_state  # type: ignore[method-assign]

    def later_stats() -> None:  # new counts once the page has shown the first ones
        wait_until(lambda: len(served) >= 1, 30.0, "the page polls /api/state")
        server.event(stats({"with_mask": 9, "without_mask": 2, "mask_weared_incorrect": 1}, 0.75))
        server.event(alert(5, snapshot_file))

    faces = [{"label": "with_mask"}] * 2 + [{"label": "without_mask"}]

    def make(i: int) -> np.ndarray:
        return frame(i * 7, (320, 240))

    changer = threading.Thread(target=later_stats, daemon=True)
    changer.start()
    url = server.url.replace("http://", f"http://{USER}:{PASSWORD.replace(':', '%3A')}@")
    try:
        with publishing(server, period=0.04, make=make, faces=faces):
            dom = dump_dom(chromium, url, tmp_path / "profile")
    finally:
        changer.join(timeout=1)
        server.close()
    assert served[0] == 4 and 9 in served  # the page saw the first counts, then the new ones
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert int(attrs["data-polls"]) >= 2, attrs  # updated in place, not reloaded
    assert int(attrs["data-stream-changes"]) >= 2, attrs  # the stream showed moving frames
    assert counts_in(dom) == {"with_mask": (9, 2), "without_mask": (2, 1),
                              "mask_weared_incorrect": (1, 0)}
    assert '<b id="compliance">75%</b>' in dom and '<b id="total">12</b>' in dom
    assert re.search(r'<img src="/snapshots/1-face.jpg" alt="face" class="thumb">', dom), dom
    assert "lobby" in dom and '<span id="status">live</span>' in dom
