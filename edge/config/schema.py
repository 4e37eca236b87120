"""Every `edge run` setting, defined once: its section, type, default, bounds and help.

The table `SETTINGS` is the one place a setting is described (Frigate's `frigate/config/` is the
model: one validated schema, a default, bounds and help per field). Everything else reads it:

- `edge/runner.py`'s `RunOptions` takes its defaults from `DEFAULTS` and checks numbers against
  the bounds here;
- `edge run`'s options, their help and the defaults `--help` shows are built from it
  (edge/config/options.py);
- `edge run --config FILE.toml`, `edge config init` and `edge config check` read and write the
  same names, one TOML table per section (edge/config/files.py);
- the docs' table of settings is rendered from it (`markdown_table`).

A setting's name is its `RunOptions` field; on the command line it is `--name-with-dashes`
(or `flag`), in the file `key` inside `[section]`. `None` as a default means "decided at run
time" (the help says by what); TOML has no null, so such a key is simply left out of a file.
Only the standard library and edge/core/assets.py (stdlib only) are imported: `edge --help`
stays fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from edge.core.assets import (
    DEFAULT_DETECT_WIDTH,
    detector_model_help,
    detector_threshold_help,
    model_help,
)

#: edge.detection.detectors.DETECTORS' names (kept here so that the CLI starts without OpenCV).
DETECTOR_NAMES = ("yunet", "yunet-stock", "blazeface-short", "blazeface-full", "none")
RUNTIME_NAMES = ("auto", "litert", "tflite_runtime", "tensorflow")
RTSP_TRANSPORTS = ("auto", "tcp", "udp")
CAMERA_BACKENDS = ("auto", "opencv", "picamera2")  # edge.video.sources.CAMERA_BACKENDS
#: The tables of a config file, in the order `edge config init` writes them.
SECTIONS = ("source", "detector", "classifier", "tracking", "alerts", "zones", "serve", "mqtt",
            "webhook", "snapshots", "json", "save", "history", "collect", "run")
#: Kinds of value: what the file must hold and how the command line parses it.
KINDS = ("int", "float", "bool", "str", "path", "list")


@dataclass(frozen=True)
class Setting:
    """One setting of `edge run`."""

    name: str  # the RunOptions field
    section: str  # the config file's table
    key: str  # the key inside that table
    kind: str  # one of KINDS
    default: Any
    help: str
    low: float | None = None  # bounds, inclusive (numbers)
    high: float | None = None
    choices: tuple[str, ...] = ()
    flag: str | None = None  # the command-line option, if not --name-with-dashes
    env: str | None = None  # an environment variable that may hold it (secrets)
    metavar: str | None = None
    secret: bool = False  # never printed back (config init leaves it out, check redacts it)

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"


def _s(name: str, section: str, kind: str, default: Any, help: str, **extra: Any) -> Setting:
    key = extra.pop("key", name)
    return Setting(name=name, section=section, key=key, kind=kind, default=default, help=help,
                   **extra)


SETTINGS: tuple[Setting, ...] = (
    # --- source ----------------------------------------------------------------------------
    _s("camera", "source", "int", None, "Camera index (picamera2 when it sees the camera, else "
       "OpenCV V4L2).", low=0),
    _s("source", "source", "str", None, "Video file, image, folder of images, or stream URL "
       "(rtsp://, http://).", key="input"),
    _s("camera_size", "source", "str", "640x480", "Camera capture size (WIDTHxHEIGHT).",
       key="size"),
    _s("camera_backend", "source", "str", "auto", "auto | opencv | picamera2.",
       choices=CAMERA_BACKENDS, key="backend"),
    _s("rtsp_transport", "source", "str", "auto", "auto | tcp | udp: how an rtsp:// stream's "
       "packets travel (tcp for lossy networks).", choices=RTSP_TRANSPORTS),
    _s("realtime", "source", "bool", False, "Play files at their frame rate and drop frames "
       "like a camera."),
    _s("loop", "source", "bool", False, "Repeat a file or folder forever."),
    _s("reconnect_attempts", "source", "int", 10, "Reopen attempts (with backoff) when a camera "
       "or stream is lost.", low=0),
    _s("max_frames", "source", "int", None, "Stop after this many processed frames.", low=1),
    # --- detector --------------------------------------------------------------------------
    _s("detector", "detector", "str", "yunet", f"{' | '.join(DETECTOR_NAMES)} (yunet: "
       "fine-tuned on masked faces; yunet-stock: OpenCV's weights; none: the whole frame is "
       "one face).", choices=DETECTOR_NAMES, key="name"),
    _s("detector_model", "detector", "path", None, detector_model_help(), key="model"),
    _s("detector_threshold", "detector", "float", None, detector_threshold_help(), low=0.0,
       high=1.0, key="threshold"),
    _s("detect_width", "detector", "int", None, "YuNet sees each frame scaled, up or down, to "
       f"this width (default {DEFAULT_DETECT_WIDTH}; 0 = as it is, for large frames with "
       "distant faces).", low=0, key="width"),
    _s("calibrate_boxes", "detector", "bool", True, "Map YuNet's boxes onto the annotation "
       "convention (fitted on held-in photos)."),
    _s("detect_every", "detector", "int", None, "Video and camera: run the detector on every "
       "Nth frame only; the frames between keep its faces (faster; a new face shows up to N-1 "
       "frames late; 1 = every frame) [default: 2].", low=1, metavar="N", key="every"),
    _s("detect_ahead", "detector", "bool", False, "Detect the next frame on a thread while "
       "classifying this one (uses a second core; one frame more latency).", key="ahead"),
    # --- classifier ------------------------------------------------------------------------
    _s("model", "classifier", "path", None, model_help()),
    _s("threads", "classifier", "int", None, "Inference threads (interpreter and OpenCV).",
       low=1),
    _s("runtime", "classifier", "str", "auto", "TFLite runtime: auto (litert, then "
       "tflite_runtime, then tensorflow.lite), litert, tflite_runtime, tensorflow.",
       choices=RUNTIME_NAMES),
    _s("classify_every", "classifier", "int", None, "Video and camera: a face that stays in "
       "place keeps its class probabilities for N-1 frames before it is classified again (1 = "
       "every frame) [default: 3].", low=1, metavar="N", key="every"),
    # --- tracking --------------------------------------------------------------------------
    _s("track_max_age", "tracking", "int", None, "Frames a face may go unseen before its track "
       "ends [default: 30].", low=1, metavar="FRAMES", key="max_age"),
    _s("count_min_score", "tracking", "float", None, "A track counts as a person only when its "
       "mean detector score reaches this [default: 0.6].", low=0.0, high=1.0,
       key="count_min_score"),
    # --- alerts ----------------------------------------------------------------------------
    _s("alert_after", "alerts", "int", None, "Raise an alert event when a face stays unmasked "
       "for N frames.", low=1, metavar="N", key="after"),
    _s("alert_label", "alerts", "list", (), "Label that counts as unmasked (repeatable; "
       "default: without_* and *incorrect*).", key="labels"),
    _s("stats_every", "alerts", "float", 0.0, "Give a stats event (people per class, "
       "compliance) every SECONDS and at the end (0 = none).", low=0.0, high=math.inf,
       metavar="SECONDS"),
    # --- zones -----------------------------------------------------------------------------
    _s("zone", "zones", "list", (), "Only faces centred inside count in stats and alerts "
       "(repeatable; X1,Y1,X2,Y2 in pixels, or fractions of the frame when all four are <= 1).",
       metavar="X1,Y1,X2,Y2", key="rectangles"),
    # --- outputs ---------------------------------------------------------------------------
    _s("serve", "serve", "str", None, "Serve the live dashboard (stream, counts, alerts) at "
       "HOST:PORT (PORT alone binds 127.0.0.1; port 0 picks a free one; beyond loopback it "
       "needs --serve-auth).", key="address"),
    _s("serve_auth", "serve", "str", None, "Credentials for --serve (HTTP Basic, or a bearer "
       "token); better from the environment variable, out of shell history.",
       env="MASKEDGE_SERVE_AUTH", metavar="USER:PASSWORD|token:TOKEN", secret=True, key="auth"),
    _s("serve_insecure", "serve", "bool", False, "Serve beyond loopback without "
       "authentication.", key="insecure"),
    _s("mqtt", "mqtt", "str", None, "Publish alerts, stats and status to this broker, with Home "
       "Assistant discovery (needs the 'mqtt' extra).", env="MASKEDGE_MQTT",
       metavar="mqtt://[USER:PASS@]HOST[:PORT][/PREFIX]", secret=True, key="url"),
    _s("device_name", "mqtt", "str", None, "Device name in MQTT topics and Home Assistant "
       "(default: the host name)."),
    _s("webhook", "webhook", "str", None, "POST each alert as JSON to this http(s) URL "
       "(timeout, retries, backoff).", env="MASKEDGE_WEBHOOK", metavar="URL", secret=True,
       key="url"),
    _s("snapshots", "snapshots", "path", None, "Save a JPEG of the face and of the frame for "
       "each alert here.", metavar="DIR", key="folder"),
    _s("snapshots_keep", "snapshots", "int", None, "Keep only the newest N alerts' snapshots.",
       low=1, metavar="N", key="keep"),
    _s("json_out", "json", "str", None, "Write one JSON line per frame and per alert here ('-' "
       "= stdout).", flag="--json", key="path"),
    _s("json_summary", "json", "bool", False, "Print the end-of-run summary as JSON.",
       key="summary"),
    _s("save", "save", "str", None, "Write the annotated video here (.mp4, .avi; frames of "
       "another size than the first are scaled and letterboxed into it), or, for a folder "
       "(ending in / or existing), one annotated image per frame: each photo under its own "
       "name and size.", metavar="FILE|DIR/", key="path"),
    _s("save_fps", "save", "float", None, "Frame rate of the saved video (default: the "
       "source's, else 15).", low=1e-3, high=1e3, key="fps"),
    _s("show", "save", "bool", False, "Show a window (needs an OpenCV with GUI)."),
    _s("blur_faces", "save", "bool", False, "Blur faces in the annotated output (video, page, "
       "window)."),
    _s("history", "history", "path", None, "Keep alerts, stats and each person's track in this "
       "SQLite database (`edge history --db PATH` reads it).", metavar="PATH", key="db"),
    _s("history_days", "history", "int", 30, "Days of history kept (older rows are deleted).",
       low=1, key="keep_days"),
    _s("collect", "collect", "path", None, "Keep the faces worth a person's look (the model "
       "unsure, contradicting itself or flipping along a track, and a small sample of "
       "confident ones) in this folder, to label with `edge label DIR` and train on.",
       metavar="DIR", key="folder"),
    _s("collect_max", "collect", "int", 500, "Faces kept waiting for a label at most; beyond "
       "it a more useful face replaces the least useful one.", low=1, metavar="N", key="max"),
    _s("quiet", "run", "bool", False, "No status or alert lines on stderr while running."),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_KEY: dict[tuple[str, str], Setting] = {(s.section, s.key): s for s in SETTINGS}
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}


def default(name: str) -> Any:
    """A setting's default (for `RunOptions`' fields)."""
    return BY_NAME[name].default


def value_problem(setting: Setting, value: Any) -> str | None:
    """Why `value` is not a valid value of `setting` (None: it is); no secret is repeated."""
    shown = "***" if setting.secret else repr(value)
    kind = setting.kind
    if kind == "bool" and not isinstance(value, bool):
        return f"{setting.dotted} must be true or false, not {shown}"
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{setting.dotted} must be a whole number, not {shown}"
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{setting.dotted} must be a number, not {shown}"
    if kind in ("str", "path") and not isinstance(value, str):
        return f"{setting.dotted} must be a string, not {shown}"
    if kind == "list" and not (isinstance(value, list | tuple)
                               and all(isinstance(v, str) for v in value)):
        return f"{setting.dotted} must be a list of strings, not {shown}"
    if setting.choices and value not in setting.choices:
        return f"{setting.dotted} must be one of {', '.join(setting.choices)}, not {shown}"
    return bounds_problem(setting, value, setting.dotted)


def bounds_problem(setting: Setting, value: Any, name: str) -> str | None:
    """Why a number lies outside the setting's bounds (NaN never lies inside)."""
    if setting.kind not in ("int", "float") or value is None:
        return None
    low = -math.inf if setting.low is None else setting.low
    high = math.inf if setting.high is None else setting.high
    if setting.kind == "int" and setting.high is None:
        return None if value >= low else f"{name} must be at least {low:g}"
    if not low <= value <= high:
        return f"{name} must lie in [{low:g}, {high:g}], not {value}"
    return None


def _bounds(s: Setting) -> str:
    if s.choices:
        return " / ".join(f"`{c}`" for c in s.choices)
    if s.low is not None and s.high is not None:
        return f"{s.low:g} to {s.high:g}"
    return f">= {s.low:g}" if s.low is not None else ""


def markdown_table() -> str:
    """The settings as a Markdown table (the docs' reference)."""
    rows = ["| file | command line | default | allowed | what |",
            "| --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        shown = "" if s.default in (None, ()) else f"`{json.dumps(s.default)}`"
        env = f" (or ${s.env})" if s.env else ""
        rows.append(f"| `[{s.section}] {s.key}` | `{s.option}`{env} | {shown} | {_bounds(s)} | "
                    f"{s.help.replace('|', '/')} |")
    return "\n".join(rows)


def settings_page() -> str:
    """docs/settings.md: `python -m edge.config.schema > docs/settings.md` regenerates it."""
    return ("# Settings\n\nEvery setting of `edge run`, from its one definition "
            "(`edge/config/schema.py`). In a config file (`edge run --config FILE.toml`; "
            "`edge config init FILE` writes one with every default, `edge config check FILE` "
            "checks one) each is a key of its table; on the command line, the option. The "
            "command line wins over the environment, the environment over the file, the file "
            "over the default.\n\n" + markdown_table() + "\n\n"
            "*Generated by `python -m edge.config.schema`; do not edit by hand.*\n")


if __name__ == "__main__":
    print(settings_page(), end="")
