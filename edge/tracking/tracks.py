"""Follow faces from frame to frame: a track id per person, class probabilities smoothed per track.

`Tracker.update(faces, in_zone, scene, still)` matches the faces of a frame to the live tracks,
greedily (best pair first, each face and track used once): first by box overlap (IoU >=
`iou_threshold`) with each track's box moved on by its recent velocity, then the faces and tracks
left over by centre distance (within one face width, widths within a factor 1.5). A pair is
allowed only when the face also looks like the track (edge/inference/appearance.py), so a new person
who steps into the spot of the last one starts a track of their own. An unmatched face starts a new
track (ids count up from 1); a track not seen for more than `max_age` processed frames ends, so a
face that leaves and comes back later gets a new id. `matcher="bytetrack"` swaps the matching for
ByteTrack's (edge/tracking/bytetrack.py: Kalman motion, two stages by detector score), kept to
compare.

Nothing crosses a cut: a frame of a new `scene` (edge/video/scenecut.py: the view changed wholesale,
the source reconnected or restarted) ends every track first, and a `still` (a photo: an image file
or a folder's image) is a scene of its own whose every face is one track that counts as a person at
once; nothing carries from one photo to the next.

Each track keeps its last `smooth_frames` fresh classifications (a face whose probabilities the
pipeline reused from the frame before adds nothing new), each weighted by the classifier's margin
between its top two classes and by the face's size (full weight from 48 px); its label is the
argmax of their weighted mean and its score that mean's value, so one misread frame does not flip
the label (`raw_label` / `raw_score` in the JSON keep what the classifier said about this frame).
Where that mean stays under `smooth_min` (0.7) the window is split, the classifier keeps changing
its mind about the face, and the frame's own label is reported: a vote there makes every frame
say the majority, right or wrong. Chosen on held-in clips with the 3-class student: always
voting put the reported label 3.1 points under the raw one on the moving clip (two faces the
student reads right only a third of the time, more surely when wrong); 0.7 is within 0.2 points
of the raw label on every held-in clip and still votes down a lone flicker of a sure classifier
(0.8 ties the raw label everywhere but no longer does that).
A track unseen for `max_age` frames waits `reid_age` more (within its scene) in `lost`: the first
new face that looks like it (`reid_min`) continues it, so a person who leaves the view and comes
back is one track and one person; people counts include the waiting tracks.
`smoothing="mean"` (every sighting alike, as before) and `"fresh"` remain to re-measure; the
choice is measured in `python -m benchmarks.tracking` (RESULTS.md, section tracking).

Why this matcher (measured with YuNet on 640x480 frames of 40 face-mask-voc photos with 1-4
faces, each photo held 6 frames while the view pans 0-24 px per frame; the script is in the test
`test_fast_motion_keeps_ids_where_iou_alone_loses_them`, which re-checks the 24 px case):

| matcher | id switches at 0 / 6 / 12 / 24 px per frame | faces merged into another's track |
| --- | --- | --- |
| IoU >= 0.3 | 0 / 0 / 6 / 68 | 6 / 10 / 9 / 13 |
| centre within 0.5 widths | 0 / 0 / 5 / 76 | 10 / 14 / 14 / 28 |
| IoU, boxes moved by velocity | 0 / 0 / 1 / 62 | 6 / 14 / 9 / 7 |
| the same + centre fallback (chosen) | 0 / 0 / 0 / 7 | 16 / 16 / 13 / 7 |

Centroid distance alone is worse than IoU everywhere: it ignores size, so it joins more strangers
and still loses fast faces. IoU alone loses a face once it moves more than about a third of its
width between processed frames, which on a busy device (dropped frames) or a small face is
ordinary: each loss makes a new id and can count a person twice. Velocity fixes steady motion once
a track has two sightings; the centre fallback catches the first jump. The cost was more merges
when one face replaces another at the same spot from one frame to the next (a photo cut here; in
a camera, the next person in a queue stepping into the same place): scene numbers now end every
track at a cut, and the appearance test keeps the next person in the queue apart.

The rest was chosen on held-in clips with ground truth (`python -m benchmarks.tracking --split
held-in`: faces moving, crossing, leaving and coming back, one replaced at its spot, and the same
with half the frames dropped; RESULTS.md, section tracking, has the held-in and held-out tables):
`max_age` 30 instead of 10 keeps a face through a detector gap or a short absence (people counted
on the moving clip 25 -> 23 of 17 true, dropped frames 21 -> 19); the appearance test at 0.45
instead of 0.6 splits fewer moving faces (ID switches 8 -> 3, people 23 -> 20) and still keeps the
replaced person apart, which 0.3 or no appearance test no longer does (one join each). ByteTrack's
association (`matcher="bytetrack"`, Kalman motion, two stages by score) switched ids 15-16 times
on the same clips, the IoU + centre matcher 3-6: with a detector run every other frame and faces
moving up to a tenth of the frame a second, its IoU-only stages lose fast faces. The count rule
(`count_min_score` 0.6, `count_min_face` 16 px) keeps detector false positives and faces too small
to classify out of the people count: on held-in held photos 231 -> 197 people counted for 188 true.
`matcher="iou"` or `"centroid"`, `velocity=False`, `appearance=False`, `scene_reset=False` and
the other smoothings remain in `TrackerOptions` to re-measure.

`tracking_cost_us()` measures what the tracker adds per frame (printed by the tests).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge.core.boxes import Box, greedy_pairs, iou_matrix
from edge.inference.appearance import similarities
from edge.tracking.bytetrack import KalmanBox, associate
from edge.tracking.events import FaceRecord

if TYPE_CHECKING:
    from edge.inference.pipeline import FaceResult

SMOOTHING = ("mean", "fresh", "confidence")


@dataclass(frozen=True)
class TrackerOptions:
    iou_threshold: float = 0.3  # least overlap for a face to continue a track
    max_age: int = 30  # processed frames a track survives unseen (2 s at 15 FPS)
    smooth_frames: int = 5  # sightings whose probabilities are averaged
    count_after: int = 3  # sightings (inside a zone) before a track counts as a person
    #: ... and only when its mean detector score and mean face size (short side, pixels) reach
    #: these: a face the detector is unsure of, or too small to classify, is no person to count.
    count_min_score: float = 0.6
    count_min_face: float = 16.0
    #: iou+centroid (default), iou, centroid, or bytetrack (edge/tracking/bytetrack.py)
    matcher: str = "iou+centroid"
    velocity: bool = True  # match against boxes moved on by their recent motion
    #: A face continues a track only if it also looks like it (edge/inference/appearance.py): cosine
    #: similarity of their looks at least `appearance_min` (chosen on held-in clips,
    #: `python -m benchmarks.tracking`; the pipeline's label reuse asks for SAME_FACE).
    appearance: bool = True
    appearance_min: float = 0.45
    #: A new scene (edge/video/scenecut.py) ends every track; photos are one sighting each.
    scene_reset: bool = True
    #: mean (every sighting), fresh (only freshly classified ones), confidence (fresh ones,
    #: weighted by the classifier's margin and the face's size); module docstring.
    smoothing: str = "confidence"
    #: A track whose smoothed probability stays under this reports the frame's own label: where
    #: the classifier keeps changing its mind about a face, a vote would make every frame say
    #: the majority, right or wrong (0: always the vote). Chosen on held-in clips with the
    #: default 3-class model (module docstring).
    smooth_min: float = 0.7
    #: A track unseen for longer than `max_age` waits this many more processed frames (10 s at
    #: 15 FPS), within its scene, for its person to come back: a new face that looks like it
    #: (cosine of their looks at least `reid_min`) continues it, so a person who leaves and
    #: returns is one track and one person (0: no waiting). Chosen on held-in clips: 0.5 counted
    #: 23 people for 21 on the masked clip (26 without), 19 for 17 on the moving one (20),
    #: with no more tracks joining two people; 0.65 and 0.85 re-identified fewer.
    reid_age: int = 150
    reid_min: float = 0.5

    def __post_init__(self) -> None:
        if self.max_age < 0 or self.smooth_frames < 1 or self.count_after < 1 or \
                self.reid_age < 0:
            raise ValueError("tracker: max_age >= 0, smooth_frames >= 1, count_after >= 1, "
                             "reid_age >= 0")
        if self.matcher not in MATCHERS:
            raise ValueError(f"tracker: matcher must be one of {', '.join(MATCHERS)}")
        if self.smoothing not in SMOOTHING:
            raise ValueError(f"tracker: smoothing must be one of {', '.join(SMOOTHING)}")


@dataclass
class Track:
    """One followed face: its last box, recent probabilities and what it was seen as."""

    id: int
    box: Box
    window: deque[tuple[tuple[float, ...], float]]  # (probabilities, weight) of sightings
    labels: tuple[str, ...]
    hits: int = 1  # sightings
    missed: int = 0  # processed frames since the last sighting
    anchor: Box = (0.0, 0.0, 0.0, 0.0)  # the last box the detector found for it (not reused)
    since: int = 0  # processed frames since `anchor`
    fresh: int = 1  # sightings on a box the detector found on that frame
    score_sum: float = 0.0  # detector scores of its sightings, summed
    side_sum: float = 0.0  # short sides of its boxes, summed
    zone_hits: int = 0  # sightings inside a zone
    votes: Counter[str] = field(default_factory=Counter)  # smoothed label per in-zone sighting
    velocity: tuple[float, float] = (0.0, 0.0)  # centre pixels per frame
    appearance: np.ndarray | None = None  # running mean of the face's look (unit length)
    still: bool = False  # a photo's face: one sighting makes a person
    motion: KalmanBox | None = None  # matcher "bytetrack": the Kalman filter of its box

    def predicted(self, use_velocity: bool) -> Box:
        """Where the box should be this frame: the last box the detector found for it, moved on
        by its velocity for the frames since."""
        if self.motion is not None:
            return self.motion.box()
        if not use_velocity:
            return self.box
        steps = self.since + 1
        dx, dy = self.velocity[0] * steps, self.velocity[1] * steps
        x1, y1, x2, y2 = self.anchor
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def seen(self, face: FaceResult) -> None:
        """Another sighting. Velocity (mean of the last steps), motion and look learn only from
        boxes the detector found on this frame; a box it reused (`age` > 0) stays where it was
        while the face moves on."""
        box = face.box
        self.box, self.missed = box, 0
        self.hits += 1
        if face.age:
            self.since += 1
            return
        steps = self.since + 1
        vx = ((box[0] + box[2]) - (self.anchor[0] + self.anchor[2])) / 2 / steps
        vy = ((box[1] + box[3]) - (self.anchor[1] + self.anchor[3])) / 2 / steps
        if self.fresh > 1:
            vx, vy = (self.velocity[0] + vx) / 2, (self.velocity[1] + vy) / 2
        self.velocity, self.anchor, self.since = (vx, vy), box, 0
        self.fresh += 1
        if self.motion is not None:
            self.motion.update(box)
        look = face.appearance
        if look is not None:
            mixed = look if self.appearance is None else self.appearance + look
            self.appearance = mixed / max(float(np.linalg.norm(mixed)), 1e-6)

    def revive(self, box: Box) -> None:
        """Its person came back (re-identified): motion starts again from `box`."""
        self.box = self.anchor = box
        self.missed = self.since = 0
        self.velocity = (0.0, 0.0)
        if self.motion is not None:
            self.motion = KalmanBox(box)

    def smoothed(self) -> tuple[str, float]:
        """The label of the highest weighted mean probability over the window, and that mean."""
        total = sum(w for _, w in self.window)
        sums = [sum(p[k] * w for p, w in self.window) for k in range(len(self.labels))]
        k = max(range(len(sums)), key=sums.__getitem__)
        return self.labels[k], sums[k] / total

    def majority(self) -> str | None:
        """The smoothed label it was seen with most often inside a zone (None if never)."""
        return self.votes.most_common(1)[0][0] if self.votes else None


@dataclass(frozen=True)
class TrackedFace:
    """A classified face with its track id, smoothed label and whether it is inside a zone."""

    face: FaceResult
    track: int
    label: str  # smoothed over the track's recent sightings
    score: float  # smoothed probability of `label`
    in_zone: bool = True

    @property
    def box(self) -> Box:
        return self.face.box

    def to_json(self) -> FaceRecord:
        f = self.face
        return {"box": [round(v, 1) for v in f.box], "track": self.track, "label": self.label,
                "score": round(self.score, 4), "raw_label": f.label,
                "raw_score": round(f.score, 4), "detector_score": round(f.detector_score, 4),
                "in_zone": self.in_zone, **({"reused": f.reused} if f.reused else {})}


def sighting_weight(face: FaceResult, smoothing: str) -> float:
    """How much one sighting counts in its track's label (0: not at all; module docstring)."""
    if smoothing == "mean":
        return 1.0
    if face.reused:
        return 0.0  # the same classification again: no new evidence
    if smoothing == "fresh":
        return 1.0
    top2 = sorted(face.probabilities)[-2:]
    margin = top2[-1] - (top2[0] if len(top2) > 1 else 0.0)
    side = min(face.box[2] - face.box[0], face.box[3] - face.box[1])
    return (0.05 + margin) * min(1.0, max(side, 1.0) / 48.0)


#: (faces (N, 4), predicted track boxes (M, 4), IoU threshold, allowed (N, M)) -> pairs
Matcher = Callable[[np.ndarray, np.ndarray, float, np.ndarray], list[tuple[int, int]]]


def _centre_pairs(faces: np.ndarray, tracks: np.ndarray, max_widths: float,
                  same_size: bool, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Nearest centres first, at most `max_widths` track widths apart; with `same_size` only
    boxes whose widths differ by less than a factor 1.5."""
    widths = np.maximum(tracks[:, 2] - tracks[:, 0], 1.0)
    fc = (faces[:, :2] + faces[:, 2:]) / 2
    tc = (tracks[:, :2] + tracks[:, 2:]) / 2
    dist = np.linalg.norm(fc[:, None, :] - tc[None, :, :], axis=2) / widths[None, :]
    keep = (dist <= max_widths) & allowed
    if same_size:
        ratio = (faces[:, 2] - faces[:, 0])[:, None] / widths[None, :]
        keep &= (ratio > 1 / 1.5) & (ratio < 1.5)
    return greedy_pairs(-dist, keep)


def match_iou(faces: np.ndarray, tracks: np.ndarray, threshold: float,
              allowed: np.ndarray) -> list[tuple[int, int]]:
    """Greedy IoU matching, best overlap first, at least `threshold`."""
    ious = iou_matrix(faces, tracks)
    return greedy_pairs(ious, (ious >= threshold) & allowed)


def match_centroid(faces: np.ndarray, tracks: np.ndarray, threshold: float,
                   allowed: np.ndarray) -> list[tuple[int, int]]:
    """Greedy centre-distance matching within half a track width (`threshold` unused)."""
    return _centre_pairs(faces, tracks, 0.5, False, allowed)


def match_iou_centroid(faces: np.ndarray, tracks: np.ndarray, threshold: float,
                       allowed: np.ndarray) -> list[tuple[int, int]]:
    """IoU first; then the faces and tracks left over by centre distance (within one width,
    similar size), for faces that moved further than their own size allows to overlap."""
    pairs = match_iou(faces, tracks, threshold, allowed)
    free_f = [i for i in range(len(faces)) if i not in {f for f, _ in pairs}]
    free_t = [j for j in range(len(tracks)) if j not in {t for _, t in pairs}]
    if free_f and free_t:
        more = _centre_pairs(faces[free_f], tracks[free_t], 1.0, True,
                             allowed[np.ix_(free_f, free_t)])
        pairs += [(free_f[a], free_t[b]) for a, b in more]
    return pairs


MATCHERS: dict[str, Matcher | None] = {"iou+centroid": match_iou_centroid, "iou": match_iou,
                                       "centroid": match_centroid, "bytetrack": None}


class Tracker:
    """Track ids and smoothed labels for the faces of successive frames (module docstring)."""

    def __init__(self, labels: Sequence[str], options: TrackerOptions | None = None) -> None:
        self.labels = tuple(labels)
        self.options = options or TrackerOptions()
        self.tracks: list[Track] = []
        self.expired: list[Track] = []  # tracks the last update ended
        self.lost: list[Track] = []  # unseen past max_age, waiting to be re-identified
        self._next_id = 1
        self._scene: int | None = None

    def update(self, faces: Sequence[FaceResult], in_zone: Sequence[bool] | None = None,
               scene: int | None = None, still: bool = False) -> list[TrackedFace]:
        """The faces of one frame, in order, with their tracks; `in_zone[i]` says whether face i
        counts (default: all do). A `scene` other than the last one ends every track first;
        `still` (a photo) makes each face a track of its own that counts at once."""
        zone = list(in_zone) if in_zone is not None else [True] * len(faces)
        ended: list[Track] = []
        if self.options.scene_reset and (still or (scene is not None and scene != self._scene)):
            ended, self.tracks, self.lost = self.tracks + self.lost, [], []
        self._scene = scene
        matched = self._match(faces) if not (still and self.options.scene_reset) else {}
        seen = {id(t) for t in matched.values()}
        for track in self.tracks:
            if id(track) not in seen:
                track.missed += 1
                track.since += 1
        self.expired = ended + self._lose([t for t in self.tracks
                                           if t.missed > self.options.max_age])
        self.tracks = [t for t in self.tracks if t.missed <= self.options.max_age]
        still = still and self.options.scene_reset
        return [self._sighting(face, matched.get(i), zone[i], still)
                for i, face in enumerate(faces)]

    def _lose(self, unseen: list[Track]) -> list[Track]:
        """Tracks just past `max_age` wait in `lost` (with `reid_age`); the ones that waited too
        long, or cannot be recognised, end: returned."""
        o = self.options
        for track in self.lost:
            track.missed += 1
        waiting = [t for t in unseen if o.reid_age and t.appearance is not None]
        ended = [t for t in unseen if not (o.reid_age and t.appearance is not None)]
        ended += [t for t in self.lost if t.missed > o.max_age + o.reid_age]
        self.lost = [t for t in self.lost if t.missed <= o.max_age + o.reid_age] + waiting
        return ended

    def _reidentify(self, face: FaceResult) -> Track | None:
        """The lost track that looks most like `face` (at least `reid_min`), taken out of
        `lost`; None if none does."""
        look = face.appearance
        if look is None or not self.lost:
            return None
        sims = [float(np.dot(look, t.appearance)) if t.appearance is not None else -1.0
                for t in self.lost]
        best = int(np.argmax(sims))
        if sims[best] < self.options.reid_min:
            return None
        track = self.lost.pop(best)
        track.revive(face.box)
        self.tracks.append(track)
        return track

    def _match(self, faces: Sequence[FaceResult]) -> dict[int, Track]:
        """Face index -> the live track it continues."""
        if self.options.matcher == "bytetrack":
            for track in self.tracks:
                if track.motion is not None:
                    track.motion.predict()
        if not faces or not self.tracks:
            return {}
        boxes = np.array([f.box for f in faces], np.float64)
        predicted = np.array([t.predicted(self.options.velocity) for t in self.tracks],
                             np.float64)
        allowed = np.ones((len(faces), len(self.tracks)), bool)
        if self.options.appearance:
            looks = similarities([f.appearance for f in faces], [t.appearance for t in self.tracks])
            allowed = looks >= self.options.appearance_min
        match = MATCHERS[self.options.matcher]
        if match is None:
            pairs = associate(boxes, [f.detector_score for f in faces], predicted,
                              [t.missed == 0 for t in self.tracks], allowed)
        else:
            pairs = match(boxes, predicted, self.options.iou_threshold, allowed)
        return {i: self.tracks[j] for i, j in pairs}

    def _sighting(self, face: FaceResult, track: Track | None, in_zone: bool,
                  still: bool) -> TrackedFace:
        probs = tuple(float(p) for p in face.probabilities)
        weight = sighting_weight(face, self.options.smoothing)
        if track is None and not still:
            track = self._reidentify(face)
        if track is None:
            track = Track(self._next_id, face.box, deque(maxlen=self.options.smooth_frames),
                          self.labels, anchor=face.box, appearance=face.appearance, still=still,
                          motion=KalmanBox(face.box) if self.options.matcher == "bytetrack"
                          else None)
            self._next_id += 1
            self.tracks.append(track)
        else:
            track.seen(face)
        if weight > 0 or not track.window:
            track.window.append((probs, max(weight, 1e-6)))
        track.score_sum += face.detector_score
        track.side_sum += min(face.box[2] - face.box[0], face.box[3] - face.box[1])
        label, score = track.smoothed()
        if score < self.options.smooth_min:
            label, score = face.label, face.score
        if in_zone:
            track.zone_hits += 1
            track.votes[label] += 1
        return TrackedFace(face, track.id, label, score, in_zone)

    def counted(self, track: Track) -> bool:
        """Whether a track has lived long enough inside a zone to count as a person (a photo's
        face counts once it is seen inside a zone), as a face sure and large enough."""
        o = self.options
        return (track.zone_hits >= (1 if track.still else o.count_after)
                and track.score_sum >= o.count_min_score * track.hits
                and track.side_sum >= o.count_min_face * track.hits)


def tracking_cost_us(faces: int = 4, frames: int = 2000, seed: int = 0) -> float:
    """Mean microseconds `Tracker.update` takes per frame for `faces` faces drifting slowly
    (a number for benchmarks and the test output)."""
    from edge.inference.pipeline import FaceResult

    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, 500, (faces, 2))
    tracker = Tracker(("with_mask", "without_mask"))
    frames_faces = []
    for n in range(frames):
        frame = []
        for x, y in starts + n * 0.5:
            p = float(rng.uniform(0.0, 1.0))
            frame.append(FaceResult((x, y, x + 60, y + 60), "with_mask", p, (p, 1 - p), 0.9))
        frames_faces.append(frame)
    start = time.perf_counter()
    for frame in frames_faces:
        tracker.update(frame)
    return (time.perf_counter() - start) / frames * 1e6
