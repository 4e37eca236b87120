"""Where frames come from: a camera, a video file, a folder of images or a stream URL.

Every source yields RGB uint8 frames (OpenCV's BGR is converted once, here). A read either returns
a frame or raises one of:

- `UnreadableFrame`: this frame is bad (corrupt image, failed grab); skip it and count it,
- `SourceLost`: a live source stopped delivering (camera unplugged, stream dropped); reopen it,
- `StreamEnded`: a file or folder has no more frames.

`open` raises `SourceError` with one clear line when the source cannot be opened at all.
A source that reads files (`ImageFolderSource`) names the file of the frame it just returned in
`frame_name`; the capture thread copies it into the frame, and the JSON lines carry it as
`"source"`. Sources without it (cameras, videos, streams) leave it out.
Cameras go through `cv2.VideoCapture` (V4L2) or, on Raspberry Pi OS's libcamera stack where V4L2
capture may not open the camera, through `picamera2` when it is installed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edge.core.imagesize import too_large

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
# FFmpeg's own lines ("[http @ 0x...] Error reading HTTP response") repeat what a source's one-line
# error says; they stay off unless the user sets OPENCV_FFMPEG_LOGLEVEL (e.g. 16 for errors).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: Consecutive failed reads after which a live source counts as lost.
LOST_AFTER = 5
#: Consecutive failed reads after which a video file counts as ended.
FILE_END_AFTER = 5


class SourceError(RuntimeError):
    """The source cannot be opened (one-line message for the user)."""


class UnreadableFrame(Exception):
    """One frame could not be read or decoded."""


class SourceLost(Exception):
    """A live source stopped delivering frames."""


class StreamEnded(Exception):
    """A file source has no more frames."""


class FrameSource(Protocol):
    description: str
    live: bool  # True: frames arrive in real time and may be dropped
    fps: float | None  # nominal frame rate, when known

    def open(self) -> None: ...

    def read(self) -> np.ndarray: ...

    def close(self) -> None: ...


class Pacer:
    """Sleeps so that frames come no faster than `fps` (to play a file like a camera)."""

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self._next = 0.0

    def wait(self) -> None:
        if not self.period:
            return
        now = time.perf_counter()
        if self._next > now:
            time.sleep(self._next - now)
            now = self._next
        self._next = max(self._next + self.period, now) if self._next else now + self.period


CaptureFactory = Callable[..., Any]


class OpenCVSource:
    """`cv2.VideoCapture` on a camera index, a video file or a stream URL."""

    def __init__(self, target: int | str, *, live: bool, description: str,
                 size: tuple[int, int] | None = None, realtime: bool = False,
                 loop: bool = False, capture_factory: CaptureFactory = cv2.VideoCapture,
                 hint: str = "") -> None:
        self.target = target
        self.hint = hint
        self.live = live
        self.description = description
        self.size = size
        self.loop = loop
        self.realtime = realtime
        self.fps: float | None = None
        self._factory = capture_factory
        self._cap: Any = None
        self._failures = 0
        self._pacer = Pacer(None)
        self.restarts = 0  # times a `loop` file started again from its first frame

    def open(self) -> None:
        self.close()
        cap = self._factory(self.target)
        if self.size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}{self.hint}")
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        self._failures = 0
        if self.realtime:
            self._pacer = Pacer(self.fps or 30.0)

    def _rewind(self) -> bool:
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        ok, frame = self._cap.read()
        if ok and frame is not None:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.restarts += 1
            return True
        return False

    def pace(self) -> None:
        """Wait for this frame's turn when playing a file in real time."""
        self._pacer.wait()

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise SourceLost(f"{self.description} is closed")
        ok, frame = self._cap.read()
        if ok and frame is not None and frame.ndim == 3 and frame.size:
            self._failures = 0
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if ok and frame is not None:  # grey or empty frame from a misbehaving driver
            self._failures = 0
            if frame.ndim == 2 and frame.size:
                return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            raise UnreadableFrame(f"bad frame of shape {frame.shape}")
        self._failures += 1
        if self.live:
            if self._failures >= LOST_AFTER:
                raise SourceLost(f"{self.description} stopped delivering frames")
            raise UnreadableFrame("read failed")
        position = self._cap.get(cv2.CAP_PROP_POS_FRAMES)
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if count > 0 and position < count - 1 and self._failures < FILE_END_AFTER:
            raise UnreadableFrame(f"cannot decode frame {int(position)}")
        if self.loop and self._rewind():
            self._failures = 0
            return self.read()
        raise StreamEnded(self.description)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource:
    """The images of a folder (or one image file), in name order, one frame each."""

    live = False

    def __init__(self, path: Path, *, realtime: bool = False, loop: bool = False,
                 fps: float = 10.0) -> None:
        self.path = path
        self.loop = loop
        self.fps: float | None = fps
        self.description = f"images in {path}" if path.is_dir() else f"image {path}"
        self.frame_name: str | None = None  # file name of the frame `read` returned last
        self._files: list[Path] = []
        self._next = 0
        self._pacer = Pacer(fps if realtime else None)

    def open(self) -> None:
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif self.path.is_file():
            reason = too_large(self.path)
            if reason is not None:
                raise SourceError(reason)
            self._files = [self.path]
        if not self._files:
            raise SourceError(f"no images in {self.path} "
                              f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self._next = 0

    def pace(self) -> None:
        """Wait for this frame's turn when playing the folder in real time."""
        self._pacer.wait()

    def read(self) -> np.ndarray:
        if self._next >= len(self._files):
            if not self.loop:
                raise StreamEnded(self.description)
            self._next = 0
        path = self._files[self._next]
        self._next += 1
        reason = too_large(path)  # a decompression bomb is refused before it is decoded
        if reason is not None:
            raise UnreadableFrame(reason)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UnreadableFrame(f"cannot decode {path.name}" if path.is_file()
                                  else f"{path.name} is gone (deleted during the run)")
        self.frame_name = path.name
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._files = []


class Picamera2Source:
    """A Raspberry Pi camera through picamera2 (the libcamera stack)."""

    live = True

    def __init__(self, index: int, size: tuple[int, int] | None = None) -> None:
        self.index = index
        self.size = size or (640, 480)
        self.fps: float | None = None
        self.description = f"camera {index} (picamera2)"
        self._camera: Any = None

    def open(self) -> None:
        self.close()
        try:
            picamera2 = importlib.import_module("picamera2")
            camera = picamera2.Picamera2(camera_num=self.index)
            # "RGB888" is B, G, R in memory (libcamera's naming); converted in read().
            config = camera.create_video_configuration(
                main={"size": tuple(self.size), "format": "RGB888"})
            camera.configure(config)
            camera.start()
        except ImportError:
            raise SourceError("picamera2 is not installed (sudo apt install python3-picamera2, "
                              "and create the venv with --system-site-packages)") from None
        except Exception as exc:  # picamera2 raises assorted errors for a missing camera
            hint = ""
            if "binary incompatibility" in str(exc):  # apt's simplejpeg built for numpy 1.x
                hint = " (in the venv: pip install --force-reinstall simplejpeg)"
            raise SourceError(f"cannot open {self.description}: {exc}{hint}") from None
        self._camera = camera

    def read(self) -> np.ndarray:
        if self._camera is None:
            raise SourceLost(f"{self.description} is closed")
        try:
            frame = self._camera.capture_array("main")
        except Exception as exc:
            raise SourceLost(f"{self.description}: {exc}") from None
        if frame is None or frame.ndim != 3 or not frame.size:
            raise UnreadableFrame("empty frame")
        return cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            for step in (camera.stop, camera.close):
                with contextlib.suppress(Exception):
                    step()


def picamera2_cameras() -> int:
    """How many cameras picamera2 sees (0 when it is not installed)."""
    try:
        picamera2 = importlib.import_module("picamera2")
        return len(picamera2.Picamera2.global_camera_info())
    except Exception:
        return 0


CAMERA_BACKENDS = ("auto", "opencv", "picamera2")


def camera_source(index: int, size: tuple[int, int] | None = (640, 480),
                  backend: str = "auto") -> FrameSource:
    """Camera `index` through picamera2 when asked (or, for auto, when it sees a camera),
    otherwise through OpenCV's V4L2 capture."""
    if backend not in CAMERA_BACKENDS:
        raise SourceError(f"unknown camera backend {backend!r}; choose from "
                          f"{', '.join(CAMERA_BACKENDS)}")
    if backend == "picamera2" or (backend == "auto" and picamera2_cameras() > index):
        return Picamera2Source(index, size)
    hint = ("; no camera is connected, or on Raspberry Pi OS's libcamera stack install "
            "picamera2 and use --camera-backend picamera2")
    return OpenCVSource(index, live=True, description=f"camera {index}", size=size, hint=hint)


def is_url(text: str) -> bool:
    return "://" in text


FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ffmpeg_env_lock = threading.Lock()

#: Seconds a stream may take to open, or stay silent while being read, before the capture gives
#: up (FFmpeg's own default is 30): a stalled stream counts as lost and is reopened sooner.
STREAM_TIMEOUT = 10.0


def stream_timeouts() -> list[int]:
    """OpenCV capture parameters: open and read timeouts of `STREAM_TIMEOUT` seconds."""
    ms = int(STREAM_TIMEOUT * 1000)
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]


def stream_capture(target: Any) -> Any:
    """`cv2.VideoCapture` on a stream URL (any backend) with the `STREAM_TIMEOUT`s."""
    return cv2.VideoCapture(target, cv2.CAP_ANY, stream_timeouts())


def merge_ffmpeg_options(base: str | None, extra: str) -> str:
    """FFmpeg capture options `base` ("key;value|key;value", OpenCV's syntax) with `extra`'s
    keys set to `extra`'s values, the other keys of `base` kept."""
    keys = {item.split(";", 1)[0] for item in extra.split("|") if item}
    kept = [item for item in (base or "").split("|")
            if item and item.split(";", 1)[0] not in keys]
    return "|".join([*kept, extra])


def ffmpeg_capture(options: str) -> CaptureFactory:
    """A capture factory opening with FFmpeg under these capture options ("key;value|...").

    OpenCV's FFmpeg backend reads them from the environment variable
    OPENCV_FFMPEG_CAPTURE_OPTIONS each time a capture opens (when the variable is unset it uses
    its own default, `rtsp_flags;prefer_tcp`: TCP first, UDP allowed). The variable is set only
    around the open (merged into what the user set there, then restored), under a lock, so
    other captures are not affected."""

    def factory(target: Any) -> Any:
        with _ffmpeg_env_lock:
            previous = os.environ.get(FFMPEG_OPTIONS_ENV)
            os.environ[FFMPEG_OPTIONS_ENV] = merge_ffmpeg_options(previous, options)
            try:
                return cv2.VideoCapture(target, cv2.CAP_FFMPEG, stream_timeouts())
            finally:
                if previous is None:
                    os.environ.pop(FFMPEG_OPTIONS_ENV, None)
                else:
                    os.environ[FFMPEG_OPTIONS_ENV] = previous

    return factory


def file_source(path_or_url: str, *, realtime: bool = False, loop: bool = False,
                rtsp_transport: str = "auto") -> FrameSource:
    """A video file, an image, a folder of images, or a stream URL (rtsp://, http://...).

    `rtsp_transport` "tcp" makes FFmpeg carry an RTSP stream's packets over TCP only,
    interleaved in the RTSP connection (no losses on lossy networks, a little more latency);
    "udp" asks for UDP ports; "auto" leaves OpenCV's default (TCP first, UDP allowed)."""
    if is_url(path_or_url):
        from edge.core.redact import redact_url

        factory: CaptureFactory = stream_capture
        if rtsp_transport != "auto" and path_or_url.lower().startswith("rtsp"):
            factory = ffmpeg_capture(f"rtsp_transport;{rtsp_transport}")
        return OpenCVSource(path_or_url, live=True, description=f"stream {redact_url(path_or_url)}",
                            capture_factory=factory)
    path = Path(path_or_url)
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(path, realtime=realtime, loop=loop)
    return OpenCVSource(str(path), live=False, description=f"video {path}", realtime=realtime,
                        loop=loop)
