"""`edge`: run the face-mask pipeline on a camera, a video, photos or a stream (no TensorFlow).

Commands: `run` (the camera loop with its outputs), `evaluate` (detectors and classifier against
VOC annotations), `make-video` (a test video from photos), `info` (runtimes, model, GUI),
`config` (write or check a config file), `history` (people and compliance per hour or day
from `run --history`), `service` (`run --config` as a systemd service), `label` (label the
faces `run --collect` kept).
Heavy imports happen inside the commands so `edge --help` stays fast.

Exit codes (edge/core/console.py): 0 done (also when stopped by SIGINT/SIGTERM: the run ends cleanly
with its summary), 1 the source was lost and could not be reopened, 2 bad input (file, camera,
option), 130 Ctrl-C while starting. Errors are one line on stderr, `edge: error: ...`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.collect.command import label
from edge.config.command import config_app
from edge.config.options import run_signature
from edge.config.schema import DETECTOR_NAMES
from edge.core.assets import (
    DEFAULT_DETECT_WIDTH,
    detector_model_help,
    detector_threshold_help,
    model_help,
)
from edge.core.console import EXIT_FAILED, cli_app, fail, user_errors
from edge.history.command import history
from edge.runner import RunError, Runner, RunOptions, parse_size
from edge.service.command import service_app

app = cli_app(help="Face-mask detection on a device: camera/video -> faces -> mask or not.")

PROG = "edge"


def _known_errors() -> tuple[type[BaseException], ...]:
    """The errors that are the user's to fix: one line and exit 2 (imported when needed)."""
    from edge.core.assets import AssetError
    from edge.core.contract import ContractError
    from edge.core.runtime import RuntimeUnavailable
    from edge.inference.evaluate import DatasetError
    from edge.sinks.outputs import OutputError
    from edge.video.sources import SourceError

    return (AssetError, ContractError, DatasetError, OutputError, RuntimeUnavailable,
            SourceError, ValueError)


def _size(text: str, option: str) -> tuple[int, int]:
    with user_errors(PROG, (RunError,)):
        return parse_size(text, option)


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise fail(PROG, f"{option} must be one of {', '.join(choices)}, not {value!r}")


def _at_least(option: str, value: int | None, least: int) -> None:
    if value is not None and value < least:
        raise fail(PROG, f"{option} must be at least {least}")


def _writable(path: Path, what: str) -> None:
    """Fail unless `path` can be created: its nearest existing ancestor must be a folder."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise fail(PROG, f"cannot write {what} {path}: {ancestor} is not a folder")


def _check_evaluate(widths: list[int] | None, thresholds: list[float] | None,
                    threads: int | None, limit: int | None, detector_dir: Path | None,
                    json_out: str | None) -> None:
    """`edge evaluate`'s numbers and paths, before anything is loaded."""
    if any(w < 0 for w in widths or ()):
        raise fail(PROG, "--detect-width must be 0 (as it is) or positive")
    for value in thresholds or ():
        if not 0.0 <= value <= 1.0:  # also NaN
            raise fail(PROG, f"--detector-threshold must lie in [0, 1], not {value}")
    _at_least("--threads", threads, 1)
    _at_least("--limit", limit, 1)
    if detector_dir is not None and not detector_dir.is_dir():
        raise fail(PROG, f"--detector-dir {detector_dir} is not a folder")
    if json_out not in (None, "-"):
        _writable(Path(json_out), "--json")


def run(ctx: typer.Context, config: Path | None = None, **values: Any) -> None:
    """Detect faces, follow them and classify mask / no mask on every frame, with the chosen
    outputs. Every option can also come from a config file (--config; `edge config init`
    writes one); the run itself is assembled by edge/runner.py."""
    from edge.config.files import ConfigError, read_config
    from edge.config.options import given_on_command_line, resolve

    with user_errors(PROG, (ConfigError,)):
        from_file = read_config(config) if config is not None else {}
    options = RunOptions(**resolve(values, given_on_command_line(ctx), from_file))
    with user_errors(PROG, _known_errors(), interrupted="interrupted while starting"):
        runner = Runner(options, notice=lambda line: typer.echo(line, err=True))
        runner.open()
    summary = runner.run()
    runner.report(summary)
    if summary.error:
        raise typer.Exit(EXIT_FAILED)


# One parameter per setting of edge/config/schema.py: names, types, defaults and help from there.
run.__signature__ = run_signature()  # type: ignore[attr-defined]
run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}
app.command()(run)
app.add_typer(config_app, name="config")
app.add_typer(service_app, name="service")
app.command("history")(history)
app.command("label")(label)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(
        metavar="DATA", help="VOC folder: annotations/*.xml and images/.")],
    model: Annotated[Path | None, typer.Option(help=model_help(), show_default=False)] = None,
    detector: Annotated[list[str] | None, typer.Option(
        help="Detector to measure (repeatable; default yunet).", show_default=False)] = None,
    detector_model: Annotated[Path | None, typer.Option(
        help=f"For a single --detector. {detector_model_help()}", show_default=False)] = None,
    detector_dir: Annotated[Path | None, typer.Option(
        help="Folder holding BlazeFace files under their upstream names.",
        show_default=False)] = None,
    detector_threshold: Annotated[list[float] | None, typer.Option(
        help=f"Repeatable: each is a setting to compare. {detector_threshold_help()}",
        show_default=False)] = None,
    detect_width: Annotated[list[int] | None, typer.Option(
        help=f"YuNet ONNX input width (repeatable; 0 = each photo as it is; default "
             f"{DEFAULT_DETECT_WIDTH}).", show_default=False)] = None,
    calibrate_boxes: Annotated[bool, typer.Option(
        help="Map YuNet's boxes onto the annotation convention.")] = True,
    threads: Annotated[int | None, typer.Option(show_default=False)] = None,
    limit: Annotated[int | None, typer.Option(
        help="Use only the first N annotated photos.", show_default=False)] = None,
    json_out: Annotated[str | None, typer.Option(
        "--json", help="Write the full report here as JSON ('-' = stdout, instead of the table).",
        show_default=False)] = None,
    label_map: Annotated[list[str] | None, typer.Option(
        help="FROM=TO renames a class of the annotations; FROM= leaves it out (repeatable).",
        show_default=False)] = None,
    only_list: Annotated[Path | None, typer.Option(
        help="File of image file names: use only these photos (e.g. held-out ones).",
        show_default=False)] = None,
    exclude_list: Annotated[Path | None, typer.Option(
        help="File of image file names: leave these photos out.", show_default=False)] = None,
) -> None:
    """Measure detector settings and the classifier on VOC photos: recall per class and face size,
    precision, accuracy, and a recall-against-cost table of the settings compared."""
    names = detector or ["yunet"]
    for name in names:
        _check_choice(name, DETECTOR_NAMES, "--detector")
    if detector_model is not None and len(names) > 1:
        raise fail(PROG, "--detector-model goes with one --detector; use --detector-dir for "
                         "several")
    _check_evaluate(detect_width, detector_threshold, threads, limit, detector_dir, json_out)
    from edge.core.fileio import write_text_atomic
    from edge.core.labelmap import LabelMap, LabelMapError
    from edge.core.voc import load_voc, read_name_list
    from edge.inference.evaluate import Setting, compare, format_evaluation
    from edge.inference.pipeline import PipelineOptions

    base = PipelineOptions(model=model, threads=threads, calibrate_boxes=calibrate_boxes)
    settings = Setting.grid(names, detector_model, detector_dir, detect_width,
                            detector_threshold)
    with user_errors(PROG, (*_known_errors(), LabelMapError)):
        names_only = read_name_list(only_list) if only_list else None
        names_out = read_name_list(exclude_list) if exclude_list else None
        images = load_voc(data, limit, LabelMap.parse(label_map), names_only, names_out)
        with typer.progressbar(length=len(images) * len(settings), label="evaluating",
                               file=sys.stderr) as bar:
            reports = compare(settings, base, images, on_image=lambda: bar.update(1))
    text = json.dumps(reports, indent=2) + "\n"
    if json_out == "-":
        typer.echo(text, nl=False)
        return
    typer.echo(format_evaluation(reports))
    if json_out:
        try:
            write_text_atomic(Path(json_out), text)
        except OSError as exc:
            raise fail(PROG, f"cannot write {json_out}: {exc.strerror or exc}") from None


@app.command("make-video")
def make_video_command(
    photos: Annotated[Path, typer.Argument(metavar="PHOTOS", help="Folder of photos.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Video to write (.mp4 or .avi).")],
    size: Annotated[str, typer.Option(help="Frame size.")] = "640x480",
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 10.0,
    hold: Annotated[int, typer.Option(help="Frames per photo.")] = 1,
    limit: Annotated[int | None, typer.Option(
        help="Use only the first N photos (name order).", show_default=False)] = None,
) -> None:
    """Make a video from photos (each fitted into the frame) to test the pipeline end to end."""
    frame_size = _size(size, "--size")
    if hold < 1 or not 0 < fps < math.inf:
        raise fail(PROG, "--hold must be at least 1 and --fps positive")
    _at_least("--limit", limit, 1)
    _writable(out, "OUT")
    if not photos.is_dir():
        raise fail(PROG, f"not a folder: {photos}")
    from edge.sinks.outputs import OutputError
    from edge.video.videomaker import list_images, make_video

    files = list_images(photos, limit)
    if not files:
        raise fail(PROG, f"no photos in {photos}")
    with (user_errors(PROG, (OutputError,)),
          typer.progressbar(length=len(files), label="photos", file=sys.stderr) as bar):
        report = make_video(files, out, frame_size, fps, hold, lambda: bar.update(1))
    typer.echo(f"wrote {report.path}: {report.frames} frames from {report.photos} photos"
               + (f", {len(report.unreadable)} unreadable skipped" if report.unreadable else ""))


@app.command()
def info(
    model: Annotated[Path | None, typer.Option(
        help=f"Describe this classifier. {model_help()}", show_default=False)] = None,
) -> None:
    """What this device can run: TFLite runtimes, the model's contract, detectors, GUI."""
    from edge.core.assets import default_model_path
    from edge.core.fileio import cache_root
    from edge.core.runtime import available_runtimes
    from edge.core.tflite_metadata import read_contract
    from edge.detection.detectors import DETECTORS
    from edge.sinks.outputs import gui_problem

    typer.echo(f"runtimes    {', '.join(available_runtimes()) or 'none'}")
    path = model or default_model_path()
    try:
        contract = read_contract(path)
        typer.echo(f"model       {path}: labels {list(contract.labels)}, input "
                   f"{contract.input_size[0]}x{contract.input_size[1]}, "
                   f"{contract.quantization}")
    except _known_errors() as exc:
        if model is not None:  # the model asked about is unreadable: exit 2
            raise fail(PROG, str(exc)) from None
        typer.echo(f"model       {exc}")
    for name, (_, text) in DETECTORS.items():
        typer.echo(f"detector    {name:<16} {text}")
    typer.echo(f"cache       {cache_root()}")
    typer.echo(f"window      {gui_problem() or 'available (--show)'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
