"""`edge service unit` and `edge service install` (registered in edge/cli.py): `edge run
--config FILE` as a systemd service.

Both check the config file first, with the checks of `edge config check` (every problem of the
file on its own line, then the run's own checks; exit 2) and the secrets the unit's
EnvironmentFile gives, because a unit for a broken config only fails later, at boot, in the
journal. `install` writes the unit atomically, never replaces
a different unit without --force, needs root only for a folder that root owns (/etc), and ends
with the commands that start the service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edge.core.console import cli_app, fail, user_errors
from edge.service.unit import DEFAULT_NAME, DEFAULT_UNIT_DIR, DEFAULT_USER, ServiceUnit

PROG = "edge"
service_app = cli_app(help="Run `edge run --config FILE` as a systemd service: print or "
                           "install its unit.")

ConfigOption = Annotated[Path, typer.Option(
    "--config", "-c", metavar="FILE.toml", show_default=False,
    help="The config file the service runs with (`edge config init` writes one).")]
UserOption = Annotated[str, typer.Option(
    "--user", metavar="NAME", help="The unprivileged user it runs as (never root; the unit adds "
                                   "the video group for the camera).")]
NameOption = Annotated[str, typer.Option(
    "--name", metavar="NAME", help="The unit's name: NAME.service, journalctl -u NAME, "
                                   "/var/lib/NAME.")]

#: systemd reads units from these folders; a unit written elsewhere must be linked in.
SEARCHED = (Path("/etc/systemd/system"), Path("/run/systemd/system"),
            Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))


def checked_options(config: Path, secrets: dict[str, str] | None = None) -> dict[str, Any]:
    """The config's settings resolved over the defaults, checked as `edge config check` does
    (its problems one per line, exit 2); `secrets` (settings read from the environment) win over
    the file, as the environment does in `edge run --config`."""
    from edge.config.files import ConfigError, read_config
    from edge.config.options import resolve
    from edge.config.schema import DEFAULTS
    from edge.runner import RunError, RunOptions
    from edge.sinks.outputs import OutputError

    try:
        values = read_config(config)
    except ConfigError as exc:
        for line in exc.problems:
            typer.echo(f"{PROG}: error: {line}", err=True)
        raise typer.Exit(2) from None
    secrets = secrets or {}
    options = resolve({**DEFAULTS, **secrets}, set(secrets), values)
    try:
        RunOptions(**options).check()
    except (RunError, ValueError, OutputError) as exc:  # OutputError: a bad [mqtt] url
        raise fail(PROG, f"{config}: {exc}") from None
    return options


def _unit(config: Path, user: str, name: str) -> tuple[ServiceUnit, dict[str, Any]]:
    """The checked unit and the config's options; bad input ends as one error
    line and exit 2. The check sees the secrets of the unit's EnvironmentFile."""
    from edge.service.host import service_secrets
    from edge.service.unit import ServiceError, build_unit, env_file, unit_name

    with user_errors(PROG, (ServiceError,)):
        secrets = service_secrets(env_file(unit_name(name)))
    options = checked_options(config, secrets)
    with user_errors(PROG, (ServiceError,)):
        return build_unit(config, options, user, name), options


@service_app.command("unit")
def unit(config: ConfigOption, user: UserOption = DEFAULT_USER,
         name: NameOption = DEFAULT_NAME) -> None:
    """Print the unit file for `edge run --config FILE` (to read it, or to install it by hand
    on another machine); `install` writes it."""
    service, _ = _unit(config, user, name)
    typer.echo(service.text(), nl=False)


def _note(line: str) -> None:
    typer.echo(f"{PROG}: note: {line}", err=True)


def _write(target: Path, text: str, force: bool, edge: str) -> str:
    """Write the unit atomically; 'wrote', 'replaced' or 'unchanged' (`edge`: how to run this
    edge, for the hint to use sudo)."""
    from edge.core.fileio import write_text_atomic

    try:
        old = target.read_text(encoding="utf-8") if target.exists() else None
    except OSError as exc:
        raise fail(PROG, f"cannot read {target}: {exc.strerror or exc}") from None
    if old == text:
        return "unchanged"
    if old is not None and not force:
        raise fail(PROG, f"{target} exists and differs from this unit; use --force to replace "
                         f"it (`edge service unit` prints the new one)")
    try:
        write_text_atomic(target, text)
    except PermissionError:
        raise fail(PROG, f"cannot write {target}: permission denied; run it as root: sudo {edge} "
                         f"service install ...") from None
    except OSError as exc:
        raise fail(PROG, f"cannot write {target}: {exc.strerror or exc}") from None
    return "wrote" if old is None else "replaced"


def _next_steps(target: Path, name: str, done: str) -> list[str]:
    """The commands that start (or restart) the service from the unit just written."""
    steps = [] if target.parent in SEARCHED else [f"sudo systemctl link {target}"]
    steps.append(f"sudo systemctl daemon-reload && sudo systemctl enable --now {name}")
    if done == "replaced":
        steps.append(f"sudo systemctl restart {name}      # if it was running")
    steps.append(f"journalctl -u {name} -f")
    return steps


@service_app.command("install")
def install(
    config: ConfigOption,
    user: UserOption = DEFAULT_USER,
    unit_dir: Annotated[Path, typer.Option(
        "--unit-dir", metavar="DIR", help="Where to write NAME.service.")] = DEFAULT_UNIT_DIR,
    name: NameOption = DEFAULT_NAME,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a different unit of the same name.")] = False,
) -> None:
    """Check the config file, then write the unit that runs `edge run --config FILE` at boot
    (as root when DIR is /etc/systemd/system) and print the commands that start it."""
    from edge.service.host import account, install_notes
    from edge.service.unit import relative_settings

    service, options = _unit(config, user, name)
    who = account(service.user)
    if who is None:
        raise fail(PROG, f"no user {service.user!r} on this machine: create it (sudo useradd "
                         f"--system --groups video {service.user}) or give --user NAME")
    if not unit_dir.is_dir():
        raise fail(PROG, f"--unit-dir {unit_dir} is not a folder")
    target = unit_dir.absolute() / service.filename
    edge = " ".join(service.command[:service.command.index("run")])
    done = _write(target, service.text(), force, edge)
    relative = relative_settings(options)
    if relative:
        _note(f"{', '.join(relative)} in {service.config} are relative paths: the service "
              f"finds them in {service.working_dir}")
    for line in install_notes(service, who):
        _note(line)
    typer.echo(f"{done} {target}")
    typer.echo("next:")
    for step in _next_steps(target, service.name, done):
        typer.echo(f"  {step}")
