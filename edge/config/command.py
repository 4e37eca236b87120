"""`edge config init [FILE]` and `edge config check FILE` (registered in edge/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.core.console import cli_app, fail

PROG = "edge"
config_app = cli_app(help="Write or check an `edge run --config` file (TOML).")


@config_app.command("init")
def init(
    file: Annotated[Path | None, typer.Argument(
        metavar="[FILE]", help="Where to write it (default: print it).", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a config file with every setting, its help and its default."""
    from edge.config.files import init_text
    from edge.core.fileio import write_text_atomic

    text = init_text()
    if file is None:
        typer.echo(text, nl=False)
        return
    if file.exists() and not force:
        raise fail(PROG, f"{file} exists; use --force to replace it")
    if file.parent.exists() and not file.parent.is_dir():
        raise fail(PROG, f"cannot write {file}: {file.parent} is not a folder")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(file, text)
    except OSError as exc:
        raise fail(PROG, f"cannot write {file}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {file}", err=True)


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The config file to check.")],
) -> None:
    """Check a config file: each unknown key, bad value or contradiction on its own line
    (exit 2), then the run's own checks (sources, addresses, zones) on what it sets."""
    from edge.config.files import ConfigError, read_config
    from edge.runner import RunError, RunOptions
    from edge.sinks.outputs import OutputError

    try:
        values = read_config(file)
    except ConfigError as exc:
        for line in exc.problems:
            typer.echo(f"{PROG}: error: {line}", err=True)
        raise typer.Exit(2) from None
    try:
        RunOptions(**_as_options(values)).check()
    except (RunError, OutputError, ValueError) as exc:
        raise fail(PROG, f"{file}: {exc}") from None
    typer.echo(f"{file}: ok ({len(values)} settings)")


def _as_options(values: dict) -> dict:
    """What `edge run --config FILE` would run with here: the file over the defaults, and the
    secrets the environment holds ($MASKEDGE_MQTT, ...) over the file, as `edge run` takes them."""
    import os

    from edge.config.options import resolve
    from edge.config.schema import DEFAULTS, SETTINGS

    env = {s.name: os.environ[s.env] for s in SETTINGS if s.env and os.environ.get(s.env)}
    return resolve({**DEFAULTS, **env}, set(env), values)
