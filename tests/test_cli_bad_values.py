"""Every option of `trainer`, `convert` and `edge`, given a wrongly typed or out-of-range value:
exit code 2 and one error message naming the option or the value, never a traceback.

The options are enumerated from the Typer apps' click commands. Each gets bad values by its type
(`abc` for numbers, `bogus` for choices, `--flag=yes` for flags) plus the values of `BAD` (ranges,
missing input files, outputs under a regular file, malformed text); a text or path option must
appear in `BAD` or in `ALLOWED` with the reason any value is fine, so a new option fails
`test_every_option_is_classified` until it is given a row.

Everything runs in-process with typer's CliRunner (well under a minute). What would follow a
wrongly accepted value is cut short: `trainer` raises `Accepted` where it would import TensorFlow,
`convert export` where it would call `convert_model`, and `edge run` runs a tiny video with
`--max-frames 1` (an accepted value ends with exit 0 in about a second).
"""

from __future__ import annotations

import enum
import functools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import typer
from conftest import DATA_VOC
from typer.testing import CliRunner

from converters.cli import app as convert_app
from edge.cli import app as edge_app
from trainer.cli import app as trainer_app

APPS = {"edge": edge_app, "trainer": trainer_app, "convert": convert_app}
MISSING = "{tmp}/missing/nothing.here"
UNDER_FILE = "{tmp}/a-file/out"  # an output whose parent is a regular file

# Bad values beyond the generic ones, by "cli command option" ("cli command ARG" for arguments).
# A value may be (value, extra arguments the case needs, arguments of the base left out).
BAD: dict[str, list[Any]] = {
    # edge run
    "edge run --camera": [("-1", (), ("--source",))],
    "edge run --source": [MISSING],
    "edge run --model": [MISSING],
    "edge run --detector": ["bogus"],
    "edge run --detector-model": [MISSING],
    "edge run --detector-threshold": ["-0.1", "1.5", "nan"],
    "edge run --detect-width": ["-1"],
    "edge run --threads": ["0", "-2"],
    "edge run --runtime": ["bogus"],
    "edge run --camera-size": ["abc", "8x8", "640x-480"],
    "edge run --camera-backend": ["bogus"],
    "edge run --save": [UNDER_FILE + ".mp4"],
    "edge run --save-fps": ["0", "-5", "nan"],
    "edge run --json": [UNDER_FILE + ".jsonl"],
    "edge run --serve": ["127.0.0.1:99999", "127.0.0.1:http", "0.0.0.0:8080"],
    "edge run --serve-auth": [("nocolon", ("--serve", "127.0.0.1:0")),
                              ("user:", ("--serve", "127.0.0.1:0"))],
    "edge run --mqtt": ["http://127.0.0.1:1883", "mqtt://", "mqtt://127.0.0.1:99999"],
    "edge run --webhook": ["ftp://127.0.0.1/x", "notaurl", "http://"],
    "edge run --snapshots": ["{tmp}/a-file"],
    "edge run --config": [MISSING, "{tmp}", "{tmp}/a-file"],
    "edge run --history": ["{tmp}", "{tmp}/a-file/events.db"],
    "edge run --snapshots-keep": ["0", "-1"],
    "edge run --rtsp-transport": ["bogus"],
    "edge run --max-frames": ["0", "-1"],
    "edge run --alert-after": ["0", "-1"],
    "edge run --alert-label": [("nosuch_label", ("--alert-after", "3"))],
    "edge run --stats-every": ["-1", "nan"],
    "edge run --zone": ["1,2,3", "a,b,c,d", "0.5,0.5,0.1,0.1"],
    "edge run --reconnect-attempts": ["-1"],
    "edge run --classify-every": ["0", "-1"],
    "edge run --detect-every": ["0", "-1"],
    "edge run --collect": [UNDER_FILE, "{tmp}/a-file", ("{tmp}/collect", ("--blur-faces",))],
    "edge run --collect-max": ["0", "-1"],
    # edge evaluate
    "edge evaluate DATA": [MISSING],
    "edge evaluate --model": [MISSING],
    "edge evaluate --detector": ["bogus"],
    "edge evaluate --detector-model": [MISSING],
    "edge evaluate --detector-dir": [MISSING],
    "edge evaluate --detector-threshold": ["-0.1", "1.5", "nan"],
    "edge evaluate --detect-width": ["-1"],
    "edge evaluate --threads": ["0"],
    "edge evaluate --limit": ["0", "-1"],
    "edge evaluate --json": [UNDER_FILE + ".json"],
    "edge evaluate --label-map": ["noequals"],
    "edge evaluate --only-list": [MISSING],
    "edge evaluate --exclude-list": [MISSING],
    # edge make-video
    "edge make-video PHOTOS": [MISSING],
    "edge make-video OUT": [UNDER_FILE + ".mp4", "{tmp}/video.xyz"],
    "edge make-video --size": ["abc", "8x8"],
    "edge make-video --fps": ["0", "-1", "nan"],
    "edge make-video --hold": ["0"],
    "edge make-video --limit": ["0", "-1"],
    # edge info
    "edge info --model": [MISSING],
    # edge history
    "edge history --db": [MISSING, "{tmp}", "{tmp}/a-file"],
    "edge history --since": ["tomorrow", "2024-13-01", ("-1h", ("--until", "-2h"))],
    "edge history --until": ["soon"],
    "edge history --by": ["week"],
    "edge history --csv": [UNDER_FILE + ".csv", "{tmp}", ("-", ("--json",))],
    # edge label (the base labels a face and exits; a value accepted wrongly would label it)
    "edge label FOLDER": [MISSING, "{tmp}/a-file", "{tmp}"],
    "edge label --serve": ["127.0.0.1:99999", "127.0.0.1:http", "0.0.0.0:8080"],
    "edge label --serve-auth": [("nocolon", ("--serve", "127.0.0.1:0")),
                                ("user:", ("--serve", "127.0.0.1:0"))],
    "edge label --set": ["noequals", "faces/nosuch.jpg=with_mask", "{crop}=nosuch_label",
                         "=with_mask", "{crop}=../x"],
    # trainer fit
    "trainer fit DATA": [MISSING],
    "trainer fit --out": ["{tmp}/a-file"],
    "trainer fit --weights": [MISSING],
    "trainer fit --input-size": ["0", "31"],
    "trainer fit --alpha": ["0.6", "-1"],
    "trainer fit --epochs": ["0"],
    "trainer fit --batch-size": ["0"],
    "trainer fit --learning-rate": ["0", "-1", "nan"],
    "trainer fit --patience": ["-1"],
    "trainer fit --seed": ["-1"],
    "trainer fit --split-seed": ["-1"],
    "trainer fit --val-seed": ["-1", ("1", ("--val-fraction", "0"))],
    "trainer fit --logit-adjust": ["-0.1", "1.5", "nan", ("0.5", ("--no-class-weights",))],
    "trainer fit --val-fraction": ["-0.1", "1.5", "nan"],
    "trainer fit --test-fraction": ["0", "1.5", "nan"],
    "trainer fit --augment-views": ["-1"],
    "trainer fit --augment": ["wild"],
    "trainer fit --label-smoothing": ["1", "-0.1", "nan"],
    "trainer fit --fine-tune-layers": ["-1"],
    "trainer fit --fine-tune-epochs": ["0"],
    "trainer fit --fine-tune-learning-rate": ["0", "-1", "nan"],
    "trainer fit --min-face": ["0"],
    "trainer fit --min-per-class": ["0", "-1"],
    "trainer fit --limit-per-class": ["1"],
    "trainer fit --cache-dir": ["{tmp}/a-file"],
    "trainer fit --label-map": ["noequals"],
    "trainer fit --exclude-list": [MISSING],
    "trainer fit --source-weight": ["noequals", "folders=-1", "nosuch=1"],
    "trainer fit --strategy": ["bogus"],
    "trainer fit --stream": ["bogus"],
    "trainer fit --stream-chunk": ["0", "-1"],
    "trainer fit --resume": [(MISSING, (), ("--out",))],  # with DATA and --out: starts a run
    # trainer evaluate
    "trainer evaluate MODEL": [MISSING],
    "trainer evaluate --data": [MISSING],
    "trainer evaluate --split": ["bogus"],
    "trainer evaluate --out": ["{tmp}/a-file"],
    "trainer evaluate --min-face": ["0"],
    "trainer evaluate --label-map": ["noequals"],
    "trainer evaluate --only-list": [MISSING],
    "trainer evaluate --exclude-list": [MISSING],
    # trainer ensemble
    "trainer ensemble RUNS": [MISSING, "{tmp}/folders"],
    "trainer ensemble --out": ["{tmp}/a-file", "{folders}"],
    "trainer ensemble --logit-adjust": ["-0.1", "1.5", "nan"],
    # trainer distill
    "trainer distill DATA": [MISSING, "{folders}"],
    "trainer distill --out": ["{tmp}/a-file", UNDER_FILE],
    "trainer distill --teacher": [MISSING, "{tmp}/model.h5"],
    "trainer distill --closeups": [MISSING],
    "trainer distill --exclude-list": [MISSING],
    "trainer distill --weights": [MISSING],
    "trainer distill --cache-dir": ["{tmp}/a-file"],
    "trainer distill --head-activation": ["tanh"],
    # trainer fit-detector
    "trainer fit-detector DATA": [MISSING],
    "trainer fit-detector --onnx": [MISSING],
    "trainer fit-detector --out": [UNDER_FILE + ".tflite"],
    "trainer fit-detector --exclude-list": [MISSING],
    "trainer fit-detector --epochs": ["0"],
    "trainer fit-detector --learning-rate": ["0", "1", "nan"],
    "trainer fit-detector --batch": ["0", "65"],
    "trainer fit-detector --seed": ["-1"],
    # convert
    "convert export MODEL": [MISSING],
    "convert export --out": ["{tmp}/model.txt", UNDER_FILE + ".tflite"],
    "convert export --out-dir": ["{tmp}/a-file"],
    "convert export --split": [MISSING],
    "convert export --representative": [MISSING],
    "convert export --samples": ["0"],
    "convert export --seed": ["-1"],
    "convert export --max-drop": ["nan", "inf"],
    "convert export --threads": ["0"],
    "convert inspect FILE": [MISSING],
}

# What an error may name instead of the option or the value: credentials are never repeated.
ALIASES = {"--serve-auth": "serve credentials"}

# Text options where any value is meaningful.
ALLOWED = {
    "edge run --device-name": "any text: slugified into MQTT topics and Home Assistant ids",
}

# The arguments each command is run with (placeholders filled in by `fill`): valid, so only the
# value under test is wrong.
BASE: dict[str, list[str]] = {
    "edge run": ["--source", "{video}", "--max-frames", "1", "--quiet"],
    "edge evaluate": ["{voc}", "--limit", "1"],
    "edge make-video": ["{photos}", "{tmp}/made.avi", "--limit", "2"],
    "edge info": [],
    "edge history": ["--db", "{history}"],
    "edge label": ["{collect}", "--set", "{crop}=with_mask"],
    "trainer fit": ["{folders}", "--out", "{tmp}/run", "--weights", "none", "--quiet"],
    "trainer evaluate": ["{tmp}/model.h5", "--data", "{folders}", "--quiet"],
    "trainer ensemble": ["{run}", "--out", "{tmp}/ensemble"],
    "trainer distill": ["{voc}", "--out", "{tmp}/distill", "--weights", "none", "--quiet"],
    "trainer fit-detector": ["{voc}", "--onnx", "{tmp}/yunet.onnx", "--out", "{tmp}/ft.tflite"],
    "convert export": ["{tmp}/model.h5", "--no-progress"],
    "convert inspect": ["{tflite}"],
}


class Accepted(BaseException):
    """Raised where a command would start its real work: the bad value was accepted."""


@dataclass(frozen=True)
class Case:
    cli: str
    command: str
    param: str  # "--option" or the argument's name in upper case
    value: str
    extra: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.cli} {self.command} {self.param} {self.value}"


@functools.cache
def commands() -> dict[str, Any]:
    """'cli command' -> the click command, for every command of the three CLIs."""
    found = {}
    for cli, app in APPS.items():
        group = typer.main.get_command(app)
        for name, command in group.commands.items():
            found[f"{cli} {name}"] = command
    return found


def param_key(command: str, param: Any) -> str:
    if param.param_type_name == "argument":
        return f"{command} {param.name.upper()}"
    return f"{command} {param.opts[0]}"


def generic_values(param: Any) -> list[str]:
    """Bad values every option of this type gets."""
    if param.param_type_name == "option" and param.is_flag:
        return ["=yes"]
    kind = param.type_descriptor.annotation
    args = getattr(kind, "__args__", ())
    kind = args[0] if args and getattr(kind, "__origin__", None) is list else kind
    if kind in (int, float):
        return ["abc", "1.5"] if kind is int else ["abc"]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return ["bogus"]
    return []


def all_cases() -> list[Case]:
    cases = []
    for command, click_command in commands().items():
        cli, name = command.split(" ", 1)
        for param in click_command.params:
            key = param_key(command, param)
            values = generic_values(param) + BAD.get(key, [])
            for value in values:
                value, extra, drop = (value, (), ()) if isinstance(value, str) else (
                    value + ((),) * (3 - len(value)))
                cases.append(Case(cli, name, key.rsplit(" ", 1)[1], value, tuple(extra),
                                  tuple(drop)))
    return cases


def test_every_option_is_classified() -> None:
    """A text or path option needs bad values in BAD or a reason in ALLOWED; no stale rows."""
    keys = {param_key(c, p): p for c, cmd in commands().items() for p in cmd.params}
    missing = [k for k, p in keys.items()
               if not generic_values(p) and k not in BAD and k not in ALLOWED]
    assert not missing, f"classify these options in BAD or ALLOWED: {missing}"
    stale = sorted((set(BAD) | set(ALLOWED)) - set(keys))
    assert not stale, f"rows for options that do not exist: {stale}"


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The files the base arguments name: a tiny video, photos, class folders, a VOC folder."""
    tmp = tmp_path_factory.mktemp("bad-values")
    rng = np.random.default_rng(0)
    photos = tmp / "photos"
    for label in ("with_mask", "without_mask"):
        (tmp / "folders" / label).mkdir(parents=True)
        for i in range(3):
            image = rng.integers(0, 256, (48, 48, 3), np.uint8)
            cv2.imwrite(str(tmp / "folders" / label / f"{i}.jpg"), image)
    voc = tmp / "voc"
    for sub in ("images", "annotations"):
        (voc / sub).mkdir(parents=True)
    for xml in sorted((DATA_VOC / "annotations").glob("*.xml"))[:2]:
        shutil.copy(xml, voc / "annotations")
        shutil.copy(next((DATA_VOC / "images").glob(xml.stem + ".*")), voc / "images")
    shutil.copytree(voc / "images", photos)
    writer = cv2.VideoWriter(str(tmp / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                             (160, 120))
    for _ in range(3):
        writer.write(rng.integers(0, 256, (120, 160, 3), np.uint8))
    writer.release()
    (tmp / "a-file").write_text("a regular file\n")
    (tmp / "model.h5").write_bytes(b"not really a model")
    (tmp / "yunet.onnx").write_bytes(b"not really a detector")
    (tmp / "a-run").mkdir()
    for name in ("model.h5", "split.json", "summary.json"):  # what `trainer ensemble` checks
        (tmp / "a-run" / name).write_text("{}")
    from edge.core.assets import default_model_path
    from edge.history.store import open_for_writing

    open_for_writing(tmp / "history.db").close()
    collect = tmp / "collect"  # what `edge run --collect` leaves: a crop and its manifest line
    (collect / "faces").mkdir(parents=True)
    cv2.imwrite(str(collect / "faces" / "a.jpg"), rng.integers(0, 256, (48, 48, 3), np.uint8))
    (collect / "manifest.jsonl").write_text(
        '{"file": "faces/a.jpg", "labels": ["with_mask", "without_mask"]}\n')
    return {"collect": str(collect), "crop": "faces/a.jpg",
            "tmp": str(tmp), "video": str(tmp / "clip.avi"), "voc": str(voc),
            "photos": str(photos), "folders": str(tmp / "folders"), "run": str(tmp / "a-run"),
            "tflite": str(default_model_path()), "history": str(tmp / "history.db")}


@pytest.fixture(autouse=True)
def cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where trainer and convert would start their real work, raise `Accepted` instead."""
    import converters.export
    import trainer.cli
    import trainer.distill.run

    def accepted(*args: Any, **kwargs: Any) -> None:
        raise Accepted

    monkeypatch.setattr(trainer.cli, "_import_tensorflow_quietly", accepted)
    monkeypatch.setattr(converters.export, "convert_model", accepted)
    monkeypatch.setattr(trainer.distill.run, "prepare_data", accepted)


def fill(text: str, places: dict[str, str]) -> str:
    return text.format(**places)


def arguments(case: Case, places: dict[str, str]) -> list[str]:
    """The command line: the base with the value under test in its place. A base starts with
    the command's arguments, in order; options follow."""
    command = commands()[f"{case.cli} {case.command}"]
    names = [p.name.upper() for p in command.params if p.param_type_name == "argument"]
    base = BASE[f"{case.cli} {case.command}"]
    args = [case.value if name == case.param else item for name, item in zip(names, base,
                                                                               strict=False)]
    rest = base[len(names):]
    i = 0
    while i < len(rest):
        if rest[i] in case.drop:
            i += 2  # the option and its value
            continue
        args.append(rest[i])
        i += 1
    if case.param.startswith("-"):
        args += [case.param + case.value] if case.value.startswith("=") else [case.param,
                                                                                case.value]
    return [case.command, *(fill(x, places) for x in (*args, *case.extra))]


def error_messages(output: str) -> list[str]:
    """The error messages in a command's output: `error: ...` lines (`edge: error: ...` too),
    click's `Error: ...` line, or the text of typer's framed error box, as one string each."""
    messages: list[str] = []
    box: list[str] | None = None
    for line in output.splitlines():
        text = line.strip()
        if box is not None:
            if text.startswith("\u2570"):
                messages.append(" ".join(box))
                box = None
            else:
                box.append(text.strip("\u2502").strip())
        elif text.startswith("\u256d") and "Error" in text:
            box = []
        elif re.match(r"(\w+: )?error: ", text, re.IGNORECASE):
            messages.append(text)
    return messages


CASES = all_cases()


def test_the_table_is_large() -> None:
    assert len(CASES) >= 200, len(CASES)


def test_camera_backends_agree() -> None:
    import edge.config.schema
    import edge.video.sources

    assert edge.config.schema.CAMERA_BACKENDS == edge.video.sources.CAMERA_BACKENDS


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_value_is_one_error_line(case: Case, places: dict[str, str]) -> None:
    args = arguments(case, places)
    shown = " ".join([case.cli, *args])
    try:
        result = CliRunner().invoke(APPS[case.cli], args)
    except Accepted:
        pytest.fail(f"accepted: {shown}")
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}: {type(result.exception).__name__}: {result.exception}")
    output = result.output
    assert "Traceback" not in output, f"{shown}:\n{output}"
    assert result.exit_code == 2, f"{shown}: exit {result.exit_code}\n{output}"
    messages = error_messages(output)
    assert len(messages) == 1, f"{shown}: expected one error message:\n{output}"
    value = fill(case.value.lstrip("="), places)
    named = (case.param, value, Path(value).name, repr(value), ALIASES.get(case.param))
    assert any(text and text in messages[0] for text in named), (
        f"{shown}: the error names neither {case.param} nor {value!r}: {messages[0]}")
