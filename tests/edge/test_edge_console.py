"""edge/core/console.py: the error line, exit codes and user-error handling the three CLIs share."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from conftest import ROOT
from typer.testing import CliRunner

from edge.core.console import (
    DEBUG_ENV,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    fail,
    task,
    user_errors,
)


class Known(ValueError):
    pass


def command(raise_: BaseException | None, unexpected: bool = False,
            json_out: bool = False) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def main() -> None:
        with user_errors("prog", (Known,), json_out=json_out, interrupted="interrupted here",
                         unexpected=unexpected):
            print("status")
            if raise_ is not None:
                raise raise_
        print("result")

    return app


def run(app: typer.Typer) -> tuple[int, list[str], list[str]]:
    result = CliRunner().invoke(app, [])
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


def test_fail_prints_the_first_line_with_the_program_name(capsys: pytest.CaptureFixture) -> None:
    exit_ = fail("trainer", "bad data\nsecond line")
    assert isinstance(exit_, typer.Exit) and exit_.exit_code == EXIT_USAGE
    assert capsys.readouterr().err == "trainer: error: bad data\n"
    assert fail("convert", "", EXIT_FAILED).exit_code == EXIT_FAILED
    assert capsys.readouterr().err == "convert: error: failed\n"


def test_user_errors_known_interrupted_and_passing_through() -> None:
    assert run(command(None)) == (0, ["status", "result"], [])
    assert run(command(Known("not a folder\nmore"))) == (EXIT_USAGE, ["status"],
                                                          ["prog: error: not a folder"])
    assert run(command(KeyboardInterrupt())) == (EXIT_INTERRUPTED, ["status"],
                                                 ["prog: error: interrupted here"])
    assert run(command(typer.Exit(3))) == (3, ["status"], [])
    code, _, _ = run(command(RuntimeError("a bug")))
    assert code == EXIT_FAILED  # a traceback (CliRunner catches it): not turned into a line
    assert run(command(Known(""))) == (EXIT_USAGE, ["status"], ["prog: error: Known"])


def test_json_out_keeps_stdout_for_the_result() -> None:
    assert run(command(None, json_out=True)) == (0, ["result"], ["status"])


def test_unexpected_errors_are_one_line_unless_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    code, _, err = run(command(RuntimeError("deep\ninside"), unexpected=True))
    assert (code, err) == (EXIT_FAILED, [f"prog: error: unexpected RuntimeError: deep "
                                         f"({DEBUG_ENV}=1 shows the traceback)"])
    monkeypatch.setenv(DEBUG_ENV, "1")
    result = CliRunner().invoke(command(RuntimeError("deep"), unexpected=True), [])
    assert isinstance(result.exception, RuntimeError) and result.stderr == ""


def test_task_disabled_or_empty_draws_nothing(capsys: pytest.CaptureFixture) -> None:
    with task("nothing", 0) as advance:
        advance(1)
    with task("off", 5, enabled=False) as advance:
        advance(5)
    assert capsys.readouterr() == ("", "")


def test_console_and_the_edge_cli_import_no_tensorflow() -> None:
    code = ("import sys, edge.core.console, edge.cli\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'rich.progress') if m in "
            "sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
