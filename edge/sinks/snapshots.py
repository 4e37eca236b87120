"""`edge run --snapshots DIR [--snapshots-keep N]`: JPEGs of every alert's face and frame.

`SnapshotWriter` is an alert hook (`edge.tracking.events.AlertHook`): for each alert it encodes, in
the frame loop, a JPEG of the face (cropped from the RGB frame around the alert's box, with a
margin) and one of the annotated frame (the raw frame when nothing is drawn), adds their paths to
the alert as `alert["snapshot"] = {"face": path, "frame": path}` so every sink sees them, and hands
the bytes to a writer thread. Files are named by UTC time and track,
`20261130T081500.123Z_track12_face.jpg` and `..._frame.jpg`, and appear whole (temp file +
rename). With `keep=N` only the newest N alerts' files stay in the folder (older ones that match
the naming pattern are deleted; other files are never touched). A full disk or an unwritable
folder is counted and reported once; the run goes on. The paths are added before the files are
written, so a failed or dropped write leaves an alert pointing at files that do not exist.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.core.fileio import write_bytes_atomic
from edge.core.imageops import crop_face
from edge.sinks.queue import Worker

log = logging.getLogger(__name__)

SNAPSHOT_NAME = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z_track[^_/]+)_(face|frame)\.jpg$")
FACE_MARGIN = 0.3  # a little more context than the classifier's crop


def utc_stamp(seconds: float) -> str:
    """`20261130T081500.123Z` for a Unix time."""
    when = datetime.fromtimestamp(seconds, UTC)
    return when.strftime("%Y%m%dT%H%M%S") + f".{when.microsecond // 1000:03d}Z"


def encode_jpeg(bgr: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class SnapshotWriter:
    """Alert hook writing a face and a frame JPEG per alert; see the module docstring."""

    OUTPUT_NAME = "snapshots"  # its counters' name in the run summary

    FLUSH_TIMEOUT = 5.0  # seconds `close` waits for queued files to be written

    def __init__(self, directory: str | Path, keep: int | None = None,
                 margin: float = FACE_MARGIN, quality: int = 90, queue_size: int = 16,
                 faces: bool = True) -> None:
        if keep is not None and keep < 1:
            raise ValueError("--snapshots-keep needs at least 1")
        self.directory = Path(directory).absolute()
        self.keep, self.margin, self.quality = keep, margin, quality
        self.faces = faces  # False (--blur-faces): no face crop, only the (blurred) frame
        self.written = self.failed = self.deleted = 0
        self.last_error: str | None = None
        self._stems: set[str] = set()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._report(f"cannot create the snapshot folder {self.directory}: "
                         f"{exc.strerror or exc}")
        self._work: Worker[list[tuple[Path, bytes]]] = Worker(
            "snapshots", self._write, queue_size,
            "snapshot writer behind (%d alerts queued): dropping the oldest snapshots")

    @property
    def dropped(self) -> int:
        """Alerts whose files were never written: pushed out of a full queue, or left at close."""
        return self._work.dropped + self._work.unsent

    def on_alert(self, alert: dict[str, Any], rgb: np.ndarray,
                 annotated: np.ndarray | None) -> None:
        """Encode the JPEGs (here, in the loop), queue the writes, add the paths to `alert`."""
        stem = self._stem(alert)
        files: list[tuple[Path, bytes]] = []
        snapshot: dict[str, str] = {}
        try:
            box = alert.get("box")
            if box is not None and self.faces:
                face = crop_face(rgb, tuple(box), self.margin)
                files.append((self.directory / f"{stem}_face.jpg",
                              encode_jpeg(cv2.cvtColor(face, cv2.COLOR_RGB2BGR), self.quality)))
            frame = annotated if annotated is not None else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            files.append((self.directory / f"{stem}_frame.jpg", encode_jpeg(frame, self.quality)))
        except (ValueError, cv2.error) as exc:
            self._report(f"cannot encode a snapshot: {exc}")
        if not files:
            return
        for path, _ in files:
            snapshot[path.name.rsplit("_", 1)[1].removesuffix(".jpg")] = str(path)
        self._work.put(files)
        alert["snapshot"] = snapshot

    def _stem(self, alert: dict[str, Any]) -> str:
        when = alert.get("time")
        seconds = float(when) if isinstance(when, int | float) and when > 0 else None
        track = re.sub(r"[^A-Za-z0-9-]", "-", str(alert.get("track", "x")))
        stem = f"{utc_stamp(seconds or datetime.now(UTC).timestamp())}_track{track}"
        unique, n = stem, 1
        while unique in self._stems:  # the same track in the same millisecond
            n += 1
            unique = f"{stem}-{n}"
        self._stems.add(unique)
        return unique

    def _write(self, files: list[tuple[Path, bytes]]) -> None:
        try:
            for path, data in files:
                write_bytes_atomic(path, data)
        except OSError as exc:
            self.failed += 1
            self._report(f"cannot write snapshot {path}: {exc.strerror or exc}")
            for path, _ in files:  # no half pair
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        else:
            self.written += 1
        if self.keep is not None:
            self._prune()

    def _prune(self) -> None:
        """Delete the oldest snapshots beyond `keep` (only files named like ours)."""
        groups: dict[str, list[Path]] = collections.defaultdict(list)
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    match = SNAPSHOT_NAME.match(entry.name)
                    if match and entry.is_file():
                        groups[match.group(1)].append(Path(entry.path))
        except OSError:
            return
        assert self.keep is not None
        for stem in sorted(groups)[:-self.keep]:
            for path in groups[stem]:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.deleted += 1

    def _report(self, message: str) -> None:
        if self.last_error is None:
            log.warning("%s (further snapshot errors are only counted)", message)
        self.last_error = message

    def summary(self) -> dict[str, Any]:
        """Counters for the run summary."""
        return {"snapshots": str(self.directory), "written": self.written,
                "failed": self.failed, "dropped": self.dropped, "deleted": self.deleted,
                "error": self.last_error}

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until every queued snapshot is written (or failed)."""
        return self._work.wait_idle(timeout)

    def close(self, ok: bool = True) -> None:
        """Write what is queued (up to FLUSH_TIMEOUT seconds) and stop the writer thread."""
        self._work.close(self.FLUSH_TIMEOUT)
