"""Counting zones: rectangles of the frame inside which faces count (stats, alerts).

`--zone x1,y1,x2,y2` is in pixels, or in fractions of the frame when all four numbers are <= 1
(`0.5,0,1,1` is the right half of any frame). A face is inside when its box centre is inside some
zone (edges included); with no zones every face is inside. Faces outside still appear in the JSON
lines, with `"in_zone": false`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.core.boxes import Box

PixelBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Zone:
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def relative(self) -> bool:
        """True when the corners are fractions of the frame (all four <= 1)."""
        return max(self.x1, self.y1, self.x2, self.y2) <= 1.0

    @classmethod
    def parse(cls, text: str) -> Zone:
        """'x1,y1,x2,y2' (pixels, or fractions when all are <= 1); ValueError with the reason."""
        try:
            x1, y1, x2, y2 = (float(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"--zone wants x1,y1,x2,y2 (pixels, or fractions of the frame "
                             f"when all are <= 1), not {text!r}") from None
        if min(x1, y1, x2, y2) < 0 or x2 <= x1 or y2 <= y1:
            raise ValueError(f"--zone {text}: needs 0 <= x1 < x2 and 0 <= y1 < y2")
        return cls(x1, y1, x2, y2)

    def pixels(self, width: int, height: int) -> PixelBox:
        """The zone in pixels of a width x height frame."""
        sx, sy = (width, height) if self.relative else (1, 1)
        return (round(self.x1 * sx), round(self.y1 * sy), round(self.x2 * sx),
                round(self.y2 * sy))


def pixel_zones(zones: Sequence[Zone], width: int, height: int) -> list[PixelBox]:
    return [z.pixels(width, height) for z in zones]


def in_zones(boxes: Sequence[Box], zones: Sequence[PixelBox]) -> list[bool]:
    """For each box, whether its centre is inside one of the zones (all True without zones)."""
    if not zones:
        return [True] * len(boxes)
    flags = []
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        flags.append(any(a <= cx <= c and b <= cy <= d for a, b, c, d in zones))
    return flags
