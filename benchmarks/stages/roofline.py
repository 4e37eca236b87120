"""Section `roofline`: MACs per inference, the rate each variant achieves, the CPU's nominal peak.

MACs are counted from the Keras model (`benchmarks.stages.macs`); the achieved rate is MACs / p50
latency from this run's `latency` section; the nominal peak is cores x clock x SIMD MACs per cycle
(`benchmarks.machine`), float32 for the float variants and int8 for the integer ones, over as many
cores as the row used threads.
"""

from __future__ import annotations

from typing import Any

from benchmarks.context import SectionContext
from benchmarks.machine import nominal_peak, read_cpuinfo
from benchmarks.stages.macs import count_macs
from benchmarks.tables import fmt, pct, table

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
    from edge.core.contract import ModelContract
    from trainer.fit.model import build_classifier

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


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's roofline section from this section's result `r`."""
    peak = r.get("peak", {})
    lines = [f"MACs counted from the Keras model's Conv2D / DepthwiseConv2D / Dense layers "
             f"({fmt(r.get('macs', 0) / 1e6, 1)} M per inference at {r.get('input_size')} px). "
             f"Nominal peak per core = clock x MACs/cycle: {fmt(peak.get('ghz'), 2)} GHz; "
             f"float32 {peak.get('fp32')} MACs/cycle ({peak.get('fp32_assumption')}); int8 "
             f"{peak.get('int8')} MACs/cycle ({peak.get('int8_assumption')}); "
             f"{peak.get('frequency_assumption', '')}.", ""]
    lines += table(["variant", "threads", "p50 ms", "achieved GMAC/s", "nominal peak GMAC/s",
                    "share of peak"],
                   [[row["label"], row["threads"], fmt(row.get("p50_ms")),
                     fmt(row.get("achieved_gmacs"), 1), fmt(row.get("peak_gmacs"), 0),
                     pct(row.get("fraction_of_peak"))] for row in r.get("rows", [])])
    over = [row for row in r.get("rows", []) if (row.get("fraction_of_peak") or 0) > 1.0]
    if over and peak.get("ghz"):
        top = max(over, key=lambda row: row["fraction_of_peak"])
        lines += ["", f"Rows above 100 % ran faster than the nominal peak allows at the reported "
                  f"{fmt(peak.get('ghz'), 2)} GHz: the cores boost above that clock. "
                  f"{top['label']} at {top['threads']} thread(s) implies at least "
                  f"{fmt(peak['ghz'] * top['fraction_of_peak'], 2)} GHz; read the share of peak "
                  "as relative to the reported clock."]
    return lines
