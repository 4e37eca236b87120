"""Issue 10 end to end: `edge run` as a subprocess, with MQTT (a real mosquitto with a password),
Home Assistant discovery, a webhook receiver, snapshots, stats and JSON lines, all at once; and
`--serve` beyond loopback refused without credentials, accepted with MASKEDGE_SERVE_AUTH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import DATA_VOC, ROOT
from support.receivers import MqttWatcher, Receiver, mosquitto_or_skip

from benchmarks.reliability.tools import Broker
from edge.sinks.snapshots import SNAPSHOT_NAME
from edge.video.videomaker import make_video

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is in the dev extra")

MODEL = ROOT / "models" / "face_mask_2c_int8.tflite"
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"shipped model {MODEL} not built")

#: face-mask-voc photos of one or two people without masks (faces 60-150 px wide).
UNMASKED = ("maksssksksss128.jpg", "maksssksksss217.jpg", "maksssksksss289.jpg",
            "maksssksksss343.jpg", "maksssksksss348.jpg", "maksssksksss442.jpg",
            "maksssksksss455.jpg", "maksssksksss48.jpg")
HOLD = 4  # frames per photo
GAP = 3  # blank photos (of HOLD frames each) between two photos: longer than a track's max-age
USER, PASSWORD = "maskedge", "Pw-9f3kq-s3cr3t"
LOGIN = (USER, PASSWORD)
KEEP = 5


@pytest.fixture(scope="module")
def unmasked_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x480 video of unmasked people, each photo held for HOLD frames, with blank frames
    between photos so that every person gets a new track."""
    folder = tmp_path_factory.mktemp("video")
    blank = folder / "blank.png"
    cv2.imwrite(str(blank), np.zeros((480, 640, 3), np.uint8))
    photos: list[Path] = []
    for name in UNMASKED:
        photos += [blank] * GAP * bool(photos) + [DATA_VOC / "images" / name]
    return make_video(photos, folder / "unmasked.mp4", (640, 480), fps=10, hold=HOLD).path


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(mosquitto_or_skip(), folder, users={USER: PASSWORD})
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def hook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def edge_run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MASKEDGE_SERVE_AUTH", "MASKEDGE_MQTT", "MASKEDGE_WEBHOOK")}
    return subprocess.run([sys.executable, "-m", "edge", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**environment, "PYTHONPATH": str(ROOT), **(env or {})})


def check_snapshots(alerts: list[dict[str, Any]], folder: Path) -> None:
    """Every alert names a face and a frame JPEG in `folder`; the newest KEEP alerts' files
    exist, older ones were deleted by --snapshots-keep."""
    for a in alerts:
        assert set(a["snapshot"]) == {"face", "frame"}
        for kind, path in a["snapshot"].items():
            match = SNAPSHOT_NAME.match(Path(path).name)
            assert Path(path).parent == folder.absolute() and match and match[2] == kind
            assert f"_track{a['track']}_" in path
    kept = alerts[-KEEP:]
    assert all(Path(p).is_file() and Path(p).stat().st_size > 0
               for a in kept for p in a["snapshot"].values())
    assert not any(Path(p).exists() for a in alerts[:-KEEP] for p in a["snapshot"].values())
    assert len(list(folder.iterdir())) == 2 * len(kept)


def check_mqtt(live: MqttWatcher, after: MqttWatcher, lines: list[dict[str, Any]]) -> None:
    """What the broker saw live and what it keeps (retained) after the run."""
    alerts = [x for x in lines if x.get("event") == "alert"]
    stats = [x for x in lines if x.get("event") == "stats"]
    base = "maskedge/door"
    assert live.wait(lambda: len(live.on(f"{base}/alert")) >= len(alerts)
                     and live.on(f"{base}/status")[-1:] == ["offline"])
    assert [json.loads(p) for p in live.on(f"{base}/alert")] == alerts
    status = live.on(f"{base}/status")
    assert status[0] == "online" and status[-1] == "offline", status
    expected = {f"{base}/{t}" for t in ("status", "stats", "unmasked")} | {
        *(f"homeassistant/sensor/door/{obj}/config" for obj in
          ("people_with_mask", "people_without_mask", "people_mask_weared_incorrect",
           "compliance", "fps")),
        "homeassistant/binary_sensor/door/unmasked_now/config"}
    assert after.wait(lambda: set(after.retained()) >= expected), sorted(after.retained())
    retained = after.retained()
    assert set(retained) == expected
    assert retained[f"{base}/status"] == "offline"
    assert json.loads(retained[f"{base}/stats"]) == stats[-1]
    assert retained[f"{base}/unmasked"] == "OFF"
    discovery = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    for config in discovery.values():
        assert config["availability_topic"] == f"{base}/status"
        assert config["device"]["identifiers"] == ["maskedge_door"]
        assert config["state_topic"] in (f"{base}/stats", f"{base}/unmasked")


def test_mqtt_webhook_snapshots_stats_json_through_the_cli(
        unmasked_video: Path, secured_broker: Broker, hook_receiver: Receiver,
        tmp_path: Path) -> None:
    live = MqttWatcher(secured_broker.port, login=LOGIN)
    events, shots = tmp_path / "events.jsonl", tmp_path / "shots"
    mqtt_url = f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{secured_broker.port}/maskedge"
    result = edge_run([
        "--source", str(unmasked_video), "--alert-after", "2", "--stats-every", "0.05",
        "--mqtt", mqtt_url, "--device-name", "door", "--webhook", hook_receiver.url(),
        "--snapshots", str(shots), "--snapshots-keep", str(KEEP), "--json", str(events),
        "--json-summary"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    text = events.read_text()
    lines = [json.loads(x) for x in text.splitlines()]
    alerts = [x for x in lines if x.get("event") == "alert"]
    assert summary["frames"] == (len(UNMASKED) * (GAP + 1) - GAP) * HOLD
    assert summary["alerts"] == len(alerts)
    assert len(alerts) > KEEP, f"want more alerts than --snapshots-keep, got {len(alerts)}"
    assert all(a["label"] == "without_mask" and a["frames"] == 2 for a in alerts)
    assert len({a["track"] for a in alerts}) == len(alerts)
    assert sum(x.get("event") == "stats" for x in lines) >= 2  # periodic, and at the end
    check_snapshots(alerts, shots)

    after = MqttWatcher(secured_broker.port, login=LOGIN)  # late: gets only what is retained
    try:
        check_mqtt(live, after, lines)
    finally:
        live.close()
        after.close()

    assert hook_receiver.wait(len(alerts))
    assert [r["json"] for r in hook_receiver.requests] == alerts

    outputs = summary["outputs"]
    assert set(outputs) == {"mqtt", "webhook", "snapshots"}
    assert outputs["mqtt"]["mqtt"] == (f"mqtt://{USER}:***@127.0.0.1:{secured_broker.port}"
                                       "/maskedge as door")
    assert outputs["mqtt"]["connected"] is False  # closed: disconnected at the end
    assert outputs["mqtt"]["published"] >= len(alerts) + 6 + 2
    assert {outputs["mqtt"][k] for k in ("dropped", "unsent", "pending")} == {0}
    assert outputs["webhook"]["sent"] == len(alerts)
    assert {outputs["webhook"][k] for k in ("failed", "dropped", "unsent")} == {0}
    assert outputs["snapshots"]["written"] == len(alerts)  # counted in alerts (JPEG pairs)
    assert outputs["snapshots"]["deleted"] == len(alerts) - KEEP
    assert outputs["snapshots"]["failed"] == 0
    assert f"publishing to mqtt://{USER}:***@127.0.0.1" in result.stderr
    for where in (result.stdout, result.stderr, text, json.dumps(summary)):
        assert PASSWORD not in where


def test_serve_beyond_loopback_needs_credentials(unmasked_video: Path, tmp_path: Path) -> None:
    args = ["--source", str(unmasked_video), "--serve", "0.0.0.0:0", "--max-frames", "2",
            "--quiet"]
    refused = edge_run(args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge: error: --serve 0.0.0.0"), lines
    assert "--serve-auth" in lines[0] and refused.stdout == ""

    secret = "Tok-77x-secret"
    served = edge_run(args, cwd=tmp_path, env={"MASKEDGE_SERVE_AUTH": f"viewer:{secret}"})
    assert served.returncode == 0, served.stderr
    assert "(visible to the network, login required)" in served.stderr
    assert "frames      2 processed" in served.stdout
    assert secret not in served.stdout + served.stderr
