"""Tracks that never cross a cut or a new person: scene numbers (edge/video/scenecut.py) from the
capture thread, the pipeline forgetting reused boxes and labels at a new scene, the tracker ending
every track there, and the appearance test (edge/inference/appearance.py) for a face that replaces
another at the same spot. Real photos of the held-in part of face-mask-ilc-dev and face-mask-voc."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DATA_VOC, ROOT, SHARED
from typer.testing import CliRunner

from edge.cli import app
from edge.core.boxes import Face
from edge.core.voc import load_voc
from edge.inference.appearance import SAME_FACE, descriptor
from edge.inference.pipeline import FaceResult, Pipeline, PipelineOptions
from edge.tracking.tracks import Tracker, TrackerOptions
from edge.video.capture import FrameGrabber
from edge.video.scenecut import SceneCuts
from edge.video.sources import ImageFolderSource, OpenCVSource

DATA_ILC = SHARED / "datasets" / "face-mask-ilc-dev"
HELD_OUT = ROOT / "benchmarks" / "holdout" / "face-mask-ilc-dev-test.txt"
LABELS = ("with_mask", "without_mask")
MODEL = ROOT / "models" / "face_mask_2c_int8.tflite"


def fitted(path: Path, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A photo scaled to cover `size` and centre-cropped (RGB)."""
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    s = max(size[0] / w, size[1] / h)
    big = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    y, x = (big.shape[0] - size[1]) // 2, (big.shape[1] - size[0]) // 2
    return np.ascontiguousarray(big[y:y + size[1], x:x + size[0]])


def held(rgb: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Frame k of a photo held by a camera: panned 2 px a frame, slightly zoomed, noisy."""
    z = 1.0 + 0.004 * k
    h, w = rgb.shape[:2]
    m = np.array([[z, 0, 2 * k + (1 - z) * w / 2], [0, z, k + (1 - z) * h / 2]], np.float32)
    out = cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return np.clip(out + rng.normal(0, 4, out.shape), 0, 255).astype(np.uint8)


def held_in_photos(n: int) -> list[Path]:
    out = set(HELD_OUT.read_text().split())
    return [p for p in sorted((DATA_ILC / "images").glob("*.jpg")) if p.name not in out][:n]


def test_a_held_photo_is_one_scene_and_each_cut_a_new_one() -> None:
    rng = np.random.default_rng(0)
    cuts = SceneCuts()
    scenes = [[cuts.next(held(fitted(p), k, rng)) for k in range(6)]
              for p in held_in_photos(12)]
    assert all(len(set(s)) == 1 for s in scenes), scenes  # pan, zoom and noise never cut
    firsts = [s[0] for s in scenes]
    assert len(set(firsts)) >= 11, firsts  # a cut between (almost) every two photos


class _Frames:
    """A FrameSource playing arrays (restarting once when `loop`)."""

    live, fps, description = False, 15.0, "frames"

    def __init__(self, frames: list[np.ndarray], loop: bool = False) -> None:
        self.frames, self.loop, self.restarts, self._i = frames, loop, 0, 0

    def open(self) -> None:
        self._i = 0

    def read(self) -> np.ndarray:
        from edge.video.sources import StreamEnded

        if self._i == len(self.frames):
            if not self.loop or self.restarts:
                raise StreamEnded("end")
            self._i, self.restarts = 0, 1
        self._i += 1
        return self.frames[self._i - 1]

    def close(self) -> None:
        pass


def grab_all(grabber: FrameGrabber) -> list:
    grabber.start()
    frames = []
    while not grabber.finished:
        item = grabber.next(timeout=0.5)
        if item is not None:
            frames.append(item)
    grabber.stop()
    return frames


def test_capture_numbers_scenes_for_photos_and_restarts(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in held_in_photos(2):
        (photos / p.name).symlink_to(p)
        (photos / ("copy-" + p.name)).symlink_to(p)  # the same picture again: still a new scene
    scenes = [f.scene for f in grab_all(FrameGrabber(ImageFolderSource(photos), drop=False))]
    assert scenes == [0, 1, 2, 3]
    still = fitted(held_in_photos(1)[0])
    frames = grab_all(FrameGrabber(_Frames([still] * 3, loop=True), drop=False))
    assert [f.scene for f in frames] == [0, 0, 0, 1, 1, 1]  # the loop's restart is a new scene
    assert isinstance(OpenCVSource("x", live=False, description="x").restarts, int)


def face_at(rgb: np.ndarray, box: tuple[float, float, float, float],
            p_without: float = 0.1) -> FaceResult:
    probs = (1.0 - p_without, p_without)
    k = int(np.argmax(probs))
    return FaceResult(box, LABELS[k], probs[k], probs, 0.9, appearance=descriptor(rgb, box))


def two_people() -> tuple[np.ndarray, np.ndarray]:
    """Two annotated faces of different held-in photos, each 96x96."""
    crops = []
    for item in load_voc(DATA_ILC, exclude=set(HELD_OUT.read_text().split()))[:40]:
        big = [a for a in item.annotations if a.short_side >= 60]
        if big:
            x1, y1, x2, y2 = (int(v) for v in big[0].box)
            rgb = cv2.cvtColor(cv2.imread(str(item.path)), cv2.COLOR_BGR2RGB)
            crops.append(cv2.resize(rgb[y1:y2, x1:x2], (96, 96), interpolation=cv2.INTER_AREA))
        if len(crops) == 2:
            return crops[0], crops[1]
    raise AssertionError("no two large faces")


def test_a_face_replaced_at_the_same_spot_starts_a_new_track() -> None:
    a, b = two_people()
    background = fitted(held_in_photos(3)[2])
    rng = np.random.default_rng(1)
    tracker = Tracker(LABELS)
    ids = []
    for k in range(12):  # A stands at the spot for 6 frames, then B steps into the same place
        frame = held(background, 0, rng)
        x = 200 + (k % 3)
        frame[100:196, x:x + 96] = a if k < 6 else b
        box = (float(x), 100.0, float(x + 96), 196.0)
        ids.append(tracker.update([face_at(frame, box)], scene=0)[0].track)
    assert ids[:6] == [1] * 6 and ids[6:] == [2] * 6, ids
    assert float(descriptor(frame, box) @ descriptor(frame, box)) >= SAME_FACE
    # Without the appearance test the two people are one track.
    blind = Tracker(LABELS, TrackerOptions(appearance=False))
    frame = held(background, 0, rng)
    frame[100:196, 200:296] = a
    blind.update([face_at(frame, (200.0, 100.0, 296.0, 196.0))])
    frame[100:196, 200:296] = b
    assert blind.update([face_at(frame, (200.0, 100.0, 296.0, 196.0))])[0].track == 1


def test_a_new_scene_ends_every_track_and_its_votes() -> None:
    tracker = Tracker(LABELS)
    box = (100.0, 100.0, 160.0, 170.0)
    plain = FaceResult(box, "without_mask", 0.9, (0.1, 0.9), 0.9)
    for _ in range(5):
        first = tracker.update([plain], scene=0)[0]
    masked = FaceResult(box, "with_mask", 0.9, (0.9, 0.1), 0.9)
    after = tracker.update([masked], scene=1)[0]
    assert after.track != first.track and after.label == "with_mask"  # no votes carried over
    assert [t.id for t in tracker.expired] == [first.track]


class _CountingDetector:
    """A detector that finds one face and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[Face]:
        self.calls += 1
        return [Face((10.0, 10.0, 60.0, 70.0), 0.9)]


@pytest.mark.skipif(not MODEL.is_file(), reason="shipped model missing")
def test_pipeline_detects_again_and_reuses_nothing_at_a_new_scene() -> None:
    from edge.inference.classifier import ClassifierOptions, MaskClassifier

    detector = _CountingDetector()
    pipeline = Pipeline.from_parts(detector, MaskClassifier(ClassifierOptions(MODEL)),
                                   PipelineOptions(detect_every=4, classify_every=4))
    rgb = fitted(held_in_photos(1)[0])
    reused = [pipeline.process(rgb, video=True, scene=0).faces[0].reused for _ in range(3)]
    assert reused == [0, 1, 2] and detector.calls == 1
    cut = pipeline.process(rgb, video=True, scene=1).faces[0]
    assert cut.reused == 0 and detector.calls == 2


def write_video(frames: list[np.ndarray], path: Path, fps: float = 15.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                             (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.mark.skipif(not MODEL.is_file(), reason="shipped model missing")
def test_no_track_crosses_a_cut_in_a_video(tmp_path: Path) -> None:
    """Two street photos held 8 frames each in one video: `edge run` gives the faces of the
    second photo new tracks, and its first frame reuses no label of the first photo."""
    rng = np.random.default_rng(2)
    photos = [DATA_VOC / "images" / "maksssksksss0.jpg", DATA_VOC / "images" / "maksssksksss1.jpg"]
    frames = [held(fitted(p), k, rng) for p in photos for k in range(8)]
    video, events = tmp_path / "cut.avi", tmp_path / "events.jsonl"
    write_video(frames, video)
    result = CliRunner().invoke(app, ["run", "--source", str(video), "--json", str(events),
                                      "--detector", "yunet-stock", "--quiet"])
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in events.read_text().splitlines()]
    records = [r for r in records if "faces" in r]
    assert len(records) == 16
    first = {f["track"] for r in records[:8] for f in r["faces"]}
    second = {f["track"] for r in records[8:] for f in r["faces"]}
    assert first and second and not first & second
    assert all("reused" not in f for f in records[8]["faces"])
