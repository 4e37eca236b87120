"""The tracking benchmark: clips reproducible by seed, ground truth where the faces are drawn,
metrics that catch a bad tracker, the quick benchmark end to end through run_loop, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from typer.testing import CliRunner

from benchmarks.holdout_split import ILC_TEST_LIST
from benchmarks.tracking import clips
from benchmarks.tracking.clip_scenes import (
    Background,
    FacePath,
    FaceSource,
    Mover,
    Scene,
    sprite_of,
)
from benchmarks.tracking.clips import (
    ClipPlan,
    HeldClip,
    MovingClip,
    Shot,
    Truth,
    build_clips,
    photo_pool,
)
from benchmarks.tracking.metrics import (
    Played,
    alert_counts,
    iou_distances,
    score_clip,
    score_photos,
    true_people,
)
from benchmarks.tracking.report import render_tracking
from edge.core.voc import AnnotatedImage, Annotation, read_name_list

TINY = ClipPlan(held_photos=2, moving_scenes=1, masked_scenes=1, scene_frames=24,
                scripts=("cross",))
LABELS = ("mask_weared_incorrect", "with_mask", "without_mask")
RED, GREY = (250, 10, 10), 128


def test_clips_are_deterministic_by_seed() -> None:
    first = build_clips("held-in", SHARED, TINY, seed=3)
    again = build_clips("held-in", SHARED, TINY, seed=3)
    other = build_clips("held-in", SHARED, TINY, seed=4)
    assert list(first) == ["held", "moving", "dropped", "masked"]
    for kind, clip in first.items():
        assert len(clip) == len(again[kind]) > 0
        for i in (0, len(clip) // 2, len(clip) - 1):
            assert np.array_equal(clip.frame(i), again[kind].frame(i)), (kind, i)
            assert clip.truth(i) == again[kind].truth(i)
            assert clip.frame(i).shape == (480, 640, 3)
    assert not np.array_equal(first["moving"].frame(5), other["moving"].frame(5))
    dropped = first["dropped"]
    steps = np.diff(dropped.kept)
    assert set(steps) <= {1, 2, 3} and dropped.kept == again["dropped"].kept


def test_held_in_and_held_out_photos_never_mix() -> None:
    held_out = read_name_list(ILC_TEST_LIST)
    voc_test = read_name_list(clips.VOC_TEST_LIST)
    inside = {p.path.name for p in photo_pool("held-in", SHARED).photos}
    outside = {p.path.name for p in photo_pool("held-out", SHARED).photos}
    assert inside and outside
    assert not inside & (held_out | voc_test)
    assert outside <= held_out
    with pytest.raises(ValueError, match="unknown split"):
        photo_pool("train", SHARED)


def _solid_sprites(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sprites of solid red over a grey background, so that pixels say where faces are."""
    monkeypatch.setattr(clips, "sprite_pixels", lambda source, sprite: np.full(
        (sprite.size[1], sprite.size[0], 3), RED, np.float32))
    monkeypatch.setattr(clips.MovingClip, "_render_background", staticmethod(
        lambda background: np.full((480, 640, 3), GREY, np.float32)))


def _mover(x: float, y: float, width: float, depth: int, index: int = 0) -> Mover:
    source = FaceSource(Path(f"photo{index}.jpg"), index, "without_mask", (10, 10, 60, 70))
    path = FacePath(width, (0.0, 10.0), (x, x + 50), (y, y))
    return Mover(source, sprite_of(source, width), path, depth)


def test_truth_boxes_lie_where_the_faces_are_pasted(monkeypatch: pytest.MonkeyPatch) -> None:
    _solid_sprites(monkeypatch)
    scene = Scene(Background(Path("bg.jpg"), (0, 0, 640, 480)), 10,
                  (_mover(150, 200, 80, 0, 0), _mover(480, 300, 60, 1, 1)), "test")
    clip = MovingClip([scene], seed=0)
    for i in (0, 5, 9):
        rgb = clip.frame(i).astype(int)
        truth = clip.truth(i)
        assert len(truth) == 2 and all(t.visible for t in truth)
        for t in truth:
            x1, y1, x2, y2 = t.box
            inside = rgb[int((y1 + y2) / 2), int((x1 + x2) / 2)]
            assert abs(inside - np.array(RED)).max() < 25, (i, t)
            outside = rgb[int(y2 + 0.5 * (y2 - y1)), int(x2 + 0.5 * (x2 - x1))]
            assert abs(outside - GREY).max() < 25, (i, t)
            corner = rgb[int(y1) + 1, int(x1) + 1]  # the box lies inside the opaque ellipse
            assert abs(corner - np.array(RED)).max() < 25


def test_a_face_more_than_half_covered_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    _solid_sprites(monkeypatch)
    under, over = _mover(300, 240, 80, 0, 0), _mover(310, 240, 80, 1, 1)
    clip = MovingClip([Scene(Background(Path("bg.jpg"), (0, 0, 640, 480)), 10,
                             (over, under), "test")], seed=0)
    truth = {t.identity: t for t in clip.truth(0)}
    assert not truth[under.source.identity].visible
    assert truth[over.source.identity].visible
    outside = MovingClip([Scene(Background(Path("bg.jpg"), (0, 0, 640, 480)), 10,
                                (_mover(-10, 240, 80, 0),), "test")], seed=0)
    assert not outside.truth(0)[0].visible  # mostly left of the frame


def test_held_boxes_move_with_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    photo = np.full((300, 400, 3), GREY, np.uint8)
    photo[100:160, 150:200] = RED
    monkeypatch.setattr(clips, "read_rgb", lambda path: photo)
    item = AnnotatedImage(Path("p.jpg"), (Annotation("with_mask", (150, 100, 200, 160)),))
    clip = HeldClip([Shot(item, (400, 300), (1.0, -5.0, 3.0), (1.04, 5.0, -3.0))] * 2, seed=1)
    assert clip.cuts == (12,)
    for i in (0, 6, 11):
        (t,) = clip.truth(i)
        rgb = clip.frame(i).astype(int)
        x1, y1, x2, y2 = t.box
        assert abs(rgb[int((y1 + y2) / 2), int((x1 + x2) / 2)] - np.array(RED)).max() < 25
        assert abs(rgb[int(y2) + 6, int(x2) + 6] - GREY).max() < 25
        assert t.identity == "p.jpg#0" and t.counts
    assert clip.truth(0)[0].box != clip.truth(11)[0].box  # panned and zoomed


def _truth(identity: str, x: float, label: str = "with_mask", size: float = 60) -> Truth:
    return Truth(identity, (x, 100.0, x + size, 100.0 + size), label, True)


def _face(truth: Truth, track: int, label: str | None = None) -> dict:
    return {"box": list(truth.box), "track": track, "label": label or truth.label,
            "raw_label": truth.label, "detector_score": 0.9}


def _two_people(frames: int = 10) -> list[list[Truth]]:
    return [[_truth("a", 100 + i), _truth("b", 400 - i, "without_mask")] for i in range(frames)]


def test_perfect_records_score_perfectly() -> None:
    truths = _two_people()
    played = Played([{"frame": i, "faces": [_face(t, k + 1) for k, t in enumerate(truth)]}
                     for i, truth in enumerate(truths)], [],
                    {"people": {"with_mask": 1, "without_mask": 1}, "fps": 10.0})
    r = score_clip(truths, (), 10 / 15, played, LABELS, ("without_mask",))
    assert r["idf1"] == 1.0 and r["id_switches"] == 0 and r["mota"] == 1.0
    assert r["joins"] == 0 and r["tracks_across_cuts"] == 0
    assert r["accuracy_reported"] == r["accuracy_raw"] == 1.0
    assert r["people_counted"] == r["people_true"] == 2
    assert r["f1_reported"] == {"with_mask": 1.0, "without_mask": 1.0}


def test_a_track_that_joins_two_people_is_caught() -> None:
    # Person a until frame 4, then a cut and person b at the same place: the bad tracker keeps
    # track 1 and, after the cut, also calls b "with_mask" by smoothing.
    truths = [[_truth("a", 100)] for _ in range(5)] + \
             [[_truth("b", 102, "without_mask")] for _ in range(5)]
    records = [{"frame": i, "faces": [_face(t[0], 1, "with_mask")]} for i, t in enumerate(truths)]
    r = score_clip(truths, (5,), 10 / 15, Played(records, [], {"people": {"with_mask": 1}}),
                   LABELS, ("without_mask",))
    assert r["joins"] == 1 and r["join_share"] == 1.0 and r["tracks_across_cuts"] == 1
    # CLEAR-MOT switches count a person changing track, not a track changing person: the join
    # shows in IDF1 (0.5: one person's frames are on another's track) and in `joins` only.
    assert r["id_switches"] == 0 and r["idf1"] == 0.5
    assert r["accuracy_reported"] == 0.5 and r["accuracy_raw"] == 1.0
    assert r["people_counted"] == 1 and r["people_true"] == 2


def test_small_faces_are_dont_care_and_alerts_are_checked() -> None:
    tiny = Truth("t", (10.0, 10.0, 20.0, 22.0), "with_mask", True)
    truths = [[_truth("a", 100), tiny] for _ in range(4)]
    records = [{"frame": i, "faces": [_face(t[0], 1), _face(tiny, 2), {
        **_face(_truth("x", 500), 3)}]} for i, t in enumerate(truths)]
    r = score_clip(truths, (), 4 / 15, Played(records, [], {}), LABELS, ("without_mask",))
    assert r["false_positives"] == 4  # the face at x=500 only; the tiny one is don't-care
    assert r["truth_faces"] == 4 and r["misses"] == 0
    assert true_people(truths) == 1
    alerts = [{"event": "alert", "frame": 1, "box": list(truths[1][0].box), "track": 1},
              {"event": "alert", "frame": 2, "box": [300, 300, 340, 340], "track": 3}]
    counted = alert_counts(truths, alerts, ("without_mask",), 3600.0)
    assert counted == {"alerts": 2, "false_alerts": 2, "false_alerts_per_hour": 2.0}


def test_iou_distances_shim() -> None:
    d = iou_distances(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10],
                                                            [50, 50, 60, 60]]))
    assert d[0, 0] == 0.0 and np.isnan(d[0, 1]) and np.isnan(d[0, 2])  # IoU 1/3 < 0.5
    assert iou_distances(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0, 2)


def test_photos_count_track_ids_carried_from_another_photo() -> None:
    photos = [AnnotatedImage(Path(f"{n}.jpg"), (Annotation("with_mask", (10, 10, 70, 80)),))
              for n in ("a", "b")]
    face = {"box": [10, 10, 70, 80], "label": "with_mask", "raw_label": "with_mask",
            "detector_score": 0.9}
    records = [{"frame": 0, "source": "a.jpg", "faces": [{**face, "track": 1}]},
               {"frame": 1, "source": "b.jpg", "faces": [{**face, "track": 1},
                                                        {**face, "box": [200, 200, 240, 240],
                                                         "track": 2}]}]
    r = score_photos(photos, Played(records, [], {"people": {"with_mask": 2}}), LABELS)
    assert r["faces"] == 3 and r["faces_with_earlier_track"] == 1
    assert r["matched_with_earlier_track"] == 1 and r["matched_faces"] == 2
    assert r["accuracy_reported"] == 1.0 and r["truth_faces"] == 2


CLIP_FIELDS = {"variant", "kind", "frames", "idf1", "id_switches", "mota", "false_positives",
               "misses", "truth_faces", "tracks", "matched_tracks", "joins", "join_share",
               "tracks_across_cuts", "matched_faces", "accuracy_reported", "accuracy_raw",
               "f1_reported", "f1_raw", "macro_f1_reported", "macro_f1_raw", "people_counted",
               "people", "people_true", "alerts", "false_alerts", "false_alerts_per_hour",
               "fps", "track_ms", "replayed"}
PHOTO_FIELDS = {"variant", "kind", "frames", "truth_faces", "faces", "faces_with_earlier_track",
                "share_with_earlier_track", "matched_with_earlier_track", "matched_faces",
                "accuracy_reported", "accuracy_raw", "f1_reported", "f1_raw", "people_counted",
                "fps", "replayed"}


def test_quick_benchmark_runs_through_run_loop_and_writes_every_field(tmp_path: Path) -> None:
    from benchmarks.tracking.bench import VARIANTS, app

    result = CliRunner().invoke(app, ["--quick", "--split", "held-out", "--out", str(tmp_path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "tracking.json").read_text())
    for key in ("command", "started", "seconds", "model", "labels", "detector", "alert_after",
                "alert_labels", "variants", "tracker_defaults", "plan", "splits", "quick"):
        assert key in written, key
    assert written["model"].endswith("face_mask_3c_student_int8.tflite") and written["quick"]
    split = written["splits"]["held-out"]
    assert set(split["clips"]) == {"held", "moving", "dropped", "masked"}
    rows = split["rows"]
    assert {(r["kind"], r["variant"]) for r in rows} == {
        (k, v) for k in ("held", "moving", "dropped", "masked", "photos") for v in VARIANTS}
    for row in rows:
        fields = PHOTO_FIELDS if row["kind"] == "photos" else CLIP_FIELDS
        assert fields <= set(row), (row["kind"], fields - set(row))
        assert row["frames"] > 0
    held = [r for r in rows if r["kind"] == "held"]
    assert held[0]["frames"] == 3 * clips.HOLD_FRAMES and not held[0]["replayed"]
    assert held[1]["replayed"] and held[1]["fps"] == held[0]["fps"]
    lines = render_tracking(written)
    assert any(line.startswith("| variant | kind |") for line in lines)
    assert sum(line.startswith("| `") for line in lines) == len(rows)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from benchmarks.config import FULL_OUT
    from benchmarks.tracking.bench import app

    out = ["--out", str(tmp_path)]
    for args in (["--variant", "nope", *out], ["--split", "sideways", *out],
                 ["--kind", "film", *out], ["--kind", "photos", "--split", "held-in", *out],
                 ["--model", str(tmp_path / "missing.tflite"), "--quick", *out],
                 ["--quick", "--out", str(FULL_OUT)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "benchmarks.tracking.bench: error:" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "tracking.json").exists()


def test_renderer_makes_one_table_per_split() -> None:
    row = {"variant": "default", "kind": "moving", "frames": 10, "people_true": 2,
           "people_counted": 3, "idf1": 0.8, "id_switches": 1, "mota": 0.7, "joins": 1,
           "join_share": 0.25, "tracks_across_cuts": 0, "accuracy_reported": 0.9,
           "accuracy_raw": 0.85, "f1_reported": {"with_mask": 0.9}, "f1_raw": {"with_mask": 0.8},
           "alerts": 1, "false_alerts": 0, "false_alerts_per_hour": 0.0, "fps": 12.5}
    result = {"labels": list(LABELS), "variants": {"default": {}}, "alert_labels": ["x"],
              "splits": {"held-in": {"rows": [row], "clips": {"moving": {"frames": 10}}},
                         "held-out": {"rows": [{**row, "counted_true": 2, "counted_extra": 1,
                                                 "counted_small": 0, "counted_unannotated": 0}]}}}
    lines = render_tracking(result)
    assert sum(line.startswith("| variant | kind |") for line in lines) == 2
    assert any("### held-in" in line for line in lines)
    assert any("### held-out" in line for line in lines)
    assert any("| `default` | moving | 10 | 2 / 3 | - | 0.800 | 1 | 0.700 | 1 (25%)" in line
               for line in lines)
    assert any("| `default` | moving | 10 | 2 / 3 | 2 / 1 / 0 / 0 | 0.800 |" in line
               for line in lines)


def test_render_only_adds_the_tracking_section(tmp_path: Path) -> None:
    from benchmarks.config import make_config
    from benchmarks.run import render

    result = {"command": "python -m benchmarks.tracking", "labels": list(LABELS),
              "variants": {"default": {}}, "splits": {"held-out": {"rows": []}}}
    (tmp_path / "tracking.json").write_text(json.dumps(result))
    (tmp_path / "machine.json").write_text(json.dumps({"cpu": {}, "versions": {}}))
    cfg = make_config(False, out=tmp_path, report=tmp_path / "RESULTS.md")
    render(cfg, {"run_id": "R1", "command": "python -m benchmarks.run", "quick": False})
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Tracking: people, labels and alerts against ground truth" in text
    assert "### held-out" in text
