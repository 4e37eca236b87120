"""The labelling page behind `edge label DIR`: stdlib `http.server`, like the dashboard's.

- `/`: the page (edge/collect/page/label.html, .css, .js: package data), under a strict
  Content-Security-Policy (scripts and styles only from these files, nothing inline, nothing from
  elsewhere);
- `/api/items`: the classes in the model's order and every face of the manifest (JSON);
- `/crop?file=F`, `/frame?file=F`: the crop (wherever it is now) and the frame of the face whose
  manifest `file` is F; no other file of the folder is served;
- `POST /api/label {"file", "label"}` moves the crop into labelled/<label>/ and `POST /api/undo
  {"file"}` moves it back (edge/collect/manifest.py: atomic moves, the manifest rewritten
  atomically, under the folder's lock so that a run collecting into it meanwhile loses nothing).

It listens on loopback unless told otherwise; beyond loopback only with the dashboard's
credentials (`edge.sinks.dashboard.ServeAuth`, `check_exposure`), which then guard every path.
The POSTs want `Content-Type: application/json` and, when the browser sends one, an `Origin`
of this very server: another site open in the same browser cannot label through it (a
cross-origin JSON request needs a CORS preflight, which this server never grants).
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from edge.collect import manifest
from edge.collect.manifest import Entry, ManifestError
from edge.sinks.dashboard import ServeAuth, check_exposure

CSP = ("default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'self'; "
       "script-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_FILES = {"/label.css": ("label.css", "text/css; charset=utf-8"),
              "/label.js": ("label.js", "text/javascript; charset=utf-8")}
IMAGE_MAX_BYTES = 16 << 20
#: What a face's JSON on the page carries (the rest of the manifest line stays on the device).
PAGE_FIELDS = ("file", "box", "probabilities", "raw_label", "predicted", "reason", "label",
               "margin", "time", "track")


def page_file(name: str) -> bytes:
    """One file of the page, read from the installed package."""
    return (resources.files("edge.collect") / "page" / name).read_bytes()


def class_order(entries: list[Entry]) -> list[str]:
    """Every class of the folder's faces, in their models' label order (first seen first)."""
    order: list[str] = []
    for entry in entries:
        order += [label for label in manifest.labels_of(entry) if label not in order]
    return order


def guess(entry: Entry) -> str | None:
    """The model's answer for this crop: the class of the highest probability."""
    probabilities = entry.get("probabilities") or {}
    return max(probabilities, key=probabilities.get) if probabilities else entry.get("raw_label")


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    labeller: LabelServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a browser that went away mid-answer is not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd
    server_version = "maskedge"
    sys_version = ""
    timeout = 30
    routes: ClassVar[dict[str, str]] = {"/": "_page", "/index.html": "_page",
                                        "/label.css": "_asset", "/label.js": "_asset",
                                        "/api/items": "_items", "/crop": "_crop",
                                        "/frame": "_frame"}

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nothing is logged, so no credentials can be

    def _allowed(self) -> bool:
        auth = self.server.labeller.auth
        if auth is None or auth.allows(self.headers.get("Authorization")):
            return True
        self._send(401, "text/plain; charset=utf-8", b"authentication required\n",
                   [("WWW-Authenticate", value) for value in auth.challenges()])
        return False

    def do_GET(self) -> None:
        if not self._allowed():
            return
        route = self.routes.get(urlsplit(self.path).path)
        if route is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
        else:
            getattr(self, route)()

    def do_POST(self) -> None:
        if not self._allowed():
            return
        path = urlsplit(self.path).path
        if path not in ("/api/label", "/api/undo"):
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        problem = self._foreign()
        if problem:
            self._json(403, {"error": problem})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 1 << 16)) or b"{}")
            file = str(body["file"])
            labeller = self.server.labeller
            entry = (labeller.label(file, str(body["label"])) if path == "/api/label"
                     else labeller.undo(file))
        except (ValueError, KeyError, TypeError) as exc:  # ManifestError is a ValueError
            self._json(400, {"error": str(exc) if isinstance(exc, ManifestError)
                             else "expected JSON {\"file\": ..., \"label\": ...}"})
            return
        except OSError as exc:
            self._json(500, {"error": f"cannot move the crop: {exc.strerror or exc}"})
            return
        self._json(200, {"item": labeller.item(entry), **labeller.progress()})

    def _foreign(self) -> str | None:
        """Why a POST may come from another site's page (None: it comes from ours)."""
        if self.headers.get_content_type() != "application/json":
            return "expected Content-Type: application/json"
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            return "another origin"
        return None

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

    def _json(self, status: int, value: Any) -> None:
        self._send(status, "application/json", json.dumps(value).encode())

    def _page(self) -> None:
        self._send(200, "text/html; charset=utf-8", page_file("label.html"),
                   [("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "no-referrer")])

    def _asset(self) -> None:
        name, kind = PAGE_FILES[urlsplit(self.path).path]
        self._send(200, kind, page_file(name))

    def _items(self) -> None:
        try:
            self._json(200, self.server.labeller.items())
        except ManifestError as exc:
            self._json(500, {"error": str(exc)})

    def _crop(self) -> None:
        self._image(crop=True)

    def _frame(self) -> None:
        self._image(crop=False)

    def _image(self, crop: bool) -> None:
        file = parse_qs(urlsplit(self.path).query).get("file", [""])[0]
        try:
            path = self.server.labeller.image(file, crop)
            if path.stat().st_size > IMAGE_MAX_BYTES:
                raise FileNotFoundError
            body = path.read_bytes()
        except (OSError, ManifestError):
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        self._send(200, "image/jpeg", body)


class LabelServer:
    """Serves the labelling page for one collect folder until `close` (or `serve_forever`
    ends)."""

    def __init__(self, folder: Path, host: str = "127.0.0.1", port: int = 0, *,
                 auth: ServeAuth | None = None, insecure: bool = False) -> None:
        check_exposure(host, auth, insecure)  # ValueError: one line
        self.folder, self.auth = Path(folder).absolute(), auth
        try:
            self._httpd = _Httpd((host, port), _Handler)
        except OSError as exc:
            raise ManifestError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") \
                from None
        self._httpd.labeller = self
        self.host, self.port = host, int(self._httpd.server_address[1])
        self._serving = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def entries(self) -> list[Entry]:
        with manifest.locked(self.folder):
            return manifest.read_entries(self.folder)

    def item(self, entry: Entry) -> dict[str, Any]:
        shown = {key: entry[key] for key in PAGE_FIELDS if key in entry}
        return {**shown, "guess": guess(entry), "labels": manifest.labels_of(entry)}

    def progress(self) -> dict[str, int]:
        entries = self.entries()
        return {"total": len(entries), "labelled": len(entries) - len(manifest.unlabelled(
            entries))}

    def items(self) -> dict[str, Any]:
        entries = self.entries()
        return {"labels": class_order(entries), "items": [self.item(e) for e in entries],
                "total": len(entries),
                "labelled": len(entries) - len(manifest.unlabelled(entries))}

    def image(self, file: str, crop: bool) -> Path:
        entry = manifest.find(self.entries(), file)
        if crop:
            return manifest.crop_path(self.folder, entry)
        return manifest.inside(self.folder, str(entry.get("frame_file") or ""))

    def label(self, file: str, label: str) -> Entry:
        return manifest.set_label(self.folder, file, label)

    def undo(self, file: str) -> Entry:
        return manifest.clear_label(self.folder, file)

    def serve_forever(self) -> None:
        self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._serving = False

    def close(self) -> None:
        """Stop serving (from another thread) and release the port."""
        if self._serving:
            self._httpd.shutdown()
        self._httpd.server_close()
