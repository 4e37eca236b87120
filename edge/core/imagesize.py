"""Image sizes from file headers, so an absurd image is refused before it is decoded.

A 20,000 x 20,000 PNG of one colour is a few kilobytes on disk and 1.2 GB once OpenCV decodes it
(a decompression bomb); OpenCV's own limit is 2^30 pixels. `read_bgr` reads the width and height
from the header first (PNG, JPEG, BMP, WebP, TIFF: the formats `edge run --source DIR` takes) and
decodes only images of at most `MAX_IMAGE_PIXELS`, the trainer's limit too
(`trainer.data.images`, PIL's decompression-bomb guard). Headers it cannot read are left to OpenCV.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

#: Largest image (width x height) decoded: 120 megapixels, 360 MB as 8-bit BGR.
MAX_IMAGE_PIXELS = 120_000_000

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    for _ in range(10_000):  # segments before the frame header (EXIF, ICC, ...)
        byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # markers without a length
        if marker in (0xD9, 0xDA):
            return None  # end of image / start of scan before any frame header
        head = f.read(2)
        if len(head) < 2:
            return None
        length = struct.unpack(">H", head)[0]
        if marker in _JPEG_SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">xHH", frame)
            return width, height
        f.seek(length - 2, 1)
        if f.read(1) != b"\xff":
            return None
    return None


def _tiff_size(data: bytes, f: BinaryIO) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    f.seek(struct.unpack(order + "I", data[4:8])[0])
    raw = f.read(2)
    if len(raw) < 2:
        return None
    found: dict[int, int] = {}
    for _ in range(min(struct.unpack(order + "H", raw)[0], 4096)):
        entry = f.read(12)
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257) and kind in (3, 4):
            fmt = "H" if kind == 3 else "I"
            found[tag] = struct.unpack(order + fmt, entry[8:8 + struct.calcsize(fmt)])[0]
    return (found[256], found[257]) if 256 in found and 257 in found else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25:
        bits = struct.unpack("<I", data[21:25])[0]
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8X" and len(data) >= 30:
        return (1 + int.from_bytes(data[24:27], "little"),
                1 + int.from_bytes(data[27:30], "little"))
    return None


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the image file's header, or None when it cannot tell."""
    try:
        with open(path, "rb") as f:
            data = f.read(32)
            if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
                return struct.unpack(">II", data[16:24])
            if data[:2] == b"\xff\xd8":
                return _jpeg_size(f)
            if data[:2] == b"BM" and len(data) >= 26:
                if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header
                    return struct.unpack("<HH", data[18:22])
                width, height = struct.unpack("<ii", data[18:26])
                return abs(width), abs(height)
            if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
                return _webp_size(data)
            if data[:4] in (b"II*\x00", b"MM\x00*"):
                return _tiff_size(data, f)
    except (OSError, struct.error):
        return None
    return None


def too_large(path: str | Path) -> str | None:
    """Why `path` must not be decoded (its header claims more than MAX_IMAGE_PIXELS), or None."""
    size = header_size(path)
    if size is None or size[0] * size[1] <= MAX_IMAGE_PIXELS:
        return None
    width, height = size
    return (f"{Path(path).name} is {width:,} x {height:,} pixels "
            f"({width * height / 1e6:,.0f} megapixels), over the "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixel limit: not decoded")


def read_bgr(path: str | Path) -> np.ndarray | None:
    """`cv2.imread(path)` in colour, or None when it is unreadable or `too_large`."""
    if too_large(path) is not None:
        return None
    return cv2.imread(str(path), cv2.IMREAD_COLOR)
