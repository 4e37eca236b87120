"""`edge` end to end: a video made from face-mask-voc photos through the shipped model, with the
annotated video, JSON lines, MJPEG page, alerts, signals and every user error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DATA_VOC, DETECTORS, ROOT
from typer.testing import CliRunner

from edge.cli import app
from edge.core.boxes import iou_matrix
from edge.inference.evaluate import load_voc
from edge.sinks.dashboard import BOUNDARY
from edge.sinks.outputs import fit_transform

MODEL = Path(os.environ.get("MASKEDGE_MODEL") or ROOT / "models" / "face_mask_2c_int8.tflite")
YUNET = str(DETECTORS / "face_detection_yunet_2023mar.onnx")
pytestmark = pytest.mark.skipif(not MODEL.is_file(),
                                reason=f"shipped model {MODEL} not built yet")
SIZE = (640, 480)
PHOTOS = 24


@pytest.fixture(scope="module")
def voc_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x480 video of the first face-mask-voc photos, one frame each, made by the CLI."""
    folder = tmp_path_factory.mktemp("voc")
    photos = folder / "photos"
    photos.mkdir()
    for item in load_voc(DATA_VOC, limit=PHOTOS):
        (photos / item.path.name).symlink_to(item.path)
    video = folder / "voc.mp4"
    result = CliRunner().invoke(app, ["make-video", str(photos), str(video), "--fps", "10"])
    assert result.exit_code == 0, result.output
    assert f"{PHOTOS} frames from {PHOTOS} photos" in result.output
    return video


def edge(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge", *args]


def test_video_of_voc_photos_end_to_end(voc_video: Path, tmp_path: Path) -> None:
    events, annotated = tmp_path / "events.jsonl", tmp_path / "annotated.mp4"
    result = CliRunner().invoke(app, [
        "run", "--source", str(voc_video), "--detector-model", YUNET, "--detect-width", "640",
        "--detect-every", "1",  # each frame is another photo: no frame may keep the last boxes
        "--save", str(annotated), "--json", str(events), "--json-summary", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == PHOTOS and summary["dropped"] == 0
    assert summary["stopped_by"] == "end of stream" and summary["fps"] > 0
    three = {"with_mask", "without_mask", "mask_weared_incorrect"}  # the default model's
    assert set(summary["faces"]) == three and set(summary["people"]) == three
    assert summary["compliance"] is None or 0 <= summary["compliance"] <= 1
    assert set(summary["timings_ms"]) >= {"capture", "detect", "classify", "track", "draw",
                                          "output"}

    cap = cv2.VideoCapture(str(annotated))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == PHOTOS and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == SIZE[0]

    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(PHOTOS))
    assert all(set(r) == {"frame", "time", "faces", "fps", "timings_ms"} for r in records)
    assert all(set(f) == {"box", "track", "label", "score", "raw_label", "raw_score",
                          "detector_score", "in_zone"} for r in records for f in r["faces"])
    # Faces in the video match the photos' annotations, moved into the 640x480 frame.
    found = labelled = total = 0
    for item, record in zip(load_voc(DATA_VOC, limit=PHOTOS), records, strict=True):
        h, w = cv2.imread(str(item.path)).shape[:2]
        scale, x, y, _, _ = fit_transform((w, h), SIZE)
        known = [a for a in item.annotations if a.label in ("with_mask", "without_mask")]
        if not known or not record["faces"]:
            total += len(known)
            continue
        truth = np.array([a.box for a in known]) * scale + [x, y, x, y]
        boxes = np.array([f["box"] for f in record["faces"]])
        ious = iou_matrix(truth, boxes)
        for i, ann in enumerate(known):
            total += 1
            j = int(ious[i].argmax())
            if ious[i, j] >= 0.5:
                found += 1
                labelled += record["faces"][j]["label"] == ann.label
    assert found / total >= 0.5, (found, total)
    assert labelled / found >= 0.7, (labelled, found)


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)


def wait_for_line(stream, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if needle in line:
            return line
        if not line:
            time.sleep(0.05)
    raise AssertionError(f"no line with {needle!r} within {timeout} s")


def test_serve_mjpeg_page_then_sigterm_stops_cleanly(voc_video: Path, tmp_path: Path) -> None:
    saved = tmp_path / "live.mp4"
    proc = start(edge("run", "--source", str(voc_video), "--realtime", "--loop",
                      "--detector-model", YUNET, "--serve", "127.0.0.1:0", "--save", str(saved),
                      "--quiet"), tmp_path)
    try:
        url = wait_for_line(proc.stderr, "serving http://").split()[1]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert '<img src="/stream.mjpg"' in page.read().decode()
        with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as stream:
            assert stream.readline().strip() == f"--{BOUNDARY}".encode()
            headers = {}
            while (line := stream.readline().strip()):
                key, value = line.decode().split(":", 1)
                headers[key.lower()] = value.strip()
            jpeg = stream.read(int(headers["content-length"]))
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (SIZE[1], SIZE[0], 3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by  signal SIGTERM" in out and "Traceback" not in err
    cap = cv2.VideoCapture(str(saved))
    assert cap.read()[0]  # the video was finalised and renamed into place
    assert [p.name for p in tmp_path.iterdir()] == ["live.mp4"]


def test_sigint_prints_the_summary_and_exits_zero(voc_video: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = start(edge("run", "--source", str(voc_video), "--realtime", "--loop",
                      "--detector-model", YUNET, "--json", "-", "--json-summary"), tmp_path)
    try:
        wait_for_line(proc.stdout, '"frame":2,')
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(err.strip().splitlines()[-1])  # stdout carries the JSON lines
    assert summary["stopped_by"] == "signal SIGINT" and summary["frames"] >= 3
    assert summary["fps"] > 0 and sum(summary["faces"].values()) > 0
    assert not events.exists() and all(json.loads(x)["frame"] >= 0 for x in out.splitlines())


def test_alert_after_n_frames_and_unreadable_frames_in_the_summary(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    unmasked = DATA_VOC / "images" / "maksssksksss0.jpg"  # two people without masks
    for i in range(4):
        (photos / f"frame{i}.jpg").symlink_to(unmasked)
    (photos / "frame1b.jpg").write_bytes(b"not an image")
    events = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, [
        "run", "--source", str(photos), "--detector-model", YUNET, "--detect-width", "0",
        "--json", str(events), "--alert-after", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    alerts = [x for x in lines if x.get("event") == "alert"]
    # Photos are independent pictures: each unmasked face of each readable photo alerts at once
    # (a photo has no next frame to wait for), whatever --alert-after says.
    assert alerts and all(a["label"] == "without_mask" and a["frames"] == 1 for a in alerts)
    assert {a["source"] for a in alerts} == {f"frame{i}.jpg" for i in range(4)}
    assert {a["frame"] for a in alerts} == {0, 1, 3, 4}  # frame1b (index 2) is broken
    assert len({a["track"] for a in alerts}) == len(alerts)  # one per face of each photo
    assert len(alerts) == 4 * sum(a["source"] == "frame0.jpg" for a in alerts)
    assert "unreadable 1" in result.output and f"alerts      {len(alerts)}" in result.output
    assert "photos are independent" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--camera", "5"], "cannot open camera 5"),
    (["--camera", "0", "--source", "x.mp4"], "exactly one of --camera"),
    ([], "exactly one of --camera"),
    (["--source", "/nonexistent.mp4"], "no such file or folder"),
    (["--source", "{voc}", "--show"], "--show"),
    (["--source", "{voc}", "--serve", "localhost:http"], "HOST:PORT"),
    (["--source", "{voc}", "--detector", "haar"], "--detector must be one of"),
    (["--source", "{voc}", "--save", "out.gif"], "use one of"),
    (["--source", "{voc}", "--model", "/nonexistent.tflite"], "model file not found"),
    (["--source", "{voc}", "--threads", "0"], "--threads must be at least 1"),
    (["--source", "{voc}", "--alert-after", "2", "--alert-label", "masked"],
     "not in the model's labels"),
])
def test_bad_input_is_one_line_and_exit_2(voc_video: Path, tmp_path: Path, args: list[str],
                                          message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{voc}", str(voc_video)) for a in args]
    result = CliRunner().invoke(app, ["run", "--detector-model", YUNET, *args])
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("edge: error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not list(tmp_path.iterdir())


def test_evaluate_reports_recall_precision_accuracy(tmp_path: Path) -> None:
    report = tmp_path / "eval.json"
    result = CliRunner().invoke(app, [
        "evaluate", str(DATA_VOC), "--limit", "12", "--detector", "yunet", "--detector",
        "blazeface-full", "--detector-dir", str(DETECTORS), "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "yunet" in result.output and "blazeface-full" in result.output
    data = json.loads(report.read_text())
    for name in ("yunet", "blazeface-full"):
        assert data[name]["images"] == 12
        assert 0 <= data[name]["recall"]["with_mask"] <= 1
        assert data[name]["latency_640x480"]["detect_ms"] > 0
    assert data["yunet"]["recall"]["with_mask"] > data["blazeface-full"]["recall"]["with_mask"]


def test_info_lists_runtimes_model_and_detectors() -> None:
    result = CliRunner().invoke(app, ["info", "--model", str(MODEL)])
    assert result.exit_code == 0
    assert "litert" in result.output and "with_mask" in result.output
    assert "blazeface-full" in result.output
