"""Robust image decoding: any photo file -> uint8 RGB array, or a reason why not.

Real photo folders are messy: zero-byte files, truncated JPEGs, text files with image names,
RGBA/palette/grayscale/CMYK/16-bit images, EXIF-rotated phone photos and 5,000 px originals.
`decode_image` handles every one of them or reports why it skipped the file (`BadImage`); it never
raises anything else for a bad file. Large JPEGs are decoded at a reduced scale with PIL's `draft`
(a DCT-domain downscale, several times faster) when the caller only needs a small image.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from edge.core.imagesize import MAX_IMAGE_PIXELS

# Refuse absurd images (decompression bombs) with a reason instead of exhausting memory: the same
# limit as the device (edge.core.imagesize), enforced from the header before anything is decoded.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is skipped, never half-grey

#: Background that transparent pixels are composited onto (mid grey: neutral for the model).
ALPHA_BACKGROUND = (127, 127, 127)


class BadImage(ValueError):
    """A file that cannot be used as an image; the message is the reason, for skipped.txt."""


@dataclass(frozen=True)
class Decoded:
    """A decoded image and the SHA-256 of the file bytes it came from."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied
    sha256: str


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0  # float images in [0, 1]
        elif mode != "F" and arr.size and float(arr.max()) > 255:
            arr = arr / 257.0  # 16-bit range -> 8-bit
        gray = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = img.convert("RGB") if img.mode != "RGB" else img
    return np.asarray(rgb, dtype=np.uint8)


def decode_image(path: str | Path, min_side: int | None = None) -> Decoded:
    """Decode `path` to uint8 RGB with EXIF rotation applied.

    `min_side`: if given, a large JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as both
    sides stay >= min_side (faster; the caller resizes to the model input anyway).
    Raises BadImage with a short reason for any file that is not a usable image.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadImage(f"unreadable: {exc.strerror or exc}") from None
    if not data:
        raise BadImage("empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    return Decoded(pixels=decode_bytes(data, min_side), sha256=digest)


def decode_bytes(data: bytes, min_side: int | None = None) -> np.ndarray:
    """`decode_image` for bytes already in memory (no hash)."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF / palette warnings are not our user's problem
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit
            with Image.open(io.BytesIO(data)) as img:
                if min_side and img.format == "JPEG":
                    img.draft("RGB", (min_side, min_side))
                img.load()
                img = ImageOps.exif_transpose(img) or img
                pixels = _to_rgb(img)
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage("image too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = "truncated" if "truncated" in text.lower() else "corrupt"
        raise BadImage(f"{reason} image: {text[:120]}") from None
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise BadImage(f"unusable image shape {pixels.shape}")
    return pixels
