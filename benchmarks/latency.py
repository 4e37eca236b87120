"""Section `latency`: per-image latency of every classifier variant, load time, size, memory.

Variants: Keras `predict`, Keras inside a compiled `tf.function`, and the float32, float16,
dynamic-range and int8 TFLite files under LiteRT (through the project's `MaskClassifier`), and under
`tflite_runtime` where it imports; each at every thread count of the profile, each in its own
process (`benchmarks.worker`). Plus the wrapper overhead: `MaskClassifier.predict` against a bare
interpreter call on the same int8 file.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.context import SectionContext, run_child
from benchmarks.stats import ratio
from benchmarks.store import TFLITE_VARIANTS

NAME = "latency"

LABELS = {
    "keras_predict": "Keras predict",
    "keras_function": "Keras tf.function",
    "float32": "TFLite float32",
    "float16": "TFLite float16",
    "dynamic": "TFLite dynamic-range",
    "int8": "TFLite int8",
}


def tflite_runtime_status() -> str | None:
    """None when tflite_runtime imports, else why not (one line)."""
    try:
        import tflite_runtime.interpreter  # noqa: F401
    except Exception as exc:  # ImportError, or a build that needs another numpy
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"not installed here ({type(exc).__name__}: {first[:120]})"
    return None


def run(ctx: SectionContext) -> dict[str, Any]:
    cfg, it = ctx.cfg, ctx.cfg.iterations
    size = cfg.main_size
    model = ctx.store.trained(size)
    files = ctx.store.variants(size, TFLITE_VARIANTS)
    images = ctx.store.test_images_file(size, cfg.latency_images)
    tflite_rt = tflite_runtime_status()
    rows: list[dict[str, Any]] = []

    def measure(variant: str, kind: str, path: Path, threads: int, runtime: str = "litert",
                warmup: int = 0, runs: int = 0) -> dict[str, Any]:
        spec = {"kind": kind, "model": str(path), "threads": threads, "runtime": runtime,
                "images": str(images), "warmup": warmup, "runs": runs}
        label = LABELS[variant] + (" (tflite_runtime)" if runtime == "tflite_runtime" else "")
        ctx.log(f"  {label}, {threads} thread(s)")
        result = run_child(spec)
        row = {"variant": variant if runtime == "litert" else f"{variant}@tflite_runtime",
               "label": label, "threads": threads, "file": str(path),
               "file_mb": path.stat().st_size / 1e6, **result}
        if result.get("status") == "ok":
            ctx.log(f"    p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                    f"{result['items_per_s']:.0f} img/s, peak RSS {result['peak_rss_mib']:.0f} MiB")
        else:
            ctx.log(f"    {result.get('status')}: {result.get('error')}")
        return row

    for threads in cfg.threads:
        rows.append(measure("keras_predict", "keras_predict", model.model_keras, threads,
                            warmup=it.keras_predict_warmup, runs=it.keras_predict_runs))
        rows.append(measure("keras_function", "keras_function", model.model_keras, threads,
                            warmup=it.keras_function_warmup, runs=it.keras_function_runs))
        for tag in TFLITE_VARIANTS:
            rows.append(measure(tag, "tflite", files[tag], threads, warmup=it.tflite_warmup,
                                runs=it.tflite_runs))
        if tflite_rt is None:
            for tag in TFLITE_VARIANTS:
                rows.append(measure(tag, "tflite", files[tag], threads, runtime="tflite_runtime",
                                    warmup=it.tflite_warmup, runs=it.tflite_runs))
        else:
            rows.append({"variant": "all@tflite_runtime", "label": "TFLite (tflite_runtime)",
                         "threads": threads, "status": "unavailable", "error": tflite_rt})

    for row in rows:
        keras = next((r for r in rows if r["variant"] == "keras_predict"
                      and r["threads"] == row["threads"] and r.get("status") == "ok"), None)
        if row.get("status") == "ok" and keras:
            row["speedup"] = ratio(keras["p50_ms"], row["p50_ms"])

    overhead = []
    for threads in cfg.threads:
        ctx.log(f"  wrapper overhead (int8), {threads} thread(s)")
        result = run_child({"kind": "wrapper_overhead", "model": str(files["int8"]),
                            "threads": threads, "runtime": "litert", "images": str(images),
                            "warmup": it.tflite_warmup, "runs": it.tflite_runs, "blocks": 10})
        if result.get("status") != "ok":
            overhead.append({"threads": threads, "status": result.get("status"),
                             "error": result.get("error")})
            continue
        overhead.append({"threads": threads, "status": "ok",
                         "wrapper_p50_ms": result["wrapper"]["p50_ms"],
                         "bare_p50_ms": result["bare"]["p50_ms"],
                         "wrapper": result["wrapper"], "bare": result["bare"],
                         "overhead_p50": result["overhead_p50"],
                         "overhead_mean": result["overhead_mean"]})
        ctx.log(f"    wrapper {result['wrapper']['p50_ms']:.3f} ms vs bare "
                f"{result['bare']['p50_ms']:.3f} ms: {100 * result['overhead_p50']:+.1f}%")
    from trainer.artifacts import read_keras_contract

    labels = list(read_keras_contract(model.model_keras).labels)
    return {"model": str(model.model_keras), "input_size": size, "labels": labels,
            "threads": list(cfg.threads),
            "images": {"n": cfg.latency_images, "size": size,
                       "source": f"test split of {model.run_dir}"},
            "iterations": asdict(it),
            "rows": rows, "wrapper_overhead": overhead, "tflite_runtime": tflite_rt or "available"}
