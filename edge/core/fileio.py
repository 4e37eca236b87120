"""Atomic file writes for every stage: a file appears whole, or not at all.

Writers put their output in a temporary file beside the target and rename it into place only when
they have finished, so an interrupted or failed write never leaves a partial file and never
replaces a good one. Pure Python, importable without TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Files appear with the usual permissions (0o666 minus the umask), not mkstemp's private 0o600.
_FILE_MODE = 0o666 & ~_current_umask()


def _is_special(target: Path) -> bool:
    if target.exists() and not target.is_file() and not target.is_dir():
        return True
    parts = target.absolute().parts
    return len(parts) > 1 and parts[1] in ("dev", "proc")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix, so format-sniffing writers work);
    rename it onto `target` only if the block succeeds, delete it otherwise."""
    target = Path(target)
    if _is_special(target):
        # A device, FIFO, socket or /dev, /proc entry (/dev/null, /dev/stdout): renaming onto it
        # would replace the node itself, so write straight to it.
        yield target
        return
    if target.is_symlink():  # update the file the link points to, keep the link
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    with contextlib.suppress(OSError):
        os.chmod(tmp_path, _FILE_MODE)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root() -> Path:
    """maskedge's cache folder: $MASKEDGE_CACHE, else $XDG_CACHE_HOME/maskedge, else
    ~/.cache/maskedge (downloaded detectors, backbone features)."""
    if os.environ.get("MASKEDGE_CACHE"):
        return Path(os.environ["MASKEDGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "maskedge"
