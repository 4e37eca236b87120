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
(`edge.sinks.outputs.Sink`); each of `RunOptions.alert_hooks` returns an
`edge.tracking.events.AlertHook`, called with every alert (and the frame) before the sinks get it. A
subclass may instead override `sink_factories` / `hook_factories`. Sinks are closed by the runner; a
hook with a `close(ok)` method that is not also a sink is closed too.

Only the standard library is imported at module level, so `edge --help` stays fast.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from edge.config.schema import BY_NAME, DEFAULTS, bounds_problem

if TYPE_CHECKING:
    from edge.inference.pipeline import Pipeline
    from edge.loop import RunSummary
    from edge.sinks.dashboard import ServeAuth
    from edge.sinks.outputs import Sink
    from edge.tracking.events import AlertHook
    from edge.tracking.tracks import TrackerOptions
    from edge.tracking.zones import Zone
    from edge.video.capture import FrameGrabber
    from edge.video.sources import FrameSource



class RunError(ValueError):
    """A bad option or combination of options (one line for the user)."""


def _check_database_path(path: Path) -> None:
    """--history names a file that exists or can be created (its folder may not exist yet)."""
    if path.is_dir():
        raise RunError(f"--history {path} is a folder; name the database file, e.g. "
                       f"{path / 'events.db'}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunError(f"--history {path}: {ancestor} is not a folder")


def _check_collect_folder(path: Path, blur_faces: bool) -> None:
    """--collect names a folder or one that can be made; it keeps faces unblurred (they are to be
    labelled), which --blur-faces asks never to show."""
    if path.exists() and not path.is_dir():
        raise RunError(f"--collect {path} exists and is not a folder")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunError(f"--collect {path}: {ancestor} is not a folder")
    if blur_faces:
        raise RunError("--collect keeps faces unblurred to be labelled; it cannot go with "
                       "--blur-faces")


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

    camera: int | None = DEFAULTS["camera"]
    source: str | None = DEFAULTS["source"]  # video file, image, folder of images, or stream URL
    model: Path | None = DEFAULTS["model"]
    detector: str = DEFAULTS["detector"]
    detector_model: Path | None = DEFAULTS["detector_model"]
    detector_threshold: float | None = DEFAULTS["detector_threshold"]
    detect_width: int | None = DEFAULTS["detect_width"]
    calibrate_boxes: bool = DEFAULTS["calibrate_boxes"]
    threads: int | None = DEFAULTS["threads"]
    runtime: str = DEFAULTS["runtime"]
    camera_size: str = DEFAULTS["camera_size"]
    camera_backend: str = DEFAULTS["camera_backend"]
    realtime: bool = DEFAULTS["realtime"]
    loop: bool = DEFAULTS["loop"]
    save: str | Path | None = DEFAULTS["save"]
    save_fps: float | None = DEFAULTS["save_fps"]
    json_out: str | None = DEFAULTS["json_out"]  # --json
    show: bool = DEFAULTS["show"]
    serve: str | None = DEFAULTS["serve"]
    serve_auth: str | None = field(default=DEFAULTS["serve_auth"], repr=False)
    serve_insecure: bool = DEFAULTS["serve_insecure"]
    mqtt: str | None = field(default=DEFAULTS["mqtt"], repr=False)
    device_name: str | None = DEFAULTS["device_name"]  # MQTT device name (default: the host name)
    webhook: str | None = field(default=DEFAULTS["webhook"], repr=False)
    snapshots: Path | None = DEFAULTS["snapshots"]
    snapshots_keep: int | None = DEFAULTS["snapshots_keep"]
    rtsp_transport: str = DEFAULTS["rtsp_transport"]
    max_frames: int | None = DEFAULTS["max_frames"]
    alert_after: int | None = DEFAULTS["alert_after"]
    alert_label: tuple[str, ...] = DEFAULTS["alert_label"]
    stats_every: float = DEFAULTS["stats_every"]
    zone: tuple[str, ...] = DEFAULTS["zone"]  # "x1,y1,x2,y2", pixels or fractions
    blur_faces: bool = DEFAULTS["blur_faces"]
    detect_ahead: bool = DEFAULTS["detect_ahead"]
    classify_every: int | None = DEFAULTS["classify_every"]
    detect_every: int | None = DEFAULTS["detect_every"]
    reconnect_attempts: int = DEFAULTS["reconnect_attempts"]
    json_summary: bool = DEFAULTS["json_summary"]
    track_max_age: int | None = DEFAULTS["track_max_age"]  # None: TrackerOptions' own
    count_min_score: float | None = DEFAULTS["count_min_score"]
    history: Path | None = DEFAULTS["history"]  # SQLite event history
    history_days: int = DEFAULTS["history_days"]
    collect: Path | None = DEFAULTS["collect"]  # faces to label (edge/collect/)
    collect_max: int = DEFAULTS["collect_max"]
    quiet: bool = DEFAULTS["quiet"]
    # Not on the command line:
    status_every: float = 5.0  # seconds between status lines on stderr (unless quiet)
    tracking: TrackerOptions | None = None  # None: edge.tracking.tracks's defaults
    extra_sinks: tuple[SinkFactory, ...] = field(default=(), compare=False)
    alert_hooks: tuple[HookFactory, ...] = field(default=(), compare=False)

    def check(self) -> None:
        """Raise `RunError` for what is wrong before anything is opened."""
        if (self.camera is None) == (self.source is None):
            raise RunError("give exactly one of --camera N or --source FILE|DIR|URL")
        for setting in BY_NAME.values():
            value = getattr(self, setting.name)
            if setting.choices and value not in setting.choices:
                raise RunError(f"{setting.option} must be one of {', '.join(setting.choices)}, "
                               f"not {value!r}")
        self._check_numbers()
        self.size()
        self.zones()
        if self.snapshots is not None and self.snapshots.exists() and not self.snapshots.is_dir():
            raise RunError(f"--snapshots {self.snapshots} exists and is not a folder")
        if self.history is not None:
            _check_database_path(self.history)
        if self.collect is not None:
            _check_collect_folder(self.collect, self.blur_faces)
        self._check_outputs()

    def _check_numbers(self) -> None:
        """Every number against its bounds in the schema (edge/config/schema.py)."""
        for name, setting in BY_NAME.items():
            problem = bounds_problem(setting, getattr(self, name), setting.option)
            if problem:
                raise RunError(problem + (" (0: full size)" if name == "detect_width" else ""))

    def _check_outputs(self) -> None:
        """Addresses and credentials of the network outputs, parsed before anything opens; a
        --save folder that is the --source folder (its photos would be replaced)."""
        from edge.sinks.dashboard import check_exposure
        from edge.sinks.outputs import is_folder_target, parse_address

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
            from edge.sinks.mqtt import parse_mqtt_url

            parse_mqtt_url(self.mqtt)  # MqttError (an OutputError): one line, no password
        if self.webhook is not None:
            from edge.sinks.webhook import split_credentials

            split_credentials(self.webhook)

    def auth(self) -> ServeAuth | None:
        """--serve-auth parsed (ValueError with one line that never repeats the secret)."""
        from edge.sinks.dashboard import parse_serve_auth

        return parse_serve_auth(self.serve_auth) if self.serve_auth else None

    def size(self) -> tuple[int, int]:
        """--camera-size as (width, height)."""
        return parse_size(self.camera_size, "--camera-size")

    def tracker(self) -> TrackerOptions:
        """`tracking` (else the tracker's defaults) with the [tracking] settings given."""
        import dataclasses

        from edge.tracking.tracks import TrackerOptions

        given = {key: value for key, value in (("max_age", self.track_max_age),
                                               ("count_min_score", self.count_min_score))
                 if value is not None}
        return dataclasses.replace(self.tracking or TrackerOptions(), **given)

    def zones(self) -> tuple[Zone, ...]:
        from edge.tracking.zones import Zone

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
        from edge.video.capture import Backoff, FrameGrabber

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
        from edge.inference.pipeline import Pipeline, PipelineOptions

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
        from edge.tracking.alerts import unmasked_labels

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
        from edge.video.sources import camera_source, file_source

        o = self.options
        if o.camera is not None:
            return camera_source(o.camera, o.size(), o.camera_backend)
        return file_source(str(o.source), realtime=o.realtime, loop=o.loop,
                           rtsp_transport=o.rtsp_transport)

    def sink_factories(self) -> list[SinkFactory]:
        """The outputs the options ask for, then `RunOptions.extra_sinks`."""
        o = self.options
        wanted = [(o.show, _window), (o.json_out, _json_lines), (o.save, _video),
                  (o.serve, _dashboard), (o.mqtt, _mqtt), (o.webhook, _webhook),
                  (o.history, _history), (o.collect, _collect)]
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

        o = self.options
        assert self.pipeline is not None and self.grabber is not None, "open() first"
        options = LoopOptions(
            max_frames=o.max_frames, alert_after=o.alert_after, alert_labels=self.alert_labels,
            status_every=o.status_every, detect_ahead=o.detect_ahead, stats_every=o.stats_every,
            zones=o.zones(), blur_faces=o.blur_faces, tracking=o.tracker())
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
    from edge.sinks.outputs import WindowSink

    return WindowSink()


def _json_lines(context: RunContext) -> Sink:
    from edge.sinks.outputs import JsonLinesSink

    return JsonLinesSink(str(context.options.json_out))


def _video(context: RunContext) -> Sink:
    """`--save`: a video file, or one image per frame in a folder (edge.sinks.outputs)."""
    from edge.sinks.outputs import ImageFolderSink, VideoSink, is_folder_target

    save = context.options.save
    assert save is not None
    if is_folder_target(save):
        return ImageFolderSink(save)
    return VideoSink(save, context.fps, context.notice)


def _dashboard(context: RunContext) -> Sink:
    from edge.sinks.dashboard import DashboardServer, is_loopback
    from edge.sinks.outputs import parse_address

    o = context.options
    host, port = parse_address(str(o.serve))
    auth = o.auth()
    server = DashboardServer(host, port, source=context.source, auth=auth,
                             insecure=o.serve_insecure, history=o.history)
    where = "" if is_loopback(host) else (" (visible to the network, login required)" if auth
                                          else " (visible to the network, NO authentication)")
    context.notice(f"serving {server.url}{where}")
    return server


def _mqtt(context: RunContext) -> Sink:
    from edge.sinks.mqtt import MqttSink

    o = context.options
    sink = MqttSink(str(o.mqtt), o.device_name, labels=context.labels,
                    alert_labels=context.alert_labels)
    context.notice(f"publishing to {sink.describe()}")
    if not o.stats_every:
        context.notice("note: without --stats-every the Home Assistant people, compliance and "
                       "FPS sensors get no values (e.g. --stats-every 10)")
    return sink


def _webhook(context: RunContext) -> Sink:
    from edge.sinks.webhook import WebhookSink

    sink = WebhookSink(str(context.options.webhook))
    context.notice(f"posting alerts to {sink.describe()}")
    return sink


def _history(context: RunContext) -> Sink:
    """`--history PATH`: alerts, stats and person tracks into SQLite (edge/history/sink.py),
    with the run's own count rule (the tracker's options)."""
    from edge.history.sink import HistorySink

    o = context.options
    assert o.history is not None
    return HistorySink(o.history, days=o.history_days, labels=context.labels,
                       tracking=o.tracker(), source=context.source)


def _collect(context: RunContext) -> Sink:
    """`--collect DIR`: the faces worth labelling, with the model file's hash (edge/collect/)."""
    from edge.collect.sink import CollectRun, CollectSink
    from edge.core.assets import resolve_model

    o = context.options
    assert o.collect is not None
    return CollectSink(o.collect, o.collect_max,
                       CollectRun(context.labels, resolve_model(o.model), context.source))


def _snapshots(context: RunContext) -> AlertHook:
    from edge.sinks.snapshots import SnapshotWriter

    o = context.options
    assert o.snapshots is not None
    return SnapshotWriter(o.snapshots, keep=o.snapshots_keep, faces=not o.blur_faces)
