"""k-fold cross-validation of a distillation setting on held-in photos only.

The folds are the face table's (`trainer.distill.faces.group_folds`: whole photos and
near-duplicate groups stay in one fold). For fold f the student trains on the views of every
face outside f (labelled or not) and is measured on f's labelled faces as the device frames them
(view 0): the annotated boxes and, separately, the shipped detector's boxes matched to them. The
teacher's answers on the same crops are reported beside it, as a reference only: the teacher was
trained on these held-in photos, so its figures here are not an estimate of its accuracy
elsewhere.

Each fold's result is written to `<work>/fold<f>.json` as it finishes (phase 2 also keeps its
per-epoch state there), so an interrupted cross-validation continues with the next fold.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.console import say
from edge.core.fileio import write_text_atomic
from trainer.distill.train import (
    DistillData,
    Setting,
    eval_rows,
    fit_student,
    measure,
    student_probs,
    training_rows,
)

KINDS = ("annotation", "detector")
#: The figures summarised across folds (mean and sample standard deviation).
WEAK = "mask_weared_incorrect"


def setting_key(data: DistillData, setting: Setting) -> str:
    """What a fold's result depends on: the views (and so the faces) and the setting, not its
    name."""
    parts = {k: v for k, v in setting.to_dict().items() if k != "name"}
    text = json.dumps({"views": data.store.dir.name, "teacher": data.store.teacher_sha,
                       "weights": data.weights, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def fold_result(data: DistillData, setting: Setting, fold: int, work: Path) -> dict[str, Any]:
    """Train on every fold but `fold`, measure on `fold` (cached in `work/fold<f>.json`)."""
    path = work / f"fold{fold}.json"
    if path.is_file():
        return json.loads(path.read_text())
    import keras

    start = time.perf_counter()
    rows = training_rows(data, setting, fold)
    clf, history = fit_student(data, setting, rows, work / f"fold{fold}")
    tuned = setting.ft_layers > 0 and setting.ft_epochs > 0
    out: dict[str, Any] = {"fold": fold, "train_views": len(rows),
                           "train_faces": len(np.unique(data.store.plan.face[rows]))}
    teacher = data.store.teacher_probs()
    for kind in KINDS:
        r = eval_rows(data, fold, kind)
        y = data.face_labels()[data.store.plan.face[r]]
        out[kind] = {"student": measure(y, student_probs(data, clf, setting, r, tuned),
                                        data.labels),
                     "teacher": measure(y, teacher[r], data.labels)}
    out["history_last"] = history[-1] if history else None
    out["seconds"] = round(time.perf_counter() - start, 1)
    write_text_atomic(path, json.dumps(out, indent=1))
    keras.backend.clear_session()
    return out


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": round(float(arr.mean()), 4), "sd": round(sd, 4)}


def summarize(results: list[dict[str, Any]], labels: tuple[str, ...]) -> dict[str, Any]:
    """Mean and standard deviation across folds of accuracy and each class's F1, per framing
    (annotation / detector) and model (student / teacher)."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        for model in ("student", "teacher"):
            m = [r[kind][model] for r in results]
            entry = {"accuracy": _mean_sd([x["accuracy"] for x in m])}
            for label in labels:
                entry[f"f1_{label}"] = _mean_sd([x["per_class"][label]["f1"] for x in m])
            entry["faces"] = int(sum(x["n"] for x in m))
            out[f"{kind}/{model}"] = entry
    return out


def cross_validate(data: DistillData, setting: Setting, folds: int, work_root: Path,
                   progress: bool = True) -> dict[str, Any]:
    """Every fold of `setting` (see the module docstring) and their summary."""
    work = Path(work_root) / f"cv-{setting_key(data, setting)}"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for fold in range(folds):
        say(f"cv {setting.name}: fold {fold + 1}/{folds}", progress)
        results.append(fold_result(data, setting, fold, work))
    return {"setting": setting.to_dict(), "folds": results,
            "summary": summarize(results, data.labels), "work": str(work)}


def _cell(entry: dict[str, float]) -> str:
    return f"{100 * entry['mean']:5.1f} ± {100 * entry['sd']:4.1f}"


def format_cv(entries: list[dict[str, Any]]) -> str:
    """One line per setting: student accuracy and weak-class F1 (mean ± sd across folds) on
    detector-framed and annotated crops, and the same for the teacher of the first setting."""
    head = (f"{'setting':<28} {'det acc':>13} {'det F1 inc':>13} {'ann acc':>13} "
            f"{'ann F1 inc':>13}")
    lines = [head]

    def row(name: str, summary: dict[str, Any], model: str) -> str:
        d, a = summary[f"detector/{model}"], summary[f"annotation/{model}"]
        return (f"{name:<28} {_cell(d['accuracy']):>13} {_cell(d[f'f1_{WEAK}']):>13} "
                f"{_cell(a['accuracy']):>13} {_cell(a[f'f1_{WEAK}']):>13}")

    for e in entries:
        lines.append(row(e["setting"]["name"], e["summary"], "student"))
    if entries:
        lines.append(row("(teacher, trained on these)", entries[0]["summary"], "teacher"))
    lines.append("accuracy and mask_weared_incorrect F1 in %, mean ± sd over the folds; det: the "
                 "shipped detector's boxes matched to annotations, ann: the annotated boxes.")
    return "\n".join(lines)
