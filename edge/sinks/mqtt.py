"""`edge run --mqtt`: alerts and stats to an MQTT broker, with Home Assistant discovery.

`MqttSink` is a sink (`edge.sinks.outputs.Sink`) built from `mqtt://[user:pass@]HOST[:PORT][/PREFIX]`
(`mqtts://` for TLS; prefix `maskedge` by default) and a device name (the slugified hostname by
default). Topics, with `BASE = PREFIX/<device>`:

| topic | retained | payload |
| --- | --- | --- |
| `BASE/status` | yes | `online`, `offline` (also the last will: the broker sends it if we die) |
| `BASE/alert` | no | the alert event as JSON |
| `BASE/stats` | yes | the latest stats event as JSON |
| `BASE/unmasked` | yes | `ON` while the current frame has a face with an alert label, else `OFF` |
| `homeassistant/<component>/<device>/<object>/config` | yes | Home Assistant discovery |

The frame loop never waits for the network: `write` and `event` only put a message in memory.
Alerts go to a bounded queue (the oldest is dropped and counted when it is full); retained state
(stats, `unmasked`) keeps only the newest value per topic. A background thread hands messages to
paho (QoS 1) while connected; paho's own network thread (`loop_start`) sends them, reconnects a
lost broker with exponential backoff and re-sends what the broker had not acknowledged. After
every (re)connect the sink publishes `online`, the discovery configs and the current state again,
so a broker restarted without persistence gets its retained messages back.

The password never leaves this module: `describe()`, `repr()`, log lines and errors show the URL
with `***` in its place. paho-mqtt is an optional dependency (`pip install "maskedge[mqtt]"`);
importing this module works without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from edge.core.redact import redact_url
from edge.sinks.outputs import OutputError
from edge.sinks.queue import DropOldest
from edge.tracking.alerts import unmasked_labels
from edge.tracking.events import event_json

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "maskedge"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
DISCOVERY_PREFIX = "homeassistant"
DEFAULT_LABELS = ("with_mask", "without_mask", "mask_weared_incorrect")
INSTALL_HINT = 'pip install "maskedge[mqtt]"'
ONLINE, OFFLINE = "online", "offline"
MAX_INFLIGHT = 20  # messages handed to paho and not yet acknowledged by the broker
QOS = 1

LABEL_NAMES = {"with_mask": "People with mask", "without_mask": "People without mask",
               "mask_weared_incorrect": "People with mask worn incorrectly"}


class MqttError(OutputError):
    """The MQTT output cannot be set up (one-line message, never with a password)."""


@dataclass(frozen=True)
class MqttTarget:
    """Where to publish: broker address, credentials, TLS and the topic prefix."""

    host: str
    port: int = 1883
    prefix: str = DEFAULT_PREFIX
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def describe(self) -> str:
        """The URL for people and logs: the password is shown as `***`."""
        user = ""
        if self.username is not None:
            user = self.username + (":***" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{user}{host}:{self.port}/{self.prefix}"

    def __str__(self) -> str:
        return self.describe()


def parse_mqtt_url(text: str) -> MqttTarget:
    """`mqtt://[user:pass@]HOST[:PORT][/PREFIX]` (or `mqtts://`; a bare HOST[:PORT] means mqtt)."""
    shown = redact_url(text)
    url = text if "://" in text else f"mqtt://{text}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MqttError(f"bad --mqtt URL {shown}: expected "
                        "mqtt://[user:pass@]HOST[:PORT][/PREFIX]") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise MqttError(f"bad --mqtt URL {shown}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise MqttError(f"bad --mqtt URL {shown}: no broker host")
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if "+" in prefix or "//" in prefix or "#" in url or "?" in url:
        raise MqttError(f"bad --mqtt URL {shown}: the topic prefix cannot hold + # // ? or #")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return MqttTarget(parts.hostname, port or DEFAULT_PORTS[scheme], prefix, username, password,
                      tls=scheme == "mqtts")


def slugify(text: str) -> str:
    """A topic- and Home Assistant-safe id: lowercase letters, digits, `-` and `_`."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.strip().lower()).strip("-_")
    return slug or "maskedge"


def default_device_name() -> str:
    """This machine's hostname, slugified (the first label of a dotted name)."""
    return slugify(socket.gethostname().split(".")[0])


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("maskedge")
    except Exception:  # not installed (running from a source tree)
        return "0"


@dataclass(frozen=True)
class Topics:
    base: str

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def alert(self) -> str:
        return f"{self.base}/alert"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def unmasked(self) -> str:
        return f"{self.base}/unmasked"


def discovery_configs(topics: Topics, device: str, labels: Sequence[str],
                      discovery_prefix: str = DISCOVERY_PREFIX) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery: {config topic: payload} for every entity of the device."""
    ident = f"maskedge_{device}"
    common = {
        "availability_topic": topics.status, "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": {"identifiers": [ident], "name": f"maskedge {device}",
                   "manufacturer": "maskedge", "model": "face-mask detector",
                   "sw_version": _version()},
        "origin": {"name": "maskedge", "sw_version": _version()},
    }
    entities: list[tuple[str, str, dict[str, Any]]] = []
    for label in labels:
        entities.append(("sensor", f"people_{slugify(label)}", {
            "name": LABEL_NAMES.get(label, f"People {label.replace('_', ' ')}"),
            "state_topic": topics.stats, "unit_of_measurement": "people",
            "state_class": "total_increasing", "icon": "mdi:account-multiple",
            "value_template": f"{{{{ value_json.people['{label}'] | default(0) }}}}"}))
    entities.append(("sensor", "compliance", {
        "name": "Mask compliance", "state_topic": topics.stats, "unit_of_measurement": "%",
        "state_class": "measurement", "icon": "mdi:face-mask",
        "value_template": "{{ none if value_json.compliance is none "
                          "else (value_json.compliance * 100) | round(1) }}"}))
    entities.append(("sensor", "fps", {
        "name": "Frames per second", "state_topic": topics.stats, "unit_of_measurement": "fps",
        "state_class": "measurement", "entity_category": "diagnostic",
        "value_template": "{{ value_json.fps }}"}))
    entities.append(("binary_sensor", "unmasked_now", {
        "name": "Unmasked person now", "state_topic": topics.unmasked,
        "payload_on": "ON", "payload_off": "OFF", "device_class": "problem",
        "icon": "mdi:face-mask-outline"}))
    configs = {}
    for component, obj, extra in entities:
        topic = f"{discovery_prefix}/{component}/{device}/{obj}/config"
        entity_id = f"{component}.maskedge_{device}_{obj}".replace("-", "_")
        configs[topic] = {**extra, "unique_id": f"{ident}_{obj}",
                          "default_entity_id": entity_id, **common}
    return configs


def _import_paho() -> Any:
    try:
        import paho.mqtt.client as paho
    except ImportError:
        raise MqttError(f"--mqtt needs paho-mqtt: {INSTALL_HINT}") from None
    if not hasattr(paho, "CallbackAPIVersion"):
        raise MqttError(f"--mqtt needs paho-mqtt 2 or newer: {INSTALL_HINT}")
    return paho


class MqttSink:
    """Alerts, stats and "unmasked now" to an MQTT broker; see the module docstring."""

    OUTPUT_NAME = "mqtt"  # its counters' name in the run summary

    needs_image = False
    FLUSH_TIMEOUT = 3.0  # seconds `close` waits for queued messages to reach the broker
    KEEPALIVE = 30

    def __init__(self, url: str | MqttTarget, device: str | None = None, *,
                 labels: Sequence[str] = DEFAULT_LABELS,
                 alert_labels: Sequence[str] | None = None, queue_size: int = 1000,
                 discovery_prefix: str = DISCOVERY_PREFIX,
                 reconnect_delay: tuple[int, int] = (1, 30)) -> None:
        paho = _import_paho()
        if queue_size < 1:
            raise MqttError("the MQTT queue needs room for at least one message")
        self.target = url if isinstance(url, MqttTarget) else parse_mqtt_url(url)
        self.device = slugify(device) if device else default_device_name()
        self.topics = Topics(f"{self.target.prefix}/{self.device}")
        self.alert_labels = frozenset(unmasked_labels(labels) if alert_labels is None
                                      else alert_labels)
        self.discovery = discovery_configs(self.topics, self.device, labels, discovery_prefix)
        self._ha_status = f"{discovery_prefix}/status"
        self._queue: DropOldest[tuple[str, str]] = DropOldest(
            queue_size, "MQTT queue full (%d messages): dropping the oldest")
        self._state: dict[str, str] = {}     # retained topic -> newest value not yet sent
        self._retained: dict[str, str] = {}  # retained topic -> newest value sent
        self._cond = threading.Condition()
        self._connected = self._stopping = self._closed = False
        self._inflight = 0
        self._unmasked: bool | None = None
        self.published = self.reconnects = self.connects = self.unsent = 0
        self.last_error: str | None = None
        self._client = self._make_client(paho, reconnect_delay)
        self._drainer = threading.Thread(target=self._drain, name=f"mqtt-{self.device}",
                                         daemon=True)
        self._drainer.start()
        self._client.connect_async(self.target.host, self.target.port, keepalive=self.KEEPALIVE)
        self._client.loop_start()

    def _make_client(self, paho: Any, reconnect_delay: tuple[int, int]) -> Any:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id=f"maskedge-{self.device}-{os.getpid()}")
        if self.target.username is not None:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            try:
                client.tls_set()
            except (OSError, ValueError) as exc:
                raise MqttError(f"cannot set up TLS for {self.target}: {exc}") from None
        client.will_set(self.topics.status, OFFLINE, qos=QOS, retain=True)
        client.reconnect_delay_set(*reconnect_delay)
        client.connect_timeout = 3.0  # bounds `close` when the broker host does not answer
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # -- what the frame loop calls: memory only, never the network ----------------------------

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        unmasked = any(face.get("label") in self.alert_labels and face.get("in_zone", True)
                       for face in record.get("faces", ()))
        if unmasked != self._unmasked:
            self._unmasked = unmasked
            self._set_state(self.topics.unmasked, "ON" if unmasked else "OFF")

    def event(self, record: dict[str, Any]) -> None:
        kind = record.get("event")
        if kind == "alert":
            self._enqueue(self.topics.alert, event_json(record))
        elif kind == "stats":
            self._set_state(self.topics.stats, event_json(record))

    def _enqueue(self, topic: str, payload: str) -> None:
        with self._cond:
            if self._closed:
                return
            self._queue.append((topic, payload))
            self._cond.notify_all()

    def _set_state(self, topic: str, payload: str) -> None:
        with self._cond:
            if self._closed:
                return
            self._state[topic] = payload
            self._cond.notify_all()

    # -- the drain thread: hands messages to paho while connected ------------------------------

    def _ready(self) -> bool:
        return self._stopping or (self._connected and self._inflight < MAX_INFLIGHT
                                  and bool(self._state or self._queue))

    def _drain(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._ready, timeout=1.0)
                if self._stopping:
                    return
                if not self._ready():
                    continue
                if self._state:
                    topic = next(iter(self._state))
                    payload, retain = self._state.pop(topic), True
                    self._retained[topic] = payload
                else:
                    (topic, payload), retain = self._queue.popleft(), False
            self._publish(topic, payload, retain)

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        """Hand one QoS 1 message to paho (never called with `_cond` held: paho calls
        `_on_publish` with its own lock held)."""
        with self._cond:
            self._inflight += 1
        try:
            self._client.publish(topic, payload, qos=QOS, retain=retain)
        except (ValueError, OSError) as exc:  # paho keeps QoS 1 messages when not connected
            with self._cond:
                self._inflight -= 1
            self._problem(f"cannot publish to {topic}: {exc}")

    # -- paho callbacks (paho's network thread) -------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            self._problem(f"MQTT broker {self.target} refused the connection: {reason_code}; "
                          "retrying")
            return
        with self._cond:
            self.connects += 1
            self.reconnects += self.connects > 1
            # A restarted broker may have lost the retained state: send it again (newer values
            # not sent yet win).
            self._state = {**self._retained, **self._state}
        if self.last_error is not None or self.connects > 1:
            log.warning("MQTT connected to %s", self.target)
        self.last_error = None
        client.subscribe(self._ha_status, qos=QOS)
        self._announce()
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def _announce(self) -> None:
        """Availability and discovery configs (retained), after every connect and whenever
        Home Assistant comes online."""
        self._publish(self.topics.status, ONLINE, retain=True)
        for topic, config in self.discovery.items():
            self._publish(topic, event_json(config), retain=True)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._problem(f"cannot reach the MQTT broker {self.target}; retrying")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            stopping = self._stopping
        if was_connected and not stopping:
            self._problem(f"lost the MQTT broker {self.target} ({reason_code}); reconnecting")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        with self._cond:
            self._inflight = max(0, self._inflight - 1)
            self.published += 1
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self._ha_status and message.payload == ONLINE.encode():
            with self._cond:  # Home Assistant restarted: it needs the configs and state again
                self._state = {**self._retained, **self._state}
                self._cond.notify_all()
            self._announce()

    def _problem(self, message: str) -> None:
        if message != self.last_error:
            log.warning(message)
        self.last_error = message

    # -- for the runner ----------------------------------------------------------------------

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the broker; True when connected."""
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until everything queued is acknowledged by the broker."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def _idle(self) -> bool:
        return not (self._queue or self._state or self._inflight)

    @property
    def dropped(self) -> int:
        """Alerts pushed out of a full queue (the oldest first)."""
        return self._queue.dropped

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def pending(self) -> int:
        """Messages queued or sent and not yet acknowledged."""
        with self._cond:
            return len(self._queue) + len(self._state) + self._inflight

    def describe(self) -> str:
        """`mqtt://user:***@host:port/prefix as <device>`: safe to print."""
        return f"{self.target.describe()} as {self.device}"

    def __repr__(self) -> str:
        return f"MqttSink({self.target.describe()!r}, device={self.device!r})"

    def summary(self) -> dict[str, Any]:
        """Counters for the run summary (no credentials)."""
        return {"mqtt": self.describe(), "connected": self._connected,
                "published": self.published, "dropped": self.dropped,
                "reconnects": self.reconnects, "pending": self.pending,
                "unsent": self.unsent, "error": self.last_error}

    def close(self, ok: bool = True) -> None:
        """Send what is queued (up to FLUSH_TIMEOUT seconds), publish `offline`, disconnect."""
        if self._closed:
            return
        if self._unmasked:
            self._set_state(self.topics.unmasked, "OFF")
        deadline = time.monotonic() + self.FLUSH_TIMEOUT
        with self._cond:
            self._closed = True
            self._cond.wait_for(self._idle, self.FLUSH_TIMEOUT)
            self._stopping = True
            connected = self._connected
            self.unsent = len(self._queue) + len(self._state) + self._inflight
            self._cond.notify_all()
        if self.unsent:
            log.warning("MQTT: %d messages not delivered to %s", self.unsent, self.target)
        if connected:
            info = self._client.publish(self.topics.status, OFFLINE, qos=QOS, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=max(0.2, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        self._drainer.join(timeout=2.0)
