"""The live dashboard behind `edge run --serve HOST:PORT`: stream, counts, compliance, alerts.

`DashboardServer` is a sink (`edge.sinks.outputs.Sink`) served by `http.server` on its own threads:

- `/`: one HTML page (inline CSS and JS, nothing fetched from elsewhere) showing the annotated
  MJPEG stream, people and faces per class, compliance, FPS and the last alerts with their
  snapshot images; it polls `/api/state` every second, so nothing reloads.
- `/stream.mjpg` (multipart MJPEG), `/frame.jpg` (the newest frame), `/api/state` (JSON),
  `/snapshots/<name>` (only the snapshot files named by alerts the sink received),
  `/api/history` (with `history=PATH`, i.e. `edge run --serve ... --history PATH`: people and
  compliance per hour for 24 h and per day for 7 days, edge/history/query.py, which the page
  draws as two small charts; 404 without a history). Anything else is 404.

The frame loop never waits for a viewer: `write` swaps in the newest frame and returns; viewer
threads encode it once per frame (only when someone watches), wait on a condition with a timeout,
and write with a socket timeout, so a stuck viewer is dropped, not waited for. Stream viewers are
capped (503 beyond the cap). On an address other than loopback `check_exposure` insists on
credentials (`ServeAuth`: HTTP Basic or a bearer token, compared in constant time) unless the user
explicitly asks for an open server; with credentials every path sits behind them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import html
import ipaddress
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from edge.sinks.outputs import OutputError
from edge.tracking.events import ALERT, STATS, event_json

SERVE_AUTH_ENV = "MASKEDGE_SERVE_AUTH"  # the CLI reads --serve-auth from here too
BOUNDARY = "maskedgeframe"
REALM = "maskedge"
ALERTS_KEPT = 20
SNAPSHOT_MAX_BYTES = 16 << 20
_USAGE = "expected USER:PASSWORD or token:TOKEN"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: fits an Authorization header as it is


# --- credentials -------------------------------------------------------------------------------

def _same(given: bytes, expected: bytes) -> bool:
    """Constant-time equality (hashing first, so not even the length leaks)."""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


@dataclass(frozen=True)
class ServeAuth:
    """What the dashboard asks for: HTTP Basic (`kind="basic"`, user and password) or a bearer
    token (`kind="token"`). A token is also accepted as the Basic password under any user name, so
    a browser's login prompt opens the page. The repr never shows the user or the secret."""

    kind: str
    user: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("basic", "token"):
            raise ValueError(f"ServeAuth kind must be 'basic' or 'token', not {self.kind!r}")

    def allows(self, header: str | None) -> bool:
        """Whether an `Authorization` header value carries these credentials."""
        scheme, _, value = (header or "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        secret = self.secret.encode()
        if scheme == "bearer":
            return self.kind == "token" and _same(value.encode(), secret)
        if scheme != "basic":
            return False
        try:
            user, colon, password = base64.b64decode(value, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        if not colon:
            return False
        if self.kind == "token":
            return _same(password, secret)
        return _same(user, self.user.encode()) & _same(password, secret)

    def challenges(self) -> list[str]:
        """`WWW-Authenticate` values of a 401 (Basic first: that is what browsers prompt for)."""
        basic = f'Basic realm="{REALM}", charset="UTF-8"'
        return [basic, f'Bearer realm="{REALM}"'] if self.kind == "token" else [basic]


def parse_serve_auth(text: str) -> ServeAuth:
    """`USER:PASSWORD` (HTTP Basic) or `token:TOKEN` (bearer); ValueError with a one-line message
    that never repeats the secret."""
    head, colon, secret = text.strip("\r\n").partition(":")
    if not colon:
        raise ValueError(f"bad serve credentials: {_USAGE} (there is no ':')")
    if not secret:
        raise ValueError(f"bad serve credentials: {_USAGE} (the part after ':' is empty)")
    if head.lower() == "token":
        if not _TOKEN.fullmatch(secret):
            raise ValueError("bad serve credentials: a token is visible ASCII characters "
                             "without spaces")
        return ServeAuth("token", secret=secret)
    if not head:
        raise ValueError(f"bad serve credentials: {_USAGE} (the user name is empty)")
    if _CONTROL.search(head) or _CONTROL.search(secret):
        raise ValueError("bad serve credentials: control characters are not allowed")
    return ServeAuth("basic", user=head, secret=secret)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine ('' and 0.0.0.0 do not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth: ServeAuth | None, insecure: bool) -> None:
    """Refuse to serve beyond loopback without credentials unless the user explicitly said so."""
    if auth is not None or insecure or is_loopback(host):
        return
    raise ValueError(
        f"--serve {host or '(all addresses)'} is reachable from the network: pass --serve-auth "
        f"USER:PASSWORD or --serve-auth token:TOKEN (or set {SERVE_AUTH_ENV}), or "
        "--serve-insecure to serve it without authentication")


# --- what the page shows -----------------------------------------------------------------------

def _snapshot_paths(snapshot: Any) -> Iterator[tuple[str, str]]:
    """(kind, path) pairs of an alert's `snapshot` field: {kind: path}, a path, or a list."""
    if isinstance(snapshot, dict):
        items = list(snapshot.items())
    elif isinstance(snapshot, (str, Path)):
        items = [("image", snapshot)]
    elif isinstance(snapshot, (list, tuple)):
        items = [(f"image{i}", path) for i, path in enumerate(snapshot)]
    else:
        items = []
    for kind, path in items:
        if isinstance(path, (str, Path)) and str(path):
            yield re.sub(r"[^A-Za-z0-9_]", "", str(kind))[:24] or "image", str(path)


class LiveState:
    """Counts, compliance, FPS and the last alerts, as `/api/state` reports them (thread-safe)."""

    def __init__(self, source: str, alerts_kept: int = ALERTS_KEPT) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._frame: dict[str, Any] = {}
        self._now: dict[str, int] = {}
        self._stats: dict[str, Any] = {}
        self._alerts: deque[tuple[dict[str, Any], list[str]]] = deque()
        self._kept = max(1, alerts_kept)
        self._alerts_total = 0
        self._snapshots: dict[str, Path] = {}

    def on_frame(self, record: dict[str, Any]) -> None:
        now: dict[str, int] = {}
        for face in record.get("faces") or ():
            label = face.get("label") if isinstance(face, dict) else None
            if isinstance(label, str):
                now[label] = now.get(label, 0) + 1
        frame = {key: record.get(key) for key in ("frame", "time", "fps")}
        with self._lock:
            self._frame, self._now = frame, now

    def on_stats(self, event: dict[str, Any]) -> None:
        people = event.get("people")
        stats = {key: event.get(key) for key in ("time", "frame", "total", "compliance", "fps")}
        stats["people"] = dict(people) if isinstance(people, dict) else {}
        with self._lock:
            self._stats = stats

    def on_alert(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._alerts_total += 1
            number, links, names = self._alerts_total, {}, []
            for kind, path in _snapshot_paths(event.get("snapshot")):
                suffix = Path(path).suffix.lower()
                suffix = suffix if re.fullmatch(r"[.][a-z0-9]{1,5}", suffix) else ""
                name = f"{number}-{kind}{suffix}"
                self._snapshots[name] = Path(path)
                links[kind] = f"/snapshots/{name}"
                names.append(name)
            alert = {key: event.get(key) for key in ("time", "frame", "track", "label", "score")}
            alert["snapshots"] = links
            self._alerts.append((alert, names))
            while len(self._alerts) > self._kept:
                for name in self._alerts.popleft()[1]:
                    self._snapshots.pop(name, None)

    def snapshot(self, name: str) -> Path | None:
        """The file behind `/snapshots/<name>`, only if an alert named it (None otherwise)."""
        with self._lock:
            return self._snapshots.get(name)

    def state(self) -> dict[str, Any]:
        with self._lock:
            frame, now, stats = dict(self._frame), dict(self._now), dict(self._stats)
            alerts = [dict(alert) for alert, _ in reversed(self._alerts)]  # newest first
            total_alerts = self._alerts_total
        people: dict[str, Any] = stats.pop("people", {})
        labels = list(people) + [label for label in now if label not in people]
        return {
            "source": self.source, "frame": frame.get("frame"), "time": frame.get("time"),
            "fps": frame.get("fps") if frame.get("fps") is not None else stats.get("fps"),
            "counts": [{"label": label, "people": people.get(label, 0), "now": now.get(label, 0)}
                       for label in labels],
            "people": people, "now": now, "total": stats.get("total"),
            "compliance": stats.get("compliance"), "stats_time": stats.get("time"),
            "alerts": alerts, "alerts_total": total_alerts,
        }


# --- frames ------------------------------------------------------------------------------------

#: Seconds `/api/history` serves the same answer before reading the database again.
HISTORY_SECONDS = 10.0
#: The live view's frame-rate cap: viewers share at most this many JPEG encodes a second, so
#: their cost does not grow with the pipeline's frame rate (hundreds of FPS on a fast CPU).
LIVE_MAX_FPS = 30.0


class FrameHub:
    """The newest annotated frame; its JPEG is encoded once, by the first viewer that wants it,
    and at most `max_fps` times a second: a viewer that asks sooner gets the last one."""

    def __init__(self, quality: int = 80, max_fps: float = LIVE_MAX_FPS) -> None:
        self.quality = quality
        self.min_interval = 1.0 / max_fps
        self.closing = False
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._jpeg: bytes | None = None
        self._jpeg_seq = -1
        self._encoded_at = float("-inf")
        self._encode_lock = threading.Lock()

    def publish(self, bgr: np.ndarray) -> None:
        """Make `bgr` the current frame (not copied: the caller must not change it later)."""
        with self._cond:
            self._frame = bgr
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closing = True
            self._cond.notify_all()

    def wait_jpeg(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        """The JPEG of a frame newer than sequence number `after` (None on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: (self._seq > after and self._frame is not None)
                                or self.closing, timeout)
            if self._seq <= after or self._frame is None:
                return after, None
        with self._encode_lock:  # the viewers queue here while one of them waits or encodes
            if self._jpeg is not None and self._jpeg_seq > after:
                return self._jpeg_seq, self._jpeg  # encoded since this viewer's last frame
            wait = self._encoded_at + self.min_interval - time.monotonic()
            if wait > 0 and not self.closing:
                time.sleep(wait)
            with self._cond:
                frame, seq = self._frame, self._seq
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return after, None
            self._jpeg, self._jpeg_seq, self._encoded_at = buf.tobytes(), seq, time.monotonic()
            return seq, self._jpeg


# --- HTTP --------------------------------------------------------------------------------------

def _peer_closed(sock: socket.socket) -> bool:
    """Whether the client hung up (readable with nothing to read), checked without blocking."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() must not wait for a stuck client's timeout
    dashboard: DashboardServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-response is not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd
    server_version = "maskedge"
    sys_version = ""
    routes: ClassVar[dict[str, str]] = {
        "/": "_page", "/index.html": "_page", "/stream.mjpg": "_stream", "/frame.jpg": "_frame",
        "/api/state": "_state", "/api/history": "_history", "/dashboard.css": "_asset",
        "/dashboard.js": "_asset"}

    def setup(self) -> None:
        self.timeout = self.server.dashboard.send_timeout  # reads and writes; a stuck peer ends
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nothing is logged, so no credentials can be

    def do_GET(self) -> None:
        dashboard = self.server.dashboard
        if dashboard.auth is not None and not dashboard.auth.allows(
                self.headers.get("Authorization")):
            self._send(401, "text/plain; charset=utf-8", b"authentication required\n",
                       [("WWW-Authenticate", value) for value in dashboard.auth.challenges()])
            return
        path = urlsplit(self.path).path
        if path in self.routes:
            getattr(self, self.routes[path])()
        elif path.startswith("/snapshots/"):
            self._snapshot(unquote(path[len("/snapshots/"):]))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, kind: str, body: bytes,
              extra: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in extra or ():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _page(self) -> None:
        self._send(200, "text/html; charset=utf-8", self.server.dashboard.page,
                   [("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY")])

    def _asset(self) -> None:
        name, kind = PAGE_FILES[urlsplit(self.path).path]
        self._send(200, kind, page_file(name))

    def _state(self) -> None:
        state = self.server.dashboard.state()
        self._send(200, "application/json", event_json(state).encode())

    def _history(self) -> None:
        if self.server.dashboard.history is None:
            self._send(404, "text/plain; charset=utf-8", b"no history (edge run --history)\n")
            return
        status, body = self.server.dashboard.history_json()
        self._send(status, "application/json", body)

    def _frame(self) -> None:
        _, jpeg = self.server.dashboard.frames.wait_jpeg(-1, timeout=5.0)
        if jpeg is None:
            self._send(503, "text/plain; charset=utf-8", b"no frame yet\n")
        else:
            self._send(200, "image/jpeg", jpeg)

    def _snapshot(self, name: str) -> None:
        path = self.server.dashboard.live.snapshot(name)
        try:
            if path is None or path.stat().st_size > SNAPSHOT_MAX_BYTES:
                raise FileNotFoundError
            body = path.read_bytes()
        except OSError:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        kinds = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
        self._send(200, kinds.get(path.suffix.lower(), "application/octet-stream"), body)

    def _stream(self) -> None:
        dashboard = self.server.dashboard
        if not dashboard.viewer_enter(self.connection):
            self._send(503, "text/plain; charset=utf-8",
                       f"too many viewers (at most {dashboard.max_viewers})\n".encode(),
                       [("Retry-After", "5")])
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = -1
            while not dashboard.frames.closing:
                seq, jpeg = dashboard.frames.wait_jpeg(seen, timeout=1.0)
                if jpeg is None:
                    if _peer_closed(self.connection):
                        break
                    continue
                seen = seq
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
        except OSError:  # gone, reset, or too slow to take a frame within send_timeout
            pass
        finally:
            dashboard.viewer_leave(self.connection)
            self.close_connection = True


class DashboardServer:
    """The live dashboard as a sink (see the module docstring); serves until `close`.

    `send_timeout` bounds every socket read and write of a client (a viewer that takes no frame
    for that long is dropped); `max_viewers` caps concurrent `/stream.mjpg` clients."""

    needs_image = True
    jpeg_quality = 80

    def __init__(self, host: str = "127.0.0.1", port: int = 0, source: str = "camera", *,
                 auth: ServeAuth | None = None, insecure: bool = False, max_viewers: int = 10,
                 send_timeout: float = 10.0, history: Path | None = None) -> None:
        try:
            check_exposure(host, auth, insecure)
        except ValueError as exc:
            raise OutputError(str(exc)) from None
        self.auth, self.max_viewers, self.send_timeout = auth, max(1, max_viewers), send_timeout
        self.frames = FrameHub(self.jpeg_quality)
        self.live = LiveState(source)
        self.history = history  # the SQLite history /api/history reads (None: no history)
        self._history_cache: tuple[float, int, bytes] = (float("-inf"), 0, b"")
        self._history_lock = threading.Lock()
        self.page = page_file("dashboard.html").replace(b"{source}", html.escape(source).encode())
        self._viewers: set[socket.socket] = set()
        self._viewers_lock = threading.Lock()
        self._closed = False
        try:
            self._httpd = _Httpd((host, port), _Handler)
        except OSError as exc:
            raise OutputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self._httpd.dashboard = self
        self.host, self.port = host, int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,),
                                        name="dashboard", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"DashboardServer({self.url!r}, auth={self.auth.kind if self.auth else None}, "
                f"max_viewers={self.max_viewers})")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def closing(self) -> bool:
        return self.frames.closing

    @property
    def viewers(self) -> int:
        with self._viewers_lock:
            return len(self._viewers)

    def viewer_enter(self, sock: socket.socket) -> bool:
        """Take a stream slot for `sock`; False when all `max_viewers` slots are taken."""
        with self._viewers_lock:
            if len(self._viewers) >= self.max_viewers or self._closed:
                return False
            self._viewers.add(sock)
            return True

    def viewer_leave(self, sock: socket.socket) -> None:
        with self._viewers_lock:
            self._viewers.discard(sock)

    def publish(self, bgr: np.ndarray) -> None:
        """Make `bgr` the current frame (not copied: the caller must not change it later)."""
        self.frames.publish(bgr)

    def wait_jpeg(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        return self.frames.wait_jpeg(after, timeout)

    def state(self) -> dict[str, Any]:
        state = self.live.state()
        state["viewers"] = self.viewers
        return state

    def history_json(self) -> tuple[int, bytes]:
        """(status, body) of `/api/history`: the last 24 hours and 7 days, read again at most
        every `HISTORY_SECONDS` (viewers share one read, so they cost the device nothing)."""
        from edge.history.query import daily, hourly
        from edge.history.store import HistoryError

        assert self.history is not None
        with self._history_lock:
            at, status, body = self._history_cache
            if time.monotonic() - at < HISTORY_SECONDS:
                return status, body
            try:
                status, reply = 200, {"hourly": hourly(self.history, 24),
                                      "daily": daily(self.history, 7)}
            except HistoryError as exc:  # not written yet, or damaged: the page says so
                status, reply = 503, {"error": str(exc)}
            body = event_json(reply).encode()
            self._history_cache = (time.monotonic(), status, body)
            return status, body

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        self.live.on_frame(record)
        if annotated is not None:
            self.frames.publish(annotated)

    def event(self, record: dict[str, Any]) -> None:
        kind = record.get("event")
        if kind == STATS:
            self.live.on_stats(record)
        elif kind == ALERT:
            self.live.on_alert(record)

    def close(self, ok: bool = True) -> None:
        with self._viewers_lock:
            if self._closed:
                return
            self._closed = True
            viewers = list(self._viewers)
        self.frames.close()
        for sock in viewers:  # wakes a viewer blocked in a send at once
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)


CSP = ("default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'self'; "
       "script-src 'self'; base-uri 'none'; form-action 'none'")
#: The page's files, package data in edge/sinks/page/ (a front-end person edits them there).
PAGE_FILES = {"/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
              "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8")}


def page_file(name: str) -> bytes:
    """One file of the dashboard page, read from the installed package."""
    return (resources.files("edge.sinks") / "page" / name).read_bytes()
