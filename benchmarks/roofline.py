"""Section `roofline`: MACs per inference, the rate each variant achieves, the CPU's nominal peak.

MACs are counted from the Keras model (`benchmarks.macs`); the achieved rate is MACs / p50 latency
from this run's `latency` section; the nominal peak is cores x clock x SIMD MACs per cycle
(`benchmarks.machine`), float32 for the float variants and int8 for the integer ones, over as many
cores as the row used threads.
"""

from __future__ import annotations

from typing import Any

from benchmarks.context import SectionContext
from benchmarks.machine import nominal_peak, read_cpuinfo
from benchmarks.macs import count_macs

NAME = "roofline"

#: Which nominal peak applies to a variant's arithmetic.
PRECISION = {"keras_predict": "fp32", "keras_function": "fp32", "float32": "fp32",
             "float16": "fp32",  # float16 weights are widened to float32 for the math on CPU
             "dynamic": "int8",  # int8 weights, activations quantized on the fly
             "int8": "int8"}


def roofline_rows(latency_rows: list[dict[str, Any]], macs: int,
                  peaks: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per measured variant and thread count: achieved GMAC/s against the peak."""
    rows = []
    for row in latency_rows:
        precision = PRECISION.get(row.get("variant", ""))
        if row.get("status") != "ok" or precision is None:
            continue
        peak = peaks[row["threads"]][f"{precision}_gmacs"]
        achieved = macs / (row["p50_ms"] / 1000.0) / 1e9
        rows.append({"variant": row["variant"], "label": row["label"],
                     "threads": row["threads"], "precision": precision,
                     "p50_ms": row["p50_ms"], "achieved_gmacs": achieved,
                     "peak_gmacs": peak, "fraction_of_peak": achieved / peak if peak else None})
    return rows


def run(ctx: SectionContext) -> dict[str, Any]:
    from edge.contract import ModelContract
    from trainer.model import build_classifier

    latency = ctx.results.get("latency")
    if not latency:
        raise RuntimeError("the roofline needs the latency section's results (run it first)")
    # MACs depend on the architecture only: build it without weights at the measured size.
    contract = ModelContract.for_labels(latency.get("labels", ["a", "b"]), latency["input_size"])
    macs = count_macs(build_classifier(contract, weights="none").model)
    cpu = read_cpuinfo()
    peaks = {t: nominal_peak(cpu, cores=t) for t in {r["threads"] for r in latency["rows"]}}
    rows = roofline_rows(latency["rows"], macs["macs"], peaks)
    for row in rows:
        ctx.log(f"  {row['label']}, {row['threads']}t: {row['achieved_gmacs']:.1f} GMAC/s of "
                f"{row['peak_gmacs']:.0f} ({100 * (row['fraction_of_peak'] or 0):.1f}%)")
    return {"model": latency["model"], "input_size": latency["input_size"],
            "macs": macs["macs"], "macs_by_layer_type": macs["by_layer_type"],
            "peak": nominal_peak(cpu, cores=1), "rows": rows}
