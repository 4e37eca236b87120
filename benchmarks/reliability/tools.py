"""What the reliability benchmarks (benchmarks/reliability/bench.py) watch a running `edge run`
with.

- `Broker`: a mosquitto on a free loopback port with its own config file (optionally with
  passwords and persistence; tests/edge/test_edge_mqtt.py uses it too); `MqttWatcher`: a paho
  subscriber counting what the device publishes (alerts, stats, status).
- `StreamViewers`: N MJPEG viewers of the dashboard read by one selector thread (so the clients
  cost the shared CPU as little as possible): HTTP status of each, frames and bytes received;
  `slow_readers`: clients that ask for the stream and never read.
- `read_proc`: resident memory, threads and CPU seconds of a process from /proc; `loadavg`.
- `EdgeChild`: a child process (an `edge run`) with its stderr read on a thread, the dashboard
  address it announces, and a clean SIGTERM stop that returns its JSON summary.

Only loopback addresses are ever used.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
BOUNDARY = b"--maskedgeframe"
_SERVING = re.compile(r"serving (http://[^\s/]+:(\d+)/)")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# --- MQTT ----------------------------------------------------------------------------------------

def find_mosquitto() -> str | None:
    for name in ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Broker:
    """mosquitto on 127.0.0.1:PORT with its config, password file and log in `folder`: anonymous
    unless `users` (name: password) are given; `persistence` keeps sessions and their queued
    messages across a restart. `stop` and `start` again keep the port. The one broker launcher of
    the benchmarks and the tests."""

    def __init__(self, exe: str, folder: Path, users: dict[str, str] | None = None,
                 persistence: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.exe, self.folder, self.port = exe, folder, free_port()
        lines = [f"listener {self.port} {LOOPBACK}",
                 f"allow_anonymous {'false' if users else 'true'}",
                 f"persistence {'true' if persistence else 'false'}",
                 f"persistence_location {folder}/", "log_dest stderr"]
        if os.geteuid() == 0:
            lines.append("user root")  # keep reading the files we own
        if users:
            lines.append(f"password_file {self._password_file(users)}")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _password_file(self, users: dict[str, str]) -> Path:
        tool = Path(self.exe).with_name("mosquitto_passwd")
        command = str(tool) if tool.exists() else "mosquitto_passwd"
        path = self.folder / "passwd"
        for i, (user, password) in enumerate(users.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run([command, *create, "-b", str(path), user, password], check=True,
                           capture_output=True)
        return path

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 10.0) -> Broker:
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([self.exe, "-c", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"mosquitto exited with code {self.proc.returncode}: "
                                   f"{' / '.join(tail)}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class MqttWatcher:
    """Counts the messages under `prefix/#` by their last topic level (alert, stats, ...)."""

    def __init__(self, port: int, prefix: str) -> None:
        import paho.mqtt.client as paho

        self.counts: Counter[str] = Counter()
        self.alerts: list[dict[str, Any]] = []
        self.status: list[str] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        if not self._subscribed.wait(10.0):
            raise RuntimeError("MQTT watcher did not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        payload = msg.payload.decode(errors="replace")
        with self._lock:
            self.counts[kind] += 1
            if kind == "alert":
                with contextlib.suppress(ValueError):
                    self.alerts.append(json.loads(payload))
            elif kind == "status":
                self.status.append(payload)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self.counts), "alerts": len(self.alerts),
                    "status": list(self.status)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- HTTP clients --------------------------------------------------------------------------------

def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def api_state(port: int, timeout: float = 5.0) -> dict[str, Any] | None:
    """The dashboard's /api/state, or None when it does not answer in time."""
    try:
        status, body = http_get(port, "/api/state", timeout)
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None


@dataclass
class _Viewer:
    sock: socket.socket
    status: int | None = None
    head: bytes = b""
    frames: int = 0
    bytes: int = 0
    tail: bytes = b""
    closed: bool = False


@dataclass
class StreamViewers:
    """`count` MJPEG viewers of `/stream.mjpg`, all read by one selector thread."""

    port: int
    count: int
    viewers: list[_Viewer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._buffer = bytearray(1 << 18)
        for _ in range(self.count):
            sock = socket.create_connection((LOOPBACK, self.port), timeout=5.0)
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: soak\r\n\r\n")
            sock.setblocking(False)
            viewer = _Viewer(sock)
            self.viewers.append(viewer)
            self._selector.register(sock, selectors.EVENT_READ, viewer)
        self._thread = threading.Thread(target=self._run, name="viewers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self._selector.get_map():
            for key, _ in self._selector.select(timeout=0.2):
                self._read(key.data)

    def _read(self, viewer: _Viewer) -> None:
        try:
            n = viewer.sock.recv_into(self._buffer)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n == 0:
            viewer.closed = True
            self._selector.unregister(viewer.sock)
            return
        chunk = bytes(self._buffer[:n])
        viewer.bytes += n
        if viewer.status is None:
            viewer.head += chunk
            match = re.match(rb"HTTP/1\.[01] (\d{3})", viewer.head)
            if match:
                viewer.status = int(match.group(1))
        data = viewer.tail + chunk
        viewer.frames += data.count(BOUNDARY)
        viewer.tail = data[-(len(BOUNDARY) - 1):]

    def wait_statuses(self, timeout: float = 10.0) -> list[int | None]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(v.status is None for v in self.viewers):
            time.sleep(0.05)
        return [v.status for v in self.viewers]

    def frames(self) -> list[int]:
        return [v.frames for v in self.viewers]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        for viewer in self.viewers:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(viewer.sock)
            viewer.sock.close()
        self._selector.close()


def slow_readers(port: int, count: int) -> list[socket.socket]:
    """Clients that ask for the stream and then never read a byte (small receive buffers)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((LOOPBACK, port))
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: slow\r\n\r\n")
        socks.append(sock)
    return socks


def stream_status(port: int, timeout: float = 5.0) -> int | None:
    """The HTTP status one more stream viewer gets (the connection is closed at once)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: probe\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


# --- processes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcReading:
    rss_kb: int
    threads: int
    cpu_s: float  # user + system CPU seconds so far


def read_proc(pid: int) -> ProcReading | None:
    """VmRSS and Threads from /proc/PID/status, CPU time from /proc/PID/stat (None: gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    after_name = stat.rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return ProcReading(rss_kb=int(fields["VmRSS"].split()[0]),
                       threads=int(fields["Threads"].strip()), cpu_s=(utime + stime) / _CLK_TCK)


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


class EdgeChild:
    """A child process (an `edge run`); stderr lines kept on a thread, stdout read at the end."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.cmd = cmd
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stderr: deque[str] = deque(maxlen=200)
        self.stderr_lines = 0
        self.tracebacks = 0
        self.port: int | None = None
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            self.stderr_lines += 1
            self.tracebacks += "Traceback" in line
            match = _SERVING.search(line)
            if match and self.port is None:
                self.port = int(match.group(2))
                self._serving.set()

    def wait_serving(self, timeout: float = 120.0) -> int:
        """The dashboard port the child announced ('serving http://...:PORT/')."""
        deadline = time.monotonic() + timeout
        while not self._serving.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = " | ".join(list(self.stderr)[-5:])
                raise RuntimeError(f"edge run did not start serving: {tail}")
        assert self.port is not None
        return self.port

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """SIGTERM; exit code, seconds to exit, the JSON summary on stdout, stderr's tail."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out = ""
        self._reader.join(timeout=5.0)
        seconds = round(time.monotonic() - t0, 2)
        summary = None
        for line in reversed((out or "").strip().splitlines()):
            with contextlib.suppress(ValueError):
                summary = json.loads(line)
                break
        return {"returncode": self.proc.returncode, "seconds_to_exit": seconds,
                "summary": summary, "stderr_tail": list(self.stderr)[-8:],
                "stderr_lines": self.stderr_lines, "tracebacks": self.tracebacks}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
