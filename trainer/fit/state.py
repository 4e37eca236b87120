"""The state one `trainer fit` run carries from the split to the written folder.

`FitRun` is read and extended by every phase (`trainer.fit.phases`, `trainer.fit.streamed`) and by
the writing (`trainer.fit.publish`); `FitResult` is what `trainer.fit.run.fit` returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from edge.core.contract import ModelContract
from trainer.config import FitConfig
from trainer.data.datasets import Dataset
from trainer.data.pixels import Loaded
from trainer.data.split import SplitManifest
from trainer.data.stream import ShardJob, StreamData
from trainer.distribute import Cluster
from trainer.fit.features import (
    FeatureCache,
    default_cache_dir,
)
from trainer.fit.model import Classifier
from trainer.fit.training import Schedule

#: Class weights (a dict by class index), per-sample weights (an array over all samples) or none.
Weights = dict[int, float] | np.ndarray | None


@dataclass
class FitResult:
    """Where the run went and what it measured."""

    run_dir: Path
    model_h5: Path
    model_keras: Path
    contract: ModelContract
    test_accuracy: float
    wall_seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def data_fingerprint(manifest: SplitManifest, digests: list[str]) -> str:
    """SHA-256 over every used sample's label, location and content digest, in manifest order."""
    h = hashlib.sha256()
    for row, digest in zip(manifest.rows, digests, strict=True):
        where = [row["label"], row["path"], row.get("box"), row.get("index"), digest]
        h.update(json.dumps(where if row.get("source") is None
                            else [*where, row["source"]]).encode())
    return h.hexdigest()


#: A model's test outputs, validation outputs and the full-model-against-head check (or None).
Outputs = tuple[np.ndarray, np.ndarray, dict[str, Any] | None]


class DataPath(Protocol):
    """Where the samples live (`trainer.fit.datapath.InMemory` or `Streamed`): the phases and
    the evaluation call these instead of branching on streaming."""

    stream: StreamData | None

    def prepare(self, run: FitRun) -> None: ...

    def phase1_on_features(self, run: FitRun) -> None: ...

    def fit_images(self, run: FitRun, schedule: Schedule) -> list[dict[str, Any]]: ...

    def outputs(self, run: FitRun) -> Outputs: ...

    def info(self, run: FitRun) -> dict[str, Any] | None: ...


@dataclass
class FitRun:
    """One run's state, from the split to the written folder: each phase reads and adds to it."""

    config: FitConfig
    dataset: Dataset
    loaded: Loaded
    manifest: SplitManifest
    clf: Classifier
    y: np.ndarray  # class index per usable sample
    split: np.ndarray  # "train" / "val" / "test" per usable sample
    weights: Weights
    work: Path  # the hidden folder the run is assembled in
    out: Path
    weight_fp: str
    device: dict[str, Any]
    start: float
    show: bool
    callbacks: Sequence[keras.callbacks.Callback] = ()
    info: dict[str, Any] = field(default_factory=dict)  # imbalance, grouping, timing
    history: list[dict[str, Any]] = field(default_factory=list)
    phase1: dict[str, Any] = field(default_factory=dict)
    fine_tune: dict[str, Any] | None = None
    clean_feats: np.ndarray | None = None  # backbone features, while they describe the model
    # Scaling (trainer.data.stream / trainer.distribute): the strategy the model trains under, this
    # process's part of the cluster, a copy of the classifier outside the strategy (features,
    # evaluation, saving), streamed samples and their feature shards.
    strategy: Any = None
    cluster: Cluster = field(default_factory=lambda: Cluster("one-device", 1))
    plain: Classifier | None = None
    data: DataPath = field(kw_only=True)  # trainer.fit.datapath: in memory or streamed
    shards: ShardJob | None = None
    distribution: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> StreamData | None:
        """The sample stream of a streamed run, else None."""
        return self.data.stream

    @property
    def clean_valid(self) -> bool:
        """Cached clean features still describe the model (phase 1 on features, no fine-tune)."""
        return self.config.feature_cache and self.fine_tune is None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def cache(self) -> FeatureCache:
        """The run's feature cache: `--cache-dir`, else the default folder."""
        return FeatureCache(self.config.cache_dir or default_cache_dir())

    @property
    def backbone_parts(self) -> dict[str, Any]:
        """What the backbone's features depend on besides the data (in every feature cache key)."""
        c = self.config
        return {"weights": self.weight_fp, "size": c.input_size, "alpha": c.alpha,
                **({"nose_band": True} if c.nose_band else {})}  # earlier keys stay valid

    @property
    def contract(self) -> ModelContract:
        return ModelContract.for_labels(self.labels, self.config.input_size)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.info["data_fingerprint"])

    @property
    def log_dir(self) -> Path:
        return self.work / "tensorboard"

    def index(self, name: str) -> np.ndarray:
        return np.nonzero(self.split == name)[0]

    def images(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.index(name)
        return self.loaded.images[idx], self.y[idx]

    def schedule(self, phase: str, **changes: Any) -> Schedule:
        c, d = self.config, self.distribution
        return Schedule(**{"learning_rate": d.get("learning_rate", c.learning_rate),
                           "epochs": c.epochs, "batch_size": d.get("global_batch_size",
                                                                   c.batch_size),
                           "patience": c.patience, "weights": self.weights, "seed": c.seed,
                           "log_dir": self.log_dir, "verbose": 2 if self.show else 0,
                           "phase": phase, "checkpoint": self.work / "resume" / phase,
                           "augment": c.augment, "label_smoothing": c.label_smoothing,
                           **changes})


@dataclass
class Built:
    """The classifier under the run's strategy, and a copy outside it (None: one device)."""

    clf: Classifier
    plain: Classifier | None
    strategy: Any
    cluster: Cluster
    weight_fp: str = ""


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 over every weight array's bytes (workers of one run must agree on it)."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()
