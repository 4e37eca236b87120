"""The student's decision offset for the rare class, chosen by nested cross-validation:
`python -m trainer.distill.prior RUN --out DIR`.

A distilled student copies its teacher's probabilities, and with about one incorrectly worn mask
in eleven faces it leans to the common classes. Adding an offset `b` to one class's logit
(logit adjustment, Menon et al. 2021; `trainer.fit.model.shift_output`) moves its decisions
without retraining. `b` is chosen only on held-in photos, from the folds the run's setting was
cross-validated on (`trainer distill --cv` or `python -m trainer.distill.compare`, whose fold
models are cached):

- every fold's student reads its own held-out fold (out-of-fold probabilities, as the shipped
  detector frames the faces: what the device sees);
- nested: for each fold f, `b` is the grid value with the best macro F1 over the other folds'
  faces, and is scored on f; the mean and standard deviation over f are the honest estimate;
- the offset that ships is the one chosen on all folds; it is written into a copy of the run's
  model (its `head_output` bias), with the contract naming it, so `convert` and `edge` read it
  like any classifier.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.console import say
from edge.core.fileio import write_text_atomic
from edge.core.metrics import classification_report

#: Offsets tried (added to the class's logit; 0: the student as trained).
GRID = tuple(round(float(b), 2) for b in np.arange(-1.0, 3.01, 0.1))
KIND = "detector"
WEAK = "mask_weared_incorrect"


def fold_outputs(data: Any, setting: Any, folds: int, cv_root: Path,
                 kind: str = KIND) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels, probabilities) of each fold's faces from that fold's cached student."""
    from trainer.distill.cv import setting_key
    from trainer.distill.train import build_student, eval_rows, student_probs

    work = Path(cv_root) / f"cv-{setting_key(data, setting)}"
    tuned = setting.ft_layers > 0 and setting.ft_epochs > 0
    out = []
    for fold in range(folds):
        saved = work / f"fold{fold}" / ("fine_tuned.npz" if tuned else "head.npz")
        if not saved.is_file():
            raise FileNotFoundError(f"{saved}: cross-validate the setting first "
                                    "(trainer distill --cv, or python -m trainer.distill.compare)")
        clf = build_student(setting, data.labels, data.weights)
        with np.load(saved) as arrays:
            weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        (clf.model if tuned else clf.head).set_weights(weights)
        rows = eval_rows(data, fold, kind)
        y = data.face_labels()[data.store.plan.face[rows]]
        out.append((y, student_probs(data, clf, setting, rows, tuned)))
    return out


def decide(probs: np.ndarray, index: int, offset: float) -> np.ndarray:
    """Top-1 labels after adding `offset` to class `index`'s logit."""
    logits = np.log(np.clip(probs, 1e-12, 1.0))
    logits[:, index] += offset
    return logits.argmax(1)


def scores(y: np.ndarray, pred: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    """Accuracy, macro F1 and each class's F1."""
    report = classification_report(y, pred, labels)
    f1 = {x: float(report["per_class"][x]["f1"]) for x in labels}
    return {"accuracy": float(report["accuracy"]), "macro_f1": float(np.mean(list(f1.values()))),
            **{f"f1_{x}": v for x, v in f1.items()}}


def best_offset(parts: list[tuple[np.ndarray, np.ndarray]], index: int,
                labels: tuple[str, ...]) -> float:
    """The grid offset with the best macro F1 over `parts` pooled (ties: the smallest |b|)."""
    y = np.concatenate([p[0] for p in parts])
    probs = np.concatenate([p[1] for p in parts])
    ranked = sorted(GRID, key=lambda b: (-scores(y, decide(probs, index, b), labels)["macro_f1"],
                                         abs(b)))
    return ranked[0]


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    return {"mean": round(float(arr.mean()), 4),
            "sd": round(float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, 4)}


def nested(outputs: list[tuple[np.ndarray, np.ndarray]], labels: tuple[str, ...],
           weak: str = WEAK) -> dict[str, Any]:
    """The nested estimate (offset chosen without the fold it is scored on), the same folds with
    no offset, and the offset chosen on every fold (the one that ships)."""
    index = labels.index(weak)
    chosen, adjusted, plain = [], [], []
    for f, (y, probs) in enumerate(outputs):
        b = best_offset([o for g, o in enumerate(outputs) if g != f], index, labels)
        chosen.append(b)
        adjusted.append(scores(y, decide(probs, index, b), labels))
        plain.append(scores(y, decide(probs, index, 0.0), labels))

    def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
        return {k: _mean_sd([r[k] for r in rows]) for k in rows[0]}

    return {"class": weak, "grid": [GRID[0], GRID[-1], 0.1], "kind": KIND,
            "offset": best_offset(outputs, index, labels), "per_fold_offsets": chosen,
            "without_offset": summary(plain), "nested": summary(adjusted),
            "faces": int(sum(len(o[0]) for o in outputs))}


def run_config(run: Path) -> Any:
    """The `DistillConfig` a `trainer distill` run folder was made with (its config.json)."""
    from trainer.distill.run import DistillConfig
    from trainer.distill.train import Setting
    from trainer.distill.views import ViewSpec

    d = json.loads((Path(run) / "config.json").read_text())
    d.pop("overwrite", None)
    for key in ("data", "closeups", "exclude_lists"):
        d[key] = tuple(Path(p) for p in d[key])
    d["setting"], d["views"] = Setting(**d["setting"]), ViewSpec(**d["views"])
    for key in ("out", "teacher", "cache_dir"):
        d[key] = None if d[key] is None else Path(d[key])
    return DistillConfig(**d)


def write_adjusted(run: Path, out: Path, result: dict[str, Any]) -> Path:
    """A copy of the run folder whose model decides with the offset (contract: source
    `logit_offsets`, metrics `prior_cv`); the run itself is left as it was."""
    from trainer.fit.artifacts import load_keras_model, save_keras_model
    from trainer.fit.model import shift_output

    model, contract = load_keras_model(Path(run) / "model.h5")
    offsets = np.zeros(len(contract.labels))
    offsets[contract.labels.index(result["class"])] = result["offset"]
    shift_output(model, offsets)
    source = {**contract.source, "logit_offsets": {result["class"]: result["offset"]},
              "logit_offsets_chosen_by": "nested 5-fold cross-validation on held-in photos "
                                         "(trainer.distill.prior)"}
    contract = dataclasses.replace(contract, source=source,
                                   metrics={**contract.metrics, "prior_cv": result})
    out.mkdir(parents=True, exist_ok=True)
    for name in ("split.json", "config.json", "metrics.json", "history.json", "summary.json",
                 "report.txt"):
        if (Path(run) / name).is_file():
            shutil.copy2(Path(run) / name, out / name)
    save_keras_model(model, contract, out)
    write_text_atomic(out / "prior.json", json.dumps(result, indent=1))
    card = (Path(run) / "MODEL_CARD.md").read_text() if (Path(run) / "MODEL_CARD.md").is_file() \
        else "# Model card: distilled 3-class student\n"
    write_text_atomic(out / "MODEL_CARD.md", card.rstrip() + "\n\n" + card_lines(result))
    return out


def _cell(entry: dict[str, float]) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['sd']:.1f}"


def card_lines(result: dict[str, Any]) -> str:
    """The model card's paragraph on the offset."""
    n, p = result["nested"], result["without_offset"]
    return (f"## Decision offset\n\n+{result['offset']:g} on the {result['class']} logit "
            f"(logit adjustment), chosen by nested 5-fold cross-validation on held-in photos "
            f"(detector-framed faces, macro F1). Nested estimate: accuracy {_cell(n['accuracy'])} "
            f"%, {result['class']} F1 {_cell(n['f1_' + result['class']])} (without the offset: "
            f"{_cell(p['accuracy'])} %, F1 {_cell(p['f1_' + result['class']])}).\n")


def main(argv: list[str] | None = None) -> None:
    from trainer.distill.run import cache_dir_of, prepare_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trainer distill run folder")
    parser.add_argument("--out", type=Path, help="folder for the adjusted copy (default: only "
                        "print the estimate)")
    args = parser.parse_args(argv)
    config = run_config(args.run)
    data = prepare_data(config)
    outputs = fold_outputs(data, config.setting, config.folds, cache_dir_of(config) / "cv")
    result = nested(outputs, data.labels)
    print(json.dumps(result, indent=1))
    if args.out:
        say(f"adjusted model: {write_adjusted(args.run, args.out, result)}")


if __name__ == "__main__":
    main()
