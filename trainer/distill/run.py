"""`trainer distill`'s driver: faces -> views + teacher -> (cross-validation) -> student run folder.

The run folder is laid out like `trainer fit`'s, so `convert RUN/model.h5 --quantize int8` and the
rest of the tool chain take it unchanged:

- `model.h5`, `model.keras`: the student with its contract (the teacher's labels and order);
- `split.json`: the labelled VOC faces (annotated and detector-framed boxes). `convert`
  calibrates on its train rows and gates the int8 file on its test rows: fold 0's faces. The
  student trained on every held-in face, those included: the gate measures int8 against Keras on
  the device's crops, not accuracy on new photos (that is the cross-validation's job);
- `metrics.json`, `report.txt`: the cross-validation of this setting when `--folds` asked for it
  (mean and standard deviation across folds, annotated and detector-framed crops apart), and the
  fit on the training faces;
- `MODEL_CARD.md`: how it was made, from which data, under which licences;
- `config.json`, `history.json`, `summary.json`.

Work in progress lives in `RUN/.work/` (phase 1 head weights, phase 2 per-epoch state): the same
command run again continues a killed run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.console import say
from edge.core.fileio import cache_root, write_text_atomic
from trainer.data.datasets import Sample, Source
from trainer.data.split import SplitManifest, sample_to_row, write_manifest
from trainer.distill.card import model_card, report_text
from trainer.distill.faces import FaceSpec, load_table, table_counts
from trainer.distill.train import (
    DistillData,
    Setting,
    eval_rows,
    fit_student,
    measure,
    student_probs,
    training_rows,
)
from trainer.distill.views import ViewSpec, ViewStore
from trainer.errors import UserError

#: Fold whose faces are the int8 gate's test rows in split.json.
GATE_FOLD = 0


@dataclass(frozen=True)
class DistillConfig:
    """What `trainer distill` was asked for."""

    data: tuple[Path, ...]  # VOC folders
    out: Path
    teacher: Path
    weights: str = "imagenet"
    closeups: tuple[Path, ...] = ()
    exclude_lists: tuple[Path, ...] = ()
    setting: Setting = field(default_factory=Setting)
    views: ViewSpec = field(default_factory=ViewSpec)
    folds: int = 5  # folds of the face table (cross-validation and the gate fold)
    cv: bool = False  # cross-validate the setting first
    cv_only: bool = False
    cv_ft_epochs: int = 0  # phase-2 epochs per fold in cross-validation
    min_face: int = 16
    cache_dir: Path | None = None
    overwrite: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("data", "closeups", "exclude_lists"):
            d[key] = [str(p) for p in d[key]]
        for key in ("out", "teacher", "cache_dir"):
            d[key] = None if d[key] is None else str(d[key])
        return d


@dataclass
class DistillResult:
    """What a run wrote and measured."""

    out: Path
    summary: dict[str, Any]
    cv: dict[str, Any] | None = None


def cache_dir_of(config: DistillConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else cache_root() / "distill"


def teacher_labels(teacher: Path) -> tuple[str, ...]:
    """The teacher's labels from the contract in its file (UserError when it has none)."""
    from edge.core.contract import ContractError
    from edge.core.tflite_metadata import read_contract

    if not Path(teacher).is_file():
        raise UserError(f"teacher model not found: {teacher}")
    try:
        contract = read_contract(teacher)
    except (ContractError, OSError, ValueError) as exc:
        raise UserError(f"teacher {teacher} is not a maskedge .tflite classifier: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        ) from None
    return contract.labels


def prepare_data(config: DistillConfig, progress: bool = True) -> DistillData:
    """The face table (detector run once), its views rendered and read by the teacher."""
    from trainer.config import name_lists

    labels = teacher_labels(config.teacher)
    cache = cache_dir_of(config)
    spec = FaceSpec(voc=tuple(Path(p).resolve() for p in config.data),
                    closeups=tuple(Path(p).resolve() for p in config.closeups),
                    exclude=frozenset(name_lists(list(config.exclude_lists)) or ()),
                    min_face=config.min_face, folds=config.folds, seed=config.views.seed)
    table = load_table(spec, cache, progress)
    if set(table.labels) != set(labels):
        raise UserError(f"the teacher {config.teacher.name} has labels {list(labels)}, the "
                        f"data {list(table.labels)}: a teacher for these classes is needed")
    store = ViewStore(table, config.views, cache, config.teacher)
    store.prepare((config.setting.input_size,), progress)
    return DistillData(store=store, labels=labels, weights=config.weights, cache_dir=cache)


def split_manifest(data: DistillData, seed: int) -> SplitManifest:
    """split.json: labelled VOC faces (both framings); fold `GATE_FOLD` is the test split."""
    table = data.table
    voc = [i for i, s in enumerate(table.sources) if s["format"] == "voc"]
    sources = tuple(Source(Path(table.sources[i]["root"]), "voc", table.sources[i]["name"])
                    for i in voc)
    rows = []
    for r in table.rows:
        if not r["label"] or r["kind"] == "closeup":
            continue
        sample = Sample(path=r["path"], label=r["label"], box=tuple(r["box"]),
                        origin=voc.index(r["src"]))
        split = "test" if r["fold"] == GATE_FOLD else "train"
        row = sample_to_row(sample, split, r["group"])
        row["kind"] = r["kind"]
        rows.append(row)
    info = {"val_fraction": 0.0, "test_fraction": None, "faces_key": table.info.get("key"),
            "note": (f"test rows: fold {GATE_FOLD}'s labelled faces (annotated and detector "
                     "boxes). The student trained on every row, test rows included: the int8 "
                     "gate compares int8 with Keras on the device's crops; accuracy on unseen "
                     "photos is the cross-validation's (metrics.json).")}
    return SplitManifest(root=sources[0].root, format="mixed", labels=data.labels, seed=seed,
                         rows=rows, info=info, sources=sources)


def closeup_agreement(data: DistillData) -> dict[str, Any] | None:
    """How often the teacher agrees with the close-ups' 2-class folder names (view 0): a
    with_mask close-up read as not without_mask, a without_mask one as without_mask."""
    plan, rows = data.store.plan, data.table.rows
    probs = data.store.teacher_probs()
    picks = [(i, rows[f]["hint"]) for i, f in enumerate(plan.face.tolist())
             if plan.k[i] == 0 and plan.partner[i] < 0 and rows[f]["kind"] == "closeup"]
    if not picks or "without_mask" not in data.labels:
        return None
    without = data.labels.index("without_mask")
    out: dict[str, Any] = {}
    for hint in sorted({h for _, h in picks}):
        idx = [i for i, h in picks if h == hint]
        said_without = probs[idx].argmax(1) == without
        agree = said_without if hint == "without_mask" else ~said_without
        out[hint] = {"n": len(idx), "agreement": round(float(agree.mean()), 4)}
    return out


def fit_report(data: DistillData, clf: Any, setting: Setting) -> dict[str, Any]:
    """Student (Keras) and teacher on the view-0 crops of every labelled training face."""
    tuned = setting.ft_layers > 0 and setting.ft_epochs > 0
    teacher = data.store.teacher_probs()
    out = {}
    for kind in ("annotation", "detector"):
        r = eval_rows(data, None, kind)
        y = data.face_labels()[data.store.plan.face[r]]
        out[kind] = {"student": measure(y, student_probs(data, clf, setting, r, tuned),
                                        data.labels),
                     "teacher": measure(y, teacher[r], data.labels)}
    return out


def _check_out(config: DistillConfig) -> Path:
    """The run folder: new, or a previous run of the same config (which continues)."""
    out = Path(config.out).expanduser()
    saved = out / "config.json"
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        if not saved.is_file() or json.loads(saved.read_text()) != _comparable(config):
            raise UserError(f"{out} holds another run: choose a new --out or pass --overwrite")
    elif config.overwrite and out.exists():
        shutil.rmtree(out)
    (out / ".work").mkdir(parents=True, exist_ok=True)
    write_text_atomic(saved, json.dumps(_comparable(config), indent=1))
    return out


def _comparable(config: DistillConfig) -> dict[str, Any]:
    d = config.to_dict()
    d.pop("overwrite")
    return d


def _cv(config: DistillConfig, data: DistillData, out: Path,
        progress: bool) -> dict[str, Any] | None:
    """Cross-validate the setting (phase 2 cut to `cv_ft_epochs`) when asked."""
    from trainer.distill.cv import cross_validate

    if not (config.cv or config.cv_only):
        return None
    setting = dataclasses.replace(config.setting, ft_epochs=config.cv_ft_epochs)
    result = cross_validate(data, setting, config.folds, cache_dir_of(config) / "cv", progress)
    write_text_atomic(out / "cv.json", json.dumps(result, indent=1))
    return result


def distill(config: DistillConfig, progress: bool = True) -> DistillResult:
    """Run `trainer distill` (see the module docstring)."""
    from trainer.fit.artifacts import save_keras_model

    start = time.perf_counter()
    out = _check_out(config)
    data = prepare_data(config, progress)
    cv = _cv(config, data, out, progress)
    summary: dict[str, Any] = {"data": table_counts(data.table),
                               "closeup_hint_agreement": closeup_agreement(data)}
    if config.cv_only:
        summary["wall_seconds"] = round(time.perf_counter() - start, 1)
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
        return DistillResult(out, summary, cv)
    setting = config.setting
    rows = training_rows(data, setting, None)
    say(f"student: {len(rows)} views of {len(np.unique(data.store.plan.face[rows]))} faces",
        progress)
    clf, history = fit_student(data, setting, rows, out / ".work")
    fit = fit_report(data, clf, setting)
    manifest = split_manifest(data, setting.seed)
    write_manifest(manifest, out / "split.json")
    contract = _contract(config, data, rows, cv)
    save_keras_model(_without_optimizer(clf, data, setting), contract, out)
    summary.update(fit_on_training_faces=fit, train_views=len(rows),
                   wall_seconds=round(time.perf_counter() - start, 1))
    _write_outputs(out, config, summary, cv, history)
    return DistillResult(out, summary, cv)


def _without_optimizer(clf: Any, data: DistillData, setting: Setting) -> Any:
    """The trained model's weights in a fresh, uncompiled copy: the saved file then holds no
    optimizer state (a third of the size)."""
    from trainer.distill.train import build_student

    fresh = build_student(setting, data.labels, data.weights)
    fresh.model.set_weights(clf.model.get_weights())
    return fresh.model


def _contract(config: DistillConfig, data: DistillData, rows: np.ndarray,
              cv: dict[str, Any] | None) -> Any:
    from edge.core.contract import ModelContract
    from edge.core.fileio import sha256_file
    from trainer.fit.features import weights_fingerprint

    s = config.setting
    source = {"distilled_from": config.teacher.name,
              "teacher_sha256": sha256_file(config.teacher),
              "data": ", ".join(str(Path(p).resolve()) for p in config.data),
              "unlabelled": ", ".join(str(Path(p).resolve()) for p in config.closeups),
              "excluded_lists": [Path(p).name for p in config.exclude_lists],
              "weights": config.weights, "weights_fingerprint": weights_fingerprint(
                  config.weights, s.seed), "alpha": s.alpha, "nose_band": s.nose_band,
              "fine_tune_layers": s.ft_layers, "setting": s.to_dict(),
              "views": dataclasses.asdict(config.views), "train_views": len(rows),
              "split_manifest": "split.json", "seed": s.seed}
    metrics = {"cv": cv["summary"]} if cv else {}
    return ModelContract.for_labels(data.labels, s.input_size, source=source, metrics=metrics)


def _write_outputs(out: Path, config: DistillConfig, summary: dict[str, Any],
                   cv: dict[str, Any] | None, history: list[dict[str, Any]]) -> None:
    metrics = {"cv": cv["summary"] if cv else None,
               "cv_setting": cv["setting"] if cv else None,
               "fit_on_training_faces": summary["fit_on_training_faces"],
               "closeup_hint_agreement": summary["closeup_hint_agreement"]}
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1))
    write_text_atomic(out / "history.json", json.dumps(history, indent=1))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1, default=str))
    write_text_atomic(out / "report.txt", report_text(config, summary, cv))
    write_text_atomic(out / "MODEL_CARD.md", model_card(config, summary, cv))
