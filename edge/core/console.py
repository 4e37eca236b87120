"""What the three command lines, `edge`, `trainer` and `convert`, share on the console.

- Exit codes: `EXIT_OK` 0, `EXIT_FAILED` 1 (the work failed), `EXIT_USAGE` 2 (bad input: a file,
  an option, the data), `EXIT_INTERRUPTED` 130 (Ctrl-C).
- `fail(prog, message)`: the one error line, `PROG: error: MESSAGE`, on stderr; `user_errors`: a
  block in which known user errors, Ctrl-C and (for `convert`) unexpected exceptions end as that
  line and an exit code, never a traceback.
- `task` (a progress bar) and `say` (a status line), both on stderr, so stdout stays clean for
  `--json`.
- TensorFlow's C++ log level (`quiet_tensorflow_logs`), and `native_stderr_silenced` for the
  start-up lines TensorFlow prints while it is imported.
- `cli_app`: the Typer app every command line is made with, so they share one help style (`-h`
  and `--help` on every command, plain text, no completion options, no rich tracebacks).
- `require_extra` / `missing_extra`: one line naming the extra to install when a command needs
  packages that this install lacks (the device installs `maskedge[edge]`, without TensorFlow).

edge is the base layer, so every CLI may import this module; it needs typer (and rich, imported
inside `task`), never TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import typer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT

#: TF_CPP_MIN_LOG_LEVEL for the CLIs, the benchmarks and the tests (3: no C++ info, warning or
#: error lines); set before TensorFlow is imported. A value already in the environment wins.
TF_LOG_LEVEL = "3"
#: With this environment variable set, an unexpected exception in `convert` keeps its traceback.
DEBUG_ENV = "MASKEDGE_DEBUG"

#: `advance(n)`: move a progress bar by n steps.
Advance = Callable[[int], None]

#: What every maskedge Typer app shares (`cli_app`): `-h` as well as `--help` (sub-commands
#: inherit it), plain help text (rich's boxes cut long help at 80 columns), no completion options,
#: no rich tracebacks.
CLI_SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}
#: The top-level modules of each optional extra (pyproject.toml) that the commands import.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("tensorflow", "keras", "PIL", "matplotlib", "onnx"),
}

# Typer's own ways out (exit codes, usage errors) pass through `user_errors` untouched.
_TYPER_EXITS = (typer.Exit, typer.Abort, typer.TyperException)


def fail(prog: str, message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `PROG: error: MESSAGE` (the message's first line) on stderr; return the
    `typer.Exit(code)` for the caller to raise."""
    lines = message.strip().splitlines()
    typer.echo(f"{prog}: error: {lines[0] if lines else 'failed'}", err=True)
    return typer.Exit(code)


def cli_app(**settings: Any) -> typer.Typer:
    """A Typer app with `CLI_SETTINGS` (`settings` add to them or override them)."""
    shared = {**CLI_SETTINGS, "context_settings": dict(CLI_SETTINGS["context_settings"])}
    return typer.Typer(**{**shared, **settings})


def _installed(module: str) -> bool:
    """Whether `module` can be imported here, without importing it."""
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(extra: str = "train") -> str | None:
    """The one-line message for a command that needs the optional `extra` when some of its
    modules are not installed; None when they all are."""
    missing = [m for m in EXTRA_MODULES[extra] if not _installed(m)]
    if not missing:
        return None
    return (f"this command needs the '{extra}' extra, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed here: "
            f"pip install 'maskedge[{extra}]'")


def require_extra(prog: str, extra: str = "train") -> None:
    """Raise `fail(prog, ...)` (exit 2) naming the extra to install when it is missing."""
    message = missing_extra(extra)
    if message is not None:
        raise fail(prog, message)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def user_errors(prog: str, known: tuple[type[BaseException], ...], *, json_out: bool = False,
                interrupted: str = "interrupted", unexpected: bool = False) -> Iterator[None]:
    """Run a block whose `known` errors end as one error line and exit 2, Ctrl-C as the line
    `interrupted` and exit 130.

    `json_out`: stdout goes to stderr inside the block, so stdout holds only the JSON printed
    after it. `unexpected`: any other exception is one line and exit 1 as well (its traceback
    only with MASKEDGE_DEBUG=1); without it, an unexpected exception keeps its traceback.
    """
    redirect = contextlib.redirect_stdout(sys.stderr) if json_out else contextlib.nullcontext()
    try:
        with redirect:
            yield
    except _TYPER_EXITS:
        raise
    except known as exc:
        raise fail(prog, _first_line(exc)) from None
    except KeyboardInterrupt:
        raise fail(prog, interrupted, EXIT_INTERRUPTED) from None
    except Exception as exc:
        if not unexpected or os.environ.get(DEBUG_ENV):
            raise
        first = _first_line(exc) if str(exc).strip() else ""
        raise fail(prog, f"unexpected {type(exc).__name__}: {first[:200]} ({DEBUG_ENV}=1 shows "
                         f"the traceback)", EXIT_FAILED) from None


@contextlib.contextmanager
def task(description: str, total: int, enabled: bool = True) -> Iterator[Advance]:
    """Context giving an `advance(n)` function that moves a progress bar on stderr."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task_id, n)


def say(message: str, enabled: bool = True) -> None:
    """One status line on stderr."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def quiet_tensorflow_logs() -> None:
    """Set TF_CPP_MIN_LOG_LEVEL to `TF_LOG_LEVEL` unless it is set; call before importing
    TensorFlow (it reads the variable once, when it loads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null inside the block: what a native library prints (C++
    start-up notices) disappears; Python's sys.stderr is flushed first."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
