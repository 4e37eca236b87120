"""The Keras training loops: the head on cached features, or the full model on images.

Both keep the best-validation weights (restored at the end, so the saved model is the best epoch),
stop early when validation loss stops improving, weight classes against imbalance, log to
TensorBoard and return one history row per epoch.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from edge.core.contract import ModelContract
from trainer.data.augment import build_augmenter
from trainer.fit.resume import PhaseState, backup

#: Training steps per compiled call when training the head on features (same maths, less overhead).
HEAD_STEPS_PER_EXECUTION = 32


class BestWeights(keras.callbacks.Callback):
    """Remember the weights of the epoch with the best monitored value; restore them at the end."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor
        self.best = np.inf
        self.best_epoch = -1
        self.weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best, self.best_epoch = float(value), epoch
            self.weights = self.model.get_weights()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


class EpochLog(keras.callbacks.Callback):
    """One history row per epoch: phase, epoch, metrics, seconds."""

    def __init__(self, phase: str, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.phase, self.rows = phase, rows
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row: dict[str, Any] = {"phase": self.phase, "epoch": epoch + 1}
        row.update({k: round(float(v), 6) for k, v in (logs or {}).items()
                    if k in ("loss", "accuracy", "val_loss", "val_accuracy")})
        row["seconds"] = round(time.perf_counter() - self._start, 3)
        self.rows.append(row)


def tensorboard_available() -> bool:
    """TensorBoard logs need the `tensorboard` package (not a TensorFlow dependency)."""
    return importlib.util.find_spec("tensorboard") is not None


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, mean 1 over samples: n / (C * n_c)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
    n = counts.sum()
    return {i: float(n / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def targets(contract: ModelContract, labels: np.ndarray) -> np.ndarray:
    y = contract.targets(labels)
    return y.reshape(-1, 1) if contract.output == "sigmoid" else y


@keras.saving.register_keras_serializable(package="maskedge")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy with label smoothing, on integer class targets."""

    def __init__(self, smoothing: float = 0.0, num_classes: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smoothing, self.num_classes = float(smoothing), int(num_classes)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        onehot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"),
                                   self.num_classes)
        return keras.losses.categorical_crossentropy(onehot, y_pred,
                                                     label_smoothing=self.smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smoothing": self.smoothing,
                "num_classes": self.num_classes}


def loss_for(contract: ModelContract, smoothing: float = 0.0) -> Any:
    """The training loss: binary or sparse categorical cross-entropy, label-smoothed if asked."""
    if contract.output == "sigmoid":
        return keras.losses.BinaryCrossentropy(label_smoothing=smoothing) if smoothing \
            else "binary_crossentropy"
    return SparseSmoothedCrossentropy(smoothing, contract.num_classes) if smoothing \
        else "sparse_categorical_crossentropy"


def compile_model(model: keras.Model, contract: ModelContract, learning_rate: Any,
                  steps_per_execution: int = 1, smoothing: float = 0.0) -> None:
    """Adam at `learning_rate` (a float or a schedule) on `loss_for(contract, smoothing)`."""
    if tf.distribute.has_strategy():  # Keras 3.15 fails on several steps per call there
        steps_per_execution = 1
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=loss_for(contract, smoothing), metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)


def _callbacks(phase: str, rows: list[dict[str, Any]], has_val: bool, patience: int,
               log_dir: Path | None, extra: Sequence[keras.callbacks.Callback] = (),
               checkpoint: Path | None = None,
               ) -> tuple[list[keras.callbacks.Callback], BestWeights]:
    monitor = "val_loss" if has_val else "loss"
    best = BestWeights(monitor)
    # The caller's callbacks see each epoch before BestWeights/EarlyStopping act on it.
    callbacks: list[keras.callbacks.Callback] = [EpochLog(phase, rows), *extra, best]
    stopper = None
    if patience > 0:
        stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience)
        callbacks.append(stopper)
    if log_dir is not None and tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir / phase)))
    if checkpoint is not None:  # after BestWeights/EarlyStopping: it saves and restores them
        callbacks += [PhaseState(checkpoint, rows, best, stopper), backup(checkpoint)]
    return callbacks, best


def _phase_done(model: keras.Model, rows: list[dict[str, Any]], schedule: Schedule) -> bool:
    """Resuming a run whose phase had finished: its weights and rows restored, nothing to do."""
    if schedule.checkpoint is None:
        return False
    return PhaseState(schedule.checkpoint, rows, None, None).finished(model)


@dataclass(frozen=True)
class Schedule:
    """How one training phase runs (phase 1 on features or images, or the fine-tune).

    `weights`: class weights by index, or one weight per training sample (an array; features
    only). `callbacks` are extra Keras callbacks that see each epoch first.
    """

    learning_rate: float
    epochs: int
    batch_size: int
    patience: int
    weights: dict[int, float] | np.ndarray | None = None
    seed: int = 0
    log_dir: Path | None = None
    verbose: int = 0
    phase: str = "head"
    callbacks: Sequence[keras.callbacks.Callback] = ()
    checkpoint: Path | None = None  # resumable: BackupAndRestore + PhaseState folder
    steps_per_epoch: int | None = None  # datasets that repeat (multi-worker)
    validation_steps: int | None = None
    augment: str = "reference"  # augmentation policy of image batches (trainer.data.augment)
    label_smoothing: float = 0.0
    cosine: bool = False  # learning rate decays along a cosine to 0 over the phase's epochs


Pair = tuple[np.ndarray, np.ndarray]


def fit_head(head: keras.Model, contract: ModelContract, train: Pair, val: Pair | None,
             schedule: Schedule) -> list[dict[str, Any]]:
    """Train the head on pooled features (the full model's head: the layers are shared)."""
    rows: list[dict[str, Any]] = []
    if _phase_done(head, rows, schedule):
        return rows
    has_val = val is not None and len(val[0]) > 0
    all_callbacks, _ = _callbacks(schedule.phase, rows, has_val, schedule.patience,
                                  schedule.log_dir, schedule.callbacks, schedule.checkpoint)
    # The head's steps take microseconds: run many per call to skip Python overhead.
    compile_model(head, contract, schedule.learning_rate,
                  steps_per_execution=HEAD_STEPS_PER_EXECUTION,
                  smoothing=schedule.label_smoothing)
    weights = schedule.weights
    head.fit(train[0], targets(contract, train[1]), batch_size=schedule.batch_size,
             epochs=schedule.epochs,
             validation_data=(val[0], targets(contract, val[1])) if has_val and val else None,
             class_weight=weights if isinstance(weights, dict) else None,
             sample_weight=weights if isinstance(weights, np.ndarray) else None,
             shuffle=True, callbacks=all_callbacks, verbose=schedule.verbose)
    return rows


def image_dataset(images: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                  augment: bool, policy: str = "reference") -> tf.data.Dataset:
    """Batches of float pixels (augmented, shuffled) for training or plain ones for validation."""
    ds = tf.data.Dataset.from_tensor_slices((images, y))
    if augment:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, t: (tf.cast(x, tf.float32), t),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmenter = build_augmenter(seed, policy)
        ds = ds.map(lambda x, t: (augmenter(x, training=True), t),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def fit_images(model: keras.Model, contract: ModelContract, train: Pair, val: Pair | None,
               schedule: Schedule) -> list[dict[str, Any]]:
    """Train the full model on augmented images (the reference recipe, and fine-tuning).

    Per-sample weights (an array) are not used here: only class weights."""
    has_val = val is not None and len(val[0]) > 0
    train_ds = image_dataset(train[0], targets(contract, train[1]), schedule.batch_size,
                             schedule.seed, True, schedule.augment)
    val_ds = (image_dataset(val[0], targets(contract, val[1]), schedule.batch_size,
                            schedule.seed, False) if has_val and val is not None else None)
    return fit_datasets(model, contract, train_ds, val_ds, schedule)


def fit_datasets(model: keras.Model, contract: ModelContract, train: Any, val: Any | None,
                 schedule: Schedule, steps_per_execution: int = 1) -> list[dict[str, Any]]:
    """Train `model` on ready batches (tf.data or distributed datasets): images for the full
    model, or (features, targets, weights) for the head. Class weights only when a dict."""
    rows: list[dict[str, Any]] = []
    if _phase_done(model, rows, schedule):
        return rows
    all_callbacks, _ = _callbacks(schedule.phase, rows, val is not None, schedule.patience,
                                  schedule.log_dir, schedule.callbacks, schedule.checkpoint)
    compile_model(model, contract, learning_rate(schedule, train), steps_per_execution,
                  schedule.label_smoothing)
    _multi_worker_fixes(model, train)
    weights = schedule.weights if isinstance(schedule.weights, dict) else None
    model.fit(train, validation_data=val, epochs=schedule.epochs, class_weight=weights,
              steps_per_epoch=schedule.steps_per_epoch,
              validation_steps=schedule.validation_steps if val is not None else None,
              callbacks=all_callbacks, verbose=schedule.verbose)
    return rows


def learning_rate(schedule: Schedule, train: Any) -> Any:
    """The phase's learning rate: a float, or a cosine decay to 0 over all its steps."""
    if not schedule.cosine:
        return schedule.learning_rate
    steps = schedule.steps_per_epoch
    if steps is None:
        try:
            steps = int(train.cardinality())
        except (AttributeError, TypeError):
            steps = -1
    if steps is None or steps <= 0:  # unknown length (streamed, distributed): no decay
        return schedule.learning_rate
    return keras.optimizers.schedules.CosineDecay(schedule.learning_rate, steps * schedule.epochs)


def _multi_worker_fixes(model: keras.Model, train: Any) -> None:
    """Work around two Keras 3.15 faults of `fit` under MultiWorkerMirroredStrategy.

    1. It builds the model by all-reducing its first distributed batch, which fails between
       workers ("Attempt to convert a value (PerReplica ...)"): build it here from this worker's
       first batch, inside the strategy's scope, and let fit skip that step.
    2. It all-reduces each step's scalar logs with axis=0 ("Invalid reduction dimension 0 for
       input with 0 dimensions"): the steps return them with shape (1,), which that reduction
       turns into the mean over all replicas (the same on every worker).
    """
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or not isinstance(
            train, tf.data.Dataset):
        return
    batch = next(iter(train.take(1)))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {
            k: tf.reshape(v, [1]) for k, v in step(data).items()})


def predict(model: keras.Model, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Raw model outputs for images or features (no progress output)."""
    if len(inputs) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), np.float32)
