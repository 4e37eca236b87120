"""`--strategy auto|one-device|mirrored|multi-worker`: TensorFlow's own tf.distribute strategies.

- one-device: TensorFlow's default strategy (what `trainer fit` always ran: exactly the same maths).
- mirrored: `tf.distribute.MirroredStrategy` over this machine's GPUs (or, without two GPUs, its
  logical CPU devices); variables mirrored, gradients all-reduced every step.
- multi-worker: `tf.distribute.MultiWorkerMirroredStrategy`, the cluster read from `TF_CONFIG`
  (the standard description: `{"cluster": {"worker": [host:port, ...]}, "task": {"type":
  "worker", "index": i}}`); collective all-reduce between the workers. The chief (task type
  "chief", else worker 0) writes the run folder; the other workers keep their state in a private
  temporary folder.
- auto: mirrored with two or more GPUs, else one-device.

A strategy is made once per process (`make_strategy`): MultiWorkerMirroredStrategy must exist
before TensorFlow runs anything else, so the CLI makes it right after importing TensorFlow.
`--batch-size` is the global batch (all replicas together) unless `--scale-batch`, which makes it
per replica and scales the learning rate linearly with the number of replicas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

from trainer.config import STRATEGIES, tf_config
from trainer.errors import UserError


@dataclass(frozen=True)
class Cluster:
    """Which strategy runs, on how many replicas and workers, and this process's part."""

    strategy: str  # resolved: one-device | mirrored | multi-worker
    replicas: int
    workers: int = 1
    worker_index: int = 0
    is_chief: bool = True
    devices: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "devices": list(self.devices)}


_MADE: dict[str, tuple[tf.distribute.Strategy, Cluster]] = {}


def _multi_worker() -> tuple[tf.distribute.Strategy, Cluster]:
    config = tf_config()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    kind, index = resolver.task_type, int(resolver.task_id)
    cluster = config["cluster"]
    has_chief = bool(cluster.get("chief"))
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    position = index if kind == "chief" or not has_chief else index + 1  # chief first
    chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return strategy, Cluster("multi-worker", strategy.num_replicas_in_sync, workers, position,
                             chief, tuple(strategy.extended.worker_devices))


def _mirrored() -> tuple[tf.distribute.Strategy, Cluster]:
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    devices = gpus if len(gpus) >= 2 else (gpus or cpus)
    strategy = tf.distribute.MirroredStrategy(devices)
    return strategy, Cluster("mirrored", strategy.num_replicas_in_sync, devices=tuple(devices))


def make_strategy(name: str) -> tuple[tf.distribute.Strategy, Cluster]:
    """The strategy `name` stands for on this machine (made once per process and name)."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) >= 2 else "one-device"
    if name not in _MADE:
        if name == "multi-worker":
            _MADE[name] = _multi_worker()
        elif name == "mirrored":
            _MADE[name] = _mirrored()
        else:
            device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
            _MADE[name] = (tf.distribute.get_strategy(), Cluster("one-device", 1,
                                                                 devices=(device,)))
    return _MADE[name]


def batch_and_rate(batch_size: int, learning_rate: float, replicas: int,
                   scale_batch: bool) -> dict[str, Any]:
    """Global batch, per-replica batch and learning rate for `replicas` replicas."""
    scale = replicas if scale_batch else 1
    global_batch = batch_size * scale
    return {"global_batch_size": global_batch,
            "per_replica_batch_size": global_batch / replicas,
            "learning_rate": learning_rate * scale, "learning_rate_scale": scale,
            "rule": "linear (--scale-batch)" if scale_batch else
            "none: --batch-size is the global batch"}


def distribute(cluster: Cluster, make: Any, global_batch: int) -> Any:
    """A dataset for `model.fit` under the run's strategy; `make(batch)` builds this worker's
    batches, batched globally (Keras splits each batch over the replicas).

    Multi-worker: every worker feeds its own shards (auto-sharding off: tf.distribute then
    rebatches each worker's global batches to global / replicas per replica), repeated, so every
    worker runs the same number of steps (the caller passes them to fit).
    """
    ds = make(global_batch)
    if cluster.strategy != "multi-worker":
        return ds
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.repeat().with_options(options)
