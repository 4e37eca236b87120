"""edge.sinks.mqtt against a real mosquitto on a free loopback port, watched by a paho
subscriber."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.receivers import MqttWatcher, mosquitto_or_skip

from benchmarks.reliability.tools import Broker, free_port
from edge.core.redact import redact_url
from edge.sinks import mqtt as edge_mqtt
from edge.sinks.mqtt import MqttError, MqttSink, parse_mqtt_url, slugify

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is in the dev extra")

ROOT = Path(__file__).resolve().parents[2]
LABELS = ("with_mask", "without_mask", "mask_weared_incorrect")


@pytest.fixture(scope="module")
def mosquitto_exe() -> str:
    return mosquitto_or_skip()


@pytest.fixture
def broker(mosquitto_exe: str, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(mosquitto_exe, tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def persistent_broker(mosquitto_exe: str, tmp_path: Path) -> Iterator[Broker]:
    """Keeps a subscriber's session (and what was published to it) across a restart."""
    b = Broker(mosquitto_exe, tmp_path, persistence=True)
    b.start()
    yield b
    b.stop()


def alert(n: int, label: str = "without_mask") -> dict[str, Any]:
    return {"event": "alert", "time": 1764490500.123 + n, "frame": n, "track": n,
            "label": label, "score": 0.91, "box": [10.0, 20.0, 60.0, 90.0], "frames": 5}


def stats(with_mask: int, without_mask: int) -> dict[str, Any]:
    total = with_mask + without_mask
    return {"event": "stats", "time": 1764490510.0, "frame": 100,
            "people": {"with_mask": with_mask, "without_mask": without_mask,
                       "mask_weared_incorrect": 0},
            "total": total, "compliance": with_mask / total if total else None,
            "now": {"with_mask": 1}, "fps": 14.5}


def frame(*labels: str) -> dict[str, Any]:
    return {"frame": 1, "time": 1.0, "faces": [
        {"box": [0, 0, 10, 10], "track": i, "label": label, "score": 0.9, "in_zone": True}
        for i, label in enumerate(labels)], "fps": 10.0, "timings_ms": {}}


# -- no broker needed ---------------------------------------------------------------------------

def test_url_parsing_and_redaction() -> None:
    t = parse_mqtt_url("mqtt://cam:s3cr%40t@broker.lan:1884/home/masks")
    assert (t.host, t.port, t.prefix, t.username, t.password) == (
        "broker.lan", 1884, "home/masks", "cam", "s3cr@t")
    assert t.describe() == "mqtt://cam:***@broker.lan:1884/home/masks"
    assert "s3cr" not in repr(t) and "s3cr" not in str(t)
    assert parse_mqtt_url("mqtt://h").prefix == "maskedge"
    assert parse_mqtt_url("h:1999").port == 1999
    assert parse_mqtt_url("mqtts://h").port == 8883 and parse_mqtt_url("mqtts://h").tls
    for bad in ("http://u:hunter2@h/x", "mqtt://u:hunter2@h:notaport", "mqtt://u:hunter2@h/a/#",
                "mqtt://u:hunter2@:1883"):
        with pytest.raises(MqttError) as err:
            parse_mqtt_url(bad)
        assert "hunter2" not in str(err.value) and "***" in str(err.value)
    assert redact_url("x mqtt://a:b@c/d") == "x mqtt://a:***@c/d"
    assert slugify("Kitchen Cam.local") == "kitchen-cam-local" and slugify("!!") == "maskedge"


def test_missing_paho_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(MqttError, match=r'pip install "maskedge\[mqtt\]"'):
        MqttSink("mqtt://127.0.0.1:1", "cam")
    # and importing edge never needs paho
    code = ("import sys; sys.modules['paho'] = None; import edge.sinks.mqtt, edge.sinks.outputs; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_queue_and_close_without_broker_never_block() -> None:
    sink = MqttSink(f"mqtt://127.0.0.1:{free_port()}", "nobroker", queue_size=5)
    sink.FLUSH_TIMEOUT = 0.5
    times = []
    for n in range(200):
        start = time.perf_counter()
        sink.event(alert(n))
        times.append(time.perf_counter() - start)
    times.sort()
    assert times[len(times) // 2] < 1e-4 and times[int(len(times) * 0.99)] < 1e-3, times[-5:]
    assert sink.dropped == 195 and sink.summary()["pending"] == 5
    assert [json.loads(p)["track"] for _, p in sink._queue] == [195, 196, 197, 198, 199]
    start = time.monotonic()
    sink.close()
    assert time.monotonic() - start < 3.0
    assert sink.unsent == 5 and "cannot reach" in (sink.last_error or "")


# -- against mosquitto --------------------------------------------------------------------------

def test_discovery_alerts_stats_status(broker: Broker) -> None:
    live = MqttWatcher(broker.port)
    sink = MqttSink(broker.url + "/maskedge", "Test Cam", labels=LABELS)
    assert sink.device == "test-cam" and sink.wait_connected(10)
    base = "maskedge/test-cam"
    sink.event(stats(3, 1))
    # "unmasked now" goes out on change only (retained state: a backlog keeps the newest value)
    for labels in [("with_mask",), ("with_mask", "without_mask"), ("without_mask",), ()]:
        sink.write(frame(*labels), None)
        assert sink.wait_idle(10)
    sink.event(alert(7))
    assert sink.wait_idle(10)
    assert live.wait(lambda: len(live.on(f"{base}/unmasked")) >= 3
                     and len(live.on(f"{base}/alert")) >= 1)
    assert live.on(f"{base}/unmasked") == ["OFF", "ON", "OFF"]
    assert [json.loads(p) for p in live.on(f"{base}/alert")] == [alert(7)]
    assert live.on(f"{base}/status") == ["online"]

    late = MqttWatcher(broker.port)  # sees only what is retained
    sensors = ("people_with_mask", "people_without_mask", "people_mask_weared_incorrect",
               "compliance", "fps")
    expected = {f"homeassistant/sensor/test-cam/{o}/config" for o in sensors}
    expected.add("homeassistant/binary_sensor/test-cam/unmasked_now/config")
    assert late.wait(lambda: expected <= set(late.retained())
                     and f"{base}/stats" in late.retained())
    retained = late.retained()
    assert f"{base}/alert" not in retained
    assert retained[f"{base}/status"] == "online" and retained[f"{base}/unmasked"] == "OFF"
    assert json.loads(retained[f"{base}/stats"]) == stats(3, 1)
    configs = {t: json.loads(p) for t, p in retained.items() if t in expected}
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(devices) == 1 and configs[next(iter(expected))]["device"]["identifiers"] == [
        "maskedge_test-cam"]
    for topic, config in configs.items():
        assert config["availability_topic"] == f"{base}/status"
        assert config["unique_id"] == f"maskedge_test-cam_{topic.split('/')[3]}"
    people = configs["homeassistant/sensor/test-cam/people_without_mask/config"]
    assert people["state_topic"] == f"{base}/stats"
    assert people["value_template"] == "{{ value_json.people['without_mask'] | default(0) }}"
    assert "compliance" in configs["homeassistant/sensor/test-cam/compliance/config"][
        "value_template"]
    binary = configs["homeassistant/binary_sensor/test-cam/unmasked_now/config"]
    assert (binary["state_topic"], binary["payload_on"]) == (f"{base}/unmasked", "ON")

    sink.close()
    assert live.wait(lambda: live.on(f"{base}/status") == ["online", "offline"])
    summary = sink.summary()
    assert summary["dropped"] == 0 and summary["published"] >= 10 and summary["unsent"] == 0
    live.close()
    late.close()


def test_credentials_in_url_and_never_shown(mosquitto_exe: str, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(mosquitto_exe, tmp_path, users={"cam": "pa55-word", "watcher": "w"})
    broker.start()
    try:
        caplog.set_level(logging.INFO)
        watcher = paho.Client(paho.CallbackAPIVersion.VERSION2)
        watcher.username_pw_set("watcher", "w")
        got: list[str] = []
        watcher.on_message = lambda c, u, m: got.append(m.topic)
        watcher.connect("127.0.0.1", broker.port)
        watcher.subscribe("secure/#", qos=1)
        watcher.loop_start()
        good = MqttSink(f"mqtt://cam:pa55-word@127.0.0.1:{broker.port}/secure", "cam")
        assert good.wait_connected(10)
        good.event(alert(1))
        assert good.wait_idle(10)
        deadline = time.monotonic() + 5
        while "secure/cam/alert" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "secure/cam/alert" in got
        bad = MqttSink(f"mqtt://cam:wrong-pass@127.0.0.1:{broker.port}/secure", "cam2")
        deadline = time.monotonic() + 5
        while bad.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not bad.connected and "refused" in (bad.last_error or "")
        shown = [repr(good), good.describe(), json.dumps(good.summary()), repr(bad),
                 json.dumps(bad.summary()), caplog.text]
        bad.close()
        good.close()
        watcher.loop_stop()
        shown.append(caplog.text)
        assert good.describe() == f"mqtt://cam:***@127.0.0.1:{broker.port}/secure as cam"
        for text in shown:
            assert "pa55-word" not in text and "wrong-pass" not in text
    finally:
        broker.stop()


VICTIM = """
import sys, time
from edge.sinks.mqtt import MqttSink
sink = MqttSink(sys.argv[1], "victim")
assert sink.wait_connected(10) and sink.wait_idle(10)
print("ready", flush=True)
time.sleep(60)
"""


def test_last_will_when_the_process_dies(broker: Broker) -> None:
    sub = MqttWatcher(broker.port, "maskedge/victim/status")
    proc = subprocess.Popen([sys.executable, "-c", VICTIM, broker.url], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert sub.wait(lambda: sub.on("maskedge/victim/status") == ["online"])
        proc.kill()
        assert sub.wait(lambda: sub.on("maskedge/victim/status") == ["online", "offline"], 5)
    finally:
        proc.kill()
        proc.wait()
        sub.close()


def _restart_with_alerts(broker: Broker, sink: MqttSink, count: int) -> list[float]:
    """Stop the broker, queue `count` alerts while it is down (timing each call), restart it."""
    broker.stop()
    deadline = time.monotonic() + 5
    while sink.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sink.connected
    times = []
    for n in range(count):
        start = time.perf_counter()
        sink.event(alert(n))
        times.append(time.perf_counter() - start)
    broker.start()
    return times


def test_broker_restart_loses_no_queued_alert(persistent_broker: Broker) -> None:
    sub = MqttWatcher(persistent_broker.port, "maskedge/cam/alert", "restart-watcher",
                     persistent=True)
    sink = MqttSink(persistent_broker.url, "cam", queue_size=50, reconnect_delay=(1, 2))
    assert sink.wait_connected(10)
    sink.event(alert(100))
    assert sink.wait_idle(10)
    times = _restart_with_alerts(persistent_broker, sink, 30)
    assert max(times) < 1e-3 and sorted(times)[15] < 1e-4, times
    assert sink.wait_connected(15) and sink.wait_idle(10)
    assert sub.wait(lambda: len(sub.on("maskedge/cam/alert")) >= 31, 15)
    tracks = [json.loads(p)["track"] for p in sub.on("maskedge/cam/alert")]
    assert sorted(set(tracks)) == [*range(30), 100]
    assert sink.reconnects == 1 and sink.dropped == 0
    sink.close()
    sub.close()


def test_queue_bound_drops_the_oldest_while_the_broker_is_down(
        persistent_broker: Broker) -> None:
    sub = MqttWatcher(persistent_broker.port, "maskedge/cam/alert", "bound-watcher",
                     persistent=True)
    sink = MqttSink(persistent_broker.url, "cam", queue_size=5, reconnect_delay=(1, 2))
    assert sink.wait_connected(10)
    _restart_with_alerts(persistent_broker, sink, 12)
    assert sink.dropped == 7
    assert sink.wait_connected(15) and sink.wait_idle(10)
    assert sub.wait(lambda: len(sub.on("maskedge/cam/alert")) >= 5, 15)
    time.sleep(0.2)
    assert sorted({json.loads(p)["track"] for p in sub.on("maskedge/cam/alert")}) == [
        7, 8, 9, 10, 11]
    assert sink.summary()["dropped"] == 7
    sink.close()
    sub.close()


def test_module_has_no_paho_import_at_top() -> None:
    assert "paho" not in vars(edge_mqtt)
