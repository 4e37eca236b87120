"""Which faces `edge run --collect` keeps within its budget (pure Python, no pixels).

A face is worth a person's look when the model may be wrong about it:

- `uncertain`: its two most likely classes lie less than `UNCERTAIN_MARGIN` apart. On 956 faces
  of 200 face-mask-voc photos the shipped 2-class model leaves 12 % below 0.3 (16 % below 0.4);
  those are photos it was largely trained on, so a new camera gives more;
- `disagrees`: the track's smoothed label is not what the classifier says about this frame;
- `flip`: the track's smoothed label changed since its last frame.

Its usefulness is `1 - margin`, plus 1 when it disagrees or flips (the model contradicts itself
about one person: one of the two answers is wrong), so such faces rank above every face that is
only uncertain. The rest, the confident faces, are sampled: the first confident sighting of each
track enters a reservoir sample (seeded, so a run can be repeated) of `sample_slots(budget)`
faces, about a tenth of the budget; a person who labels them learns whether the confident
answers are right, which the uncertain ones cannot say.

The budget (`--collect-max N`) counts the faces waiting for a label. When it is full, a new face
REPLACES the least useful one kept (its files are deleted) if it is more useful by at least
`REPLACE_GAIN`; otherwise it is skipped. Replacing, not skipping, is the choice because a camera
runs for days: with skipping, the folder would hold whatever came in the first minutes, not the
faces most worth labelling; the gain keeps one person's nearly equal frames from replacing each
other frame after frame (each replacement costs a JPEG encode and a manifest rewrite). Sampled
faces replace only each other, by the reservoir rule, so they stay a uniform sample of the run.

One person does not fill the folder: a track keeps at most `PER_TRACK` faces, its most useful
ones (a new face of a full track can only replace that track's least useful one). Two, not one:
a person seen turned away and then facing the camera are two different lessons; more would let
one person who lingers take the place of others.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass

UNCERTAIN_MARGIN = 0.3
REPLACE_GAIN = 0.05
PER_TRACK = 2
#: The reasons a face is kept, strongest first (`reason` in the manifest is the first that
#: applies).
REASONS = ("flip", "disagrees", "uncertain", "sample")
SAMPLE = "sample"


def sample_slots(budget: int) -> int:
    """Room for the confident sample: a tenth of the budget, at least one from 4 faces on (a
    smaller budget is all for the faces the model may be wrong about)."""
    return max(1, budget // 10) if budget >= 4 else 0


def margin_of(probabilities: Iterable[float]) -> float:
    """The top probability minus the second (1 for a one-class model)."""
    top = sorted(probabilities, reverse=True)
    return top[0] - (top[1] if len(top) > 1 else 0.0)


def reasons_for(margin: float, raw_label: str, label: str, previous: str | None) -> list[str]:
    """Why a face is worth a look (strongest first; empty: it is a confident face)."""
    found = []
    if previous is not None and previous != label:
        found.append("flip")
    if raw_label != label:
        found.append("disagrees")
    if margin < UNCERTAIN_MARGIN:
        found.append("uncertain")
    return found


def usefulness(margin: float, reasons: Iterable[str]) -> float:
    """How much a face is worth labelling (see the module docstring); a sample is 0."""
    reasons = set(reasons)
    if reasons <= {SAMPLE}:
        return 0.0
    return round(1.0 - margin + (1.0 if reasons & {"flip", "disagrees"} else 0.0), 4)


@dataclass(frozen=True)
class Kept:
    """A face held within the budget: its file (the key), track and usefulness."""

    file: str
    track: tuple[str, int]  # (run, track id): track ids start again in every run
    usefulness: float
    sample: bool = False


class Selection:
    """The faces kept so far and the rules above; `offer` / `offer_sample` say whether a new
    face is kept and which kept faces it replaces."""

    def __init__(self, budget: int, seed: int = 0, per_track: int = PER_TRACK) -> None:
        if budget < 1 or per_track < 2:
            raise ValueError("a collect budget needs at least 1 face and 2 per track")
        self.budget, self.per_track = budget, per_track
        self.sample_room = sample_slots(budget)
        self.uncertain_room = budget - self.sample_room
        self.rng = random.Random(seed)
        self.kept: dict[str, Kept] = {}  # every face kept, samples too
        self.samples: list[str] = []
        self.by_track: dict[tuple[str, int], list[str]] = {}
        self._heap: list[tuple[float, int, str]] = []  # (usefulness, n, file); lazy deletion
        self._order = itertools.count()
        self.sampled_tracks = 0  # confident tracks the reservoir has seen

    @property
    def uncertain(self) -> int:
        return len(self.kept) - len(self.samples)

    def restore(self, faces: Iterable[Kept]) -> list[str]:
        """Take the unlabelled faces a folder already holds (an earlier run); the files beyond
        the budget, least useful first, to delete."""
        faces = list(faces)
        spare = sorted((f for f in faces if not f.sample), key=lambda f: -f.usefulness)
        samples = [f for f in faces if f.sample]
        for face in spare[:self.uncertain_room] + samples[:self.sample_room]:
            self._add(face)
        self.sampled_tracks = len(self.samples)
        return [f.file for f in spare[self.uncertain_room:] + samples[self.sample_room:]]

    def offer(self, file: str, track: tuple[str, int], value: float) -> list[str] | None:
        """A face worth a look: None if it is skipped, else the files it replaces."""
        mine = [f for f in self.by_track.get(track, ()) if not self.kept[f].sample]
        if len(self.by_track.get(track, ())) >= self.per_track:
            if not mine:
                return None
            worst = min(mine, key=lambda f: self.kept[f].usefulness)
        elif self.uncertain >= self.uncertain_room:
            worst = self._least()
            if worst is None:
                return None
        else:
            self._add(Kept(file, track, value))
            return []
        if value < self.kept[worst].usefulness + REPLACE_GAIN:
            return None
        self._remove(worst)
        self._add(Kept(file, track, value))
        return [worst]

    def offer_sample(self, file: str, track: tuple[str, int]) -> list[str] | None:
        """The first confident sighting of a track: reservoir sampling (Algorithm R) over the
        tracks; None if it is not taken, else the files it replaces."""
        if self.sample_room == 0 or self.by_track.get(track):
            return None
        self.sampled_tracks += 1
        if len(self.samples) < self.sample_room:
            self._add(Kept(file, track, 0.0, sample=True))
            return []
        slot = self.rng.randrange(self.sampled_tracks)
        if slot >= self.sample_room:
            return None
        old = self.samples[slot]
        self._remove(old)
        self._add(Kept(file, track, 0.0, sample=True))
        return [old]

    def _least(self) -> str | None:
        """The kept face (not a sample) of the lowest usefulness."""
        while self._heap:
            _, _, file = self._heap[0]
            face = self.kept.get(file)
            if face is not None and not face.sample:
                return file
            heapq.heappop(self._heap)
        return None

    def _add(self, face: Kept) -> None:
        self.kept[face.file] = face
        self.by_track.setdefault(face.track, []).append(face.file)
        if face.sample:
            self.samples.append(face.file)
        else:
            heapq.heappush(self._heap, (face.usefulness, next(self._order), face.file))

    def _remove(self, file: str) -> None:
        face = self.kept.pop(file)
        files = self.by_track[face.track]
        files.remove(file)
        if not files:
            del self.by_track[face.track]
        if face.sample:
            self.samples.remove(file)
