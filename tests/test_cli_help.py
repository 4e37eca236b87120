"""One help style across the command lines (`edge`, `trainer`, `convert`, `python -m
benchmarks.run`): `-h` and `--help` on every command, defaults in the help that are the code's,
errors about a file that name the file, and, in an install without the `train` extra (the
device's `maskedge[edge]`), one line naming the extra for the commands that need it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import ROOT
from typer.testing import CliRunner

from benchmarks.run import app as bench_app
from converters.cli import app as convert_app
from edge.cli import app as edge_app
from trainer.cli import app as trainer_app

APPS = {"edge": edge_app, "trainer": trainer_app, "convert": convert_app,
        "benchmarks.run": bench_app}
INSTALL_LINE = "pip install 'maskedge[train]'"


def command_paths() -> list[tuple[str, tuple[str, ...]]]:
    """(cli, sub-command path) for each CLI, each of its commands and their sub-commands."""
    found: list[tuple[str, tuple[str, ...]]] = []

    def walk(cli: str, command: Any, path: tuple[str, ...]) -> None:
        found.append((cli, path))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(cli, sub, (*path, name))

    for cli, app in APPS.items():
        walk(cli, typer.main.get_command(app), ())
    return found


PATHS = command_paths()


def test_every_cli_has_its_commands_walked() -> None:
    names = {f"{cli} {' '.join(path)}".strip() for cli, path in PATHS}
    assert {"edge run", "edge evaluate", "edge make-video", "edge info", "trainer fit",
            "trainer evaluate", "trainer ensemble", "trainer fit-detector", "convert export",
            "convert inspect", "benchmarks.run"} <= names


@pytest.mark.parametrize(("cli", "path"), PATHS, ids=[f"{c} {' '.join(p)}" for c, p in PATHS])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_flags_work_on_every_command(cli: str, path: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(APPS[cli], [*path, flag])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: "), result.output[:200]  # plain text, no boxes
    assert "-h, --help" in result.output


def option_help(app: typer.Typer, command: str, name: str) -> str:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return next(p.help for p in params if p.name == name)


def test_edge_help_defaults_are_the_codes() -> None:
    """What the options default to, in the help, comes from edge/core/assets.py, which the detectors
    and the classifier use; the shipped files it names are there."""
    from edge.core.assets import (
        DEFAULT_MODEL_NAME,
        DEFAULT_YUNET_THRESHOLD,
        DETECTOR_FILES,
        SHIPPED_DETECTORS,
        default_model_path,
        project_models_dir,
        shipped_yunet_calibration,
        shipped_yunet_model,
    )
    from edge.detection.detectors import DEFAULT_DETECT_WIDTH, DetectorOptions
    from edge.detection.yunet import load_score_threshold

    text = option_help(edge_app, "run", "detector_model")
    assert "shipped in the package" in text and "downloaded" not in text.split(";")[0]
    for name, filename in SHIPPED_DETECTORS.items():
        assert name in text and (project_models_dir() / filename).is_file()
    assert shipped_yunet_model() == project_models_dir() / SHIPPED_DETECTORS["yunet"]
    assert shipped_yunet_model(stock=True) == project_models_dir() / SHIPPED_DETECTORS[
        "yunet-stock"]
    downloaded = [n for n in DETECTOR_FILES if n not in SHIPPED_DETECTORS]
    assert downloaded and all(n in text.split(";")[1] for n in downloaded)
    assert DetectorOptions().model is None  # no file given: the shipped one
    threshold = option_help(edge_app, "run", "detector_threshold")
    assert f"({load_score_threshold(shipped_yunet_calibration()):g})" in threshold
    assert f"YuNet file {DEFAULT_YUNET_THRESHOLD:g}" in threshold
    assert f"default {DEFAULT_DETECT_WIDTH};" in option_help(edge_app, "run", "detect_width")
    model = option_help(edge_app, "run", "model")
    assert DEFAULT_MODEL_NAME in model and default_model_path().name == DEFAULT_MODEL_NAME


def test_errors_about_a_file_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.md"
    text.write_text("# not a model\n")
    (tmp_path / "empty").mkdir()
    cases = [
        (edge_app, ["info", "--model", str(text)]),
        (edge_app, ["run", "--model", str(text), "--source", str(text), "--max-frames", "1"]),
        (edge_app, ["make-video", str(tmp_path / "empty"), str(tmp_path / "v.avi")]),
        (convert_app, ["inspect", str(text)]),
    ]
    for app, args in cases:
        result = CliRunner().invoke(app, args)
        lines = [x for x in result.stderr.splitlines() if ": error: " in x]
        assert result.exit_code == 2 and len(lines) == 1, (args, result.output)
        named = "empty" if args[0] == "make-video" else text.name
        assert named in lines[0], (args, lines[0])


# -- an install without the train extra --------------------------------------------------------

#: Run as `python -c`: the modules of the train extra cannot be imported (as in a device's
#: `pip install maskedge[edge]`), then one command line runs with the given arguments.
WITHOUT_TRAIN = textwrap.dedent("""
    import importlib.abc, runpy, sys

    BLOCKED = {"tensorflow", "keras", "PIL", "matplotlib", "onnx", "tensorboard"}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    module, *sys.argv[1:] = sys.argv[1:]
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)
""")


def without_train(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_TRAIN, module, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


@pytest.mark.parametrize(("module", "args", "prog"), [
    ("trainer.cli", ["fit", "x"], "trainer"),
    ("trainer.cli", ["fit", "data", "--out", "run"], "trainer"),
    ("trainer.cli", ["evaluate", "model.h5", "--data", "x"], "trainer"),
    ("converters.cli", ["/nonexistent.h5", "--quantize", "int8"], "convert"),
    ("benchmarks.run", ["--help"], "benchmarks"),
    ("benchmarks.stages.threeclass", ["--quick"], "benchmarks"),
])
def test_without_the_train_extra_one_line_names_it(module: str, args: list[str],
                                                   prog: str) -> None:
    done = without_train(module, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), done.stderr[-2000:]
    assert INSTALL_LINE in lines[0] and "'train' extra" in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_without_the_train_extra_the_device_commands_run() -> None:
    """The blocker really blocks, and what a device needs still works: help everywhere,
    `edge info`, `convert inspect`."""
    for module, args in (("trainer.cli", ["fit", "-h"]), ("edge", ["info"]),
                         ("converters.cli", ["inspect", str(ROOT / "models" /
                                                            "face_mask_2c_int8.tflite")])):
        done = without_train(module, *args)
        assert done.returncode == 0, (module, done.stderr[-2000:])
    probe = subprocess.run([sys.executable, "-c", WITHOUT_TRAIN, "PIL"], capture_output=True,
                           text=True, timeout=60, check=False)
    assert "ModuleNotFoundError" in probe.stderr
