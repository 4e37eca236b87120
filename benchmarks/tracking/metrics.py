"""Score what `edge run` reported on a clip against the clip's ground truth
(benchmarks/tracking/clips.py).

Why these numbers: a device reports people, their smoothed labels and alerts through its tracker,
so a tracker that joins two people (across a cut, a crossing, a photo change) miscounts people,
smears one person's label onto another and raises or misses alerts. Measured per clip:

- py-motmetrics' IDF1, ID switches and MOTA, with IoU distance (a match needs IoU >= 0.5). Only
  ground-truth faces that are visible and >= 16 px on the short side count; a hypothesis matched
  to any other ground-truth face (smaller, mostly covered, mostly outside) is "don't care": it is
  dropped, neither a false positive nor a match.
- Reported (`label`, the tracker's smoothed label) against raw (`raw_label`, the classifier's label
  of that frame) accuracy and per-class F1 on the faces matched to a counted ground-truth face
  (IoU >= 0.5, `edge.core.metrics.classification_report`).
- Joins: hypothesis tracks matched to two or more distinct ground-truth identities (count, and
  share of the tracks matched to any), and tracks seen on both sides of a cut.
- People: the run summary's people total against the true number of identities (visible with
  >= 16 px in at least 3 played frames, the tracker's `count_after`), and what the counted tracks
  were (the count rule replayed on the records, `edge.history.sink.TrackBook`): true people
  found, extra tracks of people already found, tracks on faces too small to count, and tracks
  matching no annotated face at all (a face the annotations miss, or a false detection).
- Alerts: how many, and the false ones (an alert whose box matches no ground-truth face at IoU
  >= 0.5, or one whose class is not an alert label), per hour of clip time at its nominal FPS.

`score_photos` scores a folder of independent photos the same way (faces matched with
`edge.inference.evaluate.match`), and counts the faces whose track id was first used in another
photo.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.tracking.clips import MIN_FACE, Truth
from edge.core.boxes import iou_matrix, match_iou
from edge.core.metrics import classification_report
from edge.core.voc import AnnotatedImage
from edge.inference.evaluate import match

try:  # py-motmetrics comes with the `train` extra (pyproject.toml)
    import motmetrics as mm
except ImportError:  # pragma: no cover - a device install
    mm = None

MATCH_IOU = 0.5
TRUE_PERSON_FRAMES = 3  # a true person is visible (>= MIN_FACE px) in at least this many frames
MOT_METRICS = {"idf1": "idf1", "num_switches": "id_switches", "mota": "mota",
               "num_false_positives": "false_positives", "num_misses": "misses",
               "num_objects": "truth_faces"}


class MissingPackage(RuntimeError):
    """A package the benchmark needs is not installed (one-line message)."""


def require_motmetrics() -> None:
    """MissingPackage naming the extra when py-motmetrics is not installed."""
    if mm is None:
        raise MissingPackage("py-motmetrics is not installed here: pip install 'maskedge[train]'")


@dataclass
class Played:
    """What the sinks of one device run received, and its summary (`RunSummary.to_json()`)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    tracking: Any = None  # the run's TrackerOptions (None: the defaults)


def iou_distances(truth: np.ndarray, hyps: np.ndarray,
                  max_distance: float = 1.0 - MATCH_IOU) -> np.ndarray:
    """1 - IoU of every truth box (rows) with every hypothesis box, NaN (no match) beyond
    `max_distance`; boxes (x1, y1, x2, y2).

    Shim: motmetrics 1.4's `motmetrics.distances.iou_matrix` calls `np.asfarray`, which numpy 2
    removed (AttributeError), so the same distance is computed here with edge.core.boxes.iou_matrix.
    The rest of motmetrics 1.4 (accumulator, IDF1, MOTA) works with numpy 2 and pandas 3.
    """
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    hyps = np.asarray(hyps, np.float64).reshape(-1, 4)
    distances = 1.0 - iou_matrix(truth, hyps)
    distances[distances > max_distance] = np.nan
    return distances


def _boxes(items: Sequence[Any], key: str | None = None) -> np.ndarray:
    values = [item[key] if key else item.box for item in items]
    return np.asarray(values, np.float64).reshape(-1, 4)


@dataclass
class _Labels:
    """Reported and raw labels of matched faces, as model label indices."""

    labels: tuple[str, ...]
    truth: list[int] = field(default_factory=list)
    reported: list[int] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    other_class: int = 0  # matched faces whose true class the model does not have

    def add(self, true_label: str, face: dict[str, Any]) -> None:
        index = {name: i for i, name in enumerate(self.labels)}
        if true_label not in index:
            self.other_class += 1
            return
        self.truth.append(index[true_label])
        self.reported.append(index[face["label"]])
        self.raw.append(index[face["raw_label"]])

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"matched_faces": len(self.truth),
                               "matched_faces_other_class": self.other_class}
        for name, predicted in (("reported", self.reported), ("raw", self.raw)):
            if not self.truth:
                out.update({f"accuracy_{name}": None, f"f1_{name}": {}, f"macro_f1_{name}": None})
                continue
            report = classification_report(np.array(self.truth), np.array(predicted),
                                           self.labels)
            out[f"accuracy_{name}"] = round(report["accuracy"], 4)
            out[f"f1_{name}"] = {k: round(v["f1"], 4) for k, v in report["per_class"].items()
                                 if v["support"]}
            out[f"macro_f1_{name}"] = round(float(np.mean(list(out[f"f1_{name}"].values()))), 4)
        return out


def frame_pairs(truth: Sequence[Truth], faces: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(face, truth) index pairs of one frame, best overlap first, IoU >= MATCH_IOU; every
    ground-truth face takes part (the don't-care ones too, so that their hypotheses drop out)."""
    if not truth or not faces:
        return []
    return match_iou(_boxes(faces, "box"), _boxes(truth), MATCH_IOU)


class ClipScorer:
    """Accumulates one run frame by frame (`add`), then `report`s every metric."""

    def __init__(self, labels: Sequence[str], cuts: Sequence[int] = ()) -> None:
        require_motmetrics()
        self.accumulator = mm.MOTAccumulator(auto_id=False)
        self.labels = _Labels(tuple(labels))
        self.cuts = np.asarray(sorted(cuts), np.int64)
        self.ids: dict[str, int] = {}
        self.people: dict[int, set[str]] = defaultdict(set)  # track -> identities matched
        self.small: set[int] = set()  # tracks matched to a don't-care face
        self.shots: dict[int, set[int]] = defaultdict(set)  # track -> shots it was seen in
        self.tracks: set[int] = set()
        self.frames = 0

    def add(self, frame: int, truth: Sequence[Truth], faces: Sequence[dict[str, Any]]) -> None:
        pairs = frame_pairs(truth, faces)
        dont_care = {f for f, k in pairs if not truth[k].counts}
        care = [k for k, t in enumerate(truth) if t.counts]
        hyps = [f for f in range(len(faces)) if f not in dont_care]
        distances = iou_distances(_boxes([truth[k] for k in care]),
                                  _boxes([faces[f] for f in hyps], "box"))
        self.accumulator.update([self.ids.setdefault(truth[k].identity, len(self.ids))
                                 for k in care], [int(faces[f]["track"]) for f in hyps],
                                distances, frameid=frame)
        shot = int(np.searchsorted(self.cuts, frame, side="right"))
        for face in faces:
            self.tracks.add(int(face["track"]))
            self.shots[int(face["track"])].add(shot)
        for f, k in pairs:
            if not truth[k].counts:
                self.small.add(int(faces[f]["track"]))
            else:
                self.people[int(faces[f]["track"])].add(truth[k].identity)
                self.labels.add(truth[k].label, faces[f])
        self.frames += 1

    def mot(self) -> dict[str, Any]:
        """IDF1, ID switches, MOTA and their counts (None where undefined: no counted faces)."""
        summary = mm.metrics.create().compute(self.accumulator, metrics=list(MOT_METRICS),
                                              name="clip").iloc[0]
        out: dict[str, Any] = {}
        for key, name in MOT_METRICS.items():
            value = float(summary[key])
            out[name] = None if value != value else (
                round(value, 4) if name in ("idf1", "mota") else int(value))
        return out

    def report(self) -> dict[str, Any]:
        matched = [t for t, people in self.people.items() if people]
        joins = sum(1 for t in matched if len(self.people[t]) >= 2)
        return {"frames": self.frames, **self.mot(), "tracks": len(self.tracks),
                "matched_tracks": len(matched), "joins": joins,
                "join_share": round(joins / len(matched), 4) if matched else None,
                "tracks_across_cuts": sum(1 for s in self.shots.values() if len(s) >= 2),
                **self.labels.report()}


def counted_tracks(played: Played, labels: Sequence[str]) -> set[int]:
    """The track ids the run counted as people: its count rule replayed on its records."""
    from edge.history.sink import TrackBook

    book = TrackBook(labels, played.tracking)
    counted: set[int] = set()
    for record in played.records:
        counted |= {s.id for s in book.update(record) if book.rule.counted(s)}
    return counted | {s.id for s in book.close() if book.rule.counted(s)}


def people_breakdown(scorer: ClipScorer, counted: set[int]) -> dict[str, int]:
    """What the counted tracks were (module docstring)."""
    found: set[str] = set()
    extra = small = unannotated = 0
    for track in sorted(counted):
        people = scorer.people.get(track) or set()
        if people:
            extra += 0 if people - found else 1
            found |= people
        elif track in scorer.small:
            small += 1
        else:
            unannotated += 1
    return {"counted_true": len(found), "counted_extra": extra, "counted_small": small,
            "counted_unannotated": unannotated}


def true_people(truths: Sequence[Sequence[Truth]]) -> int:
    """Identities counted (visible, >= MIN_FACE px) in at least TRUE_PERSON_FRAMES frames."""
    frames = Counter(t.identity for truth in truths for t in {x.identity: x for x in truth
                                                               if x.counts}.values())
    return sum(1 for n in frames.values() if n >= TRUE_PERSON_FRAMES)


def alert_counts(truths: Sequence[Sequence[Truth]], events: Sequence[dict[str, Any]],
                 alert_labels: Sequence[str], seconds: float) -> dict[str, Any]:
    """Alerts, and false ones: an alert's box matching no true face (IoU >= 0.5) or one whose
    true class is not an alert label; false alerts per hour of clip time."""
    alerts = [e for e in events if e.get("event") == "alert"]
    false = 0
    for alert in alerts:
        truth = truths[int(alert["frame"])]
        ious = iou_matrix(np.asarray([alert["box"]], np.float64), _boxes(truth))[0] \
            if truth else np.zeros(0)
        best = int(ious.argmax()) if len(ious) else -1
        if best < 0 or ious[best] < MATCH_IOU or truth[best].label not in alert_labels:
            false += 1
    hours = seconds / 3600.0
    return {"alerts": len(alerts), "false_alerts": false,
            "false_alerts_per_hour": round(false / hours, 1) if hours > 0 else None}


def score_clip(truths: Sequence[Sequence[Truth]], cuts: Sequence[int], seconds: float,
               played: Played, labels: Sequence[str],
               alert_labels: Sequence[str]) -> dict[str, Any]:
    """Every metric of the module docstring for one run over a clip; `truths[i]` is the ground
    truth of played frame i (the record's `frame`), `seconds` the clip's length in clip time."""
    scorer = ClipScorer(labels, cuts)
    for record in played.records:
        frame = int(record["frame"])
        scorer.add(frame, truths[frame], record["faces"])
    people = played.summary.get("people", {})
    timings = played.summary.get("timings_ms", {})
    return {**scorer.report(), "people_counted": sum(people.values()), "people": people,
            "people_true": true_people(truths),
            **people_breakdown(scorer, counted_tracks(played, labels)),
            **alert_counts(truths, played.events, alert_labels, seconds),
            "fps": round(float(played.summary.get("fps", 0.0)), 2),
            "track_ms": timings.get("track")}


def score_photos(photos: Sequence[AnnotatedImage], played: Played,
                 labels: Sequence[str]) -> dict[str, Any]:
    """A folder of photos through the device loop: annotated faces >= MIN_FACE px matched to the
    frame's faces (`edge.inference.evaluate.match`, IoU >= 0.5, by detector score); reported vs raw
    labels, and faces whose track id was first used on another photo (all faces, and matched
    ones)."""
    by_name = {item.path.name: item for item in photos}
    first_photo: dict[int, str] = {}
    tally = _Labels(tuple(labels))
    faces = carried = truth_faces = matched_carried = 0
    for record in played.records:
        name = record.get("source")
        item = by_name.get(name or "")
        found = record["faces"]
        carries = []
        for face in found:
            first = first_photo.setdefault(int(face["track"]), name or "")
            carries.append(first != name)
        faces += len(found)
        carried += sum(carries)
        if item is None:
            continue
        counted = [a for a in item.annotations if a.short_side >= MIN_FACE]
        truth_faces += len(counted)
        index = match(_boxes(counted), _boxes(found, "box"),
                      np.asarray([f["detector_score"] for f in found], np.float64), MATCH_IOU)
        for ann, d in zip(counted, index, strict=True):
            if d >= 0:
                tally.add(ann.label, found[int(d)])
                matched_carried += int(carries[int(d)])
    summary = played.summary
    return {"frames": len(played.records), "truth_faces": truth_faces, "faces": faces,
            "faces_with_earlier_track": carried,
            "share_with_earlier_track": round(carried / faces, 4) if faces else None,
            "matched_with_earlier_track": matched_carried, **tally.report(),
            "people_counted": sum(summary.get("people", {}).values()),
            "people": summary.get("people", {}),
            "fps": round(float(summary.get("fps", 0.0)), 2),
            "track_ms": summary.get("timings_ms", {}).get("track")}
