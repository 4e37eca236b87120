"""Where a run's samples live: in memory (`InMemory`, the default) or streamed in shards
(`Streamed`: `--stream`, data larger than memory, every multi-worker run).

A `trainer.fit.state.FitRun` carries one of the two as `run.data`; the phases
(`trainer.fit.phases`) and the evaluation (`trainer.fit.publish`) call the same methods on either
instead of asking whether the run streams. The streamed side is `trainer.fit.streamed`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from trainer.data.stream import StreamData
from trainer.fit import streamed as fit_stream
from trainer.fit.phases import backbone_engine, extractor_factory, phase1_cached
from trainer.fit.state import FitRun, Outputs
from trainer.fit.training import Schedule, fit_images, predict

#: Samples of the test set on which the saved full model must reproduce the head's predictions.
CONSISTENCY_SAMPLES = 32


class InMemory:
    """Every decoded image in memory; backbone features extracted and cached in phase 1."""

    stream: StreamData | None = None

    def prepare(self, run: FitRun) -> None:
        """Nothing to do before phase 1."""

    def phase1_on_features(self, run: FitRun) -> None:
        phase1_cached(run)

    def fit_images(self, run: FitRun, schedule: Schedule) -> list[dict[str, Any]]:
        return fit_images(run.clf.model, run.contract, run.images("train"), run.images("val"),
                          schedule)

    def outputs(self, run: FitRun) -> Outputs:
        """Test and validation outputs; with clean cached features, the head's, checked against
        the full model on `CONSISTENCY_SAMPLES` test images."""
        test_idx, val_idx = run.index("test"), run.index("val")
        images = run.loaded.images
        if run.clean_feats is None:
            return (predict(run.clf.model, images[test_idx]),
                    predict(run.clf.model, images[val_idx]), None)
        test_out = predict(run.clf.head, run.clean_feats[test_idx])
        val_out = predict(run.clf.head, run.clean_feats[val_idx])
        check = test_idx[:CONSISTENCY_SAMPLES]
        full = predict(run.clf.model, images[check])
        consistency = {"samples": len(check), "max_abs_diff_full_vs_head":
                       float(np.abs(full - test_out[:len(check)]).max()) if len(check) else 0.0}
        return test_out, val_out, consistency

    def info(self, run: FitRun) -> dict[str, Any] | None:
        """The summary's `stream` entry: none in memory."""
        return None


class Streamed:
    """Samples decoded chunk by chunk; features in shards, one set per worker."""

    def __init__(self, stream: StreamData) -> None:
        self.stream = stream

    def prepare(self, run: FitRun) -> None:
        """Feature shards, extracted outside the strategy's scope (cached path only)."""
        if run.config.feature_cache:
            keras.utils.set_random_seed(run.config.seed)
            fit_stream.extract_sharded(run, extractor_factory(run, run.cache, backbone_engine()))

    def phase1_on_features(self, run: FitRun) -> None:
        keras.utils.set_random_seed(run.config.seed)
        fit_stream.phase1_sharded(run)
        run.phase1["backbone_engine"] = backbone_engine()

    def fit_images(self, run: FitRun, schedule: Schedule) -> list[dict[str, Any]]:
        return fit_stream.fit_images_stream(run, schedule)

    def outputs(self, run: FitRun) -> Outputs:
        """Test and validation outputs computed shard by shard."""
        extractor = extractor_factory(run, run.cache, backbone_engine())
        test_idx, val_idx = run.index("test"), run.index("val")
        test_out = fit_stream.split_outputs(run, test_idx, extractor)
        val_out = fit_stream.split_outputs(run, val_idx, extractor)
        return test_out, val_out, fit_stream.consistency(run, test_idx, test_out,
                                                         CONSISTENCY_SAMPLES)

    def info(self, run: FitRun) -> dict[str, Any] | None:
        return {"chunk": self.stream.chunk, "shards": self.stream.shards,
                "mode": run.config.stream}
