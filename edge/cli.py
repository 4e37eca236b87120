"""`edge`: run the face-mask pipeline on a camera, a video, photos or a stream (no TensorFlow).

Commands: `run` (the camera loop with its outputs), `evaluate` (detectors and classifier against
VOC annotations), `make-video` (a test video from photos), `info` (runtimes, model, GUI).
Heavy imports happen inside the commands so `edge --help` stays fast.

Exit codes: 0 done (also when stopped by SIGINT/SIGTERM: the run ends cleanly with its summary),
1 the source was lost and could not be reopened, 2 bad input (file, camera, option).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Face-mask detection on a device: camera/video -> faces -> mask or not.")

DETECTOR_NAMES = ("yunet", "blazeface-short", "blazeface-full", "none")
RUNTIME_NAMES = ("auto", "litert", "tflite_runtime", "tensorflow")


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"edge: error: {message}", err=True)
    return typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from edge.assets import AssetError
    from edge.contract import ContractError
    from edge.evaluate import DatasetError
    from edge.outputs import OutputError
    from edge.runtime import RuntimeUnavailable
    from edge.sources import SourceError

    return (AssetError, ContractError, DatasetError, OutputError, RuntimeUnavailable,
            SourceError, ValueError)


def _size(text: str, option: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise fail(f"{option} wants WIDTHxHEIGHT, e.g. 640x480, not {text!r}") from None
    if w < 16 or h < 16:
        raise fail(f"{option} {text} is too small")
    return w, h


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise fail(f"{option} must be one of {', '.join(choices)}, not {value!r}")


@app.command()
def run(
    camera: Annotated[int | None, typer.Option(
        "--camera", help="Camera index (picamera2 when it sees the camera, else OpenCV V4L2).",
        show_default=False)] = None,
    source: Annotated[str | None, typer.Option(
        "--source", help="Video file, image, folder of images, or stream URL (rtsp://, http://).",
        show_default=False)] = None,
    model: Annotated[Path | None, typer.Option(
        help="Classifier .tflite (default: $MASKEDGE_MODEL or models/face_mask_2c_int8.tflite).",
        show_default=False)] = None,
    detector: Annotated[str, typer.Option(
        help="yunet | blazeface-short | blazeface-full | none (whole frame is one face).")
    ] = "yunet",
    detector_model: Annotated[Path | None, typer.Option(
        help="Detector model file (default: downloaded once, sha256-checked, cached).",
        show_default=False)] = None,
    detector_threshold: Annotated[float | None, typer.Option(
        help="Minimum detector score (default: YuNet 0.6, BlazeFace 0.5).",
        show_default=False)] = None,
    detect_width: Annotated[int | None, typer.Option(
        help="YuNet's ONNX file (--detector-model X.onnx) sees frames scaled to this width; "
             "0 = as they are. Default 640; the shipped .tflite YuNet has 640x480 built in.",
        show_default=False)] = None,
    calibrate_boxes: Annotated[bool, typer.Option(
        help="Map YuNet's boxes onto the annotation convention (fitted on held-in photos).")
    ] = True,
    threads: Annotated[int | None, typer.Option(
        help="Inference threads (interpreter and OpenCV).", show_default=False)] = None,
    runtime: Annotated[str, typer.Option(
        help="TFLite runtime: auto (litert, then tflite_runtime, then tensorflow.lite), "
             "litert, tflite_runtime, tensorflow.")] = "auto",
    camera_size: Annotated[str, typer.Option(help="Camera capture size.")] = "640x480",
    camera_backend: Annotated[str, typer.Option(help="auto | opencv | picamera2.")] = "auto",
    realtime: Annotated[bool, typer.Option(
        "--realtime", help="Play files at their frame rate and drop frames like a camera.")
    ] = False,
    loop: Annotated[bool, typer.Option("--loop", help="Repeat a file or folder forever.")] = False,
    save: Annotated[Path | None, typer.Option(
        help="Write the annotated video here (.mp4, .avi).", show_default=False)] = None,
    save_fps: Annotated[float | None, typer.Option(
        help="Frame rate of the saved video (default: the source's, else 15).",
        show_default=False)] = None,
    json_out: Annotated[str | None, typer.Option(
        "--json", help="Write one JSON line per frame and per alert here ('-' = stdout).",
        show_default=False)] = None,
    show: Annotated[bool, typer.Option(
        "--show", help="Show a window (needs an OpenCV with GUI).")] = False,
    serve: Annotated[str | None, typer.Option(
        help="Serve an MJPEG page at HOST:PORT (PORT alone binds 127.0.0.1; port 0 picks "
             "a free one).", show_default=False)] = None,
    max_frames: Annotated[int | None, typer.Option(
        help="Stop after this many processed frames.", show_default=False)] = None,
    alert_after: Annotated[int | None, typer.Option(
        help="Raise an alert event when a face stays unmasked for N frames.",
        show_default=False)] = None,
    alert_label: Annotated[list[str] | None, typer.Option(
        help="Label that counts as unmasked (repeatable; default: without_* and *incorrect*).",
        show_default=False)] = None,
    detect_ahead: Annotated[bool, typer.Option(
        "--detect-ahead", help="Detect the next frame on a thread while classifying this one "
        "(uses a second core; one frame more latency).")] = False,
    reconnect_attempts: Annotated[int, typer.Option(
        help="Reopen attempts (with backoff) when a camera or stream is lost.")] = 10,
    json_summary: Annotated[bool, typer.Option(
        "--json-summary", help="Print the end-of-run summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", help="No status or alert lines on stderr while running.")] = False,
) -> None:
    """Detect faces and classify mask / no mask on every frame, with the chosen outputs."""
    if (camera is None) == (source is None):
        raise fail("give exactly one of --camera N or --source FILE|DIR|URL")
    _check_choice(detector, DETECTOR_NAMES, "--detector")
    _check_choice(runtime, RUNTIME_NAMES, "--runtime")
    for name, value in (("--threads", threads), ("--max-frames", max_frames),
                        ("--alert-after", alert_after)):
        if value is not None and value < 1:
            raise fail(f"{name} must be at least 1")
    if detect_width is not None and detect_width < 0:
        raise fail("--detect-width must be 0 (full size) or positive")
    size = _size(camera_size, "--camera-size")

    from edge.alerts import unmasked_labels
    from edge.capture import Backoff, FrameGrabber
    from edge.loop import LoopOptions, run_loop
    from edge.outputs import Sink
    from edge.pipeline import Pipeline, PipelineOptions
    from edge.sources import camera_source, file_source

    sinks: list[Sink] = []
    try:
        pipeline = Pipeline(PipelineOptions(
            model=model, detector=detector, detector_model=detector_model,
            detector_threshold=detector_threshold, detect_width=detect_width, threads=threads,
            runtime=runtime, calibrate_boxes=calibrate_boxes))
        labels = tuple(alert_label) if alert_label else unmasked_labels(pipeline.labels)
        if alert_after and not labels:
            raise fail(f"--alert-after: none of the model's labels {list(pipeline.labels)} "
                       "means unmasked; name one with --alert-label")
        unknown = set(labels) - set(pipeline.labels)
        if alert_after and unknown:
            raise fail(f"--alert-label {sorted(unknown)} not in the model's labels "
                       f"{list(pipeline.labels)}")
        frames = (camera_source(camera, size, camera_backend) if camera is not None
                  else file_source(str(source), realtime=realtime, loop=loop))
        grabber = FrameGrabber(frames, backoff=Backoff(attempts=reconnect_attempts)).start()
        try:
            _open_sinks(sinks, show=show, json_out=json_out, save=save,
                        save_fps=save_fps or frames.fps or 15.0, serve=serve,
                        title=frames.description)
        except BaseException:
            grabber.stop()
            raise
    except (*_user_errors(), KeyboardInterrupt) as exc:
        for sink in sinks:
            sink.close(ok=False)
        if isinstance(exc, KeyboardInterrupt):
            raise fail("interrupted while starting", 130) from None
        raise fail(str(exc)) from None

    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    ok = False
    try:
        summary = run_loop(
            pipeline, grabber, sinks,
            LoopOptions(max_frames, alert_after, labels, status_every=5.0,
                        detect_ahead=detect_ahead), stop,
            status=None if quiet else (lambda line: typer.echo(line, err=True)))
        ok = True
    finally:
        grabber.stop()
        for sink in sinks:
            sink.close(ok=ok)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        summary.stopped_by = f"signal {received[0]}"
    stream = sys.stderr if json_out == "-" else sys.stdout
    print(json.dumps(summary.to_json()) if json_summary else summary.format(), file=stream,
          flush=True)
    if summary.error:
        raise typer.Exit(1)


def _open_sinks(sinks: list[Any], *, show: bool, json_out: str | None, save: Path | None,
                save_fps: float, serve: str | None, title: str) -> None:
    """Open the requested outputs into `sinks` (the caller closes them on failure)."""
    from edge.outputs import JsonLinesSink, MjpegServer, VideoSink, WindowSink, parse_address

    if show:
        sinks.append(WindowSink())
    if json_out:
        sinks.append(JsonLinesSink(json_out))
    if save:
        sinks.append(VideoSink(save, save_fps))
    if serve:
        host, port = parse_address(serve)
        server = MjpegServer(host, port, source=title)
        sinks.append(server)
        public = host not in ("127.0.0.1", "localhost", "::1")
        typer.echo(f"serving {server.url}{' (visible to the network)' if public else ''}",
                   err=True)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(help="VOC folder: annotations/*.xml and images/.")],
    model: Annotated[Path | None, typer.Option(
        help="Classifier .tflite (default: the shipped model).", show_default=False)] = None,
    detector: Annotated[list[str] | None, typer.Option(
        help="Detector to measure (repeatable; default yunet).", show_default=False)] = None,
    detector_model: Annotated[Path | None, typer.Option(
        help="Model file for a single --detector (default: the shipped YuNet).",
        show_default=False)] = None,
    detector_dir: Annotated[Path | None, typer.Option(
        help="Folder holding BlazeFace files under their upstream names.",
        show_default=False)] = None,
    detector_threshold: Annotated[list[float] | None, typer.Option(
        help="Minimum detector score (repeatable: each is a setting to compare).",
        show_default=False)] = None,
    detect_width: Annotated[list[int] | None, typer.Option(
        help="YuNet ONNX input width (repeatable; 0 = each photo as it is; default 640).",
        show_default=False)] = None,
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
        raise fail("--detector-model goes with one --detector; use --detector-dir for several")
    if any(w < 0 for w in detect_width or ()):
        raise fail("--detect-width must be 0 (as it is) or positive")
    from edge.evaluate import Setting, compare, format_evaluation
    from edge.fileio import write_text_atomic
    from edge.labelmap import LabelMap, LabelMapError
    from edge.pipeline import PipelineOptions
    from edge.voc import load_voc, read_name_list

    base = PipelineOptions(model=model, threads=threads, calibrate_boxes=calibrate_boxes)
    settings = Setting.grid(names, detector_model, detector_dir, detect_width,
                            detector_threshold)
    try:
        names_only = read_name_list(only_list) if only_list else None
        names_out = read_name_list(exclude_list) if exclude_list else None
        images = load_voc(data, limit, LabelMap.parse(label_map), names_only, names_out)
        with typer.progressbar(length=len(images) * len(settings), label="evaluating",
                               file=sys.stderr) as bar:
            reports = compare(settings, base, images, on_image=lambda: bar.update(1))
    except (*_user_errors(), LabelMapError) as exc:
        raise fail(str(exc)) from None
    text = json.dumps(reports, indent=2) + "\n"
    if json_out == "-":
        typer.echo(text, nl=False)
        return
    typer.echo(format_evaluation(reports))
    if json_out:
        write_text_atomic(Path(json_out), text)


@app.command("make-video")
def make_video_command(
    photos: Annotated[Path, typer.Argument(help="Folder of photos.")],
    out: Annotated[Path, typer.Argument(help="Video to write (.mp4 or .avi).")],
    size: Annotated[str, typer.Option(help="Frame size.")] = "640x480",
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 10.0,
    hold: Annotated[int, typer.Option(help="Frames per photo.")] = 1,
    limit: Annotated[int | None, typer.Option(
        help="Use only the first N photos (name order).", show_default=False)] = None,
) -> None:
    """Make a video from photos (each fitted into the frame) to test the pipeline end to end."""
    frame_size = _size(size, "--size")
    if hold < 1 or fps <= 0:
        raise fail("--hold must be at least 1 and --fps positive")
    if not photos.is_dir():
        raise fail(f"not a folder: {photos}")
    from edge.outputs import OutputError
    from edge.videomaker import list_images, make_video

    files = list_images(photos, limit)
    try:
        with typer.progressbar(length=len(files), label="photos", file=sys.stderr) as bar:
            report = make_video(files, out, frame_size, fps, hold, lambda: bar.update(1))
    except OutputError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"wrote {report.path}: {report.frames} frames from {report.photos} photos"
               + (f", {len(report.unreadable)} unreadable skipped" if report.unreadable else ""))


@app.command()
def info(
    model: Annotated[Path | None, typer.Option(
        help="Classifier .tflite to describe (default: the shipped model).",
        show_default=False)] = None,
) -> None:
    """What this device can run: TFLite runtimes, the model's contract, detectors, GUI."""
    from edge.assets import default_model_path
    from edge.detectors import DETECTORS
    from edge.fileio import cache_root
    from edge.outputs import gui_problem
    from edge.runtime import available_runtimes
    from edge.tflite_metadata import read_contract

    typer.echo(f"runtimes    {', '.join(available_runtimes()) or 'none'}")
    path = model or default_model_path()
    try:
        contract = read_contract(path)
        typer.echo(f"model       {path}: labels {list(contract.labels)}, input "
                   f"{contract.input_size[0]}x{contract.input_size[1]}, "
                   f"{contract.quantization}")
    except _user_errors() as exc:
        typer.echo(f"model       {exc}")
    for name, (_, text) in DETECTORS.items():
        typer.echo(f"detector    {name:<16} {text}")
    typer.echo(f"cache       {cache_root()}")
    typer.echo(f"window      {gui_problem() or 'available (--show)'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
