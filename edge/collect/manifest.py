"""The collect folder and its manifest, shared by `edge run --collect` and `edge label`.

    DIR/manifest.jsonl            one JSON line per kept face (fields below)
    DIR/faces/<stem>.jpg          the crops waiting for a label (the trainer's margin)
    DIR/frames/<stem>.jpg         the frames they came from
    DIR/labelled/<class>/<name>   labelled crops: the folder-per-class layout `trainer fit` reads

A manifest line holds `file` (the crop, relative to DIR, where it was written: its name for
`edge label --set FILE=LABEL`), `frame_file`, `time`, `source`, `frame`, `box` (frame pixels),
`detector_score`, `probabilities` ({label: p} in the model's label order), `labels` (that order),
`raw_label` (the classifier's), `predicted` (the track's smoothed label), `margin` (top two
probabilities apart), `track`, `run`, `reason` (the strongest of `reasons`: flip, disagrees,
uncertain, sample), `usefulness` (how the budget ranks it), `model`, `model_sha256`,
`crop_margin`; once labelled, also `label` and `labelled_file` (where the crop is now).

Two processes may use one folder at once (a run collecting while `edge label` serves the page),
so every read-modify-write of the manifest happens under an exclusive `flock` on `DIR/.lock`
and re-reads the file first. Appends are one line each, flushed and fsynced; rewrites (a label,
an undo, a replaced face) go to a temporary file renamed into place. A crop is moved with
`os.replace` (atomic within the folder's file system) before the manifest says so; if the
manifest cannot be written the move is undone, and a crop found in neither place the manifest
names is looked for in the other place and in the class folders (`crop_path`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.core.fileio import write_text_atomic

MANIFEST = "manifest.jsonl"
FACES, FRAMES, LABELLED = "faces", "frames", "labelled"
LOCK = ".lock"

Entry = dict[str, Any]


class ManifestError(ValueError):
    """A collect folder, manifest line, file or label that cannot be used (one line)."""


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the folder's exclusive lock (`flock` on DIR/.lock; none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: one process at a time is the user's job
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_entries(folder: Path) -> list[Entry]:
    """The manifest's lines (none when there is no manifest yet); a torn last line (a power cut
    during an append) is left out, any other bad line is a `ManifestError`."""
    path = folder / MANIFEST
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue
            raise ManifestError(f"{path}:{number} is not a JSON line") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise ManifestError(f"{path}:{number} has no \"file\"")
        entries.append(entry)
    return entries


def line(entry: Entry) -> str:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n"


def append_entry(folder: Path, entry: Entry) -> None:
    """Add one line at the end, flushed and fsynced (call under `locked`)."""
    with open(folder / MANIFEST, "a", encoding="utf-8") as handle:
        handle.write(line(entry))
        handle.flush()
        os.fsync(handle.fileno())


def rewrite(folder: Path, entries: list[Entry]) -> None:
    """Replace the manifest atomically (call under `locked`)."""
    write_text_atomic(folder / MANIFEST, "".join(line(e) for e in entries))


def unlabelled(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if "label" not in e]


def inside(folder: Path, relative: str) -> Path:
    """`relative` under `folder`; `ManifestError` for a path that would leave it."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()) or Path(relative).is_absolute():
        raise ManifestError(f"{relative!r} lies outside {folder}")
    return path


def crop_path(folder: Path, entry: Entry) -> Path:
    """Where the crop of `entry` is now: where the manifest says, else the other place, else a
    class folder (moved by a labeller stopped before it could rewrite the manifest)."""
    places = [entry.get("labelled_file"), entry["file"]]
    if "label" not in entry:
        places.reverse()
    candidates = [inside(folder, p) for p in places if isinstance(p, str)]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        name = glob.escape(Path(entry["file"]).name)
        found = next(iter(sorted((folder / LABELLED).glob(f"*/{name}"))), None)
    return found or candidates[0]


def labels_of(entry: Entry) -> list[str]:
    """The classes a face may get: its model's labels."""
    labels = entry.get("labels") or list(entry.get("probabilities") or {})
    return [str(label) for label in labels]


def safe_label(label: str) -> bool:
    """Whether `label` can name a class folder (no path separators, not . or ..)."""
    return bool(label) and label not in (".", "..") and "/" not in label and "\\" not in label \
        and "\x00" not in label


def find(entries: list[Entry], file: str) -> Entry:
    for entry in entries:
        if entry["file"] == file:
            return entry
    raise ManifestError(f"no face {file!r} in the manifest (FILE as its \"file\" names it, "
                        f"e.g. {entries[0]['file'] if entries else 'faces/NAME.jpg'})")


def check_label(entry: Entry, label: str) -> None:
    labels = labels_of(entry)
    if label not in labels or not safe_label(label):
        raise ManifestError(f"{label!r} is not a class of {entry['file']}: one of "
                            f"{', '.join(labels)}")


def set_label(folder: Path, file: str, label: str) -> Entry:
    """Move the crop of `file` into labelled/<label>/ and record it (a labelled crop moves to
    the new class); the updated entry."""
    with locked(folder):
        entries = read_entries(folder)
        entry = find(entries, file)
        check_label(entry, label)
        source = crop_path(folder, entry)
        target_rel = f"{LABELLED}/{label}/{Path(entry['file']).name}"
        target = inside(folder, target_rel)
        return _move(folder, entries, entry, source, target,
                     {"label": label, "labelled_file": target_rel})


def clear_label(folder: Path, file: str) -> Entry:
    """Undo a label: the crop goes back to where it was written, the manifest forgets it."""
    with locked(folder):
        entries = read_entries(folder)
        entry = find(entries, file)
        if "label" not in entry:
            return entry
        return _move(folder, entries, entry, crop_path(folder, entry), inside(folder, file),
                     {"label": None, "labelled_file": None})


def _move(folder: Path, entries: list[Entry], entry: Entry, source: Path, target: Path,
          changes: dict[str, Any]) -> Entry:
    """Move the crop, then rewrite the manifest with `changes` (None deletes a key); if the
    manifest cannot be written, the crop goes back."""
    if not source.is_file():
        raise ManifestError(f"the crop of {entry['file']} is missing from {folder}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source != target:
        os.replace(source, target)
    previous = dict(entry)
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    try:
        rewrite(folder, entries)
    except OSError:
        entry.clear()
        entry.update(previous)
        if source != target:
            os.replace(target, source)
        raise
    return entry
