"""Section `latency`: per-image latency of every classifier variant, load time, size, memory.

Variants: Keras `predict`, Keras inside a compiled `tf.function`, and the float32, float16,
dynamic-range and int8 TFLite files under LiteRT (through the project's `MaskClassifier`), and under
`tflite_runtime` where it loads; each at every thread count of the profile, each in its own
process (`benchmarks.worker`). Plus the wrapper overhead: `MaskClassifier.predict` against a bare
interpreter call on the same int8 file.

tflite_runtime 2.14 needs numpy<2, so its rows run under a side interpreter (`side_python`): the
`--tflite-runtime-python` option, else the venv `TFLITE_RUNTIME_VENV`, which a full run creates
when missing (a quick run never downloads).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.config import TFLITE_RUNTIME_VENV, BenchConfig
from benchmarks.context import SectionContext, run_child
from benchmarks.stats import ratio
from benchmarks.store import TFLITE_VARIANTS
from benchmarks.tables import fmt, pct, short, table

NAME = "latency"

LABELS = {
    "keras_predict": "Keras predict",
    "keras_function": "Keras tf.function",
    "float32": "TFLite float32",
    "float16": "TFLite float16",
    "dynamic": "TFLite dynamic-range",
    "int8": "TFLite int8",
}

#: What the side venv installs: the last tflite_runtime, and the numpy it was built against.
TFLITE_RUNTIME_PINS = ("tflite-runtime==2.14.0", "numpy<2")
#: tflite_runtime rows time this many times fewer calls than the LiteRT rows.
TFLITE_RUNTIME_RUN_DIVISOR = 10
NO_INTERPRETER = ("no tflite_runtime interpreter; pass --tflite-runtime-python or run the full "
                  "benchmark once")


def _last_line(text: str, fallback: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or [fallback])[-1][:300]


def create_venv(venv: Path, log: Callable[[str], None]) -> str | None:
    """Create `venv` with `TFLITE_RUNTIME_PINS`; None when done, else why not (one line).

    A failed or interrupted attempt leaves nothing behind, so the next full run tries again.
    """
    t0 = time.perf_counter()
    python = venv / "bin" / "python"
    steps = {"venv": [sys.executable, "-m", "venv", "--clear", str(venv)],
             "pip install": [str(python), "-m", "pip", "install", "-q",
                             "--disable-pip-version-check", "--retries", "2", "--timeout", "30",
                             *TFLITE_RUNTIME_PINS]}
    reason, done = None, False
    try:
        for step, cmd in steps.items():
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if run.returncode != 0:
                reason = f"{step} failed: {_last_line(run.stderr, f'exit {run.returncode}')}"
                break
        done = reason is None
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        if not done:
            shutil.rmtree(venv, ignore_errors=True)
    seconds = time.perf_counter() - t0
    if reason is None:
        log(f"  created {short(venv)} ({', '.join(TFLITE_RUNTIME_PINS)}) in {seconds:.0f} s")
        return None
    reason = f"could not create {short(venv)}: {reason}"
    log(f"  {reason} ({seconds:.0f} s)")
    return reason


def side_python(cfg: BenchConfig, log: Callable[[str], None],
                venv: Path = TFLITE_RUNTIME_VENV) -> tuple[Path | None, str | None]:
    """The interpreter for the tflite_runtime rows, or None and why not (one line).

    `--tflite-runtime-python PATH` wins ('none' disables the rows); else `venv`, created first by
    a full run when missing; a quick run uses it only if it already exists.
    """
    option = cfg.tflite_runtime_python
    if option is not None and option.strip().lower() == "none":
        return None, "disabled (--tflite-runtime-python none)"
    if option:
        return Path(option).expanduser(), None
    python = venv / "bin" / "python"
    if python.exists():
        return python, None
    if cfg.quick:
        return None, NO_INTERPRETER
    reason = create_venv(venv, log)
    return (python, None) if reason is None else (None, reason)


def tflite_runtime_side(cfg: BenchConfig, log: Callable[[str], None],
                        venv: Path = TFLITE_RUNTIME_VENV) -> tuple[dict[str, Any] | None, str]:
    """The side interpreter's details (path, runtime and numpy versions) once it has imported
    tflite_runtime and the worker; or None and why not (one line)."""
    python, reason = side_python(cfg, log, venv)
    if python is None:
        return None, reason or NO_INTERPRETER
    probe = run_child({"kind": "runtime_info", "runtime": "tflite_runtime"}, timeout_s=120.0,
                      python=python)
    if probe.get("status") != "ok":
        return None, f"{short(python)} cannot run tflite_runtime ({probe.get('error')})"
    info = {"python": str(python), "runtime": probe["runtime"], "numpy": probe["numpy"],
            "python_version": probe["python"]}
    log(f"  tflite_runtime rows under {short(python)}: {info['runtime']}, "
        f"numpy {info['numpy']}, Python {info['python_version']}")
    return info, "available"


def run(ctx: SectionContext) -> dict[str, Any]:
    cfg, it = ctx.cfg, ctx.cfg.iterations
    size = cfg.main_size
    model = ctx.store.trained(size)
    files = ctx.store.variants(size, TFLITE_VARIANTS)
    images = ctx.store.test_images_file(size, cfg.latency_images)
    side, tflite_rt = tflite_runtime_side(cfg, ctx.log)
    rows: list[dict[str, Any]] = []

    def measure(variant: str, kind: str, path: Path, threads: int, runtime: str = "litert",
                warmup: int = 0, runs: int = 0) -> dict[str, Any]:
        spec = {"kind": kind, "model": str(path), "threads": threads, "runtime": runtime,
                "images": str(images), "warmup": warmup, "runs": runs}
        label = LABELS[variant] + (" (tflite_runtime)" if runtime == "tflite_runtime" else "")
        ctx.log(f"  {label}, {threads} thread(s)")
        python = side["python"] if side and runtime == "tflite_runtime" else None
        result = run_child(spec, python=python)
        row = {"variant": variant if runtime == "litert" else f"{variant}@tflite_runtime",
               "label": label, "threads": threads, "file": str(path),
               "file_mb": path.stat().st_size / 1e6, **result}
        if result.get("status") == "ok":
            ctx.log(f"    p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                    f"{result['items_per_s']:.0f} img/s, peak RSS {result['peak_rss_mib']:.0f} MiB")
        else:
            status = "does not load" if result.get("does_not_load") else result.get("status")
            ctx.log(f"    {status}: {result.get('error')}")
        return row

    for threads in cfg.threads:
        rows.append(measure("keras_predict", "keras_predict", model.model_keras, threads,
                            warmup=it.keras_predict_warmup, runs=it.keras_predict_runs))
        rows.append(measure("keras_function", "keras_function", model.model_keras, threads,
                            warmup=it.keras_function_warmup, runs=it.keras_function_runs))
        for tag in TFLITE_VARIANTS:
            rows.append(measure(tag, "tflite", files[tag], threads, warmup=it.tflite_warmup,
                                runs=it.tflite_runs))
        if side:  # ~10x slower than LiteRT here: a tenth of the runs keeps the section short
            for tag in TFLITE_VARIANTS:
                rows.append(measure(tag, "tflite", files[tag], threads, runtime="tflite_runtime",
                                    warmup=max(5, it.tflite_warmup // TFLITE_RUNTIME_RUN_DIVISOR),
                                    runs=max(20, it.tflite_runs // TFLITE_RUNTIME_RUN_DIVISOR)))
        else:
            rows.append({"variant": "all@tflite_runtime", "label": "TFLite (tflite_runtime)",
                         "threads": threads, "status": "unavailable", "error": tflite_rt})

    _add_speedups(rows)

    overhead = [_wrapper_overhead(ctx, files["int8"], images, threads)
                for threads in cfg.threads]
    from trainer.fit.artifacts import read_keras_contract

    labels = list(read_keras_contract(model.model_keras).labels)
    return {"model": str(model.model_keras), "input_size": size, "labels": labels,
            "threads": list(cfg.threads),
            "images": {"n": cfg.latency_images, "size": size,
                       "source": f"test split of {model.run_dir}"},
            "iterations": asdict(it),
            "rows": rows, "wrapper_overhead": overhead, "tflite_runtime": tflite_rt,
            "tflite_runtime_python": side}


def _wrapper_overhead(ctx: SectionContext, int8: Path, images: Path,
                      threads: int) -> dict[str, Any]:
    """The edge wrapper (`MaskClassifier`) against a bare interpreter on the same int8 file."""
    it = ctx.cfg.iterations
    ctx.log(f"  wrapper overhead (int8), {threads} thread(s)")
    result = run_child({"kind": "wrapper_overhead", "model": str(int8), "threads": threads,
                        "runtime": "litert", "images": str(images),
                        "warmup": it.tflite_warmup, "runs": it.tflite_runs, "blocks": 10})
    if result.get("status") != "ok":
        return {"threads": threads, "status": result.get("status"), "error": result.get("error")}
    ctx.log(f"    wrapper {result['wrapper']['p50_ms']:.3f} ms vs bare "
            f"{result['bare']['p50_ms']:.3f} ms: {100 * result['overhead_p50']:+.1f}%")
    return {"threads": threads, "status": "ok",
            "wrapper_p50_ms": result["wrapper"]["p50_ms"], "bare_p50_ms": result["bare"]["p50_ms"],
            "wrapper": result["wrapper"], "bare": result["bare"],
            "overhead_p50": result["overhead_p50"], "overhead_mean": result["overhead_mean"]}


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    """Each measured row's speed-up against `model.predict` at the same thread count."""
    for row in rows:
        keras = next((r for r in rows if r["variant"] == "keras_predict"
                      and r["threads"] == row["threads"] and r.get("status") == "ok"), None)
        if row.get("status") == "ok" and keras:
            row["speedup"] = ratio(keras["p50_ms"], row["p50_ms"])


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's latency section from this section's result `r`."""
    imgs = r.get("images", {})
    lines = [f"{imgs.get('n', '?')} test images at {imgs.get('size', '?')} px cycled through, "
             f"one image per call; each row is a separate process that loads and runs only that "
             f"variant (warm-up first, then timed calls; tflite_runtime rows a tenth as many, as "
             f"they are about 10x slower). Speed-up is Keras `predict` p50 over the row's p50 "
             f"at the same thread count.", ""]
    rows = []
    for row in r.get("rows", []):
        if row.get("status") != "ok":
            status = "does not load" if row.get("does_not_load") else row.get("status")
            rows.append([row["label"], row.get("runtime", "-"), row["threads"],
                         f"**{status}**: {row.get('error', '')}", *["-"] * 8])
            continue
        rows.append([row["label"], row.get("runtime", "-"), row["threads"],
                     fmt(row.get("load_s", 0) * 1000, 0), fmt(row.get("first_call_ms"), 1),
                     fmt(row["p50_ms"]), fmt(row["p90_ms"]), fmt(row["p99_ms"]),
                     fmt(row["items_per_s"], 1), fmt(row.get("file_mb"), 2),
                     fmt(row.get("peak_rss_mib"), 0), fmt(row.get("speedup"), 1, "x")])
    lines += table(["variant", "runtime", "threads", "load ms", "first call ms", "p50 ms",
                    "p90 ms", "p99 ms", "img/s", "file MB", "peak RSS MiB", "speed-up"], rows)
    side = r.get("tflite_runtime_python")
    if side:
        lines += ["", f"The tflite_runtime rows ran under a side interpreter, "
                  f"`{short(side['python'])}` ({side['runtime']}, numpy {side['numpy']}, "
                  f"Python {side['python_version']}): tflite_runtime 2.14 needs numpy<2 "
                  "(`--tflite-runtime-python PATH` picks another, `none` skips them)."]
    over = r.get("wrapper_overhead", [])
    if over:
        lines += ["", "Wrapper overhead: `MaskClassifier.predict` (uint8 image in, quantize, "
                  "invoke, dequantize, probabilities out) against a bare `set_tensor` / `invoke` "
                  "/ `get_tensor` with a pre-quantized input on the wrapper's own interpreter, "
                  "timed in alternating blocks in one process.", ""]
        lines += table(["threads", "wrapper p50 ms", "bare p50 ms", "overhead (p50)",
                        "overhead (mean)"],
                       [[o["threads"], fmt(o.get("wrapper_p50_ms"), 3),
                         fmt(o.get("bare_p50_ms"), 3), pct(o.get("overhead_p50")),
                         pct(o.get("overhead_mean"))] for o in over])
    return lines
