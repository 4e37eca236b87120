"""`python -m benchmarks.dataloop [--quick] [--json]`: run one round, write dataloop.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.config import (
    FULL_OUT,
    QUICK_OUT,
    REPO,
    JsonOption,
    SharedOption,
    default_shared,
    show_result,
    write_result,
)
from benchmarks.dataloop.report import render_dataloop
from benchmarks.dataloop.round import run_round
from benchmarks.dataloop.steps import SHIPPED, Plan, StepError, quick_plan
from benchmarks.tables import short
from edge.collect.manifest import ManifestError
from edge.core.console import EXIT_FAILED, cli_app, fail, say, user_errors
from edge.core.voc import DatasetError

PROG = "python -m benchmarks.dataloop"
RESULT_NAME = "dataloop.json"
FULL_WORK = REPO / "benchmarks" / "work" / "dataloop"

app = cli_app(no_args_is_help=False,
              help="One round of the data loop (collect -> label -> retrain -> convert) on "
                   "face-mask-ilc-dev, scored once on its held-out photos; writes "
                   f"benchmarks/results/{RESULT_NAME}.")


def make_plan(quick: bool, work: Path | None, out: Path | None, shared: Path | None) -> Plan:
    """The full or quick plan, its folders and inputs checked (ValueError: one line)."""
    shared = shared or default_shared()
    for what, path in (("face-mask-2c", shared / "datasets" / "face-mask-2c"),
                       ("face-mask-ilc-dev", shared / "datasets" / "face-mask-ilc-dev"),
                       ("MobileNetV2 weights", shared / "weights"
                        / "mobilenet_v2_1.0_no_top.weights.h5"),
                       ("the shipped 2-class model", SHIPPED)):
        if not path.exists():
            raise ValueError(f"{what} not found at {path} (pass --shared or set "
                             "MASKEDGE_SHARED)")
    if quick:
        out = out or QUICK_OUT
        if out.resolve() == FULL_OUT.resolve():
            raise ValueError("--quick must not write over the full results; choose another "
                             "--out")
        return quick_plan(work or QUICK_OUT / "dataloop", out, shared)
    return Plan(False, work or FULL_WORK, out or FULL_OUT, shared)


@app.command()
def main(
    quick: Annotated[bool, typer.Option(
        "--quick", help="Smoke run for tests: 10 photos, 10 faces kept, 1 epoch on 30 images a "
        "class, 4 held-out photos; writes under benchmarks/work/quick/.")] = False,
    json_out: JsonOption = False,
    out: Annotated[Path | None, typer.Option(
        help=f"Folder for {RESULT_NAME} (default: {short(FULL_OUT)}; --quick: "
        f"{short(QUICK_OUT)}).", show_default=False)] = None,
    work: Annotated[Path | None, typer.Option(
        help=f"Folder for the video, the collected faces and the runs (default: "
        f"{short(FULL_WORK)}; --quick: {short(QUICK_OUT)}/dataloop). A rerun with the same "
        "folder skips the steps already done.", show_default=False)] = None,
    shared: SharedOption = None,
) -> None:
    """Collect on a video of held-in photos with the shipped 2-class model, label each kept face
    from its annotation, retrain the shipped recipe without and with them, convert both to int8
    and compare them (and the shipped model) on the held-out photos. Exit 1 when a step fails,
    2 on bad input."""
    with user_errors(PROG, (ValueError, OSError, DatasetError, ManifestError),
                     json_out=json_out):
        plan = make_plan(quick, work, out, shared)
        try:
            result = run_round(plan, say)
        except StepError as exc:
            raise fail(PROG, str(exc), EXIT_FAILED) from None
        target = write_result(result, plan.out, RESULT_NAME)
    show_result(result, json_out, render_dataloop(result))
    say(f"results: {target}")
