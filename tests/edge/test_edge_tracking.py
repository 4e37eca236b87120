"""Tracked faces and counts: ids across frames, max-age, smoothing, per-track alerts, people per
class and compliance, zones, stats events, face blurring, source file names, alert hooks and the
runner that assembles `edge run`."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import DATA_VOC, ROOT
from typer.main import get_command
from typer.testing import CliRunner

from edge.cli import app
from edge.core.boxes import iou_matrix
from edge.core.voc import load_voc
from edge.detection.detectors import DetectorOptions, create_detector
from edge.inference.pipeline import FaceResult
from edge.runner import RunError, Runner, RunOptions
from edge.sinks.outputs import fit_frame, fit_transform
from edge.tracking.alerts import TrackAlerts, masked_labels, unmasked_labels
from edge.tracking.stats import PeopleCounter
from edge.tracking.tracks import Tracker, TrackerOptions, tracking_cost_us
from edge.tracking.zones import Zone, in_zones
from edge.video.videomaker import make_video

MODEL = Path(os.environ.get("MASKEDGE_MODEL") or ROOT / "models" / "face_mask_2c_int8.tflite")
needs_model = pytest.mark.skipif(not MODEL.is_file(),
                                 reason=f"shipped model {MODEL} not built yet")
LABELS = ("with_mask", "without_mask")
#: Three annotated people (without_mask x=79-109, with_mask x=185-226, without_mask x=325-360) in
#: a 512x366 photo; the shipped YuNet also finds a fourth, masked face at x~476.
CROWD = DATA_VOC / "images" / "maksssksksss0.jpg"


def face(box: tuple[float, float, float, float], p_without: float = 0.1) -> FaceResult:
    """A face the classifier gave P(without_mask) = p_without."""
    probs = (1.0 - p_without, p_without)
    k = int(np.argmax(probs))
    return FaceResult(box, LABELS[k], probs[k], probs, 0.9)


def moved(box: tuple[float, float, float, float], dx: float, dy: float = 0.0,
          ) -> tuple[float, float, float, float]:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


A, B = (10.0, 10.0, 60.0, 70.0), (300.0, 20.0, 350.0, 80.0)


# -- the tracker ------------------------------------------------------------------------------

def test_tracker_keeps_ids_across_frames_of_a_moving_box() -> None:
    tracker = Tracker(LABELS)
    ids = []
    for n in range(20):  # A walks right 8 px per frame, B walks left 30 px per frame (0.6 widths)
        tracked = tracker.update([face(moved(A, 8 * n)), face(moved(B, -30 * n, 2 * n))])
        ids.append(tuple(t.track for t in tracked))
    assert set(ids) == {(1, 2)}
    # Plain IoU without a motion model loses B (it moves too far per frame to overlap enough).
    plain = Tracker(LABELS, TrackerOptions(matcher="iou", velocity=False))
    lost = {plain.update([face(moved(B, -30 * n, 2 * n))])[0].track for n in range(20)}
    assert len(lost) > 1


def test_a_face_back_after_max_age_gets_a_new_id() -> None:
    tracker = Tracker(LABELS, TrackerOptions(max_age=3))
    assert [tracker.update([face(A)])[0].track for _ in range(3)] == [1, 1, 1]
    for _ in range(3):  # missed for max_age frames: the track survives
        assert tracker.update([]) == []
    assert tracker.update([face(A)])[0].track == 1
    for _ in range(4):  # one frame longer than max_age: it ends
        tracker.update([])
    assert [t.id for t in tracker.expired] == [1] and tracker.tracks == []
    assert tracker.update([face(A)])[0].track == 2


def test_smoothing_stops_a_one_frame_flicker() -> None:
    tracker = Tracker(LABELS)
    labels = [tracker.update([face(A, p)])[0] for p in (0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1)]
    assert [t.face.label for t in labels][4] == "without_mask"  # the classifier flickered
    assert {t.label for t in labels} == {"with_mask"}  # the track did not
    flicker = labels[4].to_json()
    assert flicker["label"] == "with_mask" and flicker["raw_label"] == "without_mask"
    assert flicker["score"] == pytest.approx((0.9 * 4 + 0.1) / 5) and flicker["raw_score"] == 0.9
    assert set(flicker) == {"box", "track", "label", "score", "raw_label", "raw_score",
                            "detector_score", "in_zone"}
    # A lasting change comes through: always voting, once it is most of the window; by
    # default at once, since the window is split (under smooth_min) from its first frame.
    voting = Tracker(LABELS, TrackerOptions(smooth_min=0.0))
    for p in (0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1):
        voting.update([face(A, p)])
    steady = [voting.update([face(A, 0.95)])[0].label for _ in range(5)]
    assert steady[0] == "with_mask" and steady[-1] == "without_mask"
    assert {tracker.update([face(A, 0.95)])[0].label for _ in range(5)} == {"without_mask"}


def test_a_face_the_classifier_keeps_changing_its_mind_about_reports_each_frame() -> None:
    """Where the window is split (no label reaches `smooth_min`), the vote would make every
    frame say the majority, right or wrong: the frame's own label is reported instead. A lone
    flicker in a steady window is still voted down."""
    ambiguous = [0.55, 0.25] * 4  # right and unsure, then wrong and surer, by turns
    voting = Tracker(LABELS, TrackerOptions(smooth_min=0.0))
    voted = [voting.update([face(A, p)])[0] for p in ambiguous]
    assert len({t.label for t in voted[2:]}) == 1  # the vote: one label for every frame
    tracker = Tracker(LABELS, TrackerOptions(smooth_min=0.7))
    shown = [tracker.update([face(A, p)])[0] for p in ambiguous]
    assert [t.label for t in shown] == [t.face.label for t in shown]  # each frame's own
    steady = Tracker(LABELS, TrackerOptions(smooth_min=0.7))
    labels = [steady.update([face(A, p)])[0].label for p in (0.1, 0.1, 0.1, 0.1, 0.9, 0.1)]
    assert set(labels) == {"with_mask"}


def test_a_person_who_leaves_and_comes_back_is_one_track_and_one_person() -> None:
    """Unseen past max_age, a track waits (reid_age) for a face that looks like it; a face that
    looks otherwise, or a new scene, starts a new track."""
    look_a, look_b = np.zeros(8), np.zeros(8)
    look_a[0], look_b[1] = 1.0, 1.0

    def seen(box: tuple[float, float, float, float], look: np.ndarray) -> FaceResult:
        return dataclasses.replace(face(box), appearance=look)

    options = TrackerOptions(max_age=2, reid_age=10, count_after=1)
    tracker, far = Tracker(LABELS, options), moved(A, 200)
    counter = PeopleCounter(tracker)
    first = tracker.update([seen(A, look_a)])[0].track
    counter.update()
    for _ in range(5):  # gone: past max_age, now waiting
        tracker.update([])
        counter.update()
    assert not tracker.tracks and len(tracker.lost) == 1 and counter.people()["with_mask"] == 1
    back = tracker.update([seen(far, look_a)])[0]
    counter.update()
    assert back.track == first and counter.people()["with_mask"] == 1  # the same person
    other = tracker.update([seen(far, look_a), seen(B, look_b)])[1]
    assert other.track != first
    for _ in range(20):  # waited too long: the track ends and is counted once
        tracker.update([])
        counter.update()
    assert not tracker.lost and counter.people()["with_mask"] == 2
    tracker.update([seen(A, look_a)])
    for _ in range(4):
        tracker.update([])
    assert tracker.lost
    assert tracker.update([seen(A, look_a)], scene=7)[0].track not in (first, other.track)
    assert not tracker.lost  # a new scene ends the waiting tracks too
    plain = Tracker(LABELS, TrackerOptions(max_age=2, reid_age=0))
    plain.update([seen(A, look_a)])
    for _ in range(5):
        plain.update([])
    assert not plain.lost and plain.update([seen(A, look_a)])[0].track == 2


def test_alerts_once_per_track_after_n_frames() -> None:
    assert unmasked_labels(["with_mask", "without_mask", "mask_weared_incorrect"]) == (
        "without_mask", "mask_weared_incorrect")
    assert masked_labels(["with_mask", "without_mask", "mask_weared_incorrect"]) == ("with_mask",)
    tracker, alerts = Tracker(LABELS), TrackAlerts(3, ["without_mask"])

    def step(frame: int, faces: list[FaceResult], zone: list[bool] | None = None) -> list[dict]:
        tracked = tracker.update(faces, zone)
        return alerts.update(frame, tracked, {t.id for t in tracker.tracks})

    events = [step(i, [face(moved(A, 5 * i), 0.9), face(B, 0.1)]) for i in range(6)]
    assert [len(e) for e in events] == [0, 0, 1, 0, 0, 0]  # once, at the third frame
    assert events[2][0] == {"event": "alert", "frame": 2, "track": 1, "label": "without_mask",
                            "score": 0.9, "box": [20.0, 10.0, 70.0, 70.0], "frames": 3}
    # A second unmasked person is a second track with its own alert; faces outside every zone
    # do not alert; an ended track's person coming back alerts again as a new track.
    c = (150.0, 200.0, 200.0, 260.0)
    assert all(step(10 + i, [face(c, 0.9)], [False]) == [] for i in range(4))
    got = [step(20 + i, [face(c, 0.9)]) for i in range(3)]
    assert [a["track"] for e in got for a in e] == [3]
    for i in range(TrackerOptions().max_age + 2):  # gone for longer than the max-age
        step(30 + i, [])
    assert [a["track"] for i in range(3) for a in step(90 + i, [face(c, 0.9)])] == [4]


def test_people_are_counted_once_per_track_under_their_majority_label() -> None:
    tracker = Tracker(LABELS, TrackerOptions(max_age=2, count_after=3))
    people = PeopleCounter(tracker)
    for i in range(8):  # A: masked for 8 frames; B: unmasked, then a 1-frame false positive
        faces = [face(moved(A, 4 * i), 0.1), face(moved(B, 4 * i), 0.9)]
        if i == 3:
            faces.append(face((500, 400, 530, 440), 0.9))
        tracker.update(faces)
        people.update()
    assert people.people() == {"with_mask": 1, "without_mask": 1}
    for _ in range(4):  # everyone leaves: the ended tracks keep their counts
        tracker.update([])
        people.update()
    counts = people.people()
    assert counts == {"with_mask": 1, "without_mask": 1} and tracker.tracks == []
    assert people.compliance(counts) == 0.5 and people.compliance({"with_mask": 0}) is None
    event = people.event(11, 1700000000.0, [], 9.5)
    assert event == {"event": "stats", "time": 1700000000.0, "frame": 11, "people": counts,
                     "total": 2, "compliance": 0.5, "now": {"with_mask": 0, "without_mask": 0},
                     "fps": 9.5}


def test_zones_in_pixels_and_fractions() -> None:
    fraction, pixels = Zone.parse("0,0,0.5,1"), Zone.parse("0,0,320,480")
    assert fraction.relative and not pixels.relative
    assert fraction.pixels(640, 480) == pixels.pixels(640, 480) == (0, 0, 320, 480)
    assert fraction.pixels(1280, 720) == (0, 0, 640, 720)
    boxes = [(100, 100, 200, 200), (300, 100, 360, 160), (400, 10, 500, 100)]
    assert in_zones(boxes, [(0, 0, 320, 480)]) == [True, False, False]  # centre 330 is outside
    assert in_zones(boxes, [(0, 0, 320, 480), (420, 0, 640, 60)]) == [True, False, True]
    assert in_zones(boxes, []) == [True, True, True]
    for bad in ("1,2,3", "a,b,c,d", "0.5,0,0.2,1", "-1,0,10,10"):
        with pytest.raises(ValueError, match="--zone"):
            Zone.parse(bad)


def test_tracking_cost_per_frame(capsys: pytest.CaptureFixture[str]) -> None:
    costs = {n: tracking_cost_us(faces=n, frames=500) for n in (1, 4, 16)}
    with capsys.disabled():
        print("\ntracking cost per frame: "
              + ", ".join(f"{n} faces {us:.0f} us" for n, us in costs.items()))
    assert costs[4] < 2000  # well under a millisecond on a laptop core; generous for a Pi


def panned_frames(speed: int, photos: int = 8, hold: int = 6,
                  ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(photo index, 640x480 RGB frame, annotated boxes in it): each photo fitted into 800x600
    and panned `speed` px per frame right (and half that down) for `hold` frames."""
    items = [i for i in load_voc(DATA_VOC) if 1 <= len(i.annotations) <= 4][:photos]
    out = []
    for p, item in enumerate(items):
        bgr = cv2.imread(str(item.path))
        scale, x, y, _, _ = fit_transform((bgr.shape[1], bgr.shape[0]), (800, 600))
        canvas = cv2.cvtColor(fit_frame(bgr, (800, 600)), cv2.COLOR_BGR2RGB)
        truth = np.array([a.box for a in item.annotations]) * scale + [x, y, x, y]
        for k in range(hold):
            ox, oy = k * speed, k * speed // 2
            out.append((p, canvas[oy:oy + 480, ox:ox + 640], truth - [ox, oy, ox, oy]))
    return out


def id_switches(frames: list[tuple[int, np.ndarray, np.ndarray]], detections: list[list[Any]],
                options: TrackerOptions) -> int:
    """How often an annotated face seen again carries a different track id."""
    tracker, last, switches = Tracker(LABELS, options), {}, 0
    for (photo, _, truth), faces in zip(frames, detections, strict=True):
        tracked = tracker.update([FaceResult(f.box, "with_mask", 0.9, (0.9, 0.1), f.score)
                                  for f in faces])
        if not faces:
            continue
        ious = iou_matrix(np.array([f.box for f in faces]), truth)
        for t, row in zip(tracked, ious, strict=True):
            if row.max() >= 0.4:
                who = (photo, int(row.argmax()))
                switches += who in last and last[who] != t.track
                last[who] = t.track
    return switches


def test_fast_motion_keeps_ids_where_iou_alone_loses_them() -> None:
    """The measurement behind the matcher choice (edge/tracking/tracks.py), on fewer photos."""
    detector = create_detector(DetectorOptions(name="yunet", threads=1))
    frames = panned_frames(speed=24)
    detections = [detector.detect(rgb) for _, rgb, _ in frames]
    chosen = id_switches(frames, detections, TrackerOptions())
    iou_only = id_switches(frames, detections, TrackerOptions(matcher="iou", velocity=False))
    centroid = id_switches(frames, detections, TrackerOptions(matcher="centroid", velocity=False))
    assert chosen * 3 <= min(iou_only, centroid), (chosen, iou_only, centroid)


# -- edge run with tracks, counts, zones, blur, stats (real model, real photos) ----------------

@pytest.fixture
def crowd_folder(tmp_path: Path) -> Path:
    """Four frames of the same photo of four people, named frame0..3.jpg."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        (folder / f"frame{i}.jpg").symlink_to(CROWD)
    return folder


def edge_run(*args: str) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """`edge run ... --json EVENTS --json-summary --quiet`: the result, JSON lines, summary.
    Stock YuNet, which finds all four people of the crowd photo (the default finds three: the
    fourth scores 0.45), and the 2-class model, so that these tests count tracks, zones and
    stats, not detections or a third class."""
    events = Path(args[args.index("--json") + 1]) if "--json" in args else None
    result = CliRunner().invoke(app, ["run", "--detector", "yunet-stock", "--model", str(MODEL),
                                      *args,
                                      "--json-summary", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in events.read_text().splitlines()] if events else []
    return result, lines, json.loads(result.stdout.strip().splitlines()[-1])


@needs_model
def test_folder_photos_are_independent_pictures(crowd_folder: Path, tmp_path: Path) -> None:
    """Four files of the same photo: no track, vote, count or alert carries from one to the next;
    every face of every photo is one person, and an unmasked one alerts at once."""
    events = tmp_path / "events.jsonl"
    _, lines, summary = edge_run("--source", str(crowd_folder), "--json", str(events),
                                 "--alert-after", "2")
    frames = [x for x in lines if "faces" in x]
    assert [f["source"] for f in frames] == [f"frame{i}.jpg" for i in range(4)]
    assert list(frames[0])[:3] == ["frame", "time", "source"]
    tracks = [f["track"] for x in frames for f in x["faces"]]
    assert len(tracks) == 16 and len(set(tracks)) == 16  # a track never spans two photos
    assert all(f["in_zone"] and f["label"] == f["raw_label"] for x in frames for f in x["faces"])
    alerts = [x for x in lines if x.get("event") == "alert"]
    unmasked = {f["track"] for x in frames for f in x["faces"] if f["label"] == "without_mask"}
    assert {a["track"] for a in alerts} == unmasked and len(alerts) == 8
    assert [a["source"] for a in alerts] == [f"frame{i}.jpg" for i in range(4) for _ in "ab"]
    assert all(a["frames"] == 1 for a in alerts)
    assert summary["people"] == {"with_mask": 8, "without_mask": 8}
    assert summary["compliance"] == 0.5 and summary["alerts"] == 8


@needs_model
@pytest.mark.parametrize("zone", ["0,0,0.3,1", "0,0,150,366"])
def test_zones_in_fractions_and_pixels_filter_counts(crowd_folder: Path, tmp_path: Path,
                                                     zone: str) -> None:
    events = tmp_path / "events.jsonl"
    _, lines, summary = edge_run("--source", str(crowd_folder), "--json", str(events),
                                      "--zone", zone, "--alert-after", "2", "--stats-every", "0")
    faces = [f for x in lines if "faces" in x for f in x["faces"]]
    inside = [f for f in faces if f["in_zone"]]
    assert len(faces) == 16 and len(inside) == 4  # only the leftmost person, in 4 frames
    assert all((f["box"][0] + f["box"][2]) / 2 <= 153.6 for f in inside)
    assert summary["people"] == {"with_mask": 0, "without_mask": 4}  # once in each photo
    assert summary["compliance"] == 0.0 and summary["faces"]["without_mask"] == 4
    assert [a["track"] for a in lines if a.get("event") == "alert"] == [f["track"] for f in inside]
    assert not [x for x in lines if x.get("event") == "stats"]  # --stats-every 0: none


@needs_model
def test_stats_events_every_n_seconds_and_at_the_end(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        (folder / f"f{i:02d}.jpg").symlink_to(CROWD)
    events = tmp_path / "events.jsonl"
    _, lines, summary = edge_run("--source", str(folder), "--json", str(events), "--realtime",
                                 "--stats-every", "0.3")  # 10 frames/s: 1.2 s
    stats = [x for x in lines if x.get("event") == "stats"]
    assert 3 <= len(stats) <= 7, len(stats)  # ~every 0.3 s, plus one at the end
    assert lines[-1] == stats[-1] and stats[-1]["people"] == summary["people"]
    assert stats[-1]["total"] == 48 and stats[-1]["compliance"] == summary["compliance"] == 0.5
    assert stats[-1]["now"] == {"with_mask": 2, "without_mask": 2}
    assert set(stats[0]) == {"event", "time", "frame", "people", "total", "compliance", "now",
                             "fps"}
    assert [s["frame"] for s in stats] == sorted(s["frame"] for s in stats)


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    return frames


def sharpness(frames: np.ndarray) -> float:
    """Mean squared Laplacian of the frames' grey pixels: fine detail, which blurring removes."""
    return float(np.mean([cv2.Laplacian(cv2.cvtColor(f.astype(np.uint8), cv2.COLOR_BGR2GRAY),
                                        cv2.CV_64F) ** 2 for f in frames]))


@needs_model
def test_blur_faces_changes_face_pixels_in_the_saved_video_only(crowd_folder: Path,
                                                                 tmp_path: Path) -> None:
    videos = {}
    for blur in (False, True):
        video, events = tmp_path / f"blur{blur}.avi", tmp_path / f"blur{blur}.jsonl"
        _, lines, _ = edge_run("--source", str(crowd_folder), "--json", str(events),
                               "--save", str(video), *(["--blur-faces"] if blur else []))
        videos[blur] = np.array(read_video(video), np.float32)
    boxes = [[round(v) for v in f["box"]] for f in lines[0]["faces"]]
    plain, blurred = videos[False], videos[True]
    assert plain.shape == blurred.shape == (4, 366, 512, 3)
    near = np.zeros(plain.shape[1:3], bool)
    near[:40] = True  # the FPS banner differs between runs
    kept = []  # share of each face's fine detail left after blurring
    for x1, y1, x2, y2 in boxes:
        inside = np.s_[:, y1 + 4:y2 - 4, x1 + 4:x2 - 4]  # within the drawn box lines
        kept.append(sharpness(blurred[inside]) / sharpness(plain[inside]))
        near[max(0, y1 - 30):y2 + 8, max(0, x1 - 8):x2 + 8] = True
    # Every face loses most of its detail (the smallest, 27 px wide, least: ~0.3 is left).
    assert max(kept) < 0.5 and np.mean(kept) < 0.25, kept
    elsewhere = np.abs(plain - blurred)[:, ~near]
    assert elsewhere.mean() < 1.0, elsewhere.mean()  # the rest of the frame is as it was


# -- the runner and the CLI -------------------------------------------------------------------

def test_run_options_defaults_are_the_cli_defaults() -> None:
    params = get_command(app).commands["run"].params  # type: ignore[attr-defined]
    defaults = RunOptions()
    cli_names = {p.name for p in params} - {"config"}
    only_python = {"status_every", "tracking", "extra_sinks", "alert_hooks"}
    assert cli_names == {f.name for f in dataclasses.fields(RunOptions)} - only_python
    for p in params:
        if p.name == "config":
            continue
        default = () if p.multiple and p.default is None else p.default
        assert getattr(defaults, p.name) == default, p.name


def test_run_options_are_checked_before_anything_opens() -> None:
    for options, message in ((RunOptions(), "exactly one of --camera"),
                             (RunOptions(source="x", zone=("1,2,3",)), "--zone wants"),
                             (RunOptions(source="x", stats_every=-1), "--stats-every"),
                             (RunOptions(source="x", camera_size="big"), "--camera-size"),
                             (RunOptions(source="x", detector="haar"), "--detector")):
        with pytest.raises(RunError, match=message):
            Runner(options)


class Recorder:
    """A sink keeping every record and event (and whether it was closed ok)."""

    needs_image = False

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.closed: bool | None = None

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        self.records.append(record)

    def event(self, record: dict[str, Any]) -> None:
        self.events.append(dict(record))

    def close(self, ok: bool = True) -> None:
        self.closed = ok


class MarkingHook:
    """An alert hook that adds a field and keeps the frame it was shown."""

    def __init__(self) -> None:
        self.frames: list[tuple[tuple[int, ...], bool]] = []

    def on_alert(self, alert: dict[str, Any], rgb: np.ndarray,
                 annotated: np.ndarray | None) -> None:
        alert["snapshot"] = {"frame": f"alert-{alert['track']}.jpg"}
        self.frames.append((rgb.shape, annotated is not None))


@needs_model
def test_runner_runs_a_short_video_with_an_extra_sink_and_an_alert_hook(tmp_path: Path) -> None:
    photos = sorted((DATA_VOC / "images").glob("*.jpg"))[:4]
    video = make_video(photos, tmp_path / "short.mp4", (640, 480), fps=10, hold=3).path
    sink, hook, seen = Recorder(), MarkingHook(), {}

    def make_sink(context: Any) -> Recorder:
        seen["context"] = context
        return sink

    options = RunOptions(source=str(video), model=MODEL, alert_after=2, stats_every=60.0,
                         quiet=True, save=tmp_path / "out.mp4", extra_sinks=(make_sink,),
                         alert_hooks=(lambda context: hook,))
    summary = Runner(options).run()
    assert summary.frames == 12 and summary.stopped_by == "end of stream"
    assert sink.closed is True and len(sink.records) == 12 and (tmp_path / "out.mp4").is_file()
    assert seen["context"].labels == LABELS and seen["context"].fps == pytest.approx(10.0)
    assert seen["context"].alert_labels == ("without_mask",)
    alerts = [e for e in sink.events if e["event"] == "alert"]
    assert alerts and len(alerts) == len(hook.frames) == summary.alerts
    assert all(a["snapshot"] == {"frame": f"alert-{a['track']}.jpg"} for a in alerts)
    assert all(shape == (480, 640, 3) and drawn for shape, drawn in hook.frames)
    assert sink.events[-1]["event"] == "stats" and sink.events[-1]["people"] == summary.people
    assert sum(summary.people.values()) >= 1 and "source" not in sink.records[0]
    tracks = {f["track"] for r in sink.records for f in r["faces"]}
    assert len(tracks) < sum(len(r["faces"]) for r in sink.records)  # ids persist across frames
