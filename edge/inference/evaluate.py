"""Measure the pipeline on annotated photos (face-mask-voc): are the faces found, are labels right?

Each photo goes through `Pipeline.process` exactly as a camera frame would. Its faces are matched
to the annotated boxes greedily by detector score at IoU >= 0.5 (Pascal VOC). Reported:

- detector recall per annotated class, for all faces and for faces at least 32 px on their short
  side (`recall`, `recall_min32px`, and the weakest class's `min_class_recall_min32px`),
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.core.boxes import iou_matrix
from edge.core.imageops import crop_face
from edge.core.imagesize import read_bgr
from edge.core.metrics import classification_report
from edge.core.voc import AnnotatedImage, Annotation, DatasetError, load_voc  # noqa: F401 (re-exported)
from edge.inference.pipeline import FaceResult, Pipeline, PipelineOptions

IOU_THRESHOLD = 0.5
SMALL_FACE = 32  # px, short side: faces below this are "tiny"
MASKED = "with_mask"


def read_rgb(path: Path) -> np.ndarray | None:
    bgr = read_bgr(path)  # None: unreadable, or too large to decode
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


#: A looser overlap, reported beside recall: faces found whose box disagrees with the annotation.
LOOSE_IOU = 0.3


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


@dataclass
class Tally:
    """Running counts of one evaluation (see `evaluate`; `add_boxes` alone for a bare
    detector)."""

    labels: tuple[str, ...]
    faces: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    faces_large: Counter[str] = field(default_factory=Counter)
    found_large: Counter[str] = field(default_factory=Counter)
    found_loose: Counter[str] = field(default_factory=Counter)  # large faces at IoU >= LOOSE_IOU
    detections: int = 0
    true_detections: int = 0
    y_true: list[int] = field(default_factory=list)
    y_found: list[int] = field(default_factory=list)
    y_box_true: list[int] = field(default_factory=list)
    y_box: list[int] = field(default_factory=list)
    end_to_end: int = 0
    known_faces: int = 0
    unknown: dict[str, Counter[str]] = field(default_factory=dict)
    detect_ms: list[float] = field(default_factory=list)

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def add_boxes(self, item: AnnotatedImage, found: np.ndarray,
                  scores: np.ndarray) -> np.ndarray:
        """Count the annotated faces that `found` (N, 4) boxes find and the boxes that find one;
        the index of each annotated face's box, or -1 (see `match`)."""
        truth = np.array([a.box for a in item.annotations], np.float64).reshape(-1, 4)
        matched = match(truth, found, scores)
        loose = match(truth, found, scores, LOOSE_IOU)
        self.detections += len(found)
        self.true_detections += int((matched >= 0).sum())
        for ann, d, near in zip(item.annotations, matched, loose, strict=True):
            hit = int(d >= 0)
            self.faces[ann.label] += 1
            self.found[ann.label] += hit
            if ann.short_side >= SMALL_FACE:
                self.faces_large[ann.label] += 1
                self.found_large[ann.label] += hit
                self.found_loose[ann.label] += int(near >= 0)
        return matched

    def add_detections(self, item: AnnotatedImage, faces: tuple[FaceResult, ...]) -> None:
        index = self.index
        found = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        matched = self.add_boxes(item, found, np.array([f.detector_score for f in faces]))
        for ann, d in zip(item.annotations, matched, strict=True):
            if ann.label in index:
                self.known_faces += 1
                if d >= 0:
                    self.y_true.append(index[ann.label])
                    self.y_found.append(index[faces[d].label])
                    self.end_to_end += int(faces[d].label == ann.label)
            elif d >= 0:
                self.unknown.setdefault(ann.label, Counter())[faces[d].label] += 1

    def add_annotated_boxes(self, pipeline: Pipeline, rgb: np.ndarray,
                            item: AnnotatedImage) -> None:
        """The classifier alone on the annotated boxes of the classes it knows."""
        index = self.index
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
            self.y_box_true += [index[a.label] for a in known]
            self.y_box += probs.argmax(axis=1).tolist()

    def recall(self, large: bool, loose: bool = False) -> dict[str, float | None]:
        faces, found = (self.faces_large, self.found_large) if large else (self.faces, self.found)
        found = self.found_loose if loose else found
        return {"all": _ratio(sum(found.values()), sum(faces.values())),
                **{k: _ratio(found[k], n) for k, n in sorted(faces.items())}}

    def report(self) -> dict[str, Any]:
        large = self.recall(large=True)
        report: dict[str, Any] = {
            "faces": dict(self.faces), f"faces_min{SMALL_FACE}px": dict(self.faces_large),
            "iou_threshold": IOU_THRESHOLD, "recall": self.recall(large=False),
            f"recall_min{SMALL_FACE}px": large,
            # Box disagreement, not a missed face: found at IoU >= LOOSE_IOU (faces >= 32 px).
            f"recall_min{SMALL_FACE}px_iou{LOOSE_IOU}": self.recall(large=True, loose=True),
            f"recall_{MASKED}_min{SMALL_FACE}px": large.get(MASKED),
            f"{MASKED}_min{SMALL_FACE}px_faces": self.faces_large.get(MASKED, 0),
            "min_class_recall_min32px": min((v for k, v in large.items()
                                             if k != "all" and v is not None), default=None),
            "detections": self.detections,
            "precision": _ratio(self.true_detections, self.detections),
            "detect_ms_per_image": float(np.mean(self.detect_ms)) if self.detect_ms else None,
            "labels": list(self.labels),
            "accuracy_on_found_faces": _ratio(
                int(np.sum(np.equal(self.y_true, self.y_found))), len(self.y_true)),
            "accuracy_on_annotated_boxes": _ratio(
                int(np.sum(np.equal(self.y_box_true, self.y_box))), len(self.y_box)),
            "end_to_end": _ratio(self.end_to_end, self.known_faces),
            "predictions_for_unknown_classes": {k: dict(v) for k, v in self.unknown.items()},
        }
        if self.y_true:
            report["report_on_found_faces"] = classification_report(
                np.array(self.y_true), np.array(self.y_found), self.labels)
        return report


def evaluate(pipeline: Pipeline, images: Iterable[AnnotatedImage],
             on_image: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the pipeline over annotated images and report detection and classification quality:
    recall per class for all faces and for faces of at least 32 px, precision, classifier
    accuracy on the faces found and on the annotated boxes, detector time."""
    tally = Tally(pipeline.labels)
    used = skipped = 0
    for item in images:
        rgb = read_rgb(item.path)
        if on_image:
            on_image()
        if rgb is None:
            skipped += 1
            continue
        used += 1
        result = pipeline.process(rgb)
        tally.detect_ms.append(result.timings_ms["detect"])
        tally.add_detections(item, result.faces)
        tally.add_annotated_boxes(pipeline, rgb, item)
    return {"images": used, "unreadable_images": skipped,
            "detector": pipeline.options.detector, "detect_width": pipeline.options.detect_width,
            "detector_threshold": pipeline.options.detector_threshold, **tally.report()}


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


@dataclass(frozen=True)
class Setting:
    """One detector setting to measure: which detector, its file, input width and threshold."""

    detector: str
    model: Path | None = None
    width: int | None = None
    threshold: float | None = None

    @property
    def name(self) -> str:
        parts = [self.detector]
        if self.model is not None and self.detector == "yunet":  # which back end
            parts.append(self.model.suffix.lstrip(".") or self.model.name)
        if self.width is not None:
            parts.append(f"w{self.width}")
        if self.threshold is not None:
            parts.append(f"t{self.threshold:g}")
        return " ".join(parts)

    @classmethod
    def grid(cls, detectors: list[str], model: Path | None, model_dir: Path | None,
             widths: list[int] | None, thresholds: list[float] | None) -> list[Setting]:
        """Every combination; widths apply to YuNet's ONNX file only."""
        from edge.core.assets import DETECTOR_FILES

        settings = []
        for name in detectors:
            path = model
            if path is None and model_dir is not None and name.startswith("blazeface"):
                path = model_dir / DETECTOR_FILES[name].filename
            onnx = name == "yunet" and path is not None and path.suffix.lower() == ".onnx"
            for width in (widths or [None]) if onnx else [None]:
                settings += [cls(name, path, width, t) for t in thresholds or [None]]
        return settings


def compare(settings: list[Setting], base: PipelineOptions, images: list[AnnotatedImage],
            on_image: Callable[[], None] | None = None) -> dict[str, Any]:
    """`evaluate` and `frame_latency` for each setting, by setting name."""
    reports: dict[str, Any] = {}
    for setting in settings:
        pipeline = Pipeline(replace(base, detector=setting.detector, detector_model=setting.model,
                                    detect_width=setting.width,
                                    detector_threshold=setting.threshold))
        report = evaluate(pipeline, images, on_image)
        report["setting"] = setting.name
        report["calibrate_boxes"] = base.calibrate_boxes
        report["latency_640x480"] = frame_latency(pipeline, images)
        reports[setting.name] = report
    return reports


def _pct(v: float | None) -> str:
    return "    - " if v is None else f"{100 * v:5.1f}%"


def format_evaluation(reports: dict[str, Any]) -> str:
    """Recall against cost: one row per setting, recall per class for faces >= 32 px."""
    classes = sorted({c for r in reports.values() for c in r[f"faces_min{SMALL_FACE}px"]})
    short = {c: c.replace("mask_weared_incorrect", "incorrect").replace("_mask", "")[:9]
             for c in classes}
    width = max([len(n) for n in reports] + [8])
    head = (f"{'setting':<{width}} " + " ".join(f"{short[c]:>9}" for c in classes)
            + f" {'all>=32':>7} {'iou.3':>6} {'all':>6} {'prec':>6} {'acc':>6} {'e2e':>6}"
            f" {'ms/img':>6} {'ms/640':>6}")
    lines = [head]
    for name, r in reports.items():
        large = r[f"recall_min{SMALL_FACE}px"]
        loose = r.get(f"recall_min{SMALL_FACE}px_iou{LOOSE_IOU}") or {}
        lat = r.get("latency_640x480") or {}
        lines.append(f"{name:<{width}} " + " ".join(f"{_pct(large.get(c)):>9}" for c in classes)
                     + f" {_pct(large.get('all')):>7} {_pct(loose.get('all'))}"
                     f" {_pct(r['recall']['all'])}"
                     f" {_pct(r['precision'])} {_pct(r['accuracy_on_found_faces'])}"
                     f" {_pct(r['end_to_end'])} {r['detect_ms_per_image'] or 0:6.1f}"
                     f" {lat.get('detect_ms', 0):6.1f}")
    lines += ["", f"class columns and all>=32: recall of annotated faces >= {SMALL_FACE} px "
              f"(found = IoU >= {IOU_THRESHOLD}); iou.3: all>=32 at IoU >= {LOOSE_IOU} (the "
              "difference: boxes that disagree with the annotation);", "all: every face; prec: "
              "detections matching an annotation; acc: classifier on the faces found;",
              "e2e: annotated faces found and labelled right; ms: detector per photo / per "
              "640x480 frame."]
    return "\n".join(lines)
