"""The phases of `trainer.fit.run` on streamed data and under a tf.distribute strategy.

`trainer.fit.run` calls these when the run streams (`--stream`, large data, every multi-worker run;
see `trainer.data.stream`): phase 1 on feature shards, images decoded chunk by chunk for the
reference recipe and the fine-tune, and test/validation outputs computed shard by shard. Each worker
of a cluster extracts and trains on its own shards; the head and the full model train under the
run's strategy (all-reduce by TensorFlow). `run` is a `trainer.fit.state.FitRun`.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.core import console
from trainer.data.stream import (
    ShardJob,
    ShardSet,
    extract_shards,
    feature_dataset,
    feature_parts,
    image_dataset,
    per_row_weights,
)
from trainer.distribute import distribute
from trainer.fit.features import FeatureCache, cache_key, default_cache_dir
from trainer.fit.training import HEAD_STEPS_PER_EXECUTION, Schedule, fit_datasets, predict, targets

if TYPE_CHECKING:
    from trainer.fit.state import FitRun


def shard_job(run: FitRun, cache: FeatureCache) -> ShardJob:
    """Which shards hold clean features and views for this run, and which are this worker's."""
    c, stream = run.config, run.stream
    base = {"data": run.fingerprint, **run.backbone_parts, "chunk": stream.chunk}
    root = (cache.directory or default_cache_dir()) / "shards"
    train_mask = run.split == "train"
    train_key = hashlib.sha256(np.nonzero(train_mask)[0].tobytes()).hexdigest()[:16]
    seeds = [c.seed * 1000 + view for view in range(c.augment_views)]
    views = [ShardSet(root / cache_key(**base, kind="view-shards", train=train_key, view_seed=s,
                                       **c.view_key())) for s in seeds]
    cl = run.cluster
    mine = [s for s in range(stream.shards) if s % cl.workers == cl.worker_index]
    return ShardJob(ShardSet(root / cache_key(**base, kind="clean-shards")), views, seeds,
                    train_mask, mine, c.augment)


def _steps(run: FitRun, rows: int) -> int | None:
    """Steps per epoch over `rows` rows of all workers (multi-worker: every worker runs them)."""
    if run.cluster.strategy != "multi-worker":
        return None
    return max(1, math.ceil(rows / run.distribution["global_batch_size"]))


def extract_sharded(run: FitRun, extractor: Any) -> None:
    """This worker's missing feature shards (`run.shards`; counts and time in `run.phase1`).

    Called outside the strategy's scope: the augmentation layers create variables, and under a
    multi-worker strategy a variable is a collective every worker must join -- but workers miss
    different shards (a worker killed mid-extraction, a cache lost with its machine).
    """
    cache = run.cache
    job = shard_job(run, cache)
    t0 = time.perf_counter()
    mine_rows = sum(len(run.stream.shard_rows(s)) for s in job.mine)
    with console.task("backbone features (shards)", mine_rows, run.show) as advance:
        stats = extract_shards(run.stream, job, extractor, advance)
    run.shards = job
    run.phase1 = {**stats, "feature_seconds": round(time.perf_counter() - t0, 2)}


def phase1_sharded(run: FitRun) -> None:
    """Phase 1 on feature shards (`extract_sharded` first): the head, under the run's strategy."""
    c, job = run.config, run.shards
    cache = run.cache
    y_t = targets(run.contract, run.y)
    weights = per_row_weights(run.weights, run.y)
    train = feature_parts(run.stream, job, job.train_mask, y_t, weights, with_views=True)
    val = feature_parts(run.stream, job, run.split == "val", y_t, weights, with_views=False)
    n_train = int(job.train_mask.sum()) * (1 + c.augment_views)
    n_val = int((run.split == "val").sum())
    gb = run.distribution["global_batch_size"]
    train_ds = distribute(run.cluster,
                          lambda b: feature_dataset(train, b, c.seed), gb)
    val_ds = (distribute(run.cluster, lambda b: feature_dataset(val, b, None), gb)
              if n_val else None)
    t1 = time.perf_counter()
    run.history += fit_datasets(run.clf.head, run.contract, train_ds, val_ds, run.schedule(
        "head", weights=None, callbacks=run.callbacks, steps_per_epoch=_steps(run, n_train),
        validation_steps=_steps(run, n_val)), steps_per_execution=HEAD_STEPS_PER_EXECUTION)
    head_s = time.perf_counter() - t1
    epochs = sum(1 for r in run.history if r["phase"] == "head")
    run.phase1 = {"path": "cached-features (sharded, streamed)", **run.phase1,
                  "head_train_seconds": round(head_s, 2),
                  "feature_cache_dir": str(cache.directory), "head_train_samples": n_train,
                  "worker_train_rows": train.rows, "shards": run.stream.shards,
                  "shards_of_this_worker": len(job.mine),
                  "examples_per_second": round(n_train * epochs / max(head_s, 1e-9), 1)}


def fit_images_stream(run: FitRun, schedule: Schedule) -> list[dict[str, Any]]:
    """The full model on images decoded chunk by chunk (this worker's shards' rows)."""
    cl = run.cluster
    shards = [s for s in range(run.stream.shards) if s % cl.workers == cl.worker_index]
    mine = np.concatenate([run.stream.shard_rows(s) for s in shards]) if shards else np.zeros(
        0, np.int64)
    y_t = targets(run.contract, run.y)
    train_rows = mine[run.split[mine] == "train"]
    val_rows = mine[run.split[mine] == "val"]
    gb = run.distribution["global_batch_size"]
    train_ds = distribute(cl, lambda b: image_dataset(
        run.stream, train_rows, y_t, b, schedule.seed, True, schedule.augment), gb)
    n_val = int((run.split == "val").sum())
    val_ds = (distribute(cl, lambda b: image_dataset(
        run.stream, val_rows, y_t, b, None, False), gb) if n_val else None)
    sched = Schedule(**{**schedule.__dict__,
                        "steps_per_epoch": _steps(run, int((run.split == "train").sum())),
                        "validation_steps": _steps(run, n_val)})
    return fit_datasets(run.clf.model, run.contract, train_ds, val_ds, sched)


def split_outputs(run: FitRun, rows: np.ndarray, extractor: Any) -> np.ndarray:
    """Model outputs for `rows` (in order), shard by shard: the head on cached features when
    they still describe the model (and are on disk), else the full model on decoded images."""
    clf, stream = run.clf, run.stream
    job = run.shards if run.clean_valid else None
    out = np.zeros((len(rows), clf.model.output_shape[-1]), np.float32)
    where = {int(r): i for i, r in enumerate(rows)}
    for shard in range(stream.shards):
        idx = stream.shard_rows(shard)
        picked = idx[np.isin(idx, rows)]
        if not len(picked):
            continue
        pos = [where[int(r)] for r in picked]
        if job is None:
            out[pos] = predict(clf.model, stream.decode(picked).astype(np.float32))
            continue
        feats = job.clean.get(shard, len(idx))
        feats = (feats[np.isin(idx, rows)] if feats is not None
                 else extractor().clean(stream.decode(picked)))
        out[pos] = predict(clf.head, feats)
    return out


def consistency(run: FitRun, test_idx: np.ndarray, test_out: np.ndarray,
                samples: int) -> dict[str, Any] | None:
    """The saved full model against the head on features, on the first test samples."""
    if not run.clean_valid:
        return None
    check = test_idx[:samples]
    if not len(check):
        return {"samples": 0, "max_abs_diff_full_vs_head": 0.0}
    full = predict(run.clf.model, run.stream.decode(check).astype(np.float32))
    return {"samples": len(check),
            "max_abs_diff_full_vs_head": float(np.abs(full - test_out[:len(check)]).max())}
