"""`edge run`'s command-line options, built from the schema, and how they meet a config file.

Typer reads a command's parameters from its signature, so `run_signature()` gives the command one
parameter per setting of edge/config/schema.py (type, default, bounds, choices, help, metavar and
environment variable all from there) plus `--config FILE.toml`. `resolve` then decides each value:
an option typed on the command line (or read from its environment variable) wins over the file,
and the file over the default.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.config.schema import SETTINGS, Setting

_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "path": Path}
#: Where a value came from that counts as the user's choice (over the config file); by name,
#: since Typer carries its own copy of Click's `ParameterSource`.
_GIVEN = ("COMMANDLINE", "ENVIRONMENT")
CONFIG_HELP = ("Read the settings from this TOML file (`edge config init` writes one); "
               "options given here override it.")


def _option(setting: Setting) -> typer.models.OptionInfo:
    extra: dict[str, Any] = {}
    if setting.env:
        extra.update(envvar=setting.env, show_envvar=True)
    if setting.metavar:
        extra["metavar"] = setting.metavar
    # Bounds and choices are checked by RunOptions.check (one `edge: error:` line each, the
    # same for the command line and the file), not by Click.
    shown = setting.default not in (None, ()) and not setting.secret
    flags = [setting.option] if setting.flag or (setting.kind == "bool"
                                                 and setting.default is False) else []
    return typer.Option(*flags, help=setting.help, show_default=shown, **extra)


def _parameter(setting: Setting) -> inspect.Parameter:
    if setting.kind == "bool":
        annotation: Any = bool
    elif setting.kind == "list":
        annotation = list[str] | None
    else:
        annotation = _TYPES[setting.kind] if setting.default is not None else (
            _TYPES[setting.kind] | None)
    default = None if setting.kind == "list" else setting.default
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, _option(setting)])


def run_signature() -> inspect.Signature:
    """`ctx`, `--config` and one keyword parameter per setting, for Typer."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context),
              inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=Annotated[Path | None, typer.Option(
                                    "--config", "-c", metavar="FILE.toml", help=CONFIG_HELP,
                                    show_default=False)])]
    return inspect.Signature(params + [_parameter(s) for s in SETTINGS])


def given_on_command_line(ctx: typer.Context) -> set[str]:
    """The settings the user typed (or set through their environment variable)."""
    return {s.name for s in SETTINGS
            if getattr(ctx.get_parameter_source(s.name), "name", None) in _GIVEN}


def resolve(values: dict[str, Any], given: set[str], from_file: dict[str, Any]) -> dict[str, Any]:
    """One value per setting: the command line's if given, else the file's, else the default
    (lists as tuples, paths as `Path`)."""
    out = {}
    for setting in SETTINGS:
        name = setting.name
        value = values[name] if name in given or name not in from_file else from_file[name]
        if setting.kind == "list":
            value = tuple(value or ())
        elif setting.kind == "path" and isinstance(value, str):
            value = Path(value).expanduser()
        out[name] = value
    return out
