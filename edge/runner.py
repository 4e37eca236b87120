"""Assemble and run a device run (`edge run`) from one options object.

    from edge.runner import RunOptions, Runner
    runner = Runner(RunOptions(source="clip.mp4", json_out="events.jsonl", stats_every=10))
    summary = runner.run()          # open, loop until done or SIGINT/SIGTERM, close
    runner.report(summary)          # the end summary, as text or JSON (`json_summary`)

`RunOptions` holds every `edge run` option; its defaults are the CLI's (edge/cli.py takes its
Typer defaults from `RunOptions()`, and a test keeps the two in step). `Runner.open` builds the
pipeline, the frame grabber, the sinks and the alert hooks, and closes whatever it opened when a
step fails; `run` installs the signal handlers, runs `edge.loop.run_loop` and closes everything
(files are finished only when the run ended normally or by a signal).

More outputs without touching the loop: each entry of `RunOptions.extra_sinks` is called with a
`RunContext` (options, model labels, source, frame rate, a notice printer) and returns a sink
(`edge.outputs.Sink`); each of `RunOptions.alert_hooks` returns an `edge.events.AlertHook`, called
with every alert (and the frame) before the sinks get it. A subclass may instead override
`sink_factories` / `hook_factories`. Sinks are closed by the runner; a hook with a `close(ok)`
method that is not also a sink is closed too.

Only the standard library is imported at module level, so `edge --help` stays fast.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from edge.capture import FrameGrabber
    from edge.dashboard import ServeAuth
    from edge.events import AlertHook
    from edge.loop import RunSummary
    from edge.outputs import Sink
    from edge.pipeline import Pipeline
    from edge.sources import FrameSource
    from edge.tracking import TrackerOptions
    from edge.zones import Zone

#: edge.detectors.DETECTORS' names (kept here so that the CLI starts without OpenCV).
DETECTOR_NAMES = ("yunet", "yunet-stock", "blazeface-short", "blazeface-full", "none")
RUNTIME_NAMES = ("auto", "litert", "tflite_runtime", "tensorflow")
RTSP_TRANSPORTS = ("auto", "tcp", "udp")
CAMERA_BACKENDS = ("auto", "opencv", "picamera2")  # edge.sources.CAMERA_BACKENDS


class RunError(ValueError):
    """A bad option or combination of options (one line for the user)."""


@dataclass(frozen=True)
class RunContext:
    """What a sink or hook factory may need to know about the run being assembled."""

    options: RunOptions
    labels: tuple[str, ...]  # the classifier's labels, in class order
    alert_labels: tuple[str, ...]  # the labels that raise alerts
    source: str  # description of the frame source
    fps: float  # frame rate for saved video: --save-fps, else the source's, else 15
    notice: Callable[[str], None]  # prints one line for the user (stderr), even with --quiet


SinkFactory = Callable[[RunContext], "Sink"]
HookFactory = Callable[[RunContext], "AlertHook"]


@dataclass(frozen=True)
class RunOptions:
    """Every `edge run` option (CLI names with dashes), plus what only Python callers set."""

    camera: int | None = None
    source: str | None = None  # video file, image, folder of images, or stream URL
    model: Path | None = None
    detector: str = "yunet"
    detector_model: Path | None = None
    detector_threshold: float | None = None
    detect_width: int | None = None
    calibrate_boxes: bool = True
    threads: int | None = None
    runtime: str = "auto"
    camera_size: str = "640x480"
    camera_backend: str = "auto"
    realtime: bool = False
    loop: bool = False
    save: str | Path | None = None  # a video file, or a folder (ends in /, or exists): images
    save_fps: float | None = None
    json_out: str | None = None  # --json
    show: bool = False
    serve: str | None = None
    serve_auth: str | None = field(default=None, repr=False)  # USER:PASSWORD | token:TOKEN
    serve_insecure: bool = False
    mqtt: str | None = field(default=None, repr=False)  # mqtt://[user:pass@]host[:port][/prefix]
    device_name: str | None = None  # MQTT device name (default: the host name)
    webhook: str | None = field(default=None, repr=False)
    snapshots: Path | None = None
    snapshots_keep: int | None = None
    rtsp_transport: str = "auto"
    max_frames: int | None = None
    alert_after: int | None = None
    alert_label: tuple[str, ...] = ()  # empty: the model's without_* / *incorrect* labels
    stats_every: float = 0.0
    zone: tuple[str, ...] = ()  # "x1,y1,x2,y2", pixels or fractions
    blur_faces: bool = False
    detect_ahead: bool = False
    classify_every: int | None = None  # None: edge.pipeline.DEFAULT_CLASSIFY_EVERY
    detect_every: int | None = None  # None: edge.pipeline.DEFAULT_DETECT_EVERY
    reconnect_attempts: int = 10
    json_summary: bool = False
    quiet: bool = False
    # Not on the command line:
    status_every: float = 5.0  # seconds between status lines on stderr (unless quiet)
    tracking: TrackerOptions | None = None  # None: edge.tracking's defaults
    extra_sinks: tuple[SinkFactory, ...] = field(default=(), compare=False)
    alert_hooks: tuple[HookFactory, ...] = field(default=(), compare=False)

    def check(self) -> None:
        """Raise `RunError` for what is wrong before anything is opened."""
        if (self.camera is None) == (self.source is None):
            raise RunError("give exactly one of --camera N or --source FILE|DIR|URL")
        for name, value, choices in (("--detector", self.detector, DETECTOR_NAMES),
                                     ("--runtime", self.runtime, RUNTIME_NAMES),
                                     ("--camera-backend", self.camera_backend, CAMERA_BACKENDS),
                                     ("--rtsp-transport", self.rtsp_transport, RTSP_TRANSPORTS)):
            if value not in choices:
                raise RunError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        self._check_numbers()
        self.size()
        self.zones()
        if self.snapshots is not None and self.snapshots.exists() and not self.snapshots.is_dir():
            raise RunError(f"--snapshots {self.snapshots} exists and is not a folder")
        self._check_outputs()

    def _check_numbers(self) -> None:
        for name, number, least in (
                ("--camera", self.camera, 0), ("--threads", self.threads, 1),
                ("--max-frames", self.max_frames, 1), ("--alert-after", self.alert_after, 1),
                ("--snapshots-keep", self.snapshots_keep, 1),
                ("--detect-width", self.detect_width, 0),
                ("--classify-every", self.classify_every, 1),
                ("--detect-every", self.detect_every, 1),
                ("--reconnect-attempts", self.reconnect_attempts, 0)):
            if number is not None and number < least:
                raise RunError(f"{name} must be at least {least}"
                               + (" (0: full size)" if name == "--detect-width" else ""))
        for name, value, low, high in (
                ("--detector-threshold", self.detector_threshold, 0.0, 1.0),
                ("--save-fps", self.save_fps, 1e-3, 1e3),
                ("--stats-every", self.stats_every, 0.0, math.inf)):
            if value is not None and not low <= value <= high:  # also NaN
                raise RunError(f"{name} must lie in [{low:g}, {high:g}], not {value}")

    def _check_outputs(self) -> None:
        """Addresses and credentials of the network outputs, parsed before anything opens; a
        --save folder that is the --source folder (its photos would be replaced)."""
        from edge.dashboard import check_exposure
        from edge.outputs import is_folder_target, parse_address

        if self.save is not None and self.source is not None and is_folder_target(self.save):
            source = Path(self.source)
            if source.is_dir() and source.resolve() == Path(self.save).resolve():
                raise RunError(f"--save {self.save} is the --source folder: the annotated "
                               f"images would replace the photos; choose another folder")

        if self.serve is not None:
            try:
                check_exposure(parse_address(self.serve)[0], self.auth(), self.serve_insecure)
            except ValueError as exc:
                raise RunError(str(exc)) from None
        if self.mqtt is not None:
            from edge.mqtt import parse_mqtt_url

            parse_mqtt_url(self.mqtt)  # MqttError (an OutputError): one line, no password
        if self.webhook is not None:
            from edge.webhook import split_credentials

            split_credentials(self.webhook)

    def auth(self) -> ServeAuth | None:
        """--serve-auth parsed (ValueError with one line that never repeats the secret)."""
        from edge.dashboard import parse_serve_auth

        return parse_serve_auth(self.serve_auth) if self.serve_auth else None

    def size(self) -> tuple[int, int]:
        """--camera-size as (width, height)."""
        return parse_size(self.camera_size, "--camera-size")

    def zones(self) -> tuple[Zone, ...]:
        from edge.zones import Zone

        try:
            return tuple(Zone.parse(text) for text in self.zone)
        except ValueError as exc:
            raise RunError(str(exc)) from None


def parse_size(text: str, option: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' as (width, height); `RunError` naming `option` when it is not one."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RunError(f"{option} wants WIDTHxHEIGHT, e.g. 640x480, not {text!r}") from None
    if w < 16 or h < 16:
        raise RunError(f"{option} {text} is too small")
    return w, h


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Runner:
    """Builds the parts of a run from `RunOptions`, runs the loop, closes everything."""

    def __init__(self, options: RunOptions, notice: Callable[[str], None] | None = None) -> None:
        options.check()
        self.options = options
        self.notice = notice or _stderr
        self.pipeline: Pipeline | None = None
        self.grabber: FrameGrabber | None = None
        self.sinks: list[Sink] = []
        self.hooks: list[AlertHook] = []
        self.alert_labels: tuple[str, ...] = ()
        self.signal_name: str | None = None  # the signal that stopped the run
        self.outputs: dict[str, dict[str, Any]] = {}  # counters of the network/file outputs

    # -- assembling -----------------------------------------------------------------------

    def open(self) -> Self:
        """Build pipeline, grabber (started), sinks and hooks; on failure close what was opened
        and re-raise (user errors: edge.cli's `_user_errors`)."""
        from edge.capture import Backoff, FrameGrabber

        o = self.options
        try:
            self.pipeline = pipeline = self.build_pipeline()
            self.alert_labels = self.choose_alert_labels(pipeline.labels)
            frames = self.build_source()
            self.grabber = FrameGrabber(frames, backoff=Backoff(attempts=o.reconnect_attempts),
                                        notice=self.notice)
            self.grabber.start()
            context = RunContext(o, pipeline.labels, self.alert_labels, frames.description,
                                 o.save_fps or frames.fps or 15.0, self.notice)
            for make_sink in self.sink_factories():
                self.sinks.append(make_sink(context))
            for make_hook in self.hook_factories():
                self.hooks.append(make_hook(context))
        except BaseException:
            self.close(ok=False)
            raise
        return self

    def build_pipeline(self) -> Pipeline:
        from edge.pipeline import Pipeline, PipelineOptions

        o = self.options
        every = {name: value for name, value in (("classify_every", o.classify_every),
                                                 ("detect_every", o.detect_every))
                 if value is not None}
        return Pipeline(PipelineOptions(
            model=o.model, detector=o.detector, detector_model=o.detector_model,
            detector_threshold=o.detector_threshold, detect_width=o.detect_width,
            threads=o.threads, runtime=o.runtime, calibrate_boxes=o.calibrate_boxes, **every))

    def choose_alert_labels(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        """--alert-label, else the model's unmasked labels; checked against the model."""
        from edge.alerts import unmasked_labels

        o = self.options
        chosen = o.alert_label or unmasked_labels(labels)
        if o.alert_after and not chosen:
            raise RunError(f"--alert-after: none of the model's labels {list(labels)} means "
                           "unmasked; name one with --alert-label")
        unknown = set(chosen) - set(labels)
        if o.alert_after and unknown:
            raise RunError(f"--alert-label {sorted(unknown)} not in the model's labels "
                           f"{list(labels)}")
        return tuple(chosen)

    def build_source(self) -> FrameSource:
        from edge.sources import camera_source, file_source

        o = self.options
        if o.camera is not None:
            return camera_source(o.camera, o.size(), o.camera_backend)
        return file_source(str(o.source), realtime=o.realtime, loop=o.loop,
                           rtsp_transport=o.rtsp_transport)

    def sink_factories(self) -> list[SinkFactory]:
        """The outputs the options ask for, then `RunOptions.extra_sinks`."""
        o = self.options
        wanted = [(o.show, _window), (o.json_out, _json_lines), (o.save, _video),
                  (o.serve, _dashboard), (o.mqtt, _mqtt), (o.webhook, _webhook)]
        return [factory for on, factory in wanted if on] + list(o.extra_sinks)

    def hook_factories(self) -> list[HookFactory]:
        """The alert hooks: snapshots first (their paths then travel with the alert), then
        `RunOptions.alert_hooks`."""
        o = self.options
        return ([_snapshots] if o.snapshots else []) + list(o.alert_hooks)

    # -- running --------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Open (unless open), run until the source ends, `max_frames`, a signal or a lost
        source, close everything; the summary (`stopped_by` names a signal that stopped it)."""
        if self.grabber is None:
            self.open()
        stop = threading.Event()
        previous = self._catch_signals(stop)
        ok = False
        try:
            summary = self.loop(stop)
            ok = True
        finally:
            self.close(ok=ok)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.signal_name:
            summary.stopped_by = f"signal {self.signal_name}"
        summary.outputs = self.outputs
        return summary

    def loop(self, stop: threading.Event) -> RunSummary:
        from edge.loop import LoopOptions, run_loop
        from edge.tracking import TrackerOptions

        o = self.options
        assert self.pipeline is not None and self.grabber is not None, "open() first"
        options = LoopOptions(
            max_frames=o.max_frames, alert_after=o.alert_after, alert_labels=self.alert_labels,
            status_every=o.status_every, detect_ahead=o.detect_ahead, stats_every=o.stats_every,
            zones=o.zones(), blur_faces=o.blur_faces, tracking=o.tracking or TrackerOptions())
        return run_loop(self.pipeline, self.grabber, self.sinks, options, stop,
                        status=None if o.quiet else self.notice, hooks=self.hooks)

    def _catch_signals(self, stop: threading.Event) -> dict[int, Any]:
        """SIGINT/SIGTERM set `stop` (main thread only; elsewhere the caller stops the run)."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: Any) -> None:
            self.signal_name = self.signal_name or signal.Signals(signum).name
            stop.set()

        return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def close(self, ok: bool) -> None:
        """Stop capture; close sinks (files kept only when `ok`) and closable hooks."""
        if self.grabber is not None:
            self.grabber.stop()
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close(ok=ok)
        for hook in self.hooks:
            close = getattr(hook, "close", None)
            if close is not None and not any(hook is s for s in sinks):
                close(ok=ok)
        for part in (*sinks, *self.hooks):  # counters, final once closed (queues flushed)
            counters = getattr(part, "summary", None)
            values = counters() if callable(counters) else None
            if values is not None:  # None: nothing to report (a file output that went well)
                self.outputs[getattr(part, "OUTPUT_NAME", type(part).__name__)] = values
        self.hooks = []

    def report(self, summary: RunSummary) -> None:
        """Print the summary: JSON with `json_summary`; on stderr when stdout carries JSON lines."""
        stream = sys.stderr if self.options.json_out == "-" else sys.stdout
        text = json.dumps(summary.to_json()) if self.options.json_summary else summary.format()
        print(text, file=stream, flush=True)


def _window(context: RunContext) -> Sink:
    from edge.outputs import WindowSink

    return WindowSink()


def _json_lines(context: RunContext) -> Sink:
    from edge.outputs import JsonLinesSink

    return JsonLinesSink(str(context.options.json_out))


def _video(context: RunContext) -> Sink:
    """`--save`: a video file, or one image per frame in a folder (edge.outputs)."""
    from edge.outputs import ImageFolderSink, VideoSink, is_folder_target

    save = context.options.save
    assert save is not None
    if is_folder_target(save):
        return ImageFolderSink(save)
    return VideoSink(save, context.fps, context.notice)


def _dashboard(context: RunContext) -> Sink:
    from edge.dashboard import DashboardServer, is_loopback
    from edge.outputs import parse_address

    o = context.options
    host, port = parse_address(str(o.serve))
    auth = o.auth()
    server = DashboardServer(host, port, source=context.source, auth=auth,
                             insecure=o.serve_insecure)
    where = "" if is_loopback(host) else (" (visible to the network, login required)" if auth
                                          else " (visible to the network, NO authentication)")
    context.notice(f"serving {server.url}{where}")
    return server


def _mqtt(context: RunContext) -> Sink:
    from edge.mqtt import MqttSink

    o = context.options
    sink = MqttSink(str(o.mqtt), o.device_name, labels=context.labels,
                    alert_labels=context.alert_labels)
    context.notice(f"publishing to {sink.describe()}")
    if not o.stats_every:
        context.notice("note: without --stats-every the Home Assistant people, compliance and "
                       "FPS sensors get no values (e.g. --stats-every 10)")
    return sink


def _webhook(context: RunContext) -> Sink:
    from edge.webhook import WebhookSink

    sink = WebhookSink(str(context.options.webhook))
    context.notice(f"posting alerts to {sink.describe()}")
    return sink


def _snapshots(context: RunContext) -> AlertHook:
    from edge.snapshots import SnapshotWriter

    o = context.options
    assert o.snapshots is not None
    return SnapshotWriter(o.snapshots, keep=o.snapshots_keep, faces=not o.blur_faces)
