"""Section `sizes`: the 2-class model trained at each input size, accuracy against int8 latency.

Each size is a full `trainer.fit.run` run (cached features, trainer defaults otherwise) converted to
int8 by the converters; its int8 file is scored on that run's test split and timed in its own
process at every thread count. The recommended default for a Raspberry Pi-class CPU is the
smallest size within `TOLERANCE` of the best int8 accuracy: on a CPU with a fraction of this one's
int8 throughput, latency scales with multiply-accumulates (about the square of the input side),
while accuracy saturates.
"""

from __future__ import annotations

from typing import Any

from benchmarks.context import SectionContext, run_child
from benchmarks.machine import CpuInfo, nominal_peak, read_cpuinfo
from benchmarks.stages.macs import count_macs
from benchmarks.tables import fmt, image, pct, table

NAME = "sizes"
#: Accuracy (fraction) a smaller input may give up against the best and still be recommended.
TOLERANCE = 0.005
#: A Raspberry Pi 4's CPU: 4 x Cortex-A72 at 1.5 GHz, NEON without the int8 dot product.
PI_CPU = CpuInfo(model="Raspberry Pi 4 (Cortex-A72)", vendor="ARM", family=None, logical_cpus=4,
                 mhz=1500.0, flags=frozenset({"asimd"}))


def core_peaks() -> dict[str, Any]:
    """The nominal int8 peaks of one core of this CPU and of one Pi 4 core, with what they
    assume: the ratio every Pi 4 estimate here scales a measured time by."""
    here_cpu = read_cpuinfo()
    here, pi = nominal_peak(here_cpu, cores=1), nominal_peak(PI_CPU, cores=1)
    return {"pi_core_int8_gmacs": pi["int8_gmacs"], "here_core_int8_gmacs": here["int8_gmacs"],
            "pi_cpu": f"{PI_CPU.model} at {PI_CPU.mhz:.0f} MHz, {pi['int8_assumption']}",
            "here_cpu": f"{here_cpu.model} at {here['ghz']:.2f} GHz, "
                        f"{here['int8_assumption']}"}


def recommend(rows: list[dict[str, Any]], here_core_gmacs: float,
              pi_core_gmacs: float) -> dict[str, Any] | None:
    """The smallest size within TOLERANCE of the best int8 accuracy, with the reasoning."""
    scored = [r for r in rows if r.get("int8_accuracy") is not None]
    if not scored:
        return None
    best = max(scored, key=lambda r: r["int8_accuracy"])
    pick = min((r for r in scored if r["int8_accuracy"] >= best["int8_accuracy"] - TOLERANCE),
               key=lambda r: r["size"])
    p50 = pick.get("int8_p50_ms", {}).get("1")
    scale = here_core_gmacs / pi_core_gmacs if pi_core_gmacs else None
    pi_ms = p50 * scale if p50 and scale else None
    best_p50 = best.get("int8_p50_ms", {}).get("1")
    if pick is best:
        reason = (f"It has the best int8 test accuracy of the sweep "
                  f"({pick['int8_accuracy']:.2%}) and no smaller input comes within "
                  f"{100 * TOLERANCE:.1f} point of it")
        if p50:
            reason += f" ({p50:.2f} ms per face here, 1 thread)"
    else:
        reason = (f"Its int8 test accuracy ({pick['int8_accuracy']:.2%}) is within "
                  f"{100 * TOLERANCE:.1f} point of the best ({best['int8_accuracy']:.2%} at "
                  f"{best['size']} px) for {pick['macs'] / best['macs']:.0%} of the "
                  f"multiply-accumulates")
        if p50 and best_p50:
            reason += f" ({p50:.2f} ms against {best_p50:.2f} ms per face here, 1 thread)"
    reason += "."
    if pi_ms:
        reason += (f" A Pi 4 core's nominal int8 peak is {pi_core_gmacs:.0f} GMAC/s against "
                   f"{here_core_gmacs:.0f} here; at the same share of peak that is about "
                   f"{pi_ms:.0f} ms per face on one Pi core (an extrapolation, not a "
                   "measurement), which leaves room for the detector and several faces per "
                   "frame.")
    return {"size": pick["size"], "reason": reason, "best_size": best["size"],
            "tolerance": TOLERANCE, "pi_ms_per_face_estimate": pi_ms,
            "pi_core_int8_gmacs": pi_core_gmacs, "here_core_int8_gmacs": here_core_gmacs}


def run(ctx: SectionContext) -> dict[str, Any]:
    from converters.check import tflite_probabilities
    from trainer.fit.artifacts import load_keras_model

    cfg, it = ctx.cfg, ctx.cfg.iterations
    rows = []
    for size in cfg.sweep_sizes:
        model = ctx.store.trained(size)
        int8 = ctx.store.variant(size, "int8")
        images, labels = ctx.store.test_split(size)
        probs, _ = tflite_probabilities(int8, images, threads=max(cfg.threads))
        keras_model, _ = load_keras_model(model.model_keras)
        row: dict[str, Any] = {
            "size": size, "run_dir": str(model.run_dir), "train_s": model.wall_s,
            "keras_accuracy": model.test_accuracy,
            "int8_accuracy": float((probs.argmax(1) == labels).mean()), "n_test": len(labels),
            "macs": count_macs(keras_model)["macs"], "int8_mb": int8.stat().st_size / 1e6,
            "int8_p50_ms": {}, "int8_p99_ms": {}}
        del keras_model
        sample = ctx.store.test_images_file(size, cfg.latency_images)
        for threads in cfg.threads:
            result = run_child({"kind": "tflite", "model": str(int8), "threads": threads,
                                "runtime": "litert", "images": str(sample),
                                "warmup": it.tflite_warmup, "runs": it.tflite_runs})
            if result.get("status") == "ok":
                row["int8_p50_ms"][str(threads)] = result["p50_ms"]
                row["int8_p99_ms"][str(threads)] = result["p99_ms"]
        p50 = row["int8_p50_ms"].get("1")
        row["int8_img_per_s_1t"] = 1000.0 / p50 if p50 else None
        ctx.log(f"  {size} px: Keras {row['keras_accuracy']:.2%}, int8 {row['int8_accuracy']:.2%}"
                f", int8 p50 {row['int8_p50_ms']} ms, trained in {model.wall_s:.0f} s")
        rows.append(row)
    peaks = core_peaks()
    return {"rows": rows, "recommended": recommend(rows, peaks["here_core_int8_gmacs"],
                                                   peaks["pi_core_int8_gmacs"]),
            "pi_cpu_assumption": peaks["pi_cpu"]}


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's input size section from this section's result `r`."""
    lines = ["The 2-class model trained by `trainer.fit.run` (cached features, defaults otherwise) "
             "at each input size, converted to int8; accuracy on each run's own test split, "
             "latency of the int8 file under LiteRT (own process, batch of one).", ""]
    lines += table(["input px", "MMACs", "Keras test acc", "int8 test acc", "int8 p50 ms 1t",
                    "int8 p50 ms 2t", "int8 img/s 1t", "int8 MB", "training s"],
                   [[row["size"], fmt(row.get("macs", 0) / 1e6, 0),
                     pct(row.get("keras_accuracy"), 2), pct(row.get("int8_accuracy"), 2),
                     fmt(row.get("int8_p50_ms", {}).get("1")),
                     fmt(row.get("int8_p50_ms", {}).get("2")),
                     fmt(row.get("int8_img_per_s_1t"), 0), fmt(row.get("int8_mb"), 2),
                     fmt(row.get("train_s"), 0)] for row in r.get("rows", [])])
    rec = r.get("recommended")
    if rec:
        lines += ["", f"**Recommended default for a Raspberry Pi-class CPU: {rec['size']} px.** "
                  f"{rec['reason']}"]
    if ctx.get("plots", {}).get("latency_accuracy"):
        lines += ["", image(ctx["plots"]["latency_accuracy"], ctx["report"],
                            "latency against accuracy")]
    return lines
