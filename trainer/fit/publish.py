"""The end of a `trainer fit` run: test evaluation, the model files with their contract, the
reports and the summary, then the hidden run folder renamed into place (`publish_run`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edge.core.contract import ModelContract
from edge.core.fileio import write_text_atomic
from edge.core.metrics import classification_report, per_class_summary
from trainer.data.datasets import Dataset
from trainer.data.split import SPLITS, SplitManifest, write_manifest
from trainer.fit.artifacts import save_keras_model
from trainer.fit.reports import (
    plot_confusion,
    plot_curves,
    report_text,
    write_history_csv,
    write_json,
)
from trainer.fit.state import FitResult, FitRun, weights_sha256

#: Samples of the test set on which the saved full model must reproduce the head's predictions.


def write_inputs(run: FitRun) -> None:
    """split.json, config.json and skipped.txt: what the run was given."""
    write_manifest(run.manifest, run.work / "split.json")
    roots = [str(r.resolve()) for r in run.config.roots()]
    write_json(run.work / "config.json", {**asdict(run.config),
                                          "data": roots[0] if len(roots) == 1 else roots,
                                          "out": str(run.out.resolve())})
    write_text_atomic(run.work / "skipped.txt",
                      "".join(f"{s.path}\t{s.reason}\n" for s in run.info["skipped"]))


@dataclass(frozen=True)
class Evaluation:
    """The trained model on the run's own test and validation splits."""

    test: dict[str, Any]  # classification report
    val: dict[str, Any]
    by_source: dict[str, dict[str, Any]]
    consistency: dict[str, Any] | None  # full model against the head on cached features

    @property
    def per_class(self) -> dict[str, dict[str, Any]]:
        return per_class_summary(self.test)


def evaluate_run(run: FitRun) -> Evaluation:
    """Test and validation reports, from outputs computed where the data lives (`run.data`)."""
    test_out, val_out, consistency = run.data.outputs(run)
    return _evaluation(run, (test_out, val_out), consistency)


def _evaluation(run: FitRun, outputs: tuple[np.ndarray, np.ndarray],
                consistency: dict[str, Any] | None) -> Evaluation:
    """Reports from the model's test and validation outputs."""
    test_idx, val_idx = run.index("test"), run.index("val")
    test_out, val_out = outputs
    test_pred = run.contract.probabilities(test_out).argmax(1)
    val_pred = run.contract.probabilities(val_out).argmax(1)
    return Evaluation(classification_report(run.y[test_idx], test_pred, run.labels),
                      classification_report(run.y[val_idx], val_pred, run.labels),
                      per_source(run.manifest, run.y, test_idx, test_pred), consistency)


def write_model(run: FitRun, ev: Evaluation) -> ModelContract:
    """model.h5, model.keras and metadata.json, with the contract and its measured metrics."""
    c = run.config
    source = {"split_manifest": "split.json", "data_fingerprint": run.fingerprint,
              "data": _data_text(run.dataset), "format": run.dataset.format,
              "weights": c.weights, "weights_fingerprint": run.weight_fp,
              "alpha": c.alpha, "seed": c.seed, "phase1": run.phase1["path"],
              "augment_views": c.augment_views if c.feature_cache else None,
              "fine_tune_layers": c.fine_tune_layers,
              **({"augment": c.augment} if c.augment != "reference" else {}),
              **({"label_smoothing": c.label_smoothing} if c.label_smoothing else {}),
              **({"split_seed": c.split_seed} if c.split_seed is not None else {}),
              **({"val_seed": c.val_seed} if c.val_seed is not None else {}),
              **({"logit_adjust": run.info["logit_adjust"]} if "logit_adjust" in run.info
                 else {})}
    metrics = {"test_accuracy": round(ev.test["accuracy"], 6), "n_test": len(run.index("test")),
               "val_accuracy": round(ev.val["accuracy"], 6), "n_val": len(run.index("val")),
               "n_train": len(run.index("train")), "per_class": ev.per_class,
               "macro_f1": round(ev.test["macro"]["f1"], 6)}
    contract = ModelContract.for_labels(run.labels, c.input_size, source=source, metrics=metrics)
    save_keras_model(run.clf.model, contract, run.work)
    write_text_atomic(run.work / "metadata.json", contract.to_json() + "\n")
    return contract


def write_reports(run: FitRun, ev: Evaluation) -> None:
    """history.csv, curves.png, report.txt, metrics.json, confusion_matrix.png."""
    c, info = run.config, run.info
    write_history_csv(run.work / "history.csv", run.history)
    plot_curves(run.work / "curves.png", run.history)
    grouping, imbalance = info["grouping"], info["imbalance"]
    details = [f"data: {_data_text(run.dataset)} ({run.dataset.format}), split: split.json "
               f"(seed {c.seed})",
               f"model: MobileNetV2 alpha {c.alpha}, {c.input_size}x{c.input_size}"
               + (" (whole face at half size + nose-and-mouth band)" if c.nose_band else "")
               + f", weights {c.weights}, phase 1 on {run.phase1['path']}"
               + (f", fine-tuned top {c.fine_tune_layers} layers" if run.fine_tune else ""),
               f"train/val/test images: {len(run.index('train'))}/{len(run.index('val'))}/"
               f"{len(run.index('test'))}; skipped files: {len(info['skipped'])} (skipped.txt); "
               f"near-duplicate groups merged: {grouping['merged_groups']} "
               f"({grouping['samples_in_merged_groups']} images)",
               f"class imbalance (train): {imbalance['train_counts']}, ratio "
               f"{imbalance['ratio_largest_to_smallest']}, class weights "
               f"{imbalance['class_weights']}"
               + (f"; logit offsets (--logit-adjust {info['logit_adjust']['tau']}): "
                  f"{info['logit_adjust']['offsets']}" if "logit_adjust" in info else ""),
               _distribution_text(run)]
    text = report_text("Test set", ev.test, details) + "\n" + per_source_text(
        ev.by_source) + report_text("Validation set", ev.val)
    write_text_atomic(run.work / "report.txt", text)
    write_json(run.work / "metrics.json", {"test": ev.test, "val": ev.val,
                                           "per_source": ev.by_source})
    plot_confusion(run.work / "confusion_matrix.png", ev.test, "test set")


def run_summary(run: FitRun, ev: Evaluation) -> dict[str, Any]:
    out, info, accuracy = run.out.resolve(), run.info, ev.test["accuracy"]
    return {
        "run_dir": str(out), "model_h5": str(out / "model.h5"),
        "model_keras": str(out / "model.keras"), "labels": list(run.labels),
        "format": run.dataset.format, "data": _data_text(run.dataset),
        "sources": [s.to_json() for s in run.dataset.all_sources()],
        "per_source": ev.by_source,
        "test_accuracy": round(accuracy, 6), "test_accuracy_percent": round(100 * accuracy, 2),
        "val_accuracy": round(ev.val["accuracy"], 6), "per_class": ev.per_class,
        "counts": run.manifest.counts(), "skipped": len(info["skipped"]),
        "skipped_by_reason": _reasons(info["skipped"]), "grouping": info["grouping"],
        "imbalance": info["imbalance"], "logit_adjust": info.get("logit_adjust"),
        "phase1": run.phase1, "fine_tune": run.fine_tune,
        "epochs_run": len(run.history), "best_epoch": _best_row(run.history),
        "consistency": ev.consistency, "data_fingerprint": run.fingerprint,
        "device": run.device, "notes": dict(run.dataset.notes),
        "distribution": {**run.cluster.to_json(), **run.distribution},
        "stream": run.data.info(run), "model_weights_sha256": weights_sha256(run.clf.model),
        "resumed_from": str(run.config.resume) if run.config.resume else None,
        "timing": {**info["timing"], "wall_seconds": round(time.perf_counter() - run.start, 2)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": round(os.getloadavg()[0], 2),
                    "tensorflow": tf.__version__, "keras": keras.__version__},
    }


def _data_text(dataset: Dataset) -> str:
    return ", ".join(str(s.root.resolve()) for s in dataset.all_sources())


def per_source(manifest: SplitManifest, y: np.ndarray, test_idx: np.ndarray,
               test_pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per data source: sample counts per split and class, test accuracy and test count."""
    out: dict[str, dict[str, Any]] = {}
    for src in manifest.all_sources():
        out[src.name] = {"root": str(src.root), "format": src.format,
                         "counts": {sp: dict.fromkeys(manifest.labels, 0) for sp in SPLITS},
                         "test_n": 0, "test_correct": 0}
    for row in manifest.rows:
        out[manifest.source_name(row)]["counts"][row["split"]][row["label"]] += 1
    for i, pred in zip(test_idx.tolist(), test_pred.tolist(), strict=True):
        entry = out[manifest.source_name(manifest.rows[i])]
        entry["test_n"] += 1
        entry["test_correct"] += int(pred == y[i])
    for entry in out.values():
        n = entry.pop("test_correct")
        entry["test_accuracy"] = round(n / entry["test_n"], 6) if entry["test_n"] else None
    return out


def per_source_text(by_source: dict[str, dict[str, Any]]) -> str:
    """Counts (train/val/test) and test accuracy per data source, as a report.txt block."""
    lines = ["Per data source", "===============", ""]
    for name, entry in by_source.items():
        counts = "; ".join(f"{sp} " + ", ".join(f"{k} {v}" for k, v in c.items())
                           for sp, c in entry["counts"].items())
        acc = ("-" if entry["test_accuracy"] is None
               else f"{100 * entry['test_accuracy']:.2f} %")
        lines.append(f"{name} ({entry['format']}): test accuracy {acc} on {entry['test_n']} "
                     f"images; {counts}")
    return "\n".join(lines) + "\n\n"


def _best_row(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in history if "val_loss" in r]
    return min(scored, key=lambda r: r["val_loss"]) if scored else None


def _reasons(skipped: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in skipped:
        kind = s.reason.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def publish_run(work: Path, out: Path) -> None:
    """Move the finished run into place (replacing `out` only if it was empty or --overwrite)."""
    if out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)
    with contextlib.suppress(OSError):
        out.chmod(0o755)


def worker_result(run: FitRun) -> FitResult:
    """A worker that is not the chief: it trained with the others and writes nothing."""
    summary = {"chief": False, "distribution": {**run.cluster.to_json(), **run.distribution},
               "model_weights_sha256": weights_sha256(run.clf.model),
               "epochs_run": len(run.history), "phase1": run.phase1,
               "timing": {**run.info["timing"],
                          "wall_seconds": round(time.perf_counter() - run.start, 2)}}
    shutil.rmtree(run.work, ignore_errors=True)
    out = run.out
    return FitResult(run_dir=out, model_h5=out / "model.h5", model_keras=out / "model.keras",
                     contract=run.contract, test_accuracy=float("nan"),
                     wall_seconds=summary["timing"]["wall_seconds"], summary=summary)


def _distribution_text(run: FitRun) -> str:
    """One report.txt line: strategy, replicas, global batch and learning rate used."""
    cl, d = run.cluster, run.distribution
    return (f"strategy {cl.strategy}: {cl.replicas} replica(s) on {cl.workers} worker(s); "
            f"global batch {d.get('global_batch_size')} ({d.get('per_replica_batch_size')} per "
            f"replica), learning rate {d.get('learning_rate')} (x{d.get('learning_rate_scale')}, "
            f"{d.get('rule')})" + (f"; streamed in {run.stream.shards} shards"
                                   if run.stream is not None else ""))
