"""The measurements of every row (see bench.py's docstring): ms per face, the Pi 4 estimate,
held-out accuracy per class and face size, pipeline FPS on one video."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.classifiers.rows import (
    BASELINE,
    CLASSES,
    HOLD,
    ILC,
    INCORRECT,
    MAX_FACES_IN_VIDEO,
    MIN_FACE,
    PIPELINE_THREADS,
    SIZE_BUCKETS,
    STUDENT_TARGET,
    THREADS,
    VIDEO_SIZE,
    VOC,
    Profile,
    bucket_name,
)
from benchmarks.tables import short
from edge.core.console import Advance, say, task


def heldout_photos(shared: Path, limit: int | None) -> list[Any]:
    """The ilc-dev held-out photos with their annotations (the 3-class label map)."""
    from benchmarks.stages.threeclass_rows import ILC_LIST, LABEL_MAP
    from edge.core.labelmap import LabelMap
    from edge.core.voc import load_voc, read_name_list

    photos = load_voc(shared / ILC, label_map=LabelMap.parse(LABEL_MAP),
                      only=read_name_list(ILC_LIST))
    if not photos:
        raise ValueError(f"no held-out photos of {short(ILC_LIST)} in {shared / ILC}")
    return photos[:limit] if limit else photos


def timing_crops(photos: Sequence[Any], count: int) -> list[np.ndarray]:
    """Up to `count` annotated faces (>= MIN_FACE px) cropped with the device's margin."""
    from edge.core.imageops import crop_face
    from edge.inference.evaluate import read_rgb

    crops: list[np.ndarray] = []
    for item in photos:
        rgb = read_rgb(item.path)
        for ann in item.annotations if rgb is not None else ():
            if ann.short_side >= MIN_FACE and len(crops) < count:
                crops.append(crop_face(rgb, ann.box))
        if len(crops) >= count:
            break
    if not crops:
        raise ValueError("no face of at least 16 px in the held-out photos read")
    return crops



# --- ms per face -----------------------------------------------------------------------------

def time_per_face(path: Path, threads: int, crops: Sequence[np.ndarray], profile: Profile,
                  advance: Advance) -> dict[str, Any]:
    """Median ms of `MaskClassifier.classify` on one crop (batch of one) at `threads`."""
    from edge.inference.classifier import ClassifierOptions, MaskClassifier

    classifier = MaskClassifier(ClassifierOptions(path, threads=threads))
    for i in range(profile.warmup):
        classifier.classify([crops[i % len(crops)]])
        advance(1)
    times = []
    for i in range(profile.runs):
        crop = crops[i % len(crops)]
        start = time.perf_counter()
        classifier.classify([crop])
        times.append((time.perf_counter() - start) * 1000.0)
        advance(1)
    return {"median_ms": float(np.median(times)), "p10_ms": float(np.percentile(times, 10)),
            "p90_ms": float(np.percentile(times, 90)), "runs": len(times),
            "warmup": profile.warmup, "runtime": classifier.runtime}


def pi4_estimate(macs: int, ms_1t: float | None, ref: dict[str, Any]) -> dict[str, Any]:
    """This machine's achieved 1-thread MAC rate for the row, and the Pi 4 ms per face at the
    same share of its core's nominal int8 peak (this time scaled by the ratio of the peaks)."""
    here, pi = ref.get("here_core_int8_gmacs"), ref.get("pi_core_int8_gmacs")
    if not ms_1t or not here or not pi:
        return {"achieved_gmacs_1t": None, "share_of_peak": None, "ms_per_face": None}
    achieved = macs / (ms_1t / 1000.0) / 1e9
    return {"achieved_gmacs_1t": achieved, "share_of_peak": achieved / here,
            "ms_per_face": ms_1t * here / pi}


# --- held-out accuracy -----------------------------------------------------------------------

def _pipelines(paths: dict[str, Path]) -> dict[str, Any]:
    """One pipeline per row (2 threads), all sharing the first one's detector."""
    from edge.inference.classifier import ClassifierOptions, MaskClassifier
    from edge.inference.pipeline import Pipeline, PipelineOptions

    first_key, first_path = next(iter(paths.items()))
    first = Pipeline(PipelineOptions(model=first_path, threads=PIPELINE_THREADS))
    out = {first_key: first}
    for key, path in list(paths.items())[1:]:
        classifier = MaskClassifier(ClassifierOptions(path, threads=PIPELINE_THREADS))
        out[key] = Pipeline.from_parts(first.detector, classifier,
                                       replace(first.options, model=path))
    return out


def read_heldout(paths: dict[str, Path], photos: Sequence[Any], advance: Advance
                 ) -> tuple[dict[str, list[tuple[str, str, float]]], dict[str, int]]:
    """Per row, (true label, predicted label, short side px) of every annotated face >= MIN_FACE
    px the detector found; and the photo and face counts."""
    from edge.inference.evaluate import match, read_rgb

    pipelines = _pipelines(paths)
    detector = next(iter(pipelines.values()))
    faces: dict[str, list[tuple[str, str, float]]] = {key: [] for key in paths}
    counts = Counter({"photos": 0, "unreadable": 0, "annotated_faces": 0, "matched_faces": 0,
                      "detections": 0})
    for item in photos:
        rgb = read_rgb(item.path)
        advance(1)
        if rgb is None:
            counts["unreadable"] += 1
            continue
        found, _ = detector.detect(rgb)
        truth = np.array([a.box for a in item.annotations], np.float64).reshape(-1, 4)
        matched = match(truth, np.array([f.box for f in found], np.float64).reshape(-1, 4),
                        np.array([f.score for f in found]))
        kept = [(a, int(d)) for a, d in zip(item.annotations, matched, strict=True)
                if a.short_side >= MIN_FACE]
        counts.update(photos=1, detections=len(found), annotated_faces=len(kept),
                      matched_faces=sum(d >= 0 for _, d in kept))
        for key, pipeline in pipelines.items():
            results = pipeline.classify(rgb, found, 0.0).faces
            faces[key] += [(a.label, results[d].label, a.short_side) for a, d in kept if d >= 0]
    return faces, dict(counts)


def _share(pairs: Sequence[tuple[str, str, float]]) -> float | None:
    return sum(t == p for t, p, _ in pairs) / len(pairs) if pairs else None


def score(faces: Sequence[tuple[str, str, float]], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / F1 and accuracy per face size of one row, on the
    faces of the classes the model knows (the others are counted as left out)."""
    from edge.core.metrics import classification_report, per_class_summary

    known = [f for f in faces if f[0] in labels]
    index = {name: i for i, name in enumerate(labels)}
    report = classification_report(np.array([index[t] for t, _, _ in known], np.int64),
                                   np.array([index[p] for _, p, _ in known], np.int64), labels)
    per_class: dict[str, Any] = {c: "n/a" for c in CLASSES if c not in labels}
    per_class.update(per_class_summary(report))
    by_size = {}
    for low, high in SIZE_BUCKETS:
        inside = [f for f in known if f[2] >= low and (high is None or f[2] < high)]
        by_size[bucket_name(low, high)] = {"faces": len(inside), "accuracy": _share(inside)}
    return {"faces": len(known), "accuracy": _share(known),
            "accuracy_with_without": _share([f for f in known if f[0] != INCORRECT]),
            "with_without_faces": sum(f[0] != INCORRECT for f in known),
            "per_class": per_class, "by_size": by_size,
            "left_out": dict(Counter(t for t, _, _ in faces if t not in labels)),
            "labels": list(labels), "confusion_matrix": report["confusion_matrix"]}


# --- pipeline FPS ----------------------------------------------------------------------------

def make_test_video(shared: Path, target: Path, frames: int) -> tuple[Path, dict[str, Any]]:
    """The 640x480 video: face-mask-voc photos with 1-4 faces (its test list left out), each
    held HOLD frames, enough photos for `frames`; its path and what the result file says."""
    from benchmarks.stages.endtoend import video_info, video_photos
    from benchmarks.stages.threeclass_rows import VOC_LIST
    from edge.core.voc import read_name_list
    from edge.video.videomaker import make_video

    photos, hold = video_photos(shared / VOC, frames, HOLD, exclude=read_name_list(VOC_LIST))
    target.parent.mkdir(parents=True, exist_ok=True)
    made = make_video(photos, target, size=VIDEO_SIZE, fps=30.0, hold=hold)
    return made.path, {**video_info(made, hold), "path": short(made.path)}


class _FrameCounter:
    """An `edge.sinks.outputs.Sink` that only moves the progress bar."""

    needs_image = False

    def __init__(self, on_frame: Callable[[], None]) -> None:
        self.on_frame = on_frame

    def write(self, record: dict[str, Any], annotated: np.ndarray | None) -> None:
        self.on_frame()

    def event(self, record: dict[str, Any]) -> None:
        pass

    def close(self, ok: bool = True) -> None:
        pass


def pipeline_fps(model: Path, video: Path, advance: Advance) -> dict[str, Any]:
    """`edge run --source VIDEO --model MODEL --threads 2` (every other option at its default):
    frames, FPS and milliseconds per stage of the run's summary."""
    from edge.runner import Runner, RunOptions

    options = RunOptions(source=str(video), model=model, threads=PIPELINE_THREADS, quiet=True,
                         extra_sinks=(lambda context: _FrameCounter(lambda: advance(1)),))
    summary = Runner(options, notice=lambda line: None).run()
    if summary.error:
        raise RuntimeError(f"edge run on {video.name} with {model.name}: {summary.error}")
    return {"fps": summary.fps, "frames": summary.frames, "seconds": summary.seconds,
            "dropped": summary.dropped, "timings_ms": summary.timings_ms,
            "faces": summary.faces}


# --- the run ---------------------------------------------------------------------------------

def measure_speed(rows: list[dict[str, Any]], paths: dict[str, Path],
                  crops: list[np.ndarray], profile: Profile, ref: dict[str, Any]) -> None:
    """ms per face at every thread count and the Pi 4 estimate (`ref`: the peaks), into each
    row."""
    total = len(rows) * len(THREADS) * (profile.warmup + profile.runs)
    with task("ms per face", total) as advance:
        for row in rows:
            row["timing"] = {str(t): time_per_face(paths[row["key"]], t, crops, profile, advance)
                             for t in THREADS}
    for row in rows:
        row["ms_per_face"] = {t: v["median_ms"] for t, v in row["timing"].items()}
        row["pi4"] = pi4_estimate(row["macs"], row["ms_per_face"].get("1"), ref)


def measure_heldout(rows: list[dict[str, Any]], paths: dict[str, Path],
                    photos: list[Any]) -> dict[str, Any]:
    """Held-out accuracy into each row; the photo and face counts."""
    with task("held-out photos", len(photos)) as advance:
        faces, counts = read_heldout(paths, photos, advance)
    for row in rows:
        row["heldout"] = score(faces[row["key"]], row["labels"])
        row["heldout"]["matched_faces"] = counts["matched_faces"]
    return counts


def measure_fps(rows: list[dict[str, Any]], paths: dict[str, Path], shared: Path,
                work: Path, frames: int) -> dict[str, Any]:
    """The one video, then every row's pipeline FPS on it and its ratio to the baseline."""
    say("making the test video ...")
    path, video = make_test_video(shared, work / f"classifiers_voc_1to{MAX_FACES_IN_VIDEO}_"
                                  f"faces_{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}_hold{HOLD}.avi", frames)
    with task("pipeline on the video", video["frames"] * len(rows)) as advance:
        for row in rows:
            row["pipeline"] = pipeline_fps(paths[row["key"]], path, advance)
    base = next((r["pipeline"]["fps"] for r in rows if r["key"] == BASELINE), None)
    for row in rows:
        row["fps_vs_2c"] = row["pipeline"]["fps"] / base if base else None
    return video


def measure(paths: dict[str, Path], described: list[dict[str, Any]], shared: Path,
            work: Path, profile: Profile) -> dict[str, Any]:
    """Every measurement of every row (see the module docstring), with what it ran on."""
    from benchmarks.machine import machine_info
    from benchmarks.stages.sizes import core_peaks

    started, t0, load = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter(), \
        os.getloadavg()
    rows = described
    photos = heldout_photos(shared, profile.photos)
    ref = core_peaks()
    measure_speed(rows, paths, timing_crops(photos, profile.crops), profile, ref)
    counts = measure_heldout(rows, paths, photos)
    video = measure_fps(rows, paths, shared, work, profile.video_frames)
    student = next((r for r in rows if r["key"] == "student"), {})
    return {"started": started, "seconds": round(time.perf_counter() - t0, 1),
            "load_average_start": [round(v, 2) for v in load],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
            "machine": machine_info(with_tensorflow=False), "pi4_reference": ref,
            "profile": profile.__dict__, "threads": list(THREADS),
            "pipeline_threads": PIPELINE_THREADS, "min_face": MIN_FACE,
            "heldout": {"list": "benchmarks/holdout/face-mask-ilc-dev-test.txt", **counts},
            "video": video, "baseline": BASELINE, "student_target": STUDENT_TARGET,
            "student_fps_ratio": student.get("fps_vs_2c"), "rows": rows}

