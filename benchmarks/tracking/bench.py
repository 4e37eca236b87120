"""Tracking against ground truth: `python -m benchmarks.tracking [--quick] [--split ...]`.

    python -m benchmarks.tracking                      # both splits, every variant (~10 min)
    python -m benchmarks.tracking --quick --split held-out --variant default --json

What it measures and why: the device (`edge run`) reports per tracked person a smoothed label, a
people count and alerts, so a tracker that joins different people (two photos, a cut, two faces
crossing) or splits one person (a fast face, dropped frames, a face that comes back) makes the
device report wrong numbers even when the classifier is right. This benchmark plays synthetic
clips with known identities (benchmarks/tracking/clips.py: held photos with cuts, moving faces, the
same with dropped frames, an all-masked clip) through the real device loop
(benchmarks/tracking/clip_player.py: `FrameGrabber`, `Pipeline`, `run_loop`, `edge run`'s defaults
and the shipped 3-class model), and scores each run (benchmarks/tracking/metrics.py): IDF1, ID
switches, MOTA, joined tracks, tracks across cuts, reported vs raw label accuracy and per-class F1,
people counted vs true, alerts and false alerts per hour, FPS. It also runs the held-out photos as a
folder (`edge run --source DIR`, kind `photos`), where every photo is another set of people and no
track should carry over.

Each row of `VARIANTS` is a set of `TrackerOptions` keywords; every variant runs on the same
clips (after the first, the models' outputs are replayed: see clip_player). Held-in clips use only
photos outside the held-out lists; held-out clips only the ilc-dev held-out photos.

Results: `benchmarks/results/tracking.json` (with `--quick`: benchmarks/work/quick/, never the
committed file), rendered by `benchmarks.tracking.report.render_tracking` into RESULTS.md
(`python -m benchmarks.run --render-only`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmarks.config import (
    FULL_OUT,
    QUICK_OUT,
    JsonOption,
    SharedOption,
    default_shared,
    show_result,
    write_result,
)
from benchmarks.machine import read_cpuinfo
from benchmarks.tables import short
from benchmarks.tracking.clip_player import ClipSource, Device, ReplayError, Tape, play
from benchmarks.tracking.clips import (
    FPS,
    FULL_PLAN,
    KINDS,
    MIN_FACE,
    QUICK_PLAN,
    SPLITS,
    Clip,
    ClipPlan,
    build_clips,
    photo_pool,
)
from benchmarks.tracking.metrics import (
    MATCH_IOU,
    MissingPackage,
    Played,
    require_motmetrics,
    score_clip,
    score_photos,
)
from benchmarks.tracking.report import PHOTOS, render_tracking
from edge.core.assets import DEFAULT_MODEL_NAME, AssetError, project_models_dir, resolve_model
from edge.core.console import Advance, cli_app, say, task, user_errors
from edge.core.labelmap import LabelMapError
from edge.core.voc import AnnotatedImage, DatasetError
from edge.inference.pipeline import Pipeline, PipelineOptions
from edge.tracking.alerts import unmasked_labels
from edge.tracking.tracks import TrackerOptions
from edge.video.sources import FrameSource, ImageFolderSource, SourceError

PROG = "benchmarks.tracking.bench"
#: Tracker variants compared side by side: name -> `TrackerOptions` keywords (one line per row).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    # The choices of edge/tracking/tracks.py, each undone on its own (chosen on held-in clips):
    "age10": {"max_age": 10},
    "look0.6": {"appearance_min": 0.6},
    "look0.3": {"appearance_min": 0.3},
    "no-look": {"appearance": False},
    "count-any": {"count_min_score": 0.0, "count_min_face": 0.0},
    "smooth-mean": {"smoothing": "mean"},
    "smooth-fresh": {"smoothing": "fresh"},
    "iou-only": {"matcher": "iou"},
    # The vote only where it is sure (default 0.7): always the vote, or other thresholds.
    "vote-always": {"smooth_min": 0.0},
    "sure0.6": {"smooth_min": 0.6},
    "sure0.8": {"smooth_min": 0.8},
    # A person who leaves and comes back within 10 s continues their track (default: cosine of
    # the looks >= 0.5): never, or only when they look more alike.
    "no-reid": {"reid_age": 0},
    "reid0.65": {"reid_min": 0.65},
    # ByteTrack's association (edge/tracking/bytetrack.py) in place of the IoU + centre matcher.
    "bytetrack": {"matcher": "bytetrack"},
    # All of them undone at once (the pipeline still resets at cuts).
    "legacy": {"appearance": False, "scene_reset": False, "smoothing": "mean", "smooth_min": 0.0,
               "max_age": 10, "count_min_score": 0.0, "count_min_face": 0.0, "reid_age": 0},
}
#: `edge run` raises no alerts without --alert-after; the README's examples use 15 frames.
ALERT_AFTER = 15
SHIPPED_3C = DEFAULT_MODEL_NAME  # the 3-class student, edge run's default
RESULT_NAME = "tracking.json"
QUICK_PHOTOS = 6
SPLIT_CHOICES = (*SPLITS, "both")
ALL_KINDS = (*KINDS, PHOTOS)


@dataclass(frozen=True)
class Settings:
    """What to measure: the data, how much of each kind, which variants and kinds."""

    shared: Path
    plan: ClipPlan = FULL_PLAN
    variants: tuple[str, ...] = tuple(VARIANTS)
    kinds: tuple[str, ...] = ALL_KINDS
    photos: int | None = None  # held-out photos run as a folder (None: all)
    seed: int = 0
    replay: bool = True  # variants after the first replay the models' outputs


def tracker_options(variant: str) -> TrackerOptions:
    """The `TrackerOptions` of a row of VARIANTS (ValueError naming the known ones)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return TrackerOptions(**VARIANTS[variant])


def make_device(model: Path | None, alert_after: int | None = ALERT_AFTER) -> Device:
    """The default 3-class model (or `model`) with the default detector, as `edge run` builds
    it, and alert labels as `edge run` chooses them (`edge.tracking.alerts.unmasked_labels`)."""
    path = resolve_model(model if model is not None else project_models_dir() / SHIPPED_3C)
    options = PipelineOptions(model=path)
    live = Pipeline(options)
    return Device(live.detector, live.classifier, options, alert_after,
                  unmasked_labels(live.labels))


def run_variants(source: Callable[[], FrameSource], device: Device, settings: Settings,
                 score: Callable[[Played], dict[str, Any]], advance: Advance
                 ) -> list[dict[str, Any]]:
    """One row per variant, each a device run over a fresh `source()`; with `settings.replay`
    the first run records the models and the others replay them (their FPS is the first's)."""
    tape, rows = Tape(), []
    live_fps = None
    for n, variant in enumerate(settings.variants):
        replaying = settings.replay and n > 0
        if not replaying:
            tape = Tape()
        played = play(source(), device.pipeline(tape, replaying), device,
                      tracker_options(variant), lambda: advance(1))
        row = {"variant": variant, **score(played), "replayed": replaying}
        if replaying:
            row["fps"] = live_fps
        else:
            live_fps = row["fps"]
        rows.append(row)
    return rows


def clip_rows(kind: str, clip: Clip, device: Device, settings: Settings,
              advance: Advance) -> list[dict[str, Any]]:
    truths = [clip.truth(i) for i in range(len(clip))]

    def score(played: Played) -> dict[str, Any]:
        return score_clip(truths, clip.cuts, clip.seconds, played, device.labels,
                          device.alert_labels)

    return [{"kind": kind, **row}
            for row in run_variants(lambda: ClipSource(clip), device, settings, score, advance)]


def photo_rows(photos: Sequence[AnnotatedImage], device: Device, settings: Settings,
               advance: Advance) -> list[dict[str, Any]]:
    """The photos as a folder of independent images (symlinks in a temporary folder) through
    `ImageFolderSource`, as `edge run --source DIR` reads them."""
    with tempfile.TemporaryDirectory(prefix="maskedge-photos-") as tmp:
        folder = Path(tmp)
        for item in photos:
            (folder / item.path.name).symlink_to(item.path.resolve())

        def score(played: Played) -> dict[str, Any]:
            return score_photos(photos, played, device.labels)

        return [{"kind": PHOTOS, **row} for row in run_variants(
            lambda: ImageFolderSource(folder), device, settings, score, advance)]


def held_out_photos(settings: Settings) -> list[AnnotatedImage]:
    if PHOTOS not in settings.kinds:
        return []
    photos = list(photo_pool("held-out", settings.shared).photos)
    return photos[: settings.photos] if settings.photos else photos


def measure(splits: Sequence[str], device: Device, settings: Settings,
            progress: bool = True) -> dict[str, Any]:
    """Every split's clips (and, with the held-out split, the photos) through every variant."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    clip_kinds = [k for k in settings.kinds if k in KINDS]
    built = {s: build_clips(s, settings.shared, settings.plan, settings.seed, clip_kinds)
             for s in splits}
    photos = held_out_photos(settings) if "held-out" in splits else []
    frames = sum(len(c) for clips in built.values() for c in clips.values()) + len(photos)
    out: dict[str, Any] = {}
    with task("tracking benchmark", frames * len(settings.variants), progress) as advance:
        for split in splits:
            begun = time.perf_counter()
            rows = [row for kind, clip in built[split].items()
                    for row in clip_rows(kind, clip, device, settings, advance)]
            if split == "held-out" and photos:
                rows += photo_rows(photos, device, settings, advance)
            out[split] = {"photos": photo_pool(split, settings.shared).datasets,
                          "photos_as_folder": len(photos) if split == "held-out" else 0,
                          "clips": {k: c.describe() for k, c in built[split].items()},
                          "rows": rows, "seconds": round(time.perf_counter() - begun, 1)}
    return {**header(device, settings), "started": started,
            "seconds": round(time.perf_counter() - t0, 1), "splits": out}


def header(device: Device, settings: Settings) -> dict[str, Any]:
    """What the numbers were measured with (model, device options, variants, clip plan)."""
    cpu = asdict(read_cpuinfo())
    return {"model": short(device.options.model), "labels": list(device.labels),
            "detector": device.options.detector, "classify_every": device.options.classify_every,
            "detect_every": device.options.detect_every, "alert_after": device.alert_after,
            "alert_labels": list(device.alert_labels), "fps_nominal": FPS,
            "min_face": MIN_FACE, "match_iou": MATCH_IOU, "replay": settings.replay,
            "seed": settings.seed, "variants": {v: VARIANTS[v] for v in settings.variants},
            "tracker_defaults": asdict(TrackerOptions()), "plan": asdict(settings.plan),
            "kinds": list(settings.kinds),
            "cpu": {k: cpu.get(k) for k in ("model", "logical_cpus", "mhz")}}


def chosen(values: Sequence[str] | None, known: Sequence[str], what: str) -> tuple[str, ...]:
    """`values` (default: all of `known`), each checked, in the order of `known`."""
    picked = list(values or known)
    unknown = [v for v in picked if v not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(known)}")
    return tuple(v for v in known if v in picked)


def command_line(quick: bool, split: str, variants: Sequence[str] | None,
                 kinds: Sequence[str] | None, options: dict[str, Any]) -> str:
    """The command that measures these splits, variants and kinds (for the report); `options`
    maps other flags to their values (None or False: left out, True: the bare flag)."""
    parts = ["python -m benchmarks.tracking", *(["--quick"] if quick else []),
             *([f"--split {split}"] if split != "both" else []),
             *(f"--variant {v}" for v in variants or ()), *(f"--kind {k}" for k in kinds or ()),
             *(flag if value is True else f"{flag} {value}" for flag, value in options.items()
               if value is not None and value is not False)]
    return " ".join(parts)


app = cli_app(no_args_is_help=False,
              help="Measure the device's tracker against ground truth on synthetic clips and "
                   "write benchmarks/results/tracking.json.")


@app.command()
def main(
    quick: Annotated[bool, typer.Option(
        "--quick", help=f"A few photos and short clips (seconds; tests); writes under "
        f"{short(QUICK_OUT)}/ unless --out.")] = False,
    split: Annotated[str, typer.Option(
        help=f"Which clips: {' | '.join(SPLIT_CHOICES)} (held-in: photos outside the held-out "
        "lists; held-out: the ilc-dev held-out photos).")] = "both",
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", help=f"Tracker variant to run (repeatable; default all): "
        f"{', '.join(VARIANTS)}.", show_default=False)] = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help=f"Clip kind to run (repeatable; default all): {', '.join(ALL_KINDS)}.",
        show_default=False)] = None,
    json_out: JsonOption = False,
    model: Annotated[Path | None, typer.Option(
        help=f"Classifier .tflite (default: the shipped models/{SHIPPED_3C}).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        help=f"Folder for {RESULT_NAME} (default: {short(FULL_OUT)}; --quick: "
        f"{short(QUICK_OUT)}).", show_default=False)] = None,
    shared: SharedOption = None,
    alert_after: Annotated[int, typer.Option(
        min=1, help="Frames a tracked face must stay unmasked to alert (edge run "
        "--alert-after).")] = ALERT_AFTER,
    seed: Annotated[int, typer.Option(help="Seed of the clips.")] = 0,
    replay: Annotated[bool, typer.Option(
        "--replay/--no-replay", help="Replay the models' outputs for every variant after the "
        "first (--no-replay: run the models for each).")] = True,
) -> None:
    """Play synthetic clips with ground truth through the device loop, once per tracker variant,
    and score identities, labels, people counts and alerts."""
    with user_errors(PROG, (AssetError, DatasetError, LabelMapError, SourceError, ReplayError,
                            MissingPackage, ValueError, OSError), json_out=json_out):
        require_motmetrics()
        if split not in SPLIT_CHOICES:
            raise ValueError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, not {split!r}")
        settings = Settings(shared or default_shared(), QUICK_PLAN if quick else FULL_PLAN,
                            chosen(variant, tuple(VARIANTS), "variant"),
                            chosen(kind, ALL_KINDS, "kind"), QUICK_PHOTOS if quick else None,
                            seed, replay)
        if split == "held-in" and settings.kinds == (PHOTOS,):
            raise ValueError("--kind photos plays the held-out photos: use --split held-out")
        folder = out or (QUICK_OUT if quick else FULL_OUT)
        if quick and folder.resolve() == FULL_OUT.resolve():
            raise ValueError("--quick must not write over the full results; choose another --out")
        if not settings.shared.is_dir():
            raise ValueError(f"shared data folder not found: {settings.shared} (pass --shared "
                             "or set MASKEDGE_SHARED)")
        device = make_device(model, alert_after)
        result = measure(SPLITS if split == "both" else (split,), device, settings)
        result["quick"] = quick
        result["command"] = command_line(quick, split, variant, kind, {
            "--model": model, "--seed": seed or None, "--no-replay": not replay,
            "--alert-after": alert_after if alert_after != ALERT_AFTER else None})
        target = write_result(result, folder, RESULT_NAME)
    show_result(result, json_out, render_tracking(result))
    say(f"results: {target} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    app()
