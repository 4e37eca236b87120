"""Section `scaling`: peak memory and time of `trainer.fit.run` against data size, and examples per
second per tf.distribute strategy (issue 11).

The benchmark makes its own data: two classes of small synthetic JPEG "faces" (64-160 px, a
skin-coloured ellipse on a random background, the `with_mask` class with a coloured band over its
lower half, noise everywhere so no two are near-duplicates), written once into
`<work>/scaling/synthetic/`. Each row is one `trainer.fit.run` in a fresh child process (cold
feature cache), on the first N images (`--limit-per-class N/2`); the child reports its own peak
resident memory (`ru_maxrss`) and the run's timings. Streaming (`--stream on`: decoding in chunks,
feature shards on disk) is measured at every size, the in-memory path at the smaller ones.

The strategy rows train the head on the same cached features (warm cache) under one device,
mirrored over two logical CPU devices, and two workers on loopback (`TF_CONFIG`): examples per
second of phase 1 on this machine. On one 2-core CPU they measure the overhead of all-reduce, not
a speed-up.

    python -m benchmarks.run --only scaling [--quick]
    python -m benchmarks.stages.scaling child SPEC_JSON     # one measurement (used by the section)
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tables import fmt, pct, table

NAME = "scaling"
FULL_SIZES = (5_000, 20_000, 50_000)
FULL_IN_MEMORY = (5_000, 20_000)
QUICK_SIZES = (400, 1_200)
QUICK_IN_MEMORY = (400,)
INPUT_SIZE = 96
EPOCHS = 5
#: The strategy rows' data size (quick: the smallest size).
STRATEGY_SIZE = 5_000


def make_synthetic(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` JPEGs, half per class, in `folder/<class>/` (kept; only missing files are made)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    per_class = count // 2
    for label in ("with_mask", "without_mask"):
        target = folder / label
        target.mkdir(parents=True, exist_ok=True)
        have = len(list(target.glob("*.jpg")))
        for i in range(per_class):
            path = target / f"{i:06d}.jpg"
            seeds = rng.integers(0, 2**31, size=1)  # drawn always: files stay the same
            if i < have and path.exists():
                continue
            Image.fromarray(_face(np.random.default_rng(int(seeds[0])),
                                  label == "with_mask")).save(path, quality=85)
    return folder


def _face(rng: np.random.Generator, masked: bool) -> np.ndarray:
    side = int(rng.integers(64, 161))
    h, w = side, int(side * rng.uniform(0.8, 1.0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):  # background: a random gradient
        img[:, :, c] = rng.uniform(0, 255) + rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    ry, rx = h * rng.uniform(0.3, 0.45), w * rng.uniform(0.25, 0.4)
    face = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img[face] = rng.uniform([150, 100, 70], [240, 190, 160])
    eyes = cy - ry * rng.uniform(0.2, 0.4)
    for ex in (cx - rx * 0.4, cx + rx * 0.4):
        img[((yy - eyes) ** 2 + (xx - ex) ** 2) <= (rx * 0.12) ** 2] = rng.uniform(0, 60)
    if masked:
        band = face & (yy > cy + ry * rng.uniform(-0.1, 0.15))
        img[band] = rng.uniform([0, 0, 0], [255, 255, 255])
    else:
        mouth = (np.abs(yy - (cy + ry * 0.5)) < ry * 0.06) & (np.abs(xx - cx) < rx * 0.4)
        img[mouth] = rng.uniform([100, 20, 20], [200, 80, 80])
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One `trainer.fit.run` run as `spec` says, in this process: timings and peak memory."""
    if spec.get("logical_cpus"):
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])
    from trainer.distribute import make_strategy
    from trainer.fit.run import FitConfig, fit

    make_strategy(spec.get("strategy", "one-device"))
    t0 = time.perf_counter()
    config = FitConfig(**{**spec["config"], "data": Path(spec["config"]["data"]),
                          "out": Path(spec["config"]["out"]),
                          "cache_dir": Path(spec["config"]["cache_dir"])})
    result = fit(config, progress=False)
    s = result.summary
    phase1 = s.get("phase1", {})
    return {"status": "ok", "wall_s": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "decode_s": s["timing"].get("decode_seconds"),
            "feature_s": phase1.get("feature_seconds"),
            "head_s": phase1.get("head_train_seconds"),
            "examples_per_second": phase1.get("examples_per_second"),
            "head_train_samples": phase1.get("head_train_samples"),
            "epochs": s.get("epochs_run"), "test_accuracy": s.get("test_accuracy"),
            "chief": s.get("chief", True), "distribution": s.get("distribution"),
            "weights_sha256": s.get("model_weights_sha256")}


def _spawn(spec: dict[str, Any], env: dict[str, str] | None = None) -> subprocess.Popen:
    from edge.core.console import (
        TF_LOG_LEVEL,  # here: the measured child imports no more than it did
    )

    return subprocess.Popen([sys.executable, "-m", "benchmarks.stages.scaling", "child",
                             json.dumps(spec, default=str)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": TF_LOG_LEVEL, **(env or {})},
                            cwd=Path(__file__).resolve().parents[2])


def _result(proc: subprocess.Popen, timeout: float = 7200) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (err.strip().splitlines() or ["no output"])[-1]
    return {"status": "error", "error": f"child exited {proc.returncode}: {tail[:300]}"}


def _config(data: Path, n: int, out: Path, cache: Path, **extra: Any) -> dict[str, Any]:
    return {"data": str(data), "out": str(out), "cache_dir": str(cache),
            "weights": extra.pop("weights"), "input_size": INPUT_SIZE, "epochs": EPOCHS,
            "patience": 0, "augment_views": 0, "limit_per_class": n // 2, "overwrite": True,
            **extra}


def measure_sizes(ctx: Any, data: Path, work: Path, sizes: tuple[int, ...],
                  done: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per size and mode (in-memory only at the smaller sizes); rows already in `done`
    (an interrupted run's, with --reuse-models) are kept, new ones added to it as they finish."""
    cfg = ctx.cfg
    in_memory = QUICK_IN_MEMORY if cfg.quick else FULL_IN_MEMORY
    rows = []
    for n in sizes:
        for mode in ("on", "off") if n in in_memory else ("on",):
            tag = f"{n}-{mode}"
            if done.get(tag, {}).get("status") == "ok":
                rows.append(done[tag])
                continue
            shutil.rmtree(work / f"cache-{tag}", ignore_errors=True)  # cold feature cache
            spec = {"config": _config(data, n, work / f"run-{tag}", work / f"cache-{tag}",
                                      weights=str(cfg.backbone), stream=mode)}
            ctx.log(f"  {n} images, stream {mode}")
            row = {"images": n, "stream": mode == "on", **_result(_spawn(spec))}
            ctx.log(f"    {row.get('peak_rss_mb')} MB peak, {row.get('wall_s')} s")
            rows.append(row)
            done[tag] = row
            _save_partial(work, done)
    return rows


def _save_partial(work: Path, done: dict[str, Any]) -> None:
    from edge.core.fileio import write_text_atomic

    write_text_atomic(work / "partial.json", json.dumps(done, default=str) + "\n")


def _load_partial(work: Path, reuse: bool) -> dict[str, Any]:
    try:
        return json.loads((work / "partial.json").read_text()) if reuse else {}
    except (OSError, ValueError):
        return {}


def measure_strategies(ctx: Any, data: Path, work: Path) -> list[dict[str, Any]]:
    """Head training under each strategy on warm cached features (streaming, same shards)."""
    cfg = ctx.cfg
    n = QUICK_SIZES[0] if cfg.quick else STRATEGY_SIZE
    cache = work / f"cache-{n}-on"  # warm: the size rows computed these shards
    base = _config(data, n, work / "run-strategy", cache, weights=str(cfg.backbone),
                   stream="on", epochs=EPOCHS * 2)
    rows = []
    for strategy, extra in (("one-device", {}), ("mirrored", {"logical_cpus": 2})):
        ctx.log(f"  strategy {strategy}")
        spec = {"config": {**base, "strategy": strategy, "out": str(work / f"run-{strategy}")},
                "strategy": strategy, **extra}
        rows.append({"strategy": strategy, **_result(_spawn(spec))})
    ctx.log("  strategy multi-worker (2 processes on loopback)")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = [_spawn({"config": {**base, "strategy": "multi-worker",
                                "out": str(work / "run-multi-worker")},
                     "strategy": "multi-worker"},
                    {"TF_CONFIG": json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": i}})})
             for i in (0, 1)]
    results = [_result(p) for p in procs]
    agree = len({r.get("weights_sha256") for r in results}) == 1
    rows.append({"strategy": "multi-worker (2 local workers)", **results[0],
                 "workers_agree": agree})
    return rows


def run(ctx: Any) -> dict[str, Any]:
    cfg = ctx.cfg
    work = cfg.work / "scaling"
    count = max(QUICK_SIZES if cfg.quick else FULL_SIZES)
    t0 = time.perf_counter()
    data = make_synthetic(work / "synthetic", count)
    ctx.log(f"  synthetic data: {count} JPEGs in {time.perf_counter() - t0:.0f} s")
    sizes = QUICK_SIZES if cfg.quick else FULL_SIZES
    done = _load_partial(work, cfg.reuse_models)
    rows = measure_sizes(ctx, data, work, sizes[:-1], done)  # the largest after the strategies
    strategies = done.get("strategies") or measure_strategies(ctx, data, work)
    done["strategies"] = strategies
    _save_partial(work, done)
    rows += measure_sizes(ctx, data, work, sizes[-1:], done)
    return {"data": str(data), "input_size": INPUT_SIZE, "epochs": EPOCHS, "augment_views": 0,
            "sizes": rows, "strategies": strategies, "cpus": os.cpu_count()}


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's scaling section from this section's result `r`."""
    lines = [f"`trainer.fit.run` on N synthetic JPEGs (64-160 px, two classes; made by the "
             f"benchmark), {r.get('input_size')} px input, {r.get('epochs')} epochs, no augmented "
             "views, cold feature cache; one fresh process per row, peak memory = its `ru_maxrss`. "
             "Streaming: decoded in chunks of 256, backbone features in shards on disk.", ""]
    rows = []
    for row in r.get("sizes", []):
        if row.get("status") != "ok":
            rows.append([fmt(row["images"]), "on" if row["stream"] else "off",
                         f"failed: {row.get('error')}", "", "", "", "", ""])
            continue
        per_k = row["wall_s"] / row["images"] * 1000
        rows.append([fmt(row["images"]), "on" if row["stream"] else "off",
                     fmt(row["peak_rss_mb"], 0), fmt(row["wall_s"], 1), fmt(per_k, 1),
                     fmt(row["decode_s"], 1), fmt(row["feature_s"], 1),
                     pct(row["test_accuracy"], 1)])
    lines += table(["images", "stream", "peak MB", "wall s", "s per 1000 images", "decode s",
                    "features s", "test accuracy"], rows)
    lines += ["", "Examples per second of phase 1 (head on cached features) per strategy, on "
              "this machine's CPUs (no GPU: mirrored runs on two logical CPU devices):", ""]
    lines += table(["strategy", "replicas", "global batch", "examples/s", "test accuracy",
                    "workers agree"],
                   [[s["strategy"], fmt((s.get("distribution") or {}).get("replicas")),
                     fmt((s.get("distribution") or {}).get("global_batch_size")),
                     fmt(s.get("examples_per_second"), 0), pct(s.get("test_accuracy"), 1),
                     fmt(s.get("workers_agree"))] if s.get("status") == "ok"
                    else [s["strategy"], f"failed: {s.get('error')}", "", "", "", ""]
                    for s in r.get("strategies", [])])
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        print(json.dumps(child(json.loads(sys.argv[2])), default=str), flush=True)
    else:
        sys.exit("usage: python -m benchmarks.stages.scaling child SPEC_JSON")
