"""Camera stand-ins for the frame-source, loop and fault tests: no device, no OpenCV capture."""

from __future__ import annotations

import time

import numpy as np


class FastCamera:
    """A live source delivering a numbered frame every `period` seconds."""

    live, fps, description = True, None, "fake camera"

    def __init__(self, period: float = 0.002) -> None:
        self.period, self.n = period, 0

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        time.sleep(self.period)
        self.n += 1
        return np.full((48, 64, 3), self.n % 256, np.uint8)

    def close(self) -> None:
        pass


class ScriptedCapture:
    """cv2.VideoCapture factory following a script of what each open does: "fail" (cannot open)
    or the number of frames delivered before the camera is lost; the last entry repeats. Each
    read takes `delay` seconds and gives a copy of `frame` (24x32 black by default)."""

    def __init__(self, script: list[str | int], frame: np.ndarray | None = None,
                 delay: float = 0.001) -> None:
        self.script, self.opens, self.delay = script, 0, delay
        self.frame = np.zeros((24, 32, 3), np.uint8) if frame is None else frame

    def __call__(self, target: object) -> ScriptedCapture.Capture:
        plan = self.script[min(self.opens, len(self.script) - 1)]
        self.opens += 1
        return self.Capture(plan, self.frame, self.delay)

    class Capture:
        def __init__(self, plan: str | int, frame: np.ndarray, delay: float) -> None:
            self.plan, self.frame, self.delay, self.reads = plan, frame, delay, 0

        def isOpened(self) -> bool:
            return self.plan != "fail"

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.reads += 1
            time.sleep(self.delay)
            if isinstance(self.plan, int) and self.reads <= self.plan:
                return True, self.frame.copy()
            return False, None

        def set(self, *_: object) -> bool:
            return True

        def get(self, *_: object) -> float:
            return 0.0

        def release(self) -> None:
            pass
