"""`edge run --webhook URL`: POST each alert as JSON to an HTTP(S) endpoint.

`WebhookSink` is a sink (`edge.sinks.outputs.Sink`). The frame loop only appends the JSON body to a
bounded queue (the oldest is dropped and counted when it is full); one worker thread POSTs it
with `Content-Type: application/json`, a timeout, and retries with exponential backoff on a
network error, a timeout, a 5xx, 408, 425 or 429 (another 4xx or a redirect is not retried).
`user:pass@` in the URL becomes a Basic `Authorization` header; logs, errors, `repr` and the
summary show the URL with the password (and any query string) as `***`. Standard library only.
"""

from __future__ import annotations

import base64
import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

from edge.core.redact import redact_url
from edge.sinks.outputs import OutputError
from edge.sinks.queue import Worker
from edge.tracking.events import event_json

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429})
MAX_BACKOFF = 30.0


class WebhookError(OutputError):
    """The webhook output cannot be set up (one-line message, never with a password)."""


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("maskedge")
    except Exception:
        return "0"


def split_credentials(url: str) -> tuple[str, str | None, str]:
    """(URL without user:pass, Basic auth header value or None, URL safe to show)."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookError(f"bad --webhook URL {shown}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookError(f"bad --webhook URL {shown}: only http:// and https:// are supported")
    if not parts.hostname:
        raise WebhookError(f"bad --webhook URL {shown}: no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host + (f":{port}" if port is not None else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    auth = None
    user = ""
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        user = unquote(parts.username) + (":***" if parts.password is not None else "") + "@"
    query = "?***" if parts.query else ""
    described = urlunsplit((parts.scheme, user + netloc, parts.path or "/", "", "")) + query
    return clean, auth, described


def _opener() -> urllib.request.OpenerDirector:
    """HTTP and HTTPS only (proxies from the environment); redirects are not followed."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


class WebhookSink:
    """Each alert (or each event of `events`) POSTed as JSON from a worker thread."""

    OUTPUT_NAME = "webhook"  # its counters' name in the run summary

    needs_image = False
    FLUSH_TIMEOUT = 5.0  # seconds `close` waits for the queue to empty

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, backoff: float = 0.5,
                 queue_size: int = 100, events: Sequence[str] = ("alert",)) -> None:
        if timeout <= 0 or retries < 0 or backoff < 0 or queue_size < 1:
            raise WebhookError("--webhook needs timeout > 0, retries >= 0, backoff >= 0 and "
                               "a queue of at least 1")
        self._url, auth, self._shown = split_credentials(url)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.events = frozenset(events)
        self._headers = {"Content-Type": "application/json",
                         "User-Agent": f"maskedge/{_version()}"}
        if auth:
            self._headers["Authorization"] = auth
        self._opener = _opener()
        self.sent = self.failed = self.retried = 0
        self.last_error: str | None = None
        self._work: Worker[bytes] = Worker("webhook", self._deliver, queue_size,
                                           "webhook queue full (%d alerts): dropping the oldest")
        self._abort = self._work.stopping

    @property
    def dropped(self) -> int:
        return self._work.dropped

    @property
    def unsent(self) -> int:
        return self._work.unsent

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        pass

    def event(self, record: dict[str, Any]) -> None:
        if record.get("event") not in self.events:
            return
        self._work.put(event_json(record).encode())

    def _deliver(self, body: bytes) -> None:
        for attempt in range(self.retries + 1):
            error, retry = self._post(body)
            if error is None:
                self.sent += 1
                return
            if not retry or attempt == self.retries:
                break
            self.retried += 1
            if self._abort.wait(min(MAX_BACKOFF, self.backoff * 2 ** attempt)):
                break
        if self._abort.is_set():  # closed meanwhile: counted as unsent
            return
        self.failed += 1
        message = f"webhook {self._shown} failed: {error}"
        if message != self.last_error:
            log.warning(message)
        self.last_error = message

    def _post(self, body: bytes) -> tuple[str | None, bool]:
        """(None, _) on a 2xx; else (why, whether to try again)."""
        request = urllib.request.Request(self._url, data=body, method="POST",
                                         headers=self._headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(1 << 16)
            return None, False
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"HTTP {exc.code} {exc.reason}", exc.code >= 500 or exc.code in RETRY_STATUS
        except urllib.error.URLError as exc:
            return redact_url(str(exc.reason)), True
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            return redact_url(f"{type(exc).__name__}: {exc}"), True

    def describe(self) -> str:
        """The URL safe to print: password and query string as `***`."""
        return self._shown

    def __repr__(self) -> str:
        return f"WebhookSink({self._shown!r})"

    def summary(self) -> dict[str, Any]:
        """Counters for the run summary (no credentials)."""
        return {"webhook": self._shown, "sent": self.sent, "failed": self.failed,
                "retried": self.retried, "dropped": self.dropped, "pending": self._work.pending,
                "unsent": self.unsent, "error": self.last_error}

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until every queued alert was delivered or given up."""
        return self._work.wait_idle(timeout)

    def close(self, ok: bool = True) -> None:
        """Deliver what is queued (up to FLUSH_TIMEOUT seconds), then stop the worker."""
        if self._work.close(self.FLUSH_TIMEOUT):
            log.warning("webhook: %d alerts not delivered to %s", self.unsent, self._shown)
