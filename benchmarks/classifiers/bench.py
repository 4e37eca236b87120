"""The shipped classifiers side by side: `python -m benchmarks.classifiers [--quick] [--json]`.

    python -m benchmarks.classifiers                   # benchmarks/results/classifiers.json
    python -m benchmarks.classifiers --quick --json    # a few photos, a short video (tests)
    python -m benchmarks.classifiers --model student=/path/to/other_int8.tflite

One table, `ROWS`, names the classifiers that ship: the 2-class model, the 3-class student
(`edge run`'s default) and the 3-class ensemble it was distilled from. Every row is measured the
same way, in the same run, on the same inputs:

1. size: the file's MB, and its labels from the contract inside it (`read_contract`);
2. MACs per face, counted from the .tflite graph itself (`tflite_macs`: LiteRT's op list and
   tensor shapes, no TensorFlow): CONV_2D out_h x out_w x out_c x kh x kw x in_c,
   DEPTHWISE_CONV_2D out_h x out_w x out_c x kh x kw, FULLY_CONNECTED units x in features, for a
   batch of one; adds, pooling and softmax are not counted (as in benchmarks/stages/macs.py). The
   ensemble's one call reads the face and its mirror with each member: all of it is per face;
3. ms per face: the device's own `MaskClassifier.classify` (resize, quantize, invoke,
   probabilities) on one real face crop at a time (annotated faces of the held-out photos,
   cycled), the median of `runs` calls after `warmup`, at 1 and at 2 threads;
4. accuracy on the face-mask-ilc-dev held-out photos (benchmarks/holdout/face-mask-ilc-dev-test.txt,
   read with the 3-class label map): each photo goes once through the shipped default detector
   (`Pipeline.detect`), its faces are classified by each row's `Pipeline.classify` (what
   `edge run` does with a photo) and matched to the annotations at IoU 0.5
   (`edge.inference.evaluate.match`); annotated faces of at least 16 px (short side) that the
   detector found are scored: accuracy, precision / recall / F1 per class, accuracy per face
   size. The 2-class model cannot say mask_weared_incorrect: it is scored on the with_mask /
   without_mask faces only (incorrect: n/a), and every row also gets its accuracy on those faces;
5. pipeline FPS: one 640x480 video, made once per run from face-mask-voc photos with 1-4 faces
   (`edge.video.videomaker`, each photo held `HOLD` frames), played for every row through
   `edge.runner.Runner` as `edge run --source VIDEO --model M --threads 2` (its other defaults,
   not realtime); FPS and its ratio to the 2-class row;
6. a Raspberry Pi 4 estimate of ms per face: the row's MACs at this machine's achieved 1-thread
   rate (MACs / ms) scaled by a Pi 4 Cortex-A72 core's nominal int8 peak over this CPU core's
   (`benchmarks.machine.nominal_peak` of `benchmarks.stages.sizes.PI_CPU`, the input size sweep's
   constants). An extrapolation, not a measurement.

Results: benchmarks/results/classifiers.json (with --quick: benchmarks/work/quick/), rendered by
`render_classifiers` into RESULTS.md (`python -m benchmarks.run --render-only`). The held-out
photos are read once, for the models that ship: nothing is chosen on them.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.classifiers.measure import measure
from benchmarks.classifiers.report import render_classifiers
from benchmarks.classifiers.rows import (
    FULL,
    ILC,
    PROG,
    QUICK,
    RESULT_NAME,
    ROWS,
    VOC,
    describe,
    resolve_rows,
)
from benchmarks.config import (
    FULL_OUT,
    FULL_WORK,
    QUICK_OUT,
    JsonOption,
    SharedOption,
    default_shared,
    show_result,
    write_result,
)
from benchmarks.tables import short
from edge.core.console import cli_app, say, user_errors

app = cli_app(no_args_is_help=False,
              help="Compare the shipped classifiers (2-class, 3-class student, 3-class ensemble) "
                   f"from one run; writes benchmarks/results/{RESULT_NAME}.")


@app.command()
def main(
    quick: Annotated[bool, typer.Option(
        "--quick", help=f"A few photos, a short video, fewer timing runs (tests); writes under "
        f"{short(QUICK_OUT)}/ unless --out.")] = False,
    json_out: JsonOption = False,
    out: Annotated[Path | None, typer.Option(
        help=f"Folder for {RESULT_NAME} (default: {short(FULL_OUT)}; --quick: "
        f"{short(QUICK_OUT)}).", show_default=False)] = None,
    shared: SharedOption = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", metavar="KEY=PATH", help="Another file for a row (repeatable): "
        f"{', '.join(r.key for r in ROWS)}.", show_default=False)] = None,
) -> None:
    """Measure every row of the table: size, MACs, ms per face, Pi 4 estimate, held-out
    accuracy and pipeline FPS."""
    from edge.core.assets import AssetError
    from edge.runner import RunError
    from edge.sinks.outputs import OutputError
    from edge.video.sources import SourceError

    with user_errors(PROG, (ValueError, OSError, AssetError, RunError, OutputError,
                            SourceError), json_out=json_out):
        rows = resolve_rows(model)
        shared = shared or default_shared()
        if not (shared / ILC).is_dir() or not (shared / VOC).is_dir():
            raise ValueError(f"{ILC} and {VOC} not found in {shared} (pass --shared or set "
                             "MASKEDGE_SHARED)")
        folder = out or (QUICK_OUT if quick else FULL_OUT)
        if quick and folder.resolve() == FULL_OUT.resolve():
            raise ValueError("--quick must not write over the full results; choose another --out")
        work = FULL_WORK if folder.resolve() == FULL_OUT.resolve() else folder / "work"
        paths = {row.key: path for row, path in rows}
        result = measure(paths, [describe(row, path) for row, path in rows], shared, work,
                         QUICK if quick else FULL)
        result["quick"] = quick
        result["command"] = shlex.join(["python", "-m", "benchmarks.classifiers", *sys.argv[1:]])
        target = write_result(result, folder, RESULT_NAME)
    show_result(result, json_out, render_classifiers(result))
    say(f"results: {target} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    app()
