"""What a run or an evaluation leaves for people: text report, JSON metrics, plots, history.

report.txt (per-class precision/recall/F1 from `edge.core.metrics`, accuracy %, confusion matrix),
metrics.json, confusion_matrix.png, curves.png (loss and accuracy per epoch), history.csv, and for
an evaluation errors.csv and errors.jpg (the misclassified images, for auditing the labels).
Every file is written atomically (`edge.core.fileio`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image, ImageDraw

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edge.core.fileio import atomic_path, write_text_atomic
from edge.core.metrics import format_report


def confusion_text(report: dict[str, Any]) -> str:
    """The confusion matrix as an aligned table (rows true, columns predicted)."""
    labels, cm = report["labels"], report["confusion_matrix"]
    width = max(8, *(len(x) for x in labels))
    corner = "true \\ predicted"
    head = f"{corner:>{width + 4}} " + " ".join(f"{x:>{width}}" for x in labels)
    rows = [f"{x:>{width + 4}} " + " ".join(f"{v:>{width}d}" for v in row)
            for x, row in zip(labels, cm, strict=True)]
    return "\n".join([head, *rows])


def report_text(title: str, report: dict[str, Any], details: list[str] | None = None) -> str:
    """A titled block: accuracy %, per-class report, confusion matrix."""
    lines = [title, "=" * len(title), *(details or []), "",
             f"accuracy: {100 * report['accuracy']:.2f} % "
             f"({sum(r['support'] for r in report['per_class'].values())} images)", "",
             format_report(report), "", "confusion matrix:", confusion_text(report), ""]
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buf.getvalue())


def plot_confusion(path: Path, report: dict[str, Any], title: str) -> None:
    labels, cm = report["labels"], report["confusion_matrix"]
    size = 2.2 + 1.1 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    top = max(max(row) for row in cm) if cm else 0
    for i, row in enumerate(cm):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > top / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {100 * report['accuracy']:.2f} %")
    fig.tight_layout()
    _save(fig, path)


def plot_curves(path: Path, history: list[dict[str, Any]]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = list(range(1, len(history) + 1))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker=".", label=(prefix or "train_") + metric)
        phases = [row.get("phase") for row in history]
        for k in range(1, len(phases)):
            if phases[k] != phases[k - 1]:
                ax.axvline(k + 0.5, color="grey", linewidth=0.8)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def write_evaluation(out_dir: Path, report: dict[str, Any], title: str,
                     details: list[str] | None = None, extra: dict[str, Any] | None = None) -> None:
    """report.txt, metrics.json and confusion_matrix.png for one evaluated set."""
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "report.txt", report_text(title, report, details))
    write_json(out_dir / "metrics.json", {"test": report, **(extra or {})})
    plot_confusion(out_dir / "confusion_matrix.png", report, title)


#: errors.jpg: tiles of this many pixels, this many per row, at most this many tiles.
ERROR_TILE, ERROR_COLUMNS, ERROR_TILES = 112, 10, 100


def write_errors(out_dir: Path, where: list[tuple[str, str, Any]], images: np.ndarray,
                 y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> int:
    """errors.csv (every misclassified image: source, file, box, true and predicted label,
    confidence) and errors.jpg (the most confident errors first: where a label is likeliest to
    be wrong). `where` is (source name, file, box) per image. Returns the number of errors."""
    pred = probs.argmax(1)
    wrong = sorted(np.nonzero(pred != y_true)[0], key=lambda i: -probs[i, pred[i]])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "file", "box", "label", "predicted", "confidence"])
    for i in wrong:
        source, path, box = where[i]
        writer.writerow([source, path, " ".join(f"{v:.0f}" for v in box) if box else "",
                         labels[y_true[i]], labels[pred[i]], f"{probs[i, pred[i]]:.4f}"])
    write_text_atomic(Path(out_dir) / "errors.csv", buf.getvalue())
    shown = wrong[:ERROR_TILES]
    rows = max(1, -(-len(shown) // ERROR_COLUMNS))
    sheet = Image.new("RGB", (ERROR_COLUMNS * ERROR_TILE, rows * (ERROR_TILE + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(shown):
        x, y = (k % ERROR_COLUMNS) * ERROR_TILE, (k // ERROR_COLUMNS) * (ERROR_TILE + 14)
        sheet.paste(Image.fromarray(images[i]).resize((ERROR_TILE, ERROR_TILE)), (x, y))
        draw.text((x + 2, y + ERROR_TILE), f"{labels[y_true[i]][:9]}>{labels[pred[i]][:9]}",
                  fill="black")
    with atomic_path(Path(out_dir) / "errors.jpg") as tmp:
        sheet.save(tmp, quality=90)
    return len(wrong)
