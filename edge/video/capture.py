"""Capture on its own thread, handing the frame loop only the newest frame.

`FrameGrabber` reads a `FrameSource` (edge/video/sources.py) on a daemon thread into a single slot:

- live sources (cameras, streams): a newer frame replaces an unprocessed one, which is counted as
  dropped. A slow model therefore drops frames; it never builds a backlog or grows memory.
- files and folders: the reader waits until the slot is free, so every frame is processed while
  decoding the next one overlaps with processing this one.

Every frame carries a scene number (edge/video/scenecut.py), computed here so that a cut hidden in a
dropped frame still shows in the next frame handed on: a new scene at a cut, after a reopen,
after a `--loop` file restarts (the source's `restarts`), and for every photo.

Unreadable frames are skipped and counted. A lost live source is reopened with exponential
backoff; when the attempts run out the grabber finishes with an error message. A `notice` callback
hears, in one line each, that the source was lost, that it came back, and why the first
unreadable frame was skipped (the others are only counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import numpy as np

from edge.video.handoff import HandoffThread
from edge.video.scenecut import SceneCuts
from edge.video.sources import FrameSource, SourceError, SourceLost, StreamEnded, UnreadableFrame


@dataclass(frozen=True)
class Backoff:
    """Reopen delays: initial, doubled up to maximum, for at most `attempts` tries."""

    initial: float = 0.5
    maximum: float = 8.0
    attempts: int = 10

    def delays(self) -> list[float]:
        return [min(self.maximum, self.initial * 2**i) for i in range(self.attempts)]


@dataclass(frozen=True)
class CapturedFrame:
    index: int  # position in the source, counting dropped and unreadable frames
    rgb: np.ndarray
    time: float  # wall-clock time of capture (time.time())
    capture_ms: float  # reading + decoding + colour conversion
    name: str | None = None  # the file the frame came from (image folders; `frame_name`)
    #: Scene number (edge/video/scenecut.py): a new one after a cut, a reconnect, a restart, a
    #: photo.
    scene: int = 0


@dataclass
class CaptureStats:
    captured: int = 0
    dropped: int = 0
    unreadable: int = 0
    reconnects: int = 0


class FrameGrabber(HandoffThread[CapturedFrame]):
    """Reads frames on a thread; `next()` returns the newest one (see module docstring)."""

    def __init__(self, source: FrameSource, drop: bool | None = None,
                 backoff: Backoff | None = None,
                 notice: Callable[[str], None] | None = None) -> None:
        self.source = source
        self.notice = notice or (lambda line: None)
        self.drop = source.live if drop is None else drop
        self.backoff = backoff or Backoff()
        self.stats = CaptureStats()
        self.error: str | None = None  # why capture stopped early, if it did
        super().__init__("capture")
        self._index = 0
        self._scenes = SceneCuts()
        self._restarts = 0  # the source's count of rewinds (a `--loop` file starting again)

    def start(self) -> Self:
        """Open the source (SourceError propagates to the caller) and start reading."""
        self.source.open()
        return super().start()

    def stop(self) -> None:
        super().stop()
        self.source.close()

    def _put(self, frame: CapturedFrame) -> None:
        if self._handoff.put(frame, wait=not self.drop):
            self.stats.dropped += 1
        self.stats.captured += 1

    def _reopen(self) -> bool:
        for delay in self.backoff.delays():
            if self._stop.wait(delay):
                return False
            try:
                self.source.open()
            except SourceError:
                continue
            self.stats.reconnects += 1
            self._scenes.restart()
            self.notice(f"{self.source.description} is back: reopened")
            return True
        return False

    def _scene(self, rgb: np.ndarray, still: bool) -> int:
        """This frame's scene number: photos are scenes of their own; a rewound file starts one."""
        restarts = getattr(self.source, "restarts", 0)
        new = still or restarts != self._restarts
        self._restarts = restarts
        return self._scenes.next(rgb, new_scene=new)

    def _run(self) -> None:
        try:
            pace = getattr(self.source, "pace", None)
            while not self._stop.is_set():
                if pace is not None:
                    pace()
                start = time.perf_counter()
                try:
                    rgb = self.source.read()
                except UnreadableFrame as why:
                    self.stats.unreadable += 1
                    self._index += 1
                    if self.stats.unreadable == 1:
                        self.notice(f"skipped an unreadable frame: {why} (more are only counted)")
                    continue
                except StreamEnded:
                    break
                except SourceLost as lost:
                    self.notice(f"{lost}; reopening it (up to {self.backoff.attempts} attempts)")
                    if not self._reopen():
                        if not self._stop.is_set():
                            self.error = (f"{lost}; could not reopen it after "
                                          f"{self.backoff.attempts} attempts")
                        break
                    continue
                name = getattr(self.source, "frame_name", None)
                captured = CapturedFrame(self._index, rgb, time.time(),
                                         (time.perf_counter() - start) * 1000.0, name,
                                         self._scene(rgb, still=name is not None))
                self._index += 1
                self._put(captured)
        except Exception as exc:  # a broken driver must not kill the loop silently
            self.error = f"capture failed: {type(exc).__name__}: {exc}"
        finally:
            self._handoff.end()
