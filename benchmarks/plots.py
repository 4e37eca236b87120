"""PNG plots for the report: latency against accuracy, per-stage pipeline time, training curves.

matplotlib with the Agg backend (no display); each function takes section results and writes one
file atomically, returning its path, or None when the results it needs are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edge.core.fileio import atomic_path


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def latency_accuracy(results: dict[str, dict[str, Any]], path: Path,
                     threads: int = 1) -> Path | None:
    """Each variant (main model) and each input size (int8): p50 ms against test accuracy."""
    latency, accuracy = results.get("latency", {}), results.get("accuracy", {})
    sizes = results.get("sizes", {})
    acc_by_variant = {r["variant"]: r.get("accuracy") for r in accuracy.get("rows", [])}
    if "keras" in acc_by_variant:  # predict and tf.function run the same Keras model
        acc_by_variant.setdefault("keras_predict", acc_by_variant["keras"])
        acc_by_variant.setdefault("keras_function", acc_by_variant["keras"])
    points = [(r["label"], r["p50_ms"], acc_by_variant.get(r["variant"]))
              for r in latency.get("rows", [])
              if r.get("status") == "ok" and r.get("threads") == threads
              and acc_by_variant.get(r["variant"]) is not None]
    sweep = [(row["size"], row.get("int8_p50_ms", {}).get(str(threads)),
              row.get("int8_accuracy")) for row in sizes.get("rows", [])]
    sweep = [s for s in sweep if s[1] is not None and s[2] is not None]
    if not points and not sweep:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = "osD^vP*X"
    for i, (label, ms, acc) in enumerate(points):  # a legend, not labels: variants overlap
        ax.scatter(ms, 100 * acc, s=45, marker=markers[i % len(markers)], label=label,
                   zorder=3)
    if sweep:
        xs, ys = [s[1] for s in sweep], [100 * s[2] for s in sweep]
        ax.plot(xs, ys, ".-", color="black", label="TFLite int8 by input size")
        for size, x, y in zip([s[0] for s in sweep], xs, ys, strict=True):
            ax.annotate(f"{size}px", (x, y), textcoords="offset points", xytext=(5, -11),
                        fontsize=8)
    ax.legend(loc="best", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency per image, ms ({threads} thread, log scale)")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("Latency against accuracy")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def pipeline_stages(endtoend: dict[str, Any], path: Path) -> Path | None:
    """Stacked per-stage milliseconds per frame: the pipeline and the reference loop."""
    runs = [(name, endtoend.get(key) or {}) for name, key in
            (("maskedge pipeline", "pipeline"), ("reference loop", "reference_loop"))]
    runs = [(name, run) for name, run in runs if run.get("stages_ms")]
    if not runs:
        return None
    stages = ["detect", "classify"]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for i, (_name, run) in enumerate(runs):
        left = 0.0
        for stage, color in zip(stages, ("#4c72b0", "#dd8452"), strict=True):
            ms = float(run["stages_ms"].get(stage, 0.0))
            ax.barh(i, ms, left=left, color=color, label=stage if i == 0 else None)
            left += ms
        parts = " + ".join(f"{run['stages_ms'].get(k, 0.0):.1f}" for k in stages)
        ax.annotate(f"{parts} ms, {run.get('fps', 0):.1f} FPS", (left, i), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(range(len(runs)), [name for name, _ in runs])
    ax.set_xlabel("milliseconds per 640x480 frame")
    ax.set_xlim(0, 1.3 * max(sum(run["stages_ms"].get(k, 0.0) for k in stages)
                             for _, run in runs))
    ax.set_title("Per-stage pipeline time")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def training_curves(training: dict[str, Any], path: Path) -> Path | None:
    """Test accuracy per epoch against wall time for both paths (log time axis)."""
    epochs = training.get("reference", {}).get("epochs", [])
    cached = training.get("cached", {})
    if not epochs or cached.get("wall_s") is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.plot([e["elapsed_s"] for e in epochs], [100 * e["test_accuracy"] for e in epochs], "o-",
            label="reference recipe (per epoch)")
    per_epoch = cached.get("per_epoch") or []
    if per_epoch:
        ax.plot([e["elapsed_s"] for e in per_epoch], [100 * e["test_accuracy"] for e in per_epoch],
                ".-", color="red", label="cached features (per epoch)")
    ax.scatter([cached["wall_s"]], [100 * cached["test_accuracy"]], color="red", marker="s",
               zorder=3, label="cached features (whole run, final model)")
    ax.axhline(100 * cached["test_accuracy"], color="red", alpha=0.3, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("wall time since start, s (log scale)")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("Training: time to test accuracy")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def make_plots(results: dict[str, dict[str, Any]], out: Path) -> dict[str, Path]:
    """Every plot the results allow, by name."""
    made = {
        "latency_accuracy": latency_accuracy(results, out / "latency_accuracy.png"),
        "pipeline_stages": pipeline_stages(results.get("endtoend", {}),
                                           out / "pipeline_stages.png"),
        "training_curves": training_curves(results.get("training", {}),
                                           out / "training_curves.png"),
    }
    return {name: p for name, p in made.items() if p is not None}
