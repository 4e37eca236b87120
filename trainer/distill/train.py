"""Training the student on the teacher's probabilities: the head on cached features, then the top of
the backbone on the view images.

The loss is the cross-entropy against a soft target, `(1 - ce_weight) x teacher + ce_weight x
one-hot label` (the label only where a face has one, and never for a blend of two faces). Against
the teacher alone this is the KL divergence to the teacher plus a constant (the teacher's entropy),
so `ce_weight` 0 is pure distillation and anything above adds cross-entropy on labelled faces.

- Phase 1 trains the head (`trainer.fit.model.build_classifier`'s, shared with the full model) on
the
  frozen backbone's pooled features of every training view, computed once under LiteRT
  (`trainer.fit.features`) and cached on disk: seconds per epoch.
- Phase 2 unfreezes the top `ft_layers` backbone layers (BatchNorm frozen: `unfreeze_top`) and
  trains on the view images, each mirrored at random (consistent with the teacher: it averages a
  face and its mirror, so its output for the mirror is the same). Adam on a cosine to 0; the state
  is saved atomically every epoch (`EpochState`), so a killed run continues where it stopped.

Both phases run a fixed schedule (no early stopping): nothing is chosen on held-out faces.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge.core.contract import ModelContract
from edge.core.fileio import atomic_path, write_text_atomic
from edge.core.metrics import classification_report, per_class_summary
from trainer.distill.views import ViewStore
from trainer.fit.features import (
    FeatureCache,
    FeatureExtractor,
    backbone_key,
    cache_key,
    weights_fingerprint,
)
from trainer.fit.model import Classifier, build_classifier, unfreeze_top


@dataclass(frozen=True)
class Setting:
    """One student and its training recipe (what cross-validation compares)."""

    name: str = "student"
    input_size: int = 128
    alpha: float = 1.0
    nose_band: bool = False
    views: int = 6  # base views per face used (the first N of the store's)
    mix: bool = True  # use the store's mixed views
    ce_weight: float = 0.0  # weight of the labels' cross-entropy (0: distillation only)
    closeups: bool = True  # close-ups (face-mask-2c) as unlabelled faces
    unlabelled: bool = True  # unmatched detections as unlabelled faces
    hidden: int = 128
    dropout: float = 0.5
    head_epochs: int = 30
    head_lr: float = 1e-3
    head_batch: int = 256
    ft_layers: int = 0  # phase 2: top backbone layers unfrozen (0: no phase 2)
    ft_epochs: int = 0
    ft_lr: float = 1e-4
    ft_batch: int = 64
    seed: int = 0
    #: The head's hidden activation; "relu6" keeps it int8-friendly (trainer.fit.model).
    head_activation: str = "relu"

    def to_dict(self) -> dict[str, Any]:
        """The setting's fields; a field at its default that older settings lacked is left
        out, so their cached folds keep their keys."""
        d = asdict(self)
        if d["head_activation"] == "relu":
            del d["head_activation"]
        return d


@dataclass
class DistillData:
    """The face table, its views with the teacher's outputs, and the student's backbone weights."""

    store: ViewStore
    labels: tuple[str, ...]  # the teacher's, in its order
    weights: str
    cache_dir: Path
    _features: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict)

    @property
    def table(self) -> Any:
        return self.store.table

    def face_labels(self) -> np.ndarray:
        """Label index per face in the teacher's order (-1: unlabelled)."""
        index = {x: i for i, x in enumerate(self.labels)}
        return np.array([index[r["label"]] if r["label"] else -1 for r in self.table.rows])

    def features(self, clf: Classifier, setting: Setting) -> np.ndarray:
        """Pooled backbone features of every view row (LiteRT, cached on disk and in memory)."""
        parts = {"size": setting.input_size, "alpha": setting.alpha, "band": setting.nose_band,
                 "weights": weights_fingerprint(self.weights, setting.seed)}
        key = cache_key(kind="distill-views", views=self.store.dir.name, **parts)
        if key in self._features:
            return self._features[key]
        cache = FeatureCache(self.cache_dir / "features")
        feats = cache.get(key, len(self.store.plan))
        if feats is None:
            tflite = self.cache_dir / "features" / f"{backbone_key(parts)}.tflite"
            tflite.parent.mkdir(parents=True, exist_ok=True)
            extractor = FeatureExtractor(clf.features, 64, "litert", tflite)
            feats = extractor.clean(self.store.images(setting.input_size))
            cache.put(key, feats)
        self._features = {key: feats}  # one setting's features in memory at a time
        return feats


def build_student(setting: Setting, labels: tuple[str, ...], weights: str) -> Classifier:
    """MobileNetV2 (frozen) + the trainer's head with a softmax over the teacher's labels."""
    keras.utils.set_random_seed(setting.seed)
    contract = ModelContract.for_labels(labels, setting.input_size)
    return build_classifier(contract, weights, setting.alpha, setting.dropout, setting.hidden,
                            setting.nose_band, setting.head_activation)


def training_rows(data: DistillData, setting: Setting, leave_out: int | None) -> np.ndarray:
    """View rows the setting trains on: faces outside fold `leave_out` (None: every fold), its
    first `views` views, mixed views if asked, the kinds of faces it uses."""
    plan, table = data.store.plan, data.table
    kind = table.array("kind")[plan.face]
    keep = plan.k < setting.views
    keep &= np.where(plan.partner >= 0, setting.mix & (plan.partner_k < setting.views), True)
    if leave_out is not None:
        keep &= table.array("fold")[plan.face] != leave_out
    if not setting.closeups:
        keep &= kind != 2
    if not setting.unlabelled:
        keep &= (kind == 2) | (data.face_labels()[plan.face] >= 0)
    return np.nonzero(keep)[0]


def eval_rows(data: DistillData, fold: int | None, kind: str) -> np.ndarray:
    """The device-framed view (view 0, no blend) of every labelled face of `kind` in `fold`
    (None: every fold)."""
    plan, table = data.store.plan, data.table
    keep = (plan.k == 0) & (plan.partner < 0) & (data.face_labels()[plan.face] >= 0)
    keep &= table.array("kind")[plan.face] == ("annotation", "detector").index(kind)
    if fold is not None:
        keep &= table.array("fold")[plan.face] == fold
    return np.nonzero(keep)[0]


def soft_targets(data: DistillData, rows: np.ndarray, ce_weight: float) -> np.ndarray:
    """(len(rows), C) training targets: the teacher's probabilities, mixed with the one-hot
    label (weight `ce_weight`) for labelled faces that are not blends."""
    teacher = data.store.teacher_probs()[rows].astype(np.float32)
    if ce_weight <= 0:
        return teacher
    labels = data.face_labels()[data.store.plan.face[rows]]
    hard = (labels >= 0) & (data.store.plan.partner[rows] < 0)
    onehot = np.eye(len(data.labels), dtype=np.float32)[np.maximum(labels, 0)]
    return np.where(hard[:, None], (1 - ce_weight) * teacher + ce_weight * onehot, teacher)


def _compile(model: keras.Model, lr: float, steps: int, steps_per_execution: int = 1) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, steps))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="agree")],
                  steps_per_execution=steps_per_execution)


class EpochRows(keras.callbacks.Callback):
    """One history row per epoch: phase, epoch, loss, agreement with the teacher, seconds."""

    def __init__(self, phase: str, rows: list[dict[str, Any]], log: Path | None) -> None:
        super().__init__()
        self.phase, self.rows, self.log = phase, rows, log
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = {"phase": self.phase, "epoch": epoch + 1,
               **{k: round(float(v), 5) for k, v in (logs or {}).items()},
               "seconds": round(time.perf_counter() - self._start, 1)}
        self.rows.append(row)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


def train_head(clf: Classifier, x: np.ndarray, y: np.ndarray, setting: Setting,
               checkpoint: Path | None = None) -> list[dict[str, Any]]:
    """Phase 1 on features (kept in `checkpoint/head.npz`, reused by a rerun)."""
    done = checkpoint / "head.npz" if checkpoint else None
    if done is not None and done.is_file():
        with np.load(done) as saved:
            clf.head.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        return []
    rows: list[dict[str, Any]] = []
    steps = math.ceil(len(x) / setting.head_batch) * setting.head_epochs
    _compile(clf.head, setting.head_lr, steps, steps_per_execution=32)
    clf.head.fit(x, y, batch_size=setting.head_batch, epochs=setting.head_epochs, shuffle=True,
                 verbose=0, callbacks=[EpochRows("head", rows, None)])
    if done is not None:
        done.parent.mkdir(parents=True, exist_ok=True)
        np.savez(done, *clf.head.get_weights())
    return rows


class ViewBatches(keras.utils.PyDataset):
    """Shuffled batches of view images (float pixels) and targets, each image mirrored with
    probability 1/2; a new order every epoch (seeded)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, batch: int, seed: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.targets, self.batch = images, targets, batch
        self.seed = seed
        self.start_at(0)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.sort(self.order[i * self.batch:(i + 1) * self.batch])
        x = self.images[idx].astype(np.float32)
        flip = np.random.default_rng([self.seed, self.epoch, i]).random(len(idx)) < 0.5
        x[flip] = x[flip, :, ::-1]
        return x, self.targets[idx]

    def on_epoch_end(self) -> None:
        self.start_at(self.epoch + 1)

    def start_at(self, epoch: int) -> None:
        """The order of epoch `epoch` (a resumed run sees the order it would have seen)."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))


class EpochState(keras.callbacks.Callback):
    """Phase 2's state after every epoch -- model weights, optimizer variables (step count
    included, so the cosine schedule goes on), epochs done -- in one file written atomically:
    a run killed at any moment leaves the last finished epoch's state."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        arrays = {f"w{i}": w for i, w in enumerate(self.model.get_weights())}
        arrays.update({f"o{i}": np.asarray(v) for i, v in
                       enumerate(self.model.optimizer.variables)})
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, epoch=np.array(epoch + 1), **arrays)

    @staticmethod
    def restore(model: keras.Model, path: Path) -> int:
        """Load a saved state into a compiled `model`; the epochs it had done (0: none)."""
        try:
            with np.load(path) as saved:
                weights = [saved[f"w{i}"] for i in range(len(model.get_weights()))]
                model.optimizer.build(model.trainable_variables)
                opt = [saved[f"o{i}"] for i in range(len(model.optimizer.variables))]
                done = int(saved["epoch"])
        except (OSError, KeyError, ValueError, EOFError):
            return 0  # no state, or not this model's: start the phase
        model.set_weights(weights)
        for var, value in zip(model.optimizer.variables, opt, strict=True):
            var.assign(value)
        return done


def fine_tune(clf: Classifier, images: np.ndarray, y: np.ndarray, setting: Setting,
              checkpoint: Path | None = None) -> list[dict[str, Any]]:
    """Phase 2 on the view images; resumable per epoch under `checkpoint` (see module doc)."""
    if setting.ft_layers <= 0 or setting.ft_epochs <= 0:
        return []
    done = checkpoint / "fine_tuned.npz" if checkpoint else None
    log = checkpoint / "fine_tune_log.jsonl" if checkpoint else None
    if done is not None and done.is_file():
        with np.load(done) as saved:
            clf.model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        return _read_log(log) if log else []
    unfreeze_top(clf.backbone, setting.ft_layers)
    batches = ViewBatches(images, y, setting.ft_batch, setting.seed)
    _compile(clf.model, setting.ft_lr, len(batches) * setting.ft_epochs)
    rows: list[dict[str, Any]] = []
    callbacks: list[keras.callbacks.Callback] = [EpochRows("fine_tune", rows, log)]
    start = 0
    if checkpoint is not None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        state = checkpoint / "fine_tune_state.npz"
        start = EpochState.restore(clf.model, state)
        batches.start_at(start)
        callbacks.append(EpochState(state))
        if log is not None and log.is_file():  # keep the rows of the epochs that finished
            write_text_atomic(log, "".join(line + "\n" for line in
                                           log.read_text().splitlines()[:start]))
    if start < setting.ft_epochs:
        clf.model.fit(batches, epochs=setting.ft_epochs, initial_epoch=start, verbose=0,
                      callbacks=callbacks)
    clf.backbone.trainable = False
    if done is not None:
        np.savez(done, *clf.model.get_weights())
        return _read_log(log) if log else rows
    return rows


def _read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fit_student(data: DistillData, setting: Setting, rows: np.ndarray,
                checkpoint: Path | None = None) -> tuple[Classifier, list[dict[str, Any]]]:
    """Build the student and run both phases on view `rows`; returns it and its history."""
    clf = build_student(setting, data.labels, data.weights)
    targets = soft_targets(data, rows, setting.ce_weight)
    history = train_head(clf, data.features(clf, setting)[rows], targets, setting, checkpoint)
    if setting.ft_layers > 0 and setting.ft_epochs > 0:
        images = data.store.images(setting.input_size, rows)
        history += fine_tune(clf, images, targets, setting, checkpoint)
    return clf, history


def student_probs(data: DistillData, clf: Classifier, setting: Setting, rows: np.ndarray,
                  tuned: bool) -> np.ndarray:
    """The student's probabilities of view `rows`: the head on cached features after phase 1
    alone (the same maths as the full model), the full model on the images after phase 2."""
    if not len(rows):
        return np.zeros((0, len(data.labels)), np.float32)
    if not tuned:
        return np.asarray(clf.head.predict(data.features(clf, setting)[rows], batch_size=512,
                                           verbose=0), np.float32)
    images = data.store.images(setting.input_size, rows).astype(np.float32)
    return np.asarray(clf.model.predict(images, batch_size=128, verbose=0), np.float32)


def measure(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix."""
    report = classification_report(y_true, probs.argmax(1), labels)
    return {"n": len(y_true), "accuracy": round(report["accuracy"], 4),
            "per_class": per_class_summary(report), "confusion_matrix": report["confusion_matrix"]}
