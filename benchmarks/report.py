"""Render `RESULTS.md` from the section result files: machine, versions, date, targets, sections.

Pure functions from dicts to Markdown (no measurement, no TensorFlow), so the report can be
re-rendered from the JSON files alone and tested without running anything. Each section's body
is its stage module's `render` (benchmarks/stages/, benchmarks/reliability/integrations.py);
this module puts them together under the run's header, machine and targets tables. Cells and
tables come from benchmarks/tables.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.reliability import integrations
from benchmarks.stages import (
    accuracy,
    detection,
    endtoend,
    latency,
    roofline,
    scaling,
    sizes,
    training,
)
from benchmarks.tables import fmt, table
from benchmarks.targets import check_targets

#: Every section in the order it runs and appears (sizes first: it trains the models the others
#: reuse); benchmarks/run.py runs them in this order.
SECTION_MODULES = (sizes, latency, accuracy, roofline, endtoend, detection, training, integrations,
                   scaling)
SECTION_ORDER = tuple(m.NAME for m in SECTION_MODULES)
SECTION_TITLES = {
    "latency": "Classifier latency per image (batch of one)",
    "accuracy": "Accuracy on the trainer's leak-free test split",
    "sizes": "Input size sweep",
    "endtoend": "End to end on face-mask-voc",
    "detector": "Detector: faces found per class and size, and the cost",
    "training": "Training: cached features vs the reference recipe",
    "scaling": "Training at scale: memory and time against data size, strategies",
    "roofline": "Roofline: distance to the CPU's nominal peak",
    "integrations": "Integrations: what tracking, MQTT, snapshots and the dashboard cost",
}


#: Each section's body: its stage module's `render(result, ctx)` (ctx: the report's path, plots).
RENDERERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[str]]] = {
    m.NAME: m.render for m in SECTION_MODULES}


# ----------------------------------------------------------------------------- whole report


def render_machine(machine: dict[str, Any], latency: dict[str, Any] | None = None) -> list[str]:
    cpu, versions = machine.get("cpu", {}), machine.get("versions", {})
    rows = [["CPU", f"{cpu.get('model')} ({cpu.get('vendor')}, family {cpu.get('family')})"],
            ["logical CPUs", fmt(cpu.get("logical_cpus"))],
            ["clock (reported)", f"{fmt(cpu.get('mhz'), 0)} MHz"],
            ["SIMD flags", ", ".join(cpu.get("flags", [])) or "-"],
            ["platform", machine.get("platform", "-")]]
    side = (latency or {}).get("tflite_runtime_python")
    rows += [[f"{name} (this venv)" if name == "tflite-runtime" and side else name, version]
             for name, version in versions.items()]
    if isinstance(side, dict):
        rows.append(["tflite_runtime rows (side venv)",
                     f"{side.get('runtime')}, numpy {side.get('numpy')}, Python "
                     f"{side.get('python_version')}"])
    return table(["", ""], rows)


def render_report(sections: dict[str, dict[str, Any]], machine: dict[str, Any],
                  run: dict[str, Any], report_path: Path,
                  plots: dict[str, Path] | None = None) -> str:
    """The whole RESULTS.md. `sections` maps a section name to its result file's content."""
    results = {name: env.get("result", {}) for name, env in sections.items()}
    ctx = {"report": report_path, "plots": plots or {}}
    mode = ("quick mode: a CI smoke run on small data with few iterations, not for quoting"
            if run.get("quick") else "full mode")
    lines = ["# maskedge benchmarks", "",
             f"Generated {run.get('finished', run.get('started', '?'))} by "
             f"`{run.get('command', '?')}` ({mode}; run `{run.get('run_id', '?')}`). "
             "Every number below was measured in that run on the machine described here, one "
             "section at a time; ratios compare measurements of the same run, so they hold where "
             "absolute times drift. Regenerate everything with "
             "`python -m benchmarks.run` (under 30 minutes on this machine; `--quick` for a "
             "smoke run).", "", "## Machine and versions", ""]
    lines += render_machine(machine, results.get("latency"))
    lines += ["", "## Targets", ""]
    checks = check_targets(results)
    lines += table(["target", "measured", "required", "status", "by how much"],
                   [[c.name, _target_value(c), _target_required(c), f"**{c.status}**", c.margin]
                    for c in checks])
    lines += ["", "## Sections", ""]
    lines += table(["section", "run", "measured", "took", "CPU"],
                   [[SECTION_TITLES[name], f"`{sections[name].get('run_id', '?')}`",
                     sections[name].get("started", "?"),
                     f"{fmt(sections[name].get('seconds'), 0)} s",
                     _cpu(sections[name].get("cpu"), machine.get("cpu", {}))]
                    for name in SECTION_ORDER if name in sections])
    stale = [name for name in SECTION_ORDER
             if name in sections and sections[name].get("run_id") != run.get("run_id")]
    if stale:
        lines += ["", f"**Note:** {', '.join(stale)} come from an earlier run (see the run "
                  "column); rerun without `--only` for a report from one run."]
    for name in SECTION_ORDER:
        lines += ["", f"## {SECTION_TITLES[name]}", ""]
        if name not in sections:
            lines.append(f"_Not run: `python -m benchmarks.run --only {name}`._")
            continue
        env = sections[name]
        if env.get("status", "ok") != "ok":
            lines.append(f"**Failed:** {env.get('error', 'unknown error')}")
            continue
        lines += RENDERERS[name](env.get("result", {}), ctx)
        for note in env.get("result", {}).get("notes", []):
            lines += ["", f"_Note: {note}_"]
    return "\n".join(lines) + "\n"


def _cpu(cpu: dict[str, Any] | None, reported: dict[str, Any]) -> str:
    """The CPU a section ran on, when its file records it (older files do not: the machine
    table above is then the only record, and it describes the latest run)."""
    if not cpu:
        return "not recorded"
    same = "" if cpu == reported else " (not the machine above)"
    vnni = ", AVX-512 VNNI" if "avx512_vnni" in cpu.get("flags", []) else ", no AVX-512"
    return (f"{cpu.get('model')} family {cpu.get('family')}, {fmt(cpu.get('mhz'), 0)} MHz"
            f"{vnni}{same}")


def _target_value(check: Any) -> str:
    if check.measured is None:
        return "-"
    prefix = ">= " if check.lower_bound else ""
    if check.unit == "%":
        return f"{prefix}{check.measured:.1f}%"
    if check.unit == "x":
        return f"{prefix}{check.measured:.1f}x"
    return f"{prefix}{check.measured:.1f} {check.unit}"


def _target_required(check: Any) -> str:
    sign = ">=" if check.higher_is_better else "<"
    unit = "%" if check.unit == "%" else ("x" if check.unit == "x" else f" {check.unit}")
    return f"{sign} {check.target:g}{unit}"


