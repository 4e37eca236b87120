"""`--rtsp-transport`: what OpenCV's FFmpeg backend asks an RTSP server for, checked against a
tiny fake server on 127.0.0.1 that answers OPTIONS and DESCRIBE (one H264 track), records the
SETUP request's `Transport:` header, then refuses it and hangs up."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import cv2
import pytest

from edge.video.sources import FFMPEG_OPTIONS_ENV, SourceError, file_source, merge_ffmpeg_options

SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=maskedge test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
       "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
       "a=control:track1\r\n")

pytestmark = pytest.mark.skipif("FFMPEG:                      YES"
                                not in cv2.getBuildInformation(),
                                reason="this OpenCV has no FFmpeg backend")


class FakeRtspServer:
    """Answers OPTIONS and DESCRIBE; records each request (method, headers); refuses SETUP with
    461 Unsupported Transport and closes the connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def setups(self) -> list[str]:
        """The `Transport:` header of every SETUP received."""
        return [headers.get("transport", "") for method, headers in self.requests
                if method == "SETUP"]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5.0)
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            method, headers = self._parse(head.decode("latin-1"))
            self.requests.append((method, headers))
            cseq = headers.get("cseq", "0")
            if method == "OPTIONS":
                conn.sendall(self._reply(cseq, "200 OK",
                                         "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"))
            elif method == "DESCRIBE":
                base = f"rtsp://127.0.0.1:{self.port}/x/"
                conn.sendall(self._reply(cseq, "200 OK", f"Content-Base: {base}\r\n"
                                         "Content-Type: application/sdp\r\n", SDP))
            else:  # SETUP (and anything else): refuse and hang up
                conn.sendall(self._reply(cseq, "461 Unsupported Transport"))
                return

    @staticmethod
    def _parse(head: str) -> tuple[str, dict[str, str]]:
        first, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return first.split(" ", 1)[0], headers

    @staticmethod
    def _reply(cseq: str, status: str, headers: str = "", body: str = "") -> bytes:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        return f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{headers}{length}\r\n{body}".encode()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.sock.close()


@pytest.fixture
def rtsp_server() -> Iterator[FakeRtspServer]:
    server = FakeRtspServer()
    yield server
    server.close()


def open_stream(url: str, transport: str) -> str:
    """Open `url` through `edge.video.sources.file_source`; the SourceError's message."""
    source = file_source(url, rtsp_transport=transport)
    with pytest.raises(SourceError) as err:
        source.open()
    source.close()
    return str(err.value)


def test_tcp_asks_for_interleaved_rtp_over_the_rtsp_connection(
        rtsp_server: FakeRtspServer) -> None:
    message = open_stream(f"rtsp://127.0.0.1:{rtsp_server.port}/x", "tcp")
    assert [m for m, _ in rtsp_server.requests][:2] == ["OPTIONS", "DESCRIBE"]
    assert rtsp_server.setups, rtsp_server.requests
    assert all("RTP/AVP/TCP" in t and "interleaved=" in t for t in rtsp_server.setups)
    assert "cannot open stream rtsp://127.0.0.1" in message


def test_udp_asks_for_client_ports(rtsp_server: FakeRtspServer) -> None:
    """OpenCV's own default asks for TCP first, so this is the case that shows the option
    reaches FFmpeg at all."""
    open_stream(f"rtsp://127.0.0.1:{rtsp_server.port}/x", "udp")
    assert rtsp_server.setups, rtsp_server.requests
    assert all("client_port=" in t and "TCP" not in t for t in rtsp_server.setups)


def test_the_option_joins_the_users_and_is_set_only_around_the_open(
        rtsp_server: FakeRtspServer, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = "rtsp_transport;tcp|analyzeduration;1000000"
    monkeypatch.setenv(FFMPEG_OPTIONS_ENV, mine)
    assert merge_ffmpeg_options(mine, "rtsp_transport;udp") == (
        "analyzeduration;1000000|rtsp_transport;udp")
    assert merge_ffmpeg_options(None, "rtsp_transport;tcp") == "rtsp_transport;tcp"
    open_stream(f"rtsp://127.0.0.1:{rtsp_server.port}/x", "udp")  # --rtsp-transport wins
    assert os.environ[FFMPEG_OPTIONS_ENV] == mine
    assert len(rtsp_server.setups) == 1 and "client_port=" in rtsp_server.setups[0]
    open_stream(f"rtsp://127.0.0.1:{rtsp_server.port}/x", "auto")  # the user's own setting
    assert len(rtsp_server.setups) == 2 and "RTP/AVP/TCP" in rtsp_server.setups[1]


def test_the_stream_description_hides_the_password(rtsp_server: FakeRtspServer) -> None:
    url = f"rtsp://admin:Cam-p4ss@127.0.0.1:{rtsp_server.port}/x"
    source = file_source(url, rtsp_transport="tcp")
    assert source.description == f"stream rtsp://admin:***@127.0.0.1:{rtsp_server.port}/x"
    message = open_stream(url, "tcp")
    assert "Cam-p4ss" not in message and "admin:***@" in message
    assert rtsp_server.setups  # the credentials did not stop it from reaching SETUP
