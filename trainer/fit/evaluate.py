"""`trainer evaluate`: any saved maskedge Keras model on any labelled data, same reports as fit.

The data may be a data set in any format `trainer fit` accepts (a foreign one too: its labels need
only be a subset of the model's) or a run's `split.json`, of which one split (default: test) is
used. Images are decoded, cropped and resized exactly as in training, at the model's input size.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.core import console
from edge.core.fileio import write_text_atomic
from edge.core.labelmap import LabelMap
from edge.core.metrics import classification_report, per_class_summary
from trainer.data.datasets import DEFAULT_MIN_FACE, Sample, Skipped, Source, discover
from trainer.data.pixels import load_from_sources
from trainer.data.split import read_manifest
from trainer.errors import UserError
from trainer.fit.artifacts import load_keras_model, read_keras_contract
from trainer.fit.reports import report_text, write_errors, write_evaluation, write_json

#: Images per prediction batch.
BATCH = 64


@dataclass
class EvalResult:
    """What an evaluation measured."""

    accuracy: float
    report: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """Which samples of the data to evaluate: class-name map, photo name lists."""

    label_map: LabelMap = field(default_factory=LabelMap)
    only: set[str] | None = None  # image file names to keep (a held-out list)
    exclude: set[str] | None = None  # image file names to leave out

    def apply(self, samples: list[Sample]) -> list[Sample]:
        """The split.json samples kept by the lists, relabelled by the map."""
        out = []
        for s in samples:
            name, label = Path(s.path).name, self.label_map(s.label)
            if label is None or (self.exclude and name in self.exclude) or (
                    self.only is not None and name not in self.only):
                continue
            out.append(s if label == s.label else dataclasses.replace(s, label=label))
        return out


def _samples_for(data: Path, split: str, min_face: int, selection: Selection
                 ) -> tuple[tuple[Source, ...], str, list[Sample], list, str]:
    """(sources, format, samples, skipped-at-discovery, description) for data or split.json."""
    if data.is_file() and data.suffix == ".json":
        manifest = read_manifest(data)
        samples = selection.apply(manifest.samples(split))
        if not samples:
            raise UserError(f"split {split!r} of {data} has no images")
        return manifest.all_sources(), manifest.format, samples, [], f"{data} (split {split})"
    dataset = discover(data, min_face, selection.label_map, selection.exclude, selection.only)
    return (dataset.all_sources(), dataset.format, dataset.samples, dataset.skipped,
            str(dataset.root))


def evaluate(model_path: str | Path, data: str | Path, split: str = "test",
             out: str | Path | None = None, min_face: int = DEFAULT_MIN_FACE,
             progress: bool = True,
             drop_unknown_labels: bool = False,
             selection: Selection | None = None) -> EvalResult:
    """Evaluate `model_path` on `data`; write report files to `out` if given.

    Data labels must be among the model's; with `drop_unknown_labels` samples of other classes
    are left out (and listed as skipped) instead. `selection`: label map and photo lists.
    """
    start = time.perf_counter()
    contract = read_keras_contract(model_path)  # ModelFileError before any decoding
    sources, fmt, samples, skipped, where = _samples_for(Path(data).expanduser(), split,
                                                         min_face, selection or Selection())
    unknown = sorted({s.label for s in samples} - set(contract.labels))
    if unknown and drop_unknown_labels:
        skipped = [*skipped, *(Skipped(s.source, f"label {s.label!r} is not one of the model's")
                               for s in samples if s.label not in contract.labels)]
        samples = [s for s in samples if s.label in contract.labels]
        if not samples:
            raise UserError(f"none of the labels {unknown} of {where} are the model's labels "
                            f"{list(contract.labels)}")
    elif unknown:
        raise UserError(f"labels {unknown} of {where} are not among the model's labels "
                        f"{list(contract.labels)} (--drop-unknown-labels leaves them out)")
    model, contract = load_keras_model(model_path)
    with console.task("decoding images", len(samples), progress) as advance:
        loaded = load_from_sources(sources, samples, contract.input_size, advance=advance)
    skipped = [*skipped, *loaded.skipped]
    if not loaded.samples:
        raise UserError(f"no usable images in {where}")
    index = {label: i for i, label in enumerate(contract.labels)}
    y_true = np.array([index[s.label] for s in loaded.samples], dtype=np.int64)
    outputs = []
    with console.task("predicting", len(loaded.images), progress) as advance:
        for begin in range(0, len(loaded.images), BATCH):
            chunk = loaded.images[begin:begin + BATCH].astype(np.float32)
            outputs.append(np.asarray(model.predict_on_batch(chunk), np.float32))
            advance(len(chunk))
    probs = contract.probabilities(np.concatenate(outputs))
    report = classification_report(y_true, probs.argmax(1), contract.labels)
    summary = {"model": str(Path(model_path).resolve()), "data": where, "format": fmt,
               "labels": list(contract.labels), "accuracy": round(report["accuracy"], 6),
               "accuracy_percent": round(100 * report["accuracy"], 2), "n": len(y_true),
               "per_class": per_class_summary(report),
               "confusion_matrix": report["confusion_matrix"], "skipped": len(skipped),
               "seconds": round(time.perf_counter() - start, 2)}
    if out is not None:
        out = Path(out)
        details = [f"model: {model_path}", f"data: {where} ({fmt})",
                   f"skipped files: {len(skipped)}"]
        write_evaluation(out, report, "Evaluation", details, extra={"summary": summary})
        write_text_atomic(out / "skipped.txt",
                          "".join(f"{s.path}\t{s.reason}\n" for s in skipped))
        origins = [(sources[s.origin or 0].name, s.path, s.box) for s in loaded.samples]
        summary["errors"] = write_errors(out, origins, loaded.images, y_true, probs,
                                         contract.labels)
        write_json(out / "summary.json", summary)
    summary["report_text"] = report_text("Evaluation", report, [f"data: {where}"])
    return EvalResult(accuracy=report["accuracy"], report=report, summary=summary)
