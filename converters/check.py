"""Does the `.tflite` still answer like the Keras model? Measured on the held-out test split.

`keras_probabilities` runs the original model once; `check_tflite` runs a candidate file through the
device's own classifier (`edge.inference.classifier.MaskClassifier`, LiteRT, the same input
quantization the camera uses) and compares: accuracy, the difference from Keras in points, top-1
agreement and the largest probability difference (`edge.core.metrics`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.quiet import quiet_output
from edge.core.console import Advance
from edge.core.contract import ModelContract
from edge.core.metrics import agreement
from edge.inference.classifier import ClassifierOptions, MaskClassifier

BATCH = 32


@dataclass(frozen=True)
class CheckResult:
    """How a converted model compares with the Keras model on the test split."""

    accuracy: float
    keras_accuracy: float
    delta_points: float  # (accuracy - keras_accuracy) * 100; negative = the model lost accuracy
    top1_agreement: float
    max_prob_diff: float
    samples: int
    runtime: str

    @property
    def drop_points(self) -> float:
        return -self.delta_points

    def drop_text(self) -> str:
        """The accuracy change in words, e.g. '2.11 points below Keras'."""
        side = "below" if self.delta_points < 0 else "above"
        return f"{abs(self.delta_points) + 0.0:.2f} points {side} Keras"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean()) if len(labels) else 0.0


def keras_probabilities(model: Any, contract: ModelContract, images: np.ndarray,
                        advance: Advance | None = None) -> np.ndarray:
    """Class probabilities (N, C) of the Keras model on raw-pixel images."""
    out = []
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH].astype(np.float32)
        out.append(contract.probabilities(np.asarray(model(batch, training=False))))
        if advance:
            advance(len(batch))
    return np.concatenate(out) if out else np.zeros((0, contract.num_classes), np.float32)


def tflite_probabilities(path: Path, images: np.ndarray, threads: int | None = None,
                         advance: Advance | None = None) -> tuple[np.ndarray, str]:
    """Class probabilities (N, C) of a maskedge `.tflite` file, and the runtime that ran it."""
    with quiet_output():  # LiteRT announces its XNNPACK delegate on stderr
        classifier = MaskClassifier(ClassifierOptions(model=Path(path), threads=threads))
    out = []
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        out.append(classifier.predict(batch))
        if advance:
            advance(len(batch))
    probs = np.concatenate(out) if out else np.zeros((0, classifier.contract.num_classes))
    return probs, classifier.runtime


def check_tflite(path: Path, images: np.ndarray, labels: np.ndarray, keras_probs: np.ndarray,
                 threads: int | None = None, advance: Advance | None = None) -> CheckResult:
    """Compare a `.tflite` file's answers on `images` with the Keras model's `keras_probs`."""
    probs, runtime = tflite_probabilities(path, images, threads, advance)
    agree = agreement(probs, keras_probs)
    acc, keras_acc = accuracy(probs, labels), accuracy(keras_probs, labels)
    return CheckResult(accuracy=acc, keras_accuracy=keras_acc,
                       delta_points=round((acc - keras_acc) * 100, 4),
                       top1_agreement=agree["top1_agreement"],
                       max_prob_diff=agree["max_prob_diff"], samples=len(labels), runtime=runtime)
