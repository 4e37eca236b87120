"""`python -m benchmarks.run`: run every benchmark section, write JSON, plots and RESULTS.md.

    python -m benchmarks.run            # full run (~25 min here): benchmarks/results/, RESULTS.md
    python -m benchmarks.run --quick    # CI smoke run (~4 min) under benchmarks/work/quick/
    python -m benchmarks.run --only latency --only roofline --reuse-models

Sections run one after another, never overlapping, in the order of `SECTIONS`; each writes
`<out>/<section>.json` (atomically) with the run id, so the report can say which run every number
came from. The report and plots are rendered from the JSON files at the end.
"""

from __future__ import annotations

# Before anything heavy: without the train extra, one line naming it and exit 2.
import benchmarks.needs_train  # noqa: F401  # isort: skip

import json
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmarks.arm64 import render_arm64
from benchmarks.classifiers.report import render_classifiers
from benchmarks.config import FULL_OUT, FULL_REPORT, BenchConfig, make_config
from benchmarks.context import SectionContext
from benchmarks.dataloop.report import render_dataloop
from benchmarks.machine import machine_info
from benchmarks.needs_train import PROG
from benchmarks.plots import make_plots
from benchmarks.report import SECTION_MODULES, render_report
from benchmarks.stages.threeclass_report import render_student_cv, render_threeclass
from benchmarks.store import ModelStore
from benchmarks.targets import check_targets
from benchmarks.tracking.report import render_tracking, with_before
from edge.core.console import EXIT_USAGE, cli_app, quiet_tensorflow_logs
from edge.core.console import fail as console_fail
from edge.core.fileio import write_text_atomic

quiet_tensorflow_logs()  # before TensorFlow loads (the sections import it inside functions)

#: Every section in the order it runs (benchmarks/report.py's `SECTION_MODULES`).
SECTIONS = {m.NAME: m for m in SECTION_MODULES}

app = cli_app(no_args_is_help=False,
              help="Measure every maskedge variant on this machine and write "
                   "benchmarks/RESULTS.md.")


class Logger:
    """Progress lines on stderr, stamped with the time since the run started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.section = ""

    def __call__(self, message: str) -> None:
        stamp = time.perf_counter() - self.start
        prefix = f"[{stamp:7.1f}s]" + (f" {self.section}:" if self.section else "")
        print(f"{prefix} {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """`benchmarks: error: MESSAGE` on stderr (edge/core/console.py); the Exit to raise."""
    return console_fail(PROG, message, code)


def check_inputs(cfg: BenchConfig) -> None:
    for what, path in (("face-mask-2c data", cfg.data_2c), ("face-mask-voc data", cfg.data_voc),
                       ("MobileNetV2 weights", cfg.backbone), ("detector models", cfg.detectors)):
        if not path.exists():
            raise fail(f"{what} not found at {path} (pass --shared DIR or set MASKEDGE_SHARED)")


def load_section(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def run_sections(cfg: BenchConfig, names: list[str], run: dict[str, Any], log: Logger) -> bool:
    """Run the named sections in order; True when all succeeded. Each section's file names the
    CPU it ran on, so a report mixing runs (`--only`) says which numbers came from which CPU."""
    store = ModelStore(cfg, log)
    cpu = machine_info().get("cpu", {})
    ctx = SectionContext(cfg=cfg, store=store, log=log, started=log.start)
    for name in SECTIONS:  # earlier results a section may build on (e.g. roofline on latency)
        env = load_section(cfg.out, name)
        if env and env.get("status") == "ok" and name not in names:
            ctx.results[name] = env["result"]
    ok = True
    for name in names:
        log.section = name
        log("start")
        started = datetime.now(UTC).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        env: dict[str, Any] = {"section": name, "run_id": run["run_id"], "quick": cfg.quick,
                               "command": run["command"], "started": started, "cpu": cpu}
        try:
            result = SECTIONS[name].run(ctx)
        except Exception as exc:  # one failed section must not lose the others
            ok = False
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            env.update(status="error", error=f"{type(exc).__name__}: {first[:300]}",
                       traceback=traceback.format_exc())
            log(f"FAILED: {env['error']}")
        else:
            env.update(status="ok", result=result)
            ctx.results[name] = result
        env["seconds"] = round(time.perf_counter() - t0, 1)
        write_json(cfg.out / f"{name}.json", env)
        log(f"done in {env['seconds']:.0f} s")
    log.section = ""
    return ok


def _tracking(data: dict[str, Any], out: Path) -> list[str]:
    before = out / "tracking_before.json"  # the tracker before, for comparison
    if before.is_file():
        data = with_before(data, json.loads(before.read_text()))
    return render_tracking(data)


# The sections written by their own commands (file in benchmarks/results/, its renderer), in
# RESULTS.md's order: trainer.distill.compare writes distill_cv.json, benchmarks.X writes X.json.
OWN_COMMAND_SECTIONS: tuple[tuple[str, Callable[[dict[str, Any], Path], list[str]]], ...] = (
    ("threeclass", lambda data, out: render_threeclass(data)),
    ("distill_cv", lambda data, out: render_student_cv(data)),
    ("classifiers", lambda data, out: render_classifiers(data)),
    ("tracking", _tracking),
    ("arm64", lambda data, out: render_arm64(data)),
    ("dataloop", lambda data, out: render_dataloop(data)),
)


def render(cfg: BenchConfig, run: dict[str, Any]) -> list[Any]:
    """Plots and RESULTS.md from every section file in `cfg.out`; the target checks."""
    sections = {n: env for n in SECTIONS if (env := load_section(cfg.out, n))}
    results = {n: env.get("result", {}) for n, env in sections.items()
               if env.get("status") == "ok"}
    plots = make_plots(results, cfg.out)
    machine = json.loads((cfg.out / "machine.json").read_text())
    text = render_report(sections, machine, run, cfg.report, plots)
    for name, renderer in OWN_COMMAND_SECTIONS:
        if (cfg.out / f"{name}.json").is_file():
            data = json.loads((cfg.out / f"{name}.json").read_text())
            text += "\n" + "\n".join(renderer(data, cfg.out)) + "\n"
    write_text_atomic(cfg.report, text)
    return check_targets(results)


@app.command()
def main(
    quick: Annotated[bool, typer.Option(
        "--quick", help="CI smoke run: small data, few iterations; writes under "
        "benchmarks/work/quick/ (never the committed report).")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the JSON results and plots (default: benchmarks/results; "
        "--quick: benchmarks/work/quick).")] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Where to write RESULTS.md (default: benchmarks/RESULTS.md; with "
        "--quick or --out: <out>/RESULTS.md).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help=f"Run just this section (repeatable): {', '.join(SECTIONS)}.")] = None,
    shared: Annotated[Path | None, typer.Option(
        "--shared", help="The shared data folder (default: $MASKEDGE_SHARED, else ../shared "
        "beside the checkout).")] = None,
    reference_budget: Annotated[float | None, typer.Option(
        "--reference-budget", min=1.0, help="Seconds the reference training recipe may run "
        "before it is stopped and the speed-up reported as a lower bound (default: what is left "
        "of the 29.5-minute run budget, at least 120 s; quick: 60 s; 20 epochs at most).")
    ] = None,
    render_only: Annotated[bool, typer.Option(
        "--render-only", help="Measure nothing: re-render RESULTS.md and the plots from the "
        "JSON files in --out.")] = False,
    reuse_models: Annotated[bool, typer.Option(
        "--reuse-models", help="Reuse the trained and converted models of an earlier run in "
        "<out>/work instead of rebuilding them (for re-running single sections).")] = False,
    tflite_runtime_python: Annotated[str | None, typer.Option(
        "--tflite-runtime-python", metavar="PATH", help="Python with tflite_runtime (and "
        "numpy<2) for the latency section's tflite_runtime rows, or 'none' to skip them "
        "(default: benchmarks/work/tflite-runtime-venv; a full run creates it when missing, "
        "--quick only uses it if it exists).")] = None,
) -> None:
    """Run the benchmarks and write one JSON per section, PNG plots and RESULTS.md."""
    names = list(only or SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise fail(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    names = [n for n in SECTIONS if n in names]  # always in dependency order
    cfg = make_config(quick, out, report, shared, reuse_models, reference_budget,
                      tflite_runtime_python)
    if quick and (cfg.out.resolve() == FULL_OUT.resolve()
                  or cfg.report.resolve() == FULL_REPORT.resolve()):
        raise fail("--quick must not write over the full report; choose another --out/--report")
    if render_only:
        try:
            run = json.loads((cfg.out / "run.json").read_text())
        except (OSError, ValueError):
            raise fail(f"no run.json in {cfg.out}: nothing to render (run the benchmarks "
                       "first)") from None
        checks = render(cfg, run)
        print(f"report: {cfg.report}", file=sys.stderr)
        for check in checks:
            print(f"{check.status:<18} {check.name}: {check.margin}")
        return
    check_inputs(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.work.mkdir(parents=True, exist_ok=True)
    argv = ["python", "-m", "benchmarks.run", *sys.argv[1:]]
    run = {"run_id": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"), "quick": quick,
           "command": shlex.join(argv), "sections": names, "config": cfg.to_dict(),
           "started": datetime.now(UTC).isoformat(timespec="seconds")}
    log = Logger()
    log(f"run {run['run_id']}: {', '.join(names)} -> {cfg.out} ({'quick' if quick else 'full'})")
    write_json(cfg.out / "machine.json", machine_info())
    ok = run_sections(cfg, names, run, log)
    run["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    run["seconds"] = round(time.perf_counter() - log.start, 1)
    write_json(cfg.out / "run.json", run)
    checks = render(cfg, run)
    log(f"report: {cfg.report} ({run['seconds']:.0f} s in all)")
    for check in checks:
        print(f"{check.status:<18} {check.name}: {check.margin}")
    if not ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
