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

from edge.contract import ModelContract
from trainer.augment import build_augmenter

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


def compile_model(model: keras.Model, contract: ModelContract, learning_rate: float,
                  steps_per_execution: int = 1) -> None:
    loss = ("binary_crossentropy" if contract.output == "sigmoid"
            else "sparse_categorical_crossentropy")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)


def _callbacks(phase: str, rows: list[dict[str, Any]], has_val: bool, patience: int,
               log_dir: Path | None, extra: Sequence[keras.callbacks.Callback] = (),
               ) -> tuple[list[keras.callbacks.Callback], BestWeights]:
    monitor = "val_loss" if has_val else "loss"
    best = BestWeights(monitor)
    # The caller's callbacks see each epoch before BestWeights/EarlyStopping act on it.
    callbacks: list[keras.callbacks.Callback] = [EpochLog(phase, rows), *extra, best]
    if patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=patience))
    if log_dir is not None and tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir / phase)))
    return callbacks, best


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


Pair = tuple[np.ndarray, np.ndarray]


def fit_head(head: keras.Model, contract: ModelContract, train: Pair, val: Pair | None,
             schedule: Schedule) -> list[dict[str, Any]]:
    """Train the head on pooled features (the full model's head: the layers are shared)."""
    rows: list[dict[str, Any]] = []
    has_val = val is not None and len(val[0]) > 0
    all_callbacks, _ = _callbacks(schedule.phase, rows, has_val, schedule.patience,
                                  schedule.log_dir, schedule.callbacks)
    # The head's steps take microseconds: run many per call to skip Python overhead.
    compile_model(head, contract, schedule.learning_rate,
                  steps_per_execution=HEAD_STEPS_PER_EXECUTION)
    weights = schedule.weights
    head.fit(train[0], targets(contract, train[1]), batch_size=schedule.batch_size,
             epochs=schedule.epochs,
             validation_data=(val[0], targets(contract, val[1])) if has_val and val else None,
             class_weight=weights if isinstance(weights, dict) else None,
             sample_weight=weights if isinstance(weights, np.ndarray) else None,
             shuffle=True, callbacks=all_callbacks, verbose=schedule.verbose)
    return rows


def image_dataset(images: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                  augment: bool) -> tf.data.Dataset:
    """Batches of float pixels (augmented, shuffled) for training or plain ones for validation."""
    ds = tf.data.Dataset.from_tensor_slices((images, y))
    if augment:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, t: (tf.cast(x, tf.float32), t),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmenter = build_augmenter(seed)
        ds = ds.map(lambda x, t: (augmenter(x, training=True), t),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def fit_images(model: keras.Model, contract: ModelContract, train: Pair, val: Pair | None,
               schedule: Schedule) -> list[dict[str, Any]]:
    """Train the full model on augmented images (the reference recipe, and fine-tuning).

    Per-sample weights (an array) are not used here: only class weights."""
    rows: list[dict[str, Any]] = []
    has_val = val is not None and len(val[0]) > 0
    all_callbacks, _ = _callbacks(schedule.phase, rows, has_val, schedule.patience,
                                  schedule.log_dir, schedule.callbacks)
    compile_model(model, contract, schedule.learning_rate)
    train_ds = image_dataset(train[0], targets(contract, train[1]), schedule.batch_size,
                             schedule.seed, True)
    val_ds = (image_dataset(val[0], targets(contract, val[1]), schedule.batch_size,
                            schedule.seed, False) if has_val and val is not None else None)
    weights = schedule.weights if isinstance(schedule.weights, dict) else None
    model.fit(train_ds, validation_data=val_ds, epochs=schedule.epochs, class_weight=weights,
              callbacks=all_callbacks, verbose=schedule.verbose)
    return rows


def predict(model: keras.Model, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Raw model outputs for images or features (no progress output)."""
    if len(inputs) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), np.float32)
