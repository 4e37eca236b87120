"""`edge run --collect DIR [--collect-max N]`: keep the faces of this camera worth a person's look.

`CollectSink` is a sink (`edge.sinks.outputs.Sink`) that writes nothing per JSON record: the
loop also hands it each frame's pixels and tracked faces (`see_faces`, edge/loop.py's
`SeesFaces`), because the per-class probabilities it needs are in the tracker's faces
(`TrackedFace.face.probabilities`), not in the JSON record, whose shape stays as it is for every
other sink. Which faces are kept, how the budget is held and why: edge/collect/selection.py;
the folder layout and the manifest's fields: edge/collect/manifest.py.

Only faces the classifier read on this frame count (probabilities reused from an earlier frame,
`--classify-every`, are not about these pixels); a box kept from an earlier detection
(`--detect-every`) does count: the crop saved is the one the classifier saw, framing and all,
which is what the model must learn to read. Faces under `MIN_FACE` pixels (the trainer's
smallest face) are left out.
In the loop it costs a dictionary look-up per face; for a face that is kept, the crop (with the
trainer's margin, `edge.core.imageops.FACE_MARGIN`, through the same `crop_face`) and the raw
frame are encoded as JPEG there, like edge/sinks/snapshots.py does, and the files and manifest
lines go to the shared background queue (edge/sinks/queue.py: bounded, the oldest dropped and
counted). The writer thread writes each file atomically and then, under the folder's lock,
appends the manifest line (flushed and fsynced), or rewrites the manifest when faces are
replaced, deleting their crops (and frames no other face needs). It also holds the budget
against what is on disk, in case `edge label` moved a face back or a queued job was dropped.
An error (a full disk) is said once, counted in the run summary, and the run goes on.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

from edge.collect import manifest
from edge.collect.manifest import FACES, FRAMES, Entry, ManifestError
from edge.collect.selection import SAMPLE, Kept, Selection, margin_of, reasons_for, usefulness
from edge.core.fileio import sha256_file, write_bytes_atomic
from edge.core.imageops import FACE_MARGIN, crop_face
from edge.sinks.outputs import OutputError
from edge.sinks.queue import Worker
from edge.sinks.snapshots import encode_jpeg, utc_stamp

if TYPE_CHECKING:
    import numpy as np

    from edge.tracking.tracks import TrackedFace
    from edge.video.capture import CapturedFrame

log = logging.getLogger(__name__)

#: Faces smaller than this (short side, pixels) are not kept: trainer.data's DEFAULT_MIN_FACE.
MIN_FACE = 16
CROP_QUALITY, FRAME_QUALITY = 95, 85  # crops are training data; frames are context
#: Tracks remembered for flips and the sample (older ones are forgotten first).
RECENT_TRACKS = 4096


@dataclass
class Job:
    """One frame's kept faces for the writer thread: files, manifest lines, faces replaced."""

    entries: list[Entry]
    files: list[tuple[Path, bytes]] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)


class _Recent:
    """A dictionary that forgets its oldest keys beyond `size` (tracks of a long run)."""

    def __init__(self, size: int = RECENT_TRACKS) -> None:
        self._items: collections.OrderedDict[int, str] = collections.OrderedDict()
        self.size = size

    def get(self, key: int) -> str | None:
        return self._items.get(key)

    def put(self, key: int, value: str) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def _kept(entry: Entry) -> Kept:
    """A manifest line as the selection holds it (a hand-edited value counts as the least)."""
    try:
        track, value = int(entry.get("track", -1)), float(entry.get("usefulness", 0.0))
    except (TypeError, ValueError):
        track, value = -1, 0.0
    return Kept(entry["file"], (str(entry.get("run", "")), track), value,
                entry.get("reason") == SAMPLE)


@dataclass(frozen=True)
class CollectRun:
    """What every manifest line of this run shares."""

    labels: tuple[str, ...]
    model: Path
    source: str
    seed: int = 0


class CollectSink:
    """The `--collect` sink; see the module docstring."""

    needs_image = False  # the raw frame comes through `see_faces`; nothing is drawn for it
    OUTPUT_NAME = "collect"
    FLUSH_TIMEOUT = 10.0  # seconds `close` waits for queued files

    def __init__(self, folder: str | Path, budget: int, run: CollectRun,
                 queue_size: int = 32) -> None:
        self.folder = Path(folder).absolute()
        self.budget, self.labels, self.source = budget, run.labels, run.source
        self.kept = self.replaced = self.skipped = self.failed = 0
        self.last_error: str | None = None
        self.run_id = utc_stamp(time.time())
        self._frames = 0
        self._last_label, self._sampled = _Recent(), _Recent()
        self.selection = Selection(budget, run.seed)
        try:
            for sub in (FACES, FRAMES):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            self.model = {"model": run.model.name, "model_sha256": sha256_file(run.model)}
            with manifest.locked(self.folder):
                entries = manifest.read_entries(self.folder)
                self._sweep(entries)
        except (OSError, ManifestError) as exc:
            raise OutputError(f"cannot collect into {self.folder}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        victims = self.selection.restore(_kept(e) for e in manifest.unlabelled(entries))
        self._work: Worker[Job] = Worker(
            "collect", self._handle, queue_size,
            "collect writer behind (%d frames queued): dropping the oldest faces")
        if victims:  # an earlier run with a larger --collect-max
            self._work.put(Job([], victims=victims))

    @property
    def dropped(self) -> int:
        return self._work.dropped + self._work.unsent

    def _sweep(self, entries: list[Entry]) -> None:
        """Delete what an earlier run left in faces/ and frames/ without a manifest line (it was
        stopped between writing a face's files and its line), so the folder holds what the
        manifest says and nothing more."""
        named = {e.get(key) for e in entries for key in ("file", "frame_file")}
        for sub in (FACES, FRAMES):
            for path in (self.folder / sub).iterdir():
                if path.is_file() and f"{sub}/{path.name}" not in named:
                    path.unlink(missing_ok=True)

    # -- in the camera loop -----------------------------------------------------------------

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        pass  # everything comes through `see_faces`

    def event(self, record: dict[str, Any]) -> None:
        pass

    def see_faces(self, frame: CapturedFrame, faces: Sequence[TrackedFace],
                  record: dict[str, Any]) -> None:
        """Choose this frame's faces worth keeping; encode and queue them."""
        self._frames += 1
        stem = f"{self.run_id}_{self._frames:06d}"
        chosen: list[tuple[Entry, TrackedFace]] = []
        victims: list[str] = []
        for tracked in sorted(faces, key=lambda t: t.track):
            decision = self._consider(tracked, stem)
            if decision is not None:
                chosen.append((self._entry(tracked, decision[0], stem, frame, record),
                               tracked))
                victims += decision[1]
        if chosen:
            self._queue(chosen, victims, frame)

    def _consider(self, tracked: TrackedFace,
                  stem: str) -> tuple[list[str], list[str]] | None:
        """(reasons, files it replaces) for a face to keep; None for one to leave."""
        face = tracked.face
        previous = self._last_label.get(tracked.track)
        self._last_label.put(tracked.track, tracked.label)
        x1, y1, x2, y2 = face.box
        if face.reused or min(x2 - x1, y2 - y1) < MIN_FACE:
            return None
        margin = margin_of(face.probabilities)
        reasons = reasons_for(margin, face.label, tracked.label, previous)
        file = f"{FACES}/{stem}_t{tracked.track}.jpg"
        key = (self.run_id, tracked.track)
        if reasons:
            victims = self.selection.offer(file, key, usefulness(margin, reasons))
        elif self._sampled.get(tracked.track) is None:
            self._sampled.put(tracked.track, "")
            reasons, victims = [SAMPLE], self.selection.offer_sample(file, key)
        else:
            return None
        if victims is None:
            self.skipped += 1
            return None
        return reasons, victims

    def _entry(self, tracked: TrackedFace, reasons: list[str], stem: str,
               frame: CapturedFrame, record: dict[str, Any]) -> Entry:
        face = tracked.face
        margin = margin_of(face.probabilities)
        entry: Entry = {
            "file": f"{FACES}/{stem}_t{tracked.track}.jpg", "frame_file": f"{FRAMES}/{stem}.jpg",
            "time": record.get("time"), "source": self.source,
            **({"image": frame.name} if frame.name is not None else {}),
            "frame": record.get("frame"), "box": [round(float(v), 1) for v in face.box],
            "detector_score": round(float(face.detector_score), 4),
            "probabilities": {label: round(float(p), 4)
                              for label, p in zip(self.labels, face.probabilities, strict=True)},
            "labels": list(self.labels), "raw_label": face.label, "predicted": tracked.label,
            "margin": round(margin, 4), "track": tracked.track, "run": self.run_id,
            "reason": reasons[0], "reasons": reasons, "usefulness": usefulness(margin, reasons),
            **self.model, "crop_margin": FACE_MARGIN}
        return entry

    def _queue(self, chosen: list[tuple[Entry, TrackedFace]], victims: list[str],
               frame: CapturedFrame) -> None:
        """Encode the frame and the crops here (the loop), hand the writes to the thread."""
        try:
            bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
            files = [(self.folder / chosen[0][0]["frame_file"], encode_jpeg(bgr, FRAME_QUALITY))]
            for entry, tracked in chosen:
                crop = crop_face(bgr, tracked.face.box, FACE_MARGIN)
                files.append((self.folder / entry["file"], encode_jpeg(crop, CROP_QUALITY)))
        except (ValueError, cv2.error) as exc:
            self.failed += 1
            self._report(f"cannot encode a collected face: {exc}")
            files = []
        if files:
            self.kept += len(chosen)
        self._work.put(Job([e for e, _ in chosen] if files else [], files, victims))

    # -- on the writer thread ---------------------------------------------------------------

    def _handle(self, job: Job) -> None:
        try:
            for path, data in job.files:
                write_bytes_atomic(path, data)
            with manifest.locked(self.folder):
                self._apply(manifest.read_entries(self.folder), job)
        except (OSError, ManifestError) as exc:
            self.failed += 1
            self._report(f"cannot collect into {self.folder}: "
                         f"{getattr(exc, 'strerror', None) or exc}")
            for path, _ in job.files[1:]:  # the crops; the frame may be another face's too
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)

    def _apply(self, entries: list[Entry], job: Job) -> None:
        """Add the job's lines, drop its victims (unlabelled ones only: a face labelled
        meanwhile is the person's now) and anything beyond the budget, least useful first."""
        gone = set(job.victims)  # may name a face of this very job (replaced in its frame)
        every = entries + job.entries
        removed = {id(e) for e in every if e["file"] in gone and "label" not in e}
        waiting = [e for e in manifest.unlabelled(every) if id(e) not in removed]
        over = len(waiting) - self.budget
        if over > 0:
            removed |= {id(e) for e in sorted(waiting, key=lambda e: _kept(e).usefulness)[:over]}
        kept = [e for e in every if id(e) not in removed]
        if any(id(e) in removed for e in entries):
            manifest.rewrite(self.folder, kept)
        else:
            for entry in job.entries:
                if id(entry) not in removed:
                    manifest.append_entry(self.folder, entry)
        self.replaced += len(removed)
        self._delete([e for e in every if id(e) in removed], kept)

    def _delete(self, removed: list[Entry], kept: list[Entry]) -> None:
        """Delete the crops of `removed` and their frames unless a kept face needs them."""
        needed = {e.get("frame_file") for e in kept}
        for entry in removed:
            paths = [entry["file"]] + ([entry["frame_file"]] if entry.get("frame_file")
                                       not in needed else [])
            for relative in paths:
                with contextlib.suppress(OSError, ManifestError):
                    manifest.inside(self.folder, relative).unlink(missing_ok=True)

    def _report(self, message: str) -> None:
        if self.last_error is None:
            log.warning("%s (further collect errors are only counted)", message)
        self.last_error = message

    def summary(self) -> dict[str, Any]:
        """Counters for the run summary."""
        return {"collect": str(self.folder), "kept": self.kept, "replaced": self.replaced,
                "skipped": self.skipped, "dropped": self.dropped, "failed": self.failed,
                "error": self.last_error}

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until every queued face is written (tests)."""
        return self._work.wait_idle(timeout)

    def close(self, ok: bool = True) -> None:
        """Write what is queued (up to FLUSH_TIMEOUT seconds); what was written stays either
        way: every file is whole and the manifest names only files that exist."""
        self._work.close(self.FLUSH_TIMEOUT)
