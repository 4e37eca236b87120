"""Where the frame loop's results go: JSON lines, an annotated video, a live page, a window.

Every output is a sink with `write(record, annotated)`, `event(record)` and `close(ok)`:

- `JsonLinesSink`: one JSON object per frame and per event; to a file (written beside the target
  and renamed into place on close, so it is never partial) or to stdout (`-`) for live consumers.
- `VideoSink`: the annotated frames as a video file, also renamed into place on close; frames
  of another size than the first (photos of mixed sizes) are scaled and letterboxed into the
  first one's size, which it says once.
- `ImageFolderSink`: one annotated image per frame in a folder (`--save DIR/`): a photo under its
  own file name and at its own size, other frames as frame_NNNNNN.jpg; each written atomically.
- `edge.sinks.dashboard.DashboardServer`: the live dashboard (stream, counts, alerts) over HTTP,
with
  authentication beyond loopback; it lives in its own module.
- `WindowSink`: an OpenCV window, when the OpenCV build has a GUI and there is a display.

A full disk does not stop the run: the JSON lines keep every complete line written before the
failure, the video is finished when free space falls below `VIDEO_DISK_RESERVE` (so what was
recorded plays); either says so once (a warning line) and counts what it could not write in the
run summary (`summary()`, None while nothing went wrong).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable

import cv2
import numpy as np

from edge.core.fileio import atomic_path, write_bytes_atomic
from edge.tracking.events import event_json

log = logging.getLogger(__name__)

#: Free disk space (bytes) below which the video is finished early: encoders fail silently on a
#: full disk and leave a file that does not play, so the video stops while it can still close.
VIDEO_DISK_RESERVE = 8 * 2**20


class OutputError(RuntimeError):
    """An output cannot be opened (one-line message)."""


class Sink(Protocol):
    """What the frame loop writes to. A sink that can end the run (a closed window) is also a
    `StopsRun`."""

    needs_image: bool

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None: ...

    def event(self, record: dict[str, Any]) -> None: ...

    def close(self, ok: bool = True) -> None: ...


@runtime_checkable
class StopsRun(Protocol):
    """A sink that can ask the loop to stop before the next frame (the window's `q`)."""

    quit_requested: bool


class _AtomicTarget:
    """A temporary path beside `target`, renamed onto it by `finish(ok=True)`."""

    def __init__(self, target: Path) -> None:
        self._stack = contextlib.ExitStack()
        self.path = self._stack.enter_context(atomic_path(target))

    def finish(self, ok: bool) -> None:
        if ok:
            self._stack.close()  # renames
        else:
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)  # deletes


class JsonLinesSink:
    """Frames and events as JSON lines, to a file or to stdout (`-`)."""

    needs_image = False
    OUTPUT_NAME = "json"  # its counters' name in the run summary (after a failure)

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self.lines = self.lost = 0
        self.error: str | None = None  # why writing stopped, if it did
        self._good = 0  # bytes of complete lines in the file
        self._atomic: _AtomicTarget | None = None
        self._stream: TextIO
        if self.target == "-":
            self._stream = sys.stdout
        else:
            try:
                self._atomic = _AtomicTarget(Path(target))
                self._stream = self._atomic.path.open("w", encoding="utf-8")
            except OSError as exc:
                raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None

    def _line(self, record: dict[str, Any]) -> None:
        if self.error is not None:
            self.lost += 1
            return
        text = event_json(record) + "\n"  # ASCII: one byte a character
        try:
            self._stream.write(text)
            self._stream.flush()  # a full disk shows here, at a line boundary
        except OSError as exc:
            self._stop(exc)
            return
        self.lines += 1
        self._good += len(text)

    def _stop(self, exc: OSError) -> None:
        """Stop writing: keep the complete lines, count the rest, say so once."""
        self.error = f"{exc.strerror or exc}"
        self.lost += 1
        if self._atomic is not None:
            with contextlib.suppress(OSError):
                self._stream.close()  # drops what the disk refused
            with contextlib.suppress(OSError):
                os.truncate(self._atomic.path, self._good)  # no half line at the end
        log.warning("cannot write %s: %s; JSON lines stop after %d lines, the run goes on",
                    self.target, self.error, self.lines)

    def summary(self) -> dict[str, Any] | None:
        """Counters for the run summary, only when writing failed."""
        if self.error is None:
            return None
        return {"json": self.target, "lines": self.lines, "lost": self.lost, "error": self.error}

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        self._line(record)

    def event(self, record: dict[str, Any]) -> None:
        self._line(record)

    def close(self, ok: bool = True) -> None:
        if self._atomic is not None:
            try:
                self._stream.close()
            except OSError as exc:  # the last buffered bytes did not fit
                self._stop(exc)
            self._atomic.finish(ok)
            self._atomic = None


FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def is_folder_target(target: str | Path) -> bool:
    """Whether `--save` names a folder (one image per frame): it ends with a path separator, or
    it is a folder already."""
    text = str(target)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


class VideoSink:
    """Annotated frames to a video file; every frame is fitted to the first frame's size (said
    once, through `notice`, when a frame of another size comes)."""

    needs_image = True
    OUTPUT_NAME = "video"  # its counters' name in the run summary (after a failure)

    def __init__(self, target: str | Path, fps: float,
                 notice: Callable[[str], None] | None = None) -> None:
        self.target = Path(target)
        if self.target.suffix.lower() not in FOURCC:
            raise OutputError(f"cannot write video {self.target}: use one of "
                              f"{', '.join(sorted(FOURCC))}, or a folder ending in / for one "
                              f"image per frame")
        self.fps = fps
        self._notice = notice or log.warning
        self._resized = False  # the notice about frames of another size was given
        self.frames = self.lost = 0
        self.error: str | None = None  # why the video stopped early, if it did
        self._atomic: _AtomicTarget | None = None
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        try:  # fail now, not at the first frame, when the folder cannot be written
            self._atomic = _AtomicTarget(self.target)
        except OSError as exc:
            raise OutputError(f"cannot write {self.target}: {exc.strerror or exc}") from None

    def _open(self, width: int, height: int) -> None:
        assert self._atomic is not None
        fourcc = cv2.VideoWriter.fourcc(*FOURCC[self.target.suffix.lower()])
        writer = cv2.VideoWriter(str(self._atomic.path), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            raise OutputError(f"OpenCV cannot encode {self.target.suffix} video here")
        self._writer, self._size = writer, (width, height)

    def _disk_full(self) -> bool:
        assert self._atomic is not None
        try:
            free = shutil.disk_usage(self._atomic.path.parent).free
        except OSError:
            return False
        if free >= VIDEO_DISK_RESERVE:
            return False
        self.error = f"disk full ({free // 1024} KB free)"
        if self._writer is not None:
            self._writer.release()  # finished while it can still be: the frames so far play
            self._writer = None
        kept = f"stops after {self.frames} frames, kept" if self.frames else "not written"
        log.warning("%s: video %s %s; the run goes on", self.error, self.target, kept)
        return True

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        if annotated is None:
            return
        if self.error is not None or self._disk_full():
            self.lost += 1
            return
        if self._writer is None:
            self._open(annotated.shape[1], annotated.shape[0])
        assert self._size is not None
        if (annotated.shape[1], annotated.shape[0]) != self._size:
            if not self._resized:
                self._resized = True
                w, h = self._size
                self._notice(f"note: {self.target} is {w}x{h}, the first frame's size: frames "
                             f"of other sizes (here {annotated.shape[1]}x{annotated.shape[0]}) "
                             f"are scaled to fit and letterboxed; --save DIR/ writes each "
                             f"photo at its own size")
            annotated = fit_frame(annotated, self._size)
        self._writer.write(annotated)
        self.frames += 1

    def event(self, record: dict[str, Any]) -> None:
        pass

    def summary(self) -> dict[str, Any] | None:
        """Counters for the run summary, only when the video stopped early."""
        if self.error is None:
            return None
        return {"video": str(self.target), "frames": self.frames, "lost": self.lost,
                "error": self.error}

    def close(self, ok: bool = True) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._atomic is not None:
            self._atomic.finish(ok and self.frames > 0)
            self._atomic = None


class ImageFolderSink:
    """One annotated image per frame in `folder`: a photo under its own file name (at its own
    size), any other frame as frame_NNNNNN.jpg; each file written atomically. A write that
    fails (a full disk) stops the images, says so once, and counts the rest as lost."""

    needs_image = True
    OUTPUT_NAME = "images"  # its counters' name in the run summary (after a failure)

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.images = self.lost = 0
        self.error: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write images to {self.folder}: "
                              f"{exc.strerror or exc}") from None

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        if annotated is None:
            return
        if self.error is not None:
            self.lost += 1
            return
        target = self.folder / (record.get("source") or f"frame_{record.get('frame', 0):06d}.jpg")
        try:
            ok, data = cv2.imencode(target.suffix, annotated)
        except cv2.error:
            ok = False
        if not ok:  # a suffix OpenCV cannot write: a JPEG beside the name
            target = target.with_name(target.name + ".jpg")
            ok, data = cv2.imencode(".jpg", annotated)
        try:
            write_bytes_atomic(target, data.tobytes())
        except OSError as exc:
            self.error = f"{exc.strerror or exc}"
            self.lost += 1
            log.warning("cannot write %s: %s; images stop after %d, the run goes on", target,
                        self.error, self.images)
            return
        self.images += 1

    def event(self, record: dict[str, Any]) -> None:
        pass

    def summary(self) -> dict[str, Any] | None:
        """Counters for the run summary, only when writing failed."""
        if self.error is None:
            return None
        return {"images": str(self.folder), "written": self.images, "lost": self.lost,
                "error": self.error}

    def close(self, ok: bool = True) -> None:
        pass


def fit_transform(image_size: tuple[int, int], size: tuple[int, int],
                  ) -> tuple[float, int, int, int, int]:
    """How `fit_frame` places a (width, height) image into `size`: scale, x, y, width, height."""
    width, height = size
    w, h = image_size
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return scale, (width - nw) // 2, (height - nh) // 2, nw, nh


def fit_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit (width, height), centred on black (aspect ratio kept)."""
    width, height = size
    scale, x, y, nw, nh = fit_transform((image.shape[1], image.shape[0]), size)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA
                                            if scale < 1 else cv2.INTER_LINEAR)
    return canvas


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or 'PORT' (host defaults to 127.0.0.1; IPv6 as [::1]:PORT)."""
    host, _, port = text.rpartition(":") if ":" in text else ("", "", text)
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad port {number} in {text!r}")
    return host, number


def gui_problem() -> str | None:
    """Why an OpenCV window cannot be shown here, or None when it can."""
    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return ("this OpenCV build has no GUI (opencv-python-headless); install opencv-python "
                "for --show, or use --serve to watch in a browser")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return "no display for --show (DISPLAY is not set); use --serve to watch in a browser"
    return None


class WindowSink:
    """An OpenCV window; `q` or Esc in it asks the loop to stop."""

    needs_image = True

    def __init__(self, title: str = "maskedge") -> None:
        problem = gui_problem()
        if problem:
            raise OutputError(problem)
        self.title = title
        self.quit_requested = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise OutputError(f"cannot open a window: {str(exc).strip().splitlines()[-1]}") \
                from None

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        if annotated is None:
            return
        cv2.imshow(self.title, annotated)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit_requested = True

    def event(self, record: dict[str, Any]) -> None:
        pass

    def close(self, ok: bool = True) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)
