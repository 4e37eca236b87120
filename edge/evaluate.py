"""Measure the pipeline on annotated photos (face-mask-voc): are the faces found, are labels right?

Each photo goes through `Pipeline.process` exactly as a camera frame would. Its faces are matched
to the annotated boxes greedily by detector score at IoU >= 0.5 (Pascal VOC). Reported:

- detector recall per annotated class (and for masked faces at least 32 px on their short side),
  precision (annotations miss some faces, so it is a lower bound),
- per-face accuracy of the classifier on the faces the pipeline found, and on the annotated boxes
  (the classifier alone), for the annotated classes the model knows,
- end to end: the share of annotated faces found *and* labelled right,
- detector milliseconds per photo and per 640x480 frame.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.boxes import iou_matrix
from edge.imageops import crop_face
from edge.metrics import classification_report
from edge.pipeline import Pipeline
from edge.voc import AnnotatedImage, Annotation, DatasetError, load_voc  # noqa: F401 (re-exported)

IOU_THRESHOLD = 0.5
SMALL_FACE = 32  # px, short side: faces below this are "tiny"
MASKED = "with_mask"


def read_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def match(truth: np.ndarray, found: np.ndarray, scores: np.ndarray,
          threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """For each annotated box, the index of the detection matched to it, or -1. Detections are
    taken best score first, each to the unmatched annotation it overlaps most (IoU >= threshold)."""
    matched = np.full(len(truth), -1, dtype=np.int64)
    if len(truth) == 0 or len(found) == 0:
        return matched
    ious = iou_matrix(found, truth)
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(matched < 0, ious[d], -1.0)
        g = int(candidates.argmax())
        if candidates[g] >= threshold:
            matched[g] = d
    return matched


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def evaluate(pipeline: Pipeline, images: Iterable[AnnotatedImage],
             on_image: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the pipeline over annotated images and report detection and classification quality."""
    labels = pipeline.labels
    index = {name: i for i, name in enumerate(labels)}
    counts: Counter[str] = Counter()
    found_by_class: Counter[str] = Counter()
    masked_large = masked_large_found = 0
    detections = true_detections = 0
    y_true, y_found, y_annotated_true, y_annotated = [], [], [], []
    end_to_end = known_faces = 0
    unknown_predictions: dict[str, Counter[str]] = {}
    detect_ms, used, skipped = [], 0, 0
    for item in images:
        rgb = read_rgb(item.path)
        if on_image:
            on_image()
        if rgb is None:
            skipped += 1
            continue
        used += 1
        result = pipeline.process(rgb)
        detect_ms.append(result.timings_ms["detect"])
        truth = np.array([a.box for a in item.annotations], np.float64).reshape(-1, 4)
        found = np.array([f.box for f in result.faces], np.float64).reshape(-1, 4)
        scores = np.array([f.detector_score for f in result.faces])
        matched = match(truth, found, scores)
        detections += len(found)
        true_detections += int((matched >= 0).sum())
        for ann, d in zip(item.annotations, matched, strict=True):
            counts[ann.label] += 1
            hit = d >= 0
            found_by_class[ann.label] += int(hit)
            if ann.label == MASKED and ann.short_side >= SMALL_FACE:
                masked_large += 1
                masked_large_found += int(hit)
            if ann.label in index:
                known_faces += 1
                if hit:
                    y_true.append(index[ann.label])
                    y_found.append(index[result.faces[d].label])
                    end_to_end += int(result.faces[d].label == ann.label)
            elif hit:
                unknown_predictions.setdefault(ann.label, Counter())[result.faces[d].label] += 1
        known, crops = [], []
        for ann in item.annotations:
            if ann.label not in index:
                continue
            try:
                crops.append(crop_face(rgb, ann.box, pipeline.options.margin))
            except ValueError:  # an annotation outside its image
                continue
            known.append(ann)
        if known:
            probs = pipeline.classifier.classify(crops)
            y_annotated_true += [index[a.label] for a in known]
            y_annotated += probs.argmax(axis=1).tolist()
    total = sum(counts.values())
    report: dict[str, Any] = {
        "images": used, "unreadable_images": skipped, "faces": dict(counts),
        "detector": pipeline.options.detector, "detect_width": pipeline.options.detect_width,
        "iou_threshold": IOU_THRESHOLD,
        "recall": {"all": _ratio(sum(found_by_class.values()), total),
                   **{k: _ratio(found_by_class[k], n) for k, n in sorted(counts.items())}},
        f"recall_{MASKED}_min{SMALL_FACE}px": _ratio(masked_large_found, masked_large),
        f"{MASKED}_min{SMALL_FACE}px_faces": masked_large,
        "detections": detections,
        "precision": _ratio(true_detections, detections),
        "detect_ms_per_image": float(np.mean(detect_ms)) if detect_ms else None,
        "labels": list(labels),
        "accuracy_on_found_faces": _ratio(int(np.sum(np.equal(y_true, y_found))), len(y_true)),
        "accuracy_on_annotated_boxes": _ratio(
            int(np.sum(np.equal(y_annotated_true, y_annotated))), len(y_annotated)),
        "end_to_end": _ratio(end_to_end, known_faces),
        "predictions_for_unknown_classes": {k: dict(v) for k, v in unknown_predictions.items()},
    }
    if y_true:
        report["report_on_found_faces"] = classification_report(
            np.array(y_true), np.array(y_found), labels)
    return report


def frame_latency(pipeline: Pipeline, images: Iterable[AnnotatedImage],
                  size: tuple[int, int] = (640, 480), frames: int = 40) -> dict[str, float]:
    """Mean detect and classify milliseconds per frame of `size`, photos stretched to it."""
    stack = []
    for item in images:
        rgb = read_rgb(item.path)
        if rgb is not None:
            stack.append(cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR))
        if len(stack) >= frames:
            break
    if not stack:
        return {}
    pipeline.process(stack[0])  # warm-up
    timings: dict[str, list[float]] = {"detect": [], "classify": []}
    faces = 0
    start = time.perf_counter()
    for rgb in stack:
        result = pipeline.process(rgb)
        faces += len(result.faces)
        for key in timings:
            timings[key].append(result.timings_ms[key])
    elapsed = time.perf_counter() - start
    return {"frame_size": f"{size[0]}x{size[1]}", "frames": len(stack),
            "faces_per_frame": faces / len(stack),
            **{f"{k}_ms": float(np.mean(v)) for k, v in timings.items()},
            "fps": len(stack) / elapsed}
