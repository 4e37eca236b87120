"""The shipped default detector: `python -m benchmarks.stages.detector_finetune [--work DIR]`.

YuNet fine-tuned on the face boxes of face-mask-ilc-dev and face-mask-voc (`trainer fit-detector`,
12 epochs, Adam 1e-4), never on their held-out photos (`benchmarks/holdout/`). Its score threshold
is chosen by 5-fold cross-validation over the held-in ilc-dev photos: five detectors are trained,
each without one fold, each fold is detected by the detector that never saw it (its box
calibration fitted on that detector's own held-in ilc-dev photos), and the threshold kept is the
one with the highest weakest class (faces >= 32 px, IoU >= 0.5), then precision, among those whose
pooled precision is not below the v0.1 default's (YuNet ONNX at width 320, raw boxes) on the same
photos. The final detector is trained on every held-in photo, calibrated on the held-in ilc-dev
photos, and written with its settings to `models/yunet_masked.tflite` and `yunet_masked.json`.
Trained files in `--work` are reused (about 6 min each on 2 cores). Results on the held-out photos
come from `python -m benchmarks.run --only detector`, never from here.
"""

from __future__ import annotations

# Before anything heavy: without the train extra, one line naming it and exit 2.
import benchmarks.needs_train  # noqa: F401  # isort: skip

import argparse
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.holdout_split import HOLDOUT_DIR, ILC_TEST_LIST
from benchmarks.stages.detector_calibration import matched_pairs
from edge.core.assets import YUNET_CALIBRATION, YUNET_TFLITE, project_models_dir
from edge.core.boxes import Face
from edge.core.fileio import atomic_path, write_text_atomic
from edge.core.voc import AnnotatedImage, load_voc, read_name_list
from edge.detection.detectors import DetectorOptions, create_detector
from edge.detection.yunet import fit_calibration
from edge.inference.evaluate import SMALL_FACE, Tally, read_rgb

SHARED = Path("../shared")
ILC = "datasets/face-mask-ilc-dev"
VOC = "datasets/face-mask-voc"
ONNX = "detectors/face_detection_yunet_2023mar.onnx"
VOC_TEST_LIST = HOLDOUT_DIR / "face-mask-voc-test.txt"
FOLDS, SEED, EPOCHS, LEARNING_RATE = 5, 0, 12, 1e-4
THRESHOLDS = tuple(round(0.3 + 0.025 * i, 3) for i in range(15))  # 0.3 ... 0.65


def fold_lists(shared: Path, work: Path) -> list[Path]:
    """The held-in ilc-dev photos in FOLDS shuffled folds, one name list each."""
    names = [i.path.name for i in load_voc(shared / ILC, exclude=read_name_list(ILC_TEST_LIST))]
    np.random.default_rng(SEED).shuffle(names)
    paths = []
    (work / "folds").mkdir(parents=True, exist_ok=True)
    for k in range(FOLDS):
        path = work / "folds" / f"fold{k}.txt"
        write_text_atomic(path, "".join(f"{n}\n" for n in names[k::FOLDS]))
        paths.append(path)
    return paths


def fit(shared: Path, out: Path, exclude: list[Path]) -> Path:
    """`trainer fit-detector` on both sources minus the held-out (and `exclude`) photos."""
    if out.is_file():
        return out
    excludes = [a for p in (ILC_TEST_LIST, VOC_TEST_LIST, *exclude)
                for a in ("--exclude-list", str(p))]
    subprocess.run([sys.executable, "-m", "trainer.cli", "fit-detector", str(shared / ILC),
                    str(shared / VOC), "--onnx", str(shared / ONNX), "--epochs", str(EPOCHS),
                    "--learning-rate", str(LEARNING_RATE), "--seed", str(SEED), "--quiet",
                    *excludes, "--out", str(out)], check=True)
    return out


def summary(tally: Tally) -> dict[str, float]:
    """Recall per class of the faces >= 32 px (IoU >= 0.5), the weakest class, precision."""
    report = tally.report()
    recall = {c: v for c, v in report[f"recall_min{SMALL_FACE}px"].items() if c != "all"}
    return {**recall, "weakest": report["min_class_recall_min32px"],
            "precision": report["precision"]}


def add_faces(tally: Tally, item: AnnotatedImage, faces: list[Face]) -> None:
    tally.add_boxes(item, np.array([f.box for f in faces], np.float64).reshape(-1, 4),
                    np.array([f.score for f in faces]))


def out_of_fold(shared: Path, work: Path, folds: list[Path]) -> dict[float, dict[str, float]]:
    """Pooled results per threshold, each fold detected by the detector trained without it."""
    tallies = {t: Tally(()) for t in THRESHOLDS}
    held_out = read_name_list(ILC_TEST_LIST)
    for k, fold in enumerate(folds):
        model = work / f"fold{k}.tflite"
        names = read_name_list(fold)
        detector = create_detector(DetectorOptions(model=model, score_threshold=THRESHOLDS[0],
                                                   calibrate=False))
        detector.calibration = fit_calibration(  # type: ignore[attr-defined]
            matched_pairs(shared / ILC, model, held_out | names))
        for item in load_voc(shared / ILC, only=names):
            rgb = read_rgb(item.path)
            raw = detector.detect_raw(rgb)  # type: ignore[attr-defined]
            for t, tally in tallies.items():
                add_faces(tally, item, detector.faces(  # type: ignore[attr-defined]
                    raw.at_least(t), rgb.shape[1], rgb.shape[0]))
    return {t: summary(tally) for t, tally in tallies.items()}


def precision_floor(shared: Path, folds: list[Path]) -> float:
    """The v0.1 default's precision (YuNet ONNX at width 320, raw boxes) on the same photos."""
    detector = create_detector(DetectorOptions(model=shared / ONNX, input_width=320,
                                               calibrate=False))
    tally = Tally(())
    names = set().union(*(read_name_list(f) for f in folds))
    for item in load_voc(shared / ILC, only=names):
        add_faces(tally, item, detector.detect(read_rgb(item.path)))
    return summary(tally)["precision"]


def choose(table: dict[float, dict[str, float]], floor: float) -> float:
    """Highest weakest class, then precision, among thresholds at a precision >= floor."""
    allowed = [t for t, r in table.items() if r["precision"] >= floor]
    if not allowed:
        raise SystemExit(f"no threshold keeps the precision at {floor:.3f} or more")
    return max(allowed, key=lambda t: (round(table[t]["weakest"], 6), table[t]["precision"]))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work/detector_finetune"))
    parser.add_argument("--out", type=Path, default=project_models_dir())
    args = parser.parse_args(argv)
    shared, work = args.shared, args.work
    folds = fold_lists(shared, work)
    for k in range(FOLDS):
        fit(shared, work / f"fold{k}.tflite", [folds[k]])
    final = fit(shared, work / "final.tflite", [])
    table, floor = out_of_fold(shared, work, folds), precision_floor(shared, folds)
    threshold = choose(table, floor)
    pairs = matched_pairs(shared / ILC, final, read_name_list(ILC_TEST_LIST))
    calibration = fit_calibration(pairs, fitted_on=f"face-mask-ilc-dev minus held-out photos, "
                                  f"{sum(len(p[0].scores) for p in pairs)} detections matched at "
                                  "IoU >= 0.3")
    training = json.loads(final.with_suffix(".json").read_text(encoding="utf-8"))
    data = {"schema": "maskedge-yunet-calibration/1",
            "made": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "python -m benchmarks.stages.detector_finetune",
            "score_threshold": threshold,
            "threshold_choice": {"rule": "highest weakest class, then precision, at a precision "
                                 "not below the v0.1 default's, out of fold",
                                 "precision_floor": round(floor, 4),
                                 "out_of_fold": {str(t): {k: round(v, 4) for k, v in r.items()}
                                                 for t, r in table.items()}},
            "training": {k: training[k] for k in ("photos", "faces", "epochs") if k in training}
            | {"learning_rate": LEARNING_RATE, "seed": SEED},
            "calibration": calibration.to_json()}
    with atomic_path(args.out / YUNET_TFLITE) as tmp:
        shutil.copyfile(final, tmp)
    write_text_atomic(args.out / YUNET_CALIBRATION, json.dumps(data, indent=1) + "\n")
    best = table[threshold]
    print(f"threshold {threshold} (out of fold: weakest class {100 * best['weakest']:.1f} %, "
          f"precision {100 * best['precision']:.1f} % >= {100 * floor:.1f} %) -> "
          f"{args.out / YUNET_TFLITE}, {args.out / YUNET_CALIBRATION}")


if __name__ == "__main__":
    main(sys.argv[1:])
