"""Fit YuNet's box calibration: `python -m benchmarks.stages.detector_calibration [ILC_DATA]`.

YuNet's boxes reach higher up the forehead than the face-mask annotations, so at IoU 0.5 a found
face can count as missed. This fits `edge.detection.yunet.BoxCalibration` (a ridge-regularised
linear map from each box's landmarks to the annotated box) on the photos of face-mask-ilc-dev that
are NOT in the held-out list (`benchmarks/holdout/face-mask-ilc-dev-test.txt`), from detections of
the shipped `.tflite` YuNet at a low threshold matched to annotations at IoU >= 0.3, and writes
`models/yunet_calibration.json`. Reported results use the held-out photos and face-mask-voc only.

`--model X.tflite --out X.json`: the same for a YuNet fine-tuned by `trainer fit-detector`, fitted
on the photos in neither the held-out nor the validation list (its threshold is chosen on those).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.holdout_split import ILC_TEST_LIST, ILC_VAL_LIST
from edge.core.assets import YUNET_CALIBRATION, project_models_dir
from edge.core.boxes import iou_matrix
from edge.core.fileio import write_text_atomic
from edge.core.voc import load_voc, read_name_list
from edge.detection.detectors import DetectorOptions, create_detector
from edge.detection.yunet import RawFaces, fit_calibration
from edge.inference.evaluate import read_rgb

MATCH_IOU = 0.3
FIT_THRESHOLD = 0.3


def matched_pairs(root: Path, model: Path | None = None,
                  exclude: set[str] | None = None) -> list[tuple[RawFaces, np.ndarray]]:
    """(detections, their annotated boxes) for every detection overlapping an annotation."""
    detector = create_detector(DetectorOptions(model=model, score_threshold=FIT_THRESHOLD,
                                               calibrate=False))
    pairs = []
    for item in load_voc(root, exclude=exclude or read_name_list(ILC_TEST_LIST)):
        rgb = read_rgb(item.path)
        if rgb is None or not item.annotations:
            continue
        raw = detector.detect_raw(rgb)  # type: ignore[attr-defined]
        if not len(raw.scores):
            continue
        truth = np.array([a.box for a in item.annotations], np.float64)
        boxes = np.concatenate([raw.boxes[:, :2], raw.boxes[:, :2] + raw.boxes[:, 2:]], 1)
        ious = iou_matrix(boxes, truth)
        best = ious.argmax(axis=1)
        keep = ious[np.arange(len(best)), best] >= MATCH_IOU
        if keep.any():
            pairs.append((RawFaces(raw.boxes[keep], raw.landmarks[keep], raw.scores[keep]),
                          truth[best[keep]]))
    return pairs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path,
                        default=Path("../shared/datasets/face-mask-ilc-dev"))
    parser.add_argument("--model", type=Path, help="a fine-tuned YuNet .tflite")
    parser.add_argument("--out", type=Path, help="where to write (with --model)")
    args = parser.parse_args(argv)
    root, out = args.data, args.out or project_models_dir() / YUNET_CALIBRATION
    exclude = read_name_list(ILC_TEST_LIST)
    if args.model is not None:
        exclude |= read_name_list(ILC_VAL_LIST)
    pairs = matched_pairs(root, args.model, exclude)
    n = sum(len(p[0].scores) for p in pairs)
    which = "held-out and validation" if args.model else "held-out"
    calibration = fit_calibration(pairs, fitted_on=f"{root.name} minus {which} photos, {n} "
                                  f"detections matched at IoU >= {MATCH_IOU}")
    data = {"schema": "maskedge-yunet-calibration/1",
            "made": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "python -m benchmarks.stages.detector_calibration",
            "calibration": calibration.to_json()}
    write_text_atomic(out, json.dumps(data, indent=1) + "\n")
    print(f"fitted on {n} detections of {len(pairs)} photos -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
