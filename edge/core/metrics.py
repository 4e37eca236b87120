"""Classification metrics with numpy alone: confusion matrix, per-class report, agreement.

Used by the trainer's reports, the converters' accuracy check, the edge pipeline's evaluation and
the benchmarks, so every stage counts accuracy the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_report(y_true: np.ndarray, y_pred: np.ndarray,
                          labels: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, accuracy, macro and weighted averages."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    total = int(support.sum())
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(labels)
    }
    weights = support / max(total, 1)
    return {
        "accuracy": float(tp.sum() / max(total, 1)),
        "per_class": per_class,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                  "f1": float(f1.mean()), "support": total},
        "weighted": {"precision": float((precision * weights).sum()),
                     "recall": float((recall * weights).sum()),
                     "f1": float((f1 * weights).sum()), "support": total},
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
    }


def per_class_summary(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A report's per-class precision, recall and F1 rounded to 4 digits, with their support."""
    return {k: {m: round(v[m], 4) for m in ("precision", "recall", "f1")}
            | {"support": v["support"]} for k, v in report["per_class"].items()}


def format_report(report: dict[str, Any]) -> str:
    """The report as text, laid out like scikit-learn's classification_report."""
    names = [*list(report["per_class"]), "macro avg", "weighted avg"]
    width = max(12, *(len(n) for n in names))
    lines = [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
    for name, row in report["per_class"].items():
        lines.append(f"{name:>{width}} {row['precision']:9.4f} {row['recall']:9.4f} "
                     f"{row['f1']:9.4f} {row['support']:9d}")
    total = report["macro"]["support"]
    lines += ["", f"{'accuracy':>{width}} {'':>9} {'':>9} {report['accuracy']:9.4f} {total:9d}"]
    for key, name in (("macro", "macro avg"), ("weighted", "weighted avg")):
        row = report[key]
        lines.append(f"{name:>{width}} {row['precision']:9.4f} {row['recall']:9.4f} "
                     f"{row['f1']:9.4f} {row['support']:9d}")
    return "\n".join(lines)


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and the largest absolute probability difference of two models."""
    a, b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    return {"top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_prob_diff": float(np.abs(a - b).max()) if a.size else 0.0}
