"""The table of classifiers this benchmark compares (`ROWS`), its constants and how much
it measures (`Profile`); each row's file described from the file itself (size, contract, MACs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.classifiers.graph import tflite_macs
from benchmarks.tables import short

PROG = "python -m benchmarks.classifiers"
RESULT_NAME = "classifiers.json"
TITLE = "## Classifiers side by side: 2-class, 3-class student, 3-class ensemble"


@dataclass(frozen=True)
class Row:
    """One classifier to compare: `--model KEY=PATH` replaces its file."""

    key: str
    name: str
    file: str  # in the shipped models folder
    use: str


ROWS: tuple[Row, ...] = (
    Row("2c", "2-class", "face_mask_2c_int8.tflite",
        "close-up use; with_mask / without_mask"),
    Row("student", "3-class student", "face_mask_3c_student_int8.tflite",
        "edge run's default: one MobileNetV2 at 128 px distilled from the ensemble"),
    Row("ensemble", "3-class ensemble (teacher)", "face_mask_3c_int8.tflite",
        "three MobileNetV2 at 320 px + nose band, each on the face and its mirror"),
)
BASELINE = "2c"  # FPS ratios are against this row
STUDENT_TARGET = 0.8  # the student's pipeline FPS against the 2-class model's
INCORRECT = "mask_weared_incorrect"
CLASSES = ("with_mask", "without_mask", INCORRECT)
MIN_FACE = 16  # px, short side of the annotated box
SIZE_BUCKETS: tuple[tuple[int, int | None], ...] = ((16, 32), (32, 64), (64, 128), (128, None))
ILC = Path("datasets") / "face-mask-ilc-dev"
VOC = Path("datasets") / "face-mask-voc"
VIDEO_SIZE = (640, 480)
MAX_FACES_IN_VIDEO = 4
HOLD = 5  # video frames each photo is shown
THREADS = (1, 2)
PIPELINE_THREADS = 2


@dataclass(frozen=True)
class Profile:
    """How much to measure."""

    photos: int | None  # held-out photos (None: all)
    video_frames: int
    warmup: int  # classifier calls before the timed ones
    runs: int  # timed calls per row and thread count
    crops: int  # distinct face crops the timed calls cycle through


FULL = Profile(photos=None, video_frames=300, warmup=20, runs=300, crops=32)
QUICK = Profile(photos=6, video_frames=30, warmup=3, runs=15, crops=8)


def resolve_rows(overrides: Sequence[str] | None) -> list[tuple[Row, Path]]:
    """Every row with its file (the shipped one, or `KEY=PATH`); ValueError naming a missing
    file or an unknown key."""
    from edge.core.assets import project_models_dir

    files = {row.key: project_models_dir() / row.file for row in ROWS}
    for entry in overrides or ():
        key, sep, value = entry.partition("=")
        if not sep or key not in files:
            raise ValueError(f"--model takes KEY=PATH with KEY one of {', '.join(files)}, "
                             f"got {entry!r}")
        files[key] = Path(value)
    for row in ROWS:
        if not files[row.key].is_file():
            raise ValueError(f"model file not found: {files[row.key]} ({row.name})")
    return [(row, files[row.key]) for row in ROWS]



def describe(row: Row, path: Path) -> dict[str, Any]:
    """What the file is: size, contract, MACs."""
    from edge.core.fileio import sha256_file
    from edge.core.tflite_metadata import read_contract

    contract = read_contract(path)
    macs = tflite_macs(path)
    return {"key": row.key, "name": row.name, "use": row.use, "model": short(path),
            "sha256": sha256_file(path), "size_mb": path.stat().st_size / 1e6,
            "labels": list(contract.labels), "input_size": list(contract.input_size),
            "output": contract.output, "quantization": contract.quantization,
            "macs": macs["macs"], "macs_by_op": macs["by_op"], "ops": macs["ops"]}


def bucket_name(low: int, high: int | None) -> str:
    """A face size bucket's name: `16-32`, `>=128`."""
    return f">={low}" if high is None else f"{low}-{high}"
