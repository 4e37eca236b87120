"""Issue 11: streaming with feature shards, tf.distribute strategies, resume after SIGKILL.

The quick tests check the pieces (shards, scanning, grouping, options); the slow ones train for
real on a small face-mask-2c subset at 96 px: streamed against in memory, mirrored over two
logical CPU devices against one device, two workers on loopback, and a run killed mid-epoch and
resumed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKBONE, DATA_2C, ROOT
from typer.testing import CliRunner

from edge.core.console import TF_LOG_LEVEL
from trainer.cli import app
from trainer.config import FitConfig, preflight
from trainer.data.dedup import group_samples
from trainer.errors import UserError

SIZE = 96
#: Options of every slow run: 40 images per class, 96 px, small shards (several per worker).
SMALL = ["--weights", str(BACKBONE), "--input-size", str(SIZE), "--limit-per-class", "40",
         "--val-fraction", "0.2", "--test-fraction", "0.25", "--quiet"]
#: Mirrored (2 logical CPUs, per-replica dropout and batch halves) against one device.
MIRRORED_ACCURACY_TOLERANCE = 0.10
MIRRORED_PROBABILITY_TOLERANCE = 0.10
#: A resumed run against an uninterrupted one (test set of 20 images: 2 images).
RESUME_ACCURACY_TOLERANCE = 0.10


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": TF_LOG_LEVEL, "PYTHONUNBUFFERED": "1",
            **extra}


def _trainer(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.cli", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------- quick


def test_a_lost_worker_is_one_line_naming_it() -> None:
    from trainer.fit.run import lost_worker_message

    tf_text = ("{{function_node __wrapped__CollectiveReduceV2}} Collective ops is aborted by: "
               "Error reported from /job:worker/task:1: The following tasks are unhealthy "
               "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have "
               "crashed. [Op:CollectiveReduceV2] name: ")
    line = lost_worker_message(tf_text, Path("/runs/big"))
    assert "\n" not in line and "(/job:worker/replica:0/task:1)" in line
    assert "--resume /runs/big" in line
    other = lost_worker_message("{{function_node x}} Socket closed [Op:CollectiveReduceV2]", None)
    assert "(TensorFlow: Socket closed)" in other


def test_shards_roundtrip_and_damage_is_a_miss(tmp_path: Path) -> None:
    from trainer.data.stream import ShardSet

    shards = ShardSet(tmp_path / "s")
    feats = np.random.default_rng(0).random((5, 8), dtype=np.float32)
    assert shards.get(0, 5) is None
    shards.put(0, feats)
    np.testing.assert_array_equal(shards.get(0, 5), feats)
    assert shards.get(0, 4) is None  # wrong row count: recomputed
    raw = bytearray((tmp_path / "s" / "00000.npy").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "s" / "00000.npy").write_bytes(bytes(raw))
    assert shards.get(0, 5) is None  # checksum mismatch: recomputed


def test_scan_keeps_no_pixels_and_the_same_thumbnails() -> None:
    from trainer.data.datasets import discover_many
    from trainer.data.pixels import load_from_sources
    from trainer.data.stream import scan

    dataset = discover_many([DATA_2C], 16, None)
    samples = dataset.samples[:20] + dataset.samples[-20:]
    full = load_from_sources(dataset.all_sources(), samples, (SIZE, SIZE))
    streamed = scan(dataset.all_sources(), samples, (SIZE, SIZE), chunk=7)
    assert streamed.images.shape[0] == 0 and streamed.thumbs.dtype == np.uint8
    np.testing.assert_array_equal(streamed.thumbs.astype(np.float32), full.thumbs)
    assert streamed.digests == full.digests
    a = group_samples(full.thumbs, [s.source for s in full.samples])
    b = group_samples(streamed.thumbs, [s.source for s in streamed.samples])
    np.testing.assert_array_equal(a.groups, b.groups)


def test_should_stream_rule() -> None:
    from trainer.data.stream import should_stream

    assert not should_stream("auto", 4000, 224, False)
    assert should_stream("auto", 50_000, 224, False)
    assert should_stream("off", 10, 96, True)  # multi-worker always streams
    assert should_stream("on", 10, 96, False) and not should_stream("off", 10**6, 224, False)


def test_strategy_options_fail_before_tensorflow(tmp_path: Path, monkeypatch) -> None:
    config = FitConfig(data=DATA_2C, out=tmp_path / "run", strategy="two-gpus")
    with pytest.raises(UserError, match="--strategy must be one of"):
        preflight(config)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="needs TF_CONFIG"):
        preflight(FitConfig(data=DATA_2C, out=tmp_path / "run", strategy="multi-worker"))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="not a cluster description"):
        preflight(FitConfig(data=DATA_2C, out=tmp_path / "run", strategy="multi-worker"))
    result = CliRunner().invoke(app, ["fit", "--resume", str(tmp_path / "never")])
    assert result.exit_code == 2 and "no interrupted run to resume" in result.stderr


def test_batch_and_rate_scaling() -> None:
    from trainer.distribute import batch_and_rate

    same = batch_and_rate(32, 1e-4, 4, scale_batch=False)
    assert same["global_batch_size"] == 32 and same["per_replica_batch_size"] == 8
    assert same["learning_rate"] == 1e-4
    linear = batch_and_rate(32, 1e-4, 4, scale_batch=True)
    assert linear["global_batch_size"] == 128 and linear["learning_rate"] == pytest.approx(4e-4)


# ------------------------------------------------------------------------------- slow

MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from pathlib import Path
from trainer.fit.artifacts import load_keras_model
from trainer.fit.run import FitConfig, fit
from trainer.data.split import load_split
tmp = Path(sys.argv[1])
kw = dict(weights=sys.argv[2], input_size=96, epochs=4, patience=0, limit_per_class=40,
          val_fraction=0.2, test_fraction=0.25, cache_dir=tmp / "cache")
out = {}
for strategy in ("one-device", "mirrored"):
    r = fit(FitConfig(data=Path(sys.argv[3]), out=tmp / strategy, strategy=strategy, **kw),
            progress=False)
    model, contract = load_keras_model(r.model_h5)
    x, _ = load_split(r.run_dir / "split.json", "test", (96, 96))
    out[strategy] = {"acc": r.test_accuracy, "dist": r.summary["distribution"],
                     "p": contract.probabilities(model.predict(x.astype("float32"),
                                                               verbose=0))[:, 1].tolist(),
                     "eps": r.summary["phase1"]["examples_per_second"]}
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.long
def test_mirrored_over_two_logical_cpus_matches_one_device(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path), str(BACKBONE),
                           str(DATA_2C)], capture_output=True, text=True, cwd=ROOT, env=_env(),
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    one, mirrored = out["one-device"], out["mirrored"]
    assert mirrored["dist"]["strategy"] == "mirrored" and mirrored["dist"]["replicas"] == 2
    assert mirrored["dist"]["global_batch_size"] == 32
    assert mirrored["dist"]["per_replica_batch_size"] == 16
    assert abs(one["acc"] - mirrored["acc"]) <= MIRRORED_ACCURACY_TOLERANCE
    diff = np.abs(np.array(one["p"]) - np.array(mirrored["p"])).mean()
    assert diff <= MIRRORED_PROBABILITY_TOLERANCE, diff


@pytest.mark.slow
@pytest.mark.long
def test_multi_worker_on_loopback_one_run_folder_same_model(tmp_path: Path) -> None:
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in (0, 1):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            _trainer("fit", str(DATA_2C), "--out", str(tmp_path / "run"), *SMALL,
                     "--epochs", "3", "--cache-dir", str(tmp_path / f"cache{index}"),
                     "--strategy", "multi-worker", "--stream-chunk", "16", "--json"),
            cwd=ROOT, env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    chief, worker = (json.loads(out) for out, _ in outputs)
    assert chief["distribution"]["is_chief"] and not worker["distribution"]["is_chief"]
    assert chief["distribution"]["workers"] == 2 and chief["distribution"]["replicas"] == 2
    assert chief["model_weights_sha256"] == worker["model_weights_sha256"]
    assert chief["epochs_run"] == worker["epochs_run"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache0", "cache1", "run"]
    assert (tmp_path / "run" / "model.keras").is_file()
    # each worker extracted only its own shards of the (separate) caches
    assert chief["phase1"]["shards_of_this_worker"] + worker["phase1"][
        "shards_of_this_worker"] == chief["phase1"]["shards"]


def _wait_for_epoch(parent: Path, phase: str, epoch: int, proc: subprocess.Popen,
                    timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "the run finished before it could be killed"
        for meta in parent.glob(f".run.partial-*/resume/{phase}/keras/training_metadata.json"):
            try:
                if json.loads(meta.read_text())["epoch"] >= epoch:
                    return
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


@pytest.mark.slow
@pytest.mark.long
def test_killed_mid_epoch_resumes_to_the_same_epochs_and_as_good(tmp_path: Path) -> None:
    args = [str(DATA_2C), *SMALL, "--no-feature-cache", "--epochs", "4", "--patience", "0",
            "--cache-dir", str(tmp_path / "cache")]
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = subprocess.Popen(_trainer("fit", *args, "--out", str(killed / "run")), cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_epoch(killed, "head", 2, proc)
    os.kill(proc.pid, signal.SIGKILL)  # mid-epoch 3
    proc.wait()
    assert not (killed / "run").exists()
    done = subprocess.run(_trainer("fit", "--resume", str(killed / "run"), "--json", "-q"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads(done.stdout)
    assert resumed["resumed_from"] and resumed["epochs_run"] == 4
    history = (killed / "run" / "history.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[1]) for line in history] == [1, 2, 3, 4]
    assert not (killed / "run" / "resume").exists() and not list(killed.glob(".run.partial-*"))
    whole = subprocess.run(_trainer("fit", *args, "--out", str(tmp_path / "whole"), "--json"),
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900,
                           check=False)
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = json.loads(whole.stdout)["test_accuracy"]
    assert resumed["test_accuracy"] >= reference - RESUME_ACCURACY_TOLERANCE


#: How long the surviving worker may take to notice that its peer is gone and exit.
PEER_LOSS_TIMEOUT_S = 300


@pytest.mark.slow
@pytest.mark.long
def test_cluster_with_a_killed_worker_resumes_when_restarted(tmp_path: Path) -> None:
    """Two workers on loopback; worker 1 SIGKILLed mid-run: the chief exits with an error and
    leaves no run folder but keeps its checkpoints; the same command restarted on both (as a
    Kubernetes Job with `restartPolicy: OnFailure` does) resumes from the chief's checkpoints and
    finishes: one run folder, the full number of epochs, both workers with the same weights."""
    ports = [_free_port(), _free_port()]
    out = tmp_path / "run"

    def start(index: int) -> subprocess.Popen:
        tf_config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                "task": {"type": "worker", "index": index}})
        tmp = tmp_path / f"tmp{index}"
        tmp.mkdir(exist_ok=True)
        return subprocess.Popen(
            _trainer("fit", str(DATA_2C), "--out", str(out), "--resume", str(out), *SMALL,
                     "--epochs", "6", "--patience", "0", "--cache-dir",
                     str(tmp_path / f"cache{index}"), "--strategy", "multi-worker",
                     "--stream-chunk", "16", "--json"),
            cwd=ROOT, env=_env(TF_CONFIG=tf_config, TMPDIR=str(tmp)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    chief, worker = start(0), start(1)
    _wait_for_epoch(tmp_path, "head", 2, chief)
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=60)
    try:
        _, err = chief.communicate(timeout=PEER_LOSS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        chief.kill()
        chief.communicate()
        pytest.fail(f"the chief did not exit within {PEER_LOSS_TIMEOUT_S} s of losing a worker")
    assert chief.returncode == 1 and not out.exists()
    assert list(tmp_path.glob(".run.partial-*/resume/head/keras"))  # the checkpoints are kept
    assert "Traceback" not in err, err[-2000:]
    line = next(x for x in err.splitlines() if x.startswith("trainer: error:"))
    assert line.startswith("trainer: error: lost a worker of the cluster (")

    ports[:] = [_free_port(), _free_port()]
    procs = [start(0), start(1)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(e[-3000:] for _, e in outputs)
    first, second = (json.loads(o) for o, _ in outputs)
    assert first["resumed_from"] and first["epochs_run"] == second["epochs_run"] == 6
    assert first["model_weights_sha256"] == second["model_weights_sha256"]
    history = (out / "history.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[1]) for line in history] == [1, 2, 3, 4, 5, 6]
    assert not list(tmp_path.glob(".run.partial-*")) and (out / "model.keras").is_file()


@pytest.mark.slow
@pytest.mark.long
def test_streamed_run_matches_in_memory(tmp_path: Path) -> None:
    from trainer.fit.run import fit

    base = {"weights": str(BACKBONE), "input_size": SIZE, "epochs": 4, "patience": 2,
            "limit_per_class": 40, "val_fraction": 0.2, "test_fraction": 0.25,
            "cache_dir": tmp_path / "cache"}
    memory = fit(FitConfig(data=DATA_2C, out=tmp_path / "memory", stream="off", **base),
                 progress=False)
    streamed = fit(FitConfig(data=DATA_2C, out=tmp_path / "stream", stream="on",
                             stream_chunk=16, **base), progress=False)
    assert streamed.summary["stream"]["shards"] == 5
    assert (tmp_path / "memory" / "split.json").read_text() == (
        tmp_path / "stream" / "split.json").read_text()
    assert streamed.summary["consistency"]["max_abs_diff_full_vs_head"] < 1e-4
    assert abs(streamed.test_accuracy - memory.test_accuracy) <= 0.10
    again = fit(FitConfig(data=DATA_2C, out=tmp_path / "again", stream="on", stream_chunk=16,
                          **base), progress=False)
    assert again.summary["phase1"]["shard_misses"] == 0  # every shard from the cache


def test_scaling_section_data_and_report(tmp_path: Path) -> None:
    from benchmarks.stages.scaling import make_synthetic, render

    data = make_synthetic(tmp_path / "syn", 6)
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.jpg"))
    assert files == [f"{c}/{i:06d}.jpg" for c in ("with_mask", "without_mask") for i in range(3)]
    first = (data / files[0]).read_bytes()
    make_synthetic(tmp_path / "syn", 6)  # kept, not remade
    assert (data / files[0]).read_bytes() == first
    row = {"status": "ok", "images": 5000, "stream": True, "peak_rss_mb": 900.0, "wall_s": 100.0,
           "decode_s": 9.0, "feature_s": 50.0, "test_accuracy": 0.99}
    lines = render({"input_size": 96, "epochs": 5, "sizes": [row, {
        "status": "error", "images": 50000, "stream": True, "error": "boom"}], "strategies": [
        {"strategy": "one-device", "status": "ok", "distribution": {"replicas": 1,
         "global_batch_size": 32}, "examples_per_second": 1000.0, "test_accuracy": 0.99}]}, {})
    text = "\n".join(lines)
    assert "| 5,000 | on | 900 | 100.0 | 20.0 |" in text and "failed: boom" in text
    assert "| one-device | 1 | 32 | 1,000 |" in text


def test_resume_finds_the_partial_folder_and_its_options(tmp_path: Path) -> None:
    from dataclasses import asdict

    from trainer.cli import _resume_config
    from trainer.fit.resume import config_for_resume, resumable

    out = tmp_path / "run"
    assert not resumable(out) and _resume_config(out, can_start=True) is None
    partial = tmp_path / ".run.partial-abc123"
    partial.mkdir()
    saved = FitConfig(data=[DATA_2C, DATA_2C], out=out, epochs=7, cache_dir=tmp_path / "c",
                      exclude_lists=[tmp_path / "x.txt"], strategy="one-device")
    (partial / "config.json").write_text(json.dumps(asdict(saved), default=str))
    assert resumable(out)
    config = config_for_resume(out)
    assert config.resume == partial and config.epochs == 7 and config.data == [DATA_2C, DATA_2C]
    assert config.cache_dir == tmp_path / "c" and config.exclude_lists == [tmp_path / "x.txt"]
    assert _resume_config(out, can_start=True).resume == partial
    out.mkdir()
    (out / "summary.json").write_text("{}")
    partial.rename(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="finished run"):
        config_for_resume(out)
