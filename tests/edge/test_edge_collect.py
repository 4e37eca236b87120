"""Learning from the device's own camera (issue 32): `edge run --collect DIR` on real face-mask-voc
photos and a video made of them, the manifest, the budget and per-track de-duplication;
`edge label --set`; the labelling page over HTTP and in a real headless Chromium with real key
presses (the DevTools protocol, tests/support/browser.py)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from conftest import DATA_VOC, ROOT
from support.browser import Browser, find_chromium
from typer.testing import CliRunner

from edge.cli import app
from edge.collect import manifest
from edge.collect.selection import (
    REASONS,
    REPLACE_GAIN,
    UNCERTAIN_MARGIN,
    Kept,
    Selection,
    margin_of,
    sample_slots,
)
from edge.collect.server import LabelServer
from edge.core.fileio import sha256_file
from edge.core.imageops import FACE_MARGIN, crop_face
from edge.core.voc import load_voc
from edge.sinks.dashboard import parse_serve_auth

#: The model `edge run` uses by default (the 3-class student): these tests run without --model.
MODEL = Path(os.environ.get("MASKEDGE_MODEL")
             or ROOT / "models" / "face_mask_3c_student_int8.tflite")
LABELS = ["mask_weared_incorrect", "with_mask", "without_mask"]
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"model {MODEL} not built yet")
PHOTOS = 40
BUDGET = 5
FIELDS = {"file", "frame_file", "time", "source", "frame", "box", "detector_score",
          "probabilities", "track", "reason", "model_sha256", "labels", "raw_label",
          "predicted", "margin", "usefulness", "run", "model", "crop_margin"}
runner = CliRunner()


def run_edge(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def collect_run(source: Path, folder: Path, budget: int, *extra: str) -> dict[str, Any]:
    """`edge run --source SOURCE --collect FOLDER --collect-max BUDGET`; its JSON summary."""
    result = run_edge("run", "--source", str(source), "--collect", str(folder), "--collect-max",
                      str(budget), "--json-summary", "--quiet", *extra)
    return json.loads(result.stdout.strip().splitlines()[-1])


def entries(folder: Path) -> list[dict[str, Any]]:
    return manifest.read_entries(folder)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos") / "photos"
    folder.mkdir()
    for item in load_voc(DATA_VOC, limit=PHOTOS):
        (folder / item.path.name).symlink_to(item.path)
    return folder


@pytest.fixture(scope="module")
def collected(photos: Path, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """40 photos collected with a budget of 5: the folder, the run summary, the JSON lines."""
    base = tmp_path_factory.mktemp("collected")
    folder, lines = base / "faces-to-label", base / "frames.jsonl"
    summary = collect_run(photos, folder, BUDGET, "--json", str(lines))
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    return folder, summary, records


@pytest.fixture
def folder(collected: tuple[Path, dict[str, Any], list[dict[str, Any]]],
           tmp_path: Path) -> Path:
    """A copy of the collected folder this test may change."""
    copy = tmp_path / "collected"
    shutil.copytree(collected[0], copy)
    return copy


# --- edge run --collect ------------------------------------------------------------------------

def photo_margins(photos: Path) -> list[float]:
    """Top-two margins of every face >= 16 px of the photos, by the pipeline `edge run` uses
    (the JSON lines carry the top probability only, not the margin of a 3-class model)."""
    from edge.inference.pipeline import Pipeline, PipelineOptions

    pipeline = Pipeline(PipelineOptions(model=MODEL))
    out = []
    for path in sorted(photos.iterdir()):
        for face in pipeline.process(cv2.imread(str(path))[:, :, ::-1].copy()).faces:
            if min(face.box[2] - face.box[0], face.box[3] - face.box[1]) >= 16:
                out.append(margin_of(face.probabilities))
    return out


def test_photos_keep_the_most_uncertain_faces_within_the_budget(
        collected: tuple[Path, dict[str, Any], list[dict[str, Any]]], photos: Path) -> None:
    folder, summary, records = collected
    kept = entries(folder)
    counters = summary["outputs"]["collect"]
    assert len(kept) == BUDGET and counters["kept"] - counters["replaced"] == BUDGET
    assert counters["replaced"] > 0 and counters["skipped"] > 0  # the budget was full
    assert counters["failed"] == counters["dropped"] == 0 and counters["error"] is None
    sha = sha256_file(MODEL)
    for entry in kept:
        assert set(entry) >= FIELDS, FIELDS - set(entry)
        assert entry["model_sha256"] == sha and entry["model"] == MODEL.name
        assert entry["labels"] == list(entry["probabilities"]) == LABELS
        assert abs(sum(entry["probabilities"].values()) - 1.0) < 0.02
        assert entry["reason"] in REASONS and entry["crop_margin"] == FACE_MARGIN
        assert entry["image"] in {p.name for p in photos.iterdir()}
        assert entry["source"] == f"images in {photos}"
        assert (entry["margin"] < UNCERTAIN_MARGIN) == (entry["reason"] == "uncertain")
        frame = cv2.imread(str(folder / entry["frame_file"]))
        crop = cv2.imread(str(folder / entry["file"]))
        photo = cv2.imread(str(photos / entry["image"]))
        assert frame.shape == photo.shape  # the raw frame, not a drawn one
        expected = crop_face(frame, tuple(entry["box"]), FACE_MARGIN).shape
        assert abs(crop.shape[0] - expected[0]) <= 1 and abs(crop.shape[1] - expected[1]) <= 1
    # nothing on disk beyond what the manifest names
    assert sorted(f"faces/{p.name}" for p in (folder / "faces").iterdir()) == sorted(
        e["file"] for e in kept)
    assert {f"frames/{p.name}" for p in (folder / "frames").iterdir()} == {
        e["frame_file"] for e in kept}
    samples = [e for e in kept if e["reason"] == "sample"]
    assert len(samples) == sample_slots(BUDGET) == 1
    # the uncertain faces kept are the most uncertain the run saw (within the replace gain)
    values = sorted((1 - m for m in photo_margins(photos) if m < UNCERTAIN_MARGIN), reverse=True)
    assert len(photo_margins(photos)) == sum(
        1 for r in records for f in r["faces"]
        if min(f["box"][2] - f["box"][0], f["box"][3] - f["box"][1]) >= 16)  # the same faces
    room = BUDGET - len(samples)
    assert len(values) > room
    assert all(e["usefulness"] >= values[room - 1] - REPLACE_GAIN - 0.01 for e in kept
               if e["reason"] != "sample"), (values[:room], [e["usefulness"] for e in kept])


def test_video_keeps_at_most_two_faces_of_a_track_and_the_json_lines_unchanged(
        photos: Path, tmp_path: Path) -> None:
    video = tmp_path / "held.mp4"
    run_edge("make-video", str(photos), str(video), "--hold", "6", "--limit", "24")
    folder, lines = tmp_path / "collect", tmp_path / "frames.jsonl"
    collect_run(video, folder, 200, "--json", str(lines), "--classify-every", "1")
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    keys = {"box", "track", "label", "score", "raw_label", "raw_score", "detector_score",
            "in_zone", "reused"}
    assert all(set(f) <= keys for r in records for f in r["faces"])  # no probabilities added
    candidates = Counter(f["track"] for r in records for f in r["faces"] if "reused" not in f
                         and (2 * f["raw_score"] - 1 < UNCERTAIN_MARGIN
                              or f["label"] != f["raw_label"]))
    assert max(candidates.values()) >= 3  # a track offered more faces than it may keep
    per_track = Counter(e["track"] for e in entries(folder))
    assert per_track and max(per_track.values()) <= 2, per_track
    assert sum(per_track.values()) < sum(candidates.values())


def test_set_labels_then_another_run_keeps_them_and_the_budget(folder: Path,
                                                               photos: Path) -> None:
    first, second, third = (e["file"] for e in entries(folder)[:3])
    result = run_edge("label", str(folder), "--set", f"{first}=without_mask",
                      "--set", f"{second}=with_mask")
    name = Path(first).name
    assert f"labelled/without_mask/{name}" in result.output
    assert (folder / "labelled" / "without_mask" / name).is_file()
    assert not (folder / first).exists()
    by_file = {e["file"]: e for e in entries(folder)}
    assert by_file[first]["label"] == "without_mask"
    assert by_file[first]["labelled_file"] == f"labelled/without_mask/{name}"
    assert "label" not in by_file[third]
    # a bad --set moves nothing, not even the good one before it: one line, exit 2
    for bad in ("nosuch.jpg=with_mask", f"{third}=bogus", f"{third}"):
        done = runner.invoke(app, ["label", str(folder), "--set", f"{third}=with_mask",
                                   "--set", bad])
        lines = [x for x in done.output.splitlines() if x.startswith("edge: error: ")]
        assert done.exit_code == 2 and len(lines) == 1 and "--set" in lines[0], done.output
        assert (folder / third).is_file()
    # undo: back where it was written
    manifest.clear_label(folder, second)
    assert (folder / second).is_file() and "label" not in {e["file"]: e for e in entries(
        folder)}[second]
    # a second run into the folder: the budget counts the faces waiting, labelled ones stay,
    # and a crop without a manifest line (a run killed between the two) is swept away
    (folder / "faces" / "orphan.jpg").write_bytes(b"left by a killed run")
    collect_run(photos, folder, 2)
    after = entries(folder)
    assert len(manifest.unlabelled(after)) == 2
    labelled = [e for e in after if "label" in e]
    assert [e["file"] for e in labelled] == [first]
    assert (folder / labelled[0]["labelled_file"]).is_file()
    assert (folder / labelled[0]["frame_file"]).is_file()  # its frame is kept too
    assert len(list((folder / "faces").iterdir())) == 2


def test_collect_refuses_blur_and_a_file(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    for args, named in ((["--collect", str(tmp_path / "c"), "--blur-faces"], "--blur-faces"),
                        (["--collect", str(tmp_path / "a-file")], "--collect")):
        done = runner.invoke(app, ["run", "--source", str(photos), "--max-frames", "1", *args])
        assert done.exit_code == 2 and named in done.output, done.output


# --- the selection rules -----------------------------------------------------------------------

def test_selection_replaces_the_least_useful_and_keeps_two_per_track() -> None:
    selection = Selection(budget=3)  # no sample room below 4
    assert selection.sample_room == 0
    assert selection.offer("a", ("r", 1), 0.8) == []
    assert selection.offer("b", ("r", 1), 0.9) == []
    assert selection.offer("c", ("r", 1), 0.7) is None  # the track is full, c is worse
    assert selection.offer("d", ("r", 1), 0.95) == ["a"]  # replaces the track's worst
    assert selection.offer("e", ("r", 2), 0.5) == []
    assert selection.offer("f", ("r", 3), 0.52) is None  # full; not better by REPLACE_GAIN
    assert selection.offer("g", ("r", 3), 0.6) == ["e"]
    assert sorted(selection.kept) == ["b", "d", "g"]


def test_the_sample_is_a_seeded_reservoir_over_tracks() -> None:
    def run(seed: int) -> list[str]:
        selection = Selection(budget=40, seed=seed)
        for track in range(500):
            selection.offer_sample(f"t{track}", ("r", track))
        return sorted(selection.samples)

    assert len(run(1)) == sample_slots(40) == 4
    assert run(1) == run(1) and run(1) != run(2)
    late = [int(name[1:]) for seed in range(30) for name in run(seed)]
    assert sum(t >= 250 for t in late) / len(late) > 0.35  # late tracks get their share


def test_restore_keeps_the_best_of_an_earlier_run_and_names_the_rest() -> None:
    selection = Selection(budget=4)
    faces = [Kept(f"u{i}", ("old", i), i / 10) for i in range(6)] + [
        Kept("s0", ("old", 9), 0.0, sample=True), Kept("s1", ("old", 10), 0.0, sample=True)]
    assert sorted(selection.restore(faces)) == ["s1", "u0", "u1", "u2"]
    assert sorted(selection.kept) == ["s0", "u3", "u4", "u5"]


# --- the labelling page ------------------------------------------------------------------------

@pytest.fixture
def server(folder: Path) -> Iterator[LabelServer]:
    labeller = LabelServer(folder, "127.0.0.1", 0)
    thread = threading.Thread(target=labeller.serve_forever, daemon=True)
    thread.start()
    yield labeller
    labeller.close()
    thread.join(timeout=5)


def request(server: LabelServer, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={
            **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
        reply = connection.getresponse()
        return reply.status, reply.msg, reply.read()
    finally:
        connection.close()


def test_page_is_strict_and_serves_only_the_manifests_files(server: LabelServer,
                                                            folder: Path) -> None:
    status, headers, page = request(server, "GET", "/")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "style-src 'self'" in headers["Content-Security-Policy"]
    assert not re.search(rb"<script(?![^>]*\bsrc=)", page) and b" style=" not in page
    assert b"<style" not in page and not re.search(rb"\son\w+=", page)
    for asset in ("/label.js", "/label.css"):
        assert request(server, "GET", asset)[0] == 200
    status, _, body = request(server, "GET", "/api/items")
    items = json.loads(body)
    assert status == 200 and items["labels"] == LABELS
    first = items["items"][0]
    assert first["guess"] == max(first["probabilities"], key=first["probabilities"].get)
    status, headers, jpeg = request(server, "GET", f"/crop?file={first['file']}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert jpeg == (folder / first["file"]).read_bytes()
    assert request(server, "GET", f"/frame?file={first['file']}")[0] == 200
    (folder / "secret.txt").write_text("private")
    for path in ("/crop?file=../secret.txt", "/crop?file=secret.txt", "/manifest.jsonl",
                 "/frame?file=faces/nosuch.jpg", "/faces/" + Path(first["file"]).name):
        assert request(server, "GET", path)[0] == 404, path


def test_posts_need_json_from_this_origin_and_label_then_undo(server: LabelServer,
                                                              folder: Path) -> None:
    file = entries(folder)[0]["file"]
    status, _, _ = request(server, "POST", "/api/label", headers={
        "Content-Type": "text/plain", "Content-Length": "0"})
    assert status == 403
    status, _, _ = request(server, "POST", "/api/label", {"file": file, "label": "with_mask"},
                           {"Origin": "http://evil.example"})
    assert status == 403 and (folder / file).is_file()
    status, _, body = request(server, "POST", "/api/label", {"file": file, "label": "bogus"})
    assert status == 400 and "bogus" in json.loads(body)["error"]
    status, _, body = request(server, "POST", "/api/label", {"file": file, "label": "with_mask"},
                              {"Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 200 and json.loads(body)["labelled"] == 1
    assert (folder / "labelled" / "with_mask" / Path(file).name).is_file()
    status, _, body = request(server, "POST", "/api/undo", {"file": file})
    assert status == 200 and json.loads(body)["labelled"] == 0 and (folder / file).is_file()


def test_beyond_loopback_needs_credentials_and_then_every_path_asks(folder: Path) -> None:
    with pytest.raises(ValueError, match="--serve-auth"):
        LabelServer(folder, "0.0.0.0", 0)
    labeller = LabelServer(folder, "127.0.0.1", 0, auth=parse_serve_auth("ann:pw"))
    thread = threading.Thread(target=labeller.serve_forever, daemon=True)
    thread.start()
    try:
        for path in ("/", "/api/items", "/label.js"):
            assert request(labeller, "GET", path)[0] == 401  # type: ignore[arg-type]
        good = {"Authorization": "Basic YW5uOnB3"}  # ann:pw
        assert request(labeller, "GET", "/api/items", headers=good)[0] == 200
    finally:
        labeller.close()
        thread.join(timeout=5)


#: Run before the page's own script: every Content-Security-Policy violation is remembered.
WATCH_CSP = ("window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
             "(e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")


@pytest.fixture(scope="session")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("no chromium: apt-get install chromium to run the browser test")
    return found


def test_keys_in_headless_chromium_label_skip_and_undo(chromium: str, server: LabelServer,
                                                       folder: Path, tmp_path: Path) -> None:
    waiting = entries(folder)
    second = waiting[0]["labels"][1]
    with Browser(chromium, tmp_path / "profile") as browser:
        page = browser.open(server.url, first=WATCH_CSP)
        browser.wait(page, "document.body && document.body.dataset.ready === '1'")
        assert browser.evaluate(page, "document.body.dataset.file") == waiting[0]["file"]
        assert browser.evaluate(page, "document.getElementById('progress').textContent") == \
            f"1 of {len(waiting)}"
        keys = browser.evaluate(page, "[...document.querySelectorAll('#classes button')]"
                                      ".map(b => b.textContent)")
        assert [k[:1] for k in keys] == ["1", "2", "3"] and second in keys[1]
        first = waiting[0]["file"]
        browser.wait(page, f"document.body.dataset.frameDrawn === {json.dumps(first)}")
        x1, y1, _, y2 = waiting[0]["box"]  # the box is drawn on the frame, in its colour
        red, green, blue, _ = browser.evaluate(page, "[...document.getElementById('frame')"
                                               f".getContext('2d').getImageData({round(x1)}, "
                                               f"{round((y1 + y2) / 2)}, 1, 1).data]")
        assert red > 200 and green > 170 and blue < 90, (red, green, blue)
        target = folder / "labelled" / second / Path(first).name

        browser.press(page, "2")
        browser.wait(page, "document.body.dataset.actions === '1'")
        assert target.is_file() and not (folder / first).exists()
        assert {e["file"]: e for e in entries(folder)}[first]["label"] == second
        assert browser.evaluate(page, "document.body.dataset.file") == waiting[1]["file"]

        browser.press(page, "u")
        browser.wait(page, "document.body.dataset.actions === '2'")
        assert (folder / first).is_file() and not target.exists()
        assert "label" not in {e["file"]: e for e in entries(folder)}[first]
        assert browser.evaluate(page, "document.body.dataset.file") == first

        browser.press(page, "s")
        browser.wait(page, "document.body.dataset.actions === '3'")
        assert browser.evaluate(page, "document.body.dataset.position") == "1"
        assert browser.evaluate(page, "document.getElementById('progress').textContent") == \
            f"2 of {len(waiting)}"
        browser.press(page, "u")
        browser.wait(page, "document.body.dataset.actions === '4'")
        assert browser.evaluate(page, "document.body.dataset.file") == first
        assert not list((folder / "labelled").rglob("*.jpg"))  # skip and undo moved nothing
        assert browser.evaluate(page, "window.cspViolations") == []
