"""The live dashboard behind `edge run --serve HOST:PORT`: stream, counts, compliance, alerts.

`DashboardServer` is a sink (`edge.outputs.Sink`) served by `http.server` on its own threads:

- `/`: one HTML page (inline CSS and JS, nothing fetched from elsewhere) showing the annotated
  MJPEG stream, people and faces per class, compliance, FPS and the last alerts with their
  snapshot images; it polls `/api/state` every second, so nothing reloads.
- `/stream.mjpg` (multipart MJPEG), `/frame.jpg` (the newest frame), `/api/state` (JSON),
  `/snapshots/<name>` (only the snapshot files named by alerts the sink received). Anything else
  is 404.

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
import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from edge.events import ALERT, STATS
from edge.outputs import OutputError

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

def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


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
        "/api/state": "_state"}

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

    def _state(self) -> None:
        state = self.server.dashboard.state()
        self._send(200, "application/json", json.dumps(state, default=_jsonable).encode())

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
                 send_timeout: float = 10.0) -> None:
        try:
            check_exposure(host, auth, insecure)
        except ValueError as exc:
            raise OutputError(str(exc)) from None
        self.auth, self.max_viewers, self.send_timeout = auth, max(1, max_viewers), send_timeout
        self.frames = FrameHub(self.jpeg_quality)
        self.live = LiveState(source)
        self.page = PAGE.replace("{source}", html.escape(source)).encode()
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


CSP = ("default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>maskedge &mdash; {source}</title>
<style>
body{margin:0;background:#111;color:#ddd;font:15px/1.4 system-ui,sans-serif}
header{padding:.5em 1em;background:#1c1c1c;display:flex;gap:1em;align-items:baseline;flex-wrap:wrap}
header h1{font-size:1.1em;margin:0}#status{color:#999;font-size:.9em}
main{display:flex;flex-wrap:wrap;gap:1em;padding:1em}
#video{flex:3 1 480px}#video img{width:100%;height:auto;background:#000;display:block}
#side{flex:1 1 280px;min-width:260px}
.tiles{display:grid;grid-template-columns:repeat(3,1fr);gap:.5em;margin-bottom:1em}
.tile{background:#1c1c1c;padding:.5em;border-radius:4px;text-align:center}
.tile b{display:block;font-size:1.6em;color:#fff}.tile span{font-size:.8em;color:#999}
table{width:100%;border-collapse:collapse;margin-bottom:1em}
th,td{padding:.25em .4em;text-align:left;border-bottom:1px solid #2a2a2a}
th{color:#999;font-weight:normal;font-size:.85em}td.n{text-align:right}
.l-with_mask{color:#3c3}.l-without_mask{color:#f44}.l-mask_weared_incorrect{color:#f93}
img.thumb{height:48px;margin-right:2px;vertical-align:middle}
</style></head>
<body data-stream-frames="0" data-stream-changes="0" data-polls="0">
<header><h1>maskedge &mdash; {source}</h1><span id="status">connecting&hellip;</span></header>
<main><section id="video"><img src="/stream.mjpg" id="stream" alt="live stream"></section>
<section id="side">
<div class="tiles">
<div class="tile"><b id="compliance">&ndash;</b><span>compliance</span></div>
<div class="tile"><b id="fps">&ndash;</b><span>FPS</span></div>
<div class="tile"><b id="total">&ndash;</b><span>people</span></div></div>
<table><thead><tr><th>class</th><th class="n">people</th><th class="n">in frame</th></tr></thead>
<tbody id="counts"></tbody></table>
<table><thead><tr><th>time</th><th>track</th><th>label</th><th class="n">score</th><th></th></tr>
</thead><tbody id="alerts"></tbody></table>
<div id="frame" style="color:#777;font-size:.85em"></div>
</section></main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const dash = "\\u2013";
let streamFrames = 0, polls = 0, alertsShown = -1, streamChanges = 0, lastLook = "";
const stream = $("stream");
const probe = document.createElement("canvas"); probe.width = 16; probe.height = 12;
function lookAtStream() {  // counts how often the picture changed, in data-stream-changes
  if (!stream.complete || !stream.naturalWidth) return;
  const ctx = probe.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(stream, 0, 0, probe.width, probe.height);
  const look = ctx.getImageData(0, 0, probe.width, probe.height).data.join(",");
  if (look !== lastLook) { lastLook = look; document.body.dataset.streamChanges = ++streamChanges; }
}
stream.addEventListener("load", () => { document.body.dataset.streamFrames = ++streamFrames; });
stream.addEventListener("error", () => { $("status").textContent = "stream unavailable"; });
const pct = (x) => typeof x === "number" ? Math.round(100 * x) + "%" : dash;
const fixed = (x, d) => typeof x === "number" ? x.toFixed(d) : dash;
function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
}
function renderCounts(s) {
  const body = $("counts"); body.replaceChildren();
  for (const c of s.counts) {
    const tr = body.insertRow(); tr.dataset.label = c.label; tr.className = "l-" + c.label;
    cell(tr, c.label.replace(/_/g, " ")); cell(tr, String(c.people), "n people");
    cell(tr, String(c.now), "n now");
  }
}
function renderAlerts(s) {
  if (s.alerts_total === alertsShown) return;
  alertsShown = s.alerts_total;
  const body = $("alerts"); body.replaceChildren();
  for (const a of s.alerts) {
    const tr = body.insertRow(); tr.className = "l-" + a.label;
    cell(tr, typeof a.time === "number" ? new Date(a.time * 1000).toLocaleTimeString() : dash);
    cell(tr, String(a.track ?? dash)); cell(tr, String(a.label).replace(/_/g, " "));
    cell(tr, pct(a.score), "n");
    const shots = cell(tr, "");
    for (const [kind, link] of Object.entries(a.snapshots || {})) {
      const anchor = document.createElement("a"); anchor.href = link; anchor.target = "_blank";
      const img = document.createElement("img"); img.src = link; img.alt = kind;
      img.className = "thumb"; anchor.append(img); shots.append(anchor);
    }
  }
}
function render(s) {
  $("compliance").textContent = pct(s.compliance);
  $("fps").textContent = fixed(s.fps, 1);
  $("total").textContent = typeof s.total === "number" ? String(s.total) : dash;
  $("frame").textContent = "frame " + (s.frame ?? dash) + " \\u00b7 " + s.viewers + " viewer(s)";
  document.body.dataset.frame = String(s.frame ?? "");
  renderCounts(s); renderAlerts(s);
}
async function poll() {
  try {
    const reply = await fetch(location.origin + "/api/state", {cache: "no-store"});
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    render(await reply.json());
    document.body.dataset.polls = ++polls;
    lookAtStream();
    $("status").textContent = "live";
  } catch (err) {
    $("status").textContent = "connection lost, retrying";
  }
  setTimeout(poll, 1000);
}
poll();
</script></body></html>
"""
