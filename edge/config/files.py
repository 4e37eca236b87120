"""Config files: read and check one (`edge run --config`, `edge config check`), write one with
every default (`edge config init`).

A file holds one TOML table per section of edge/config/schema.py, with the keys named there:

    [source]
    camera = 0

    [detector]
    threshold = 0.6

    [mqtt]
    url = "mqtt://broker.lan/home/masks"   # or $MASKEDGE_MQTT, out of the file

Reading (stdlib `tomllib`) collects every problem instead of stopping at the first: a file that
is not TOML, an unknown table or key (with the nearest known one), a value of the wrong type or
outside its bounds, and contradictions between settings (`contradictions`). Each is one line
naming the file and the key; `edge config check` prints them all and exits 2.
"""

from __future__ import annotations

import difflib
import textwrap
import tomllib
from pathlib import Path
from typing import Any

from edge.config.schema import BY_KEY, BY_NAME, SECTIONS, SETTINGS, Setting, value_problem


class ConfigError(ValueError):
    """A config file that cannot be used: one line per problem in `problems`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1
                         else f"{problems[0]} (and {len(problems) - 1} more problems; "
                              f"`edge config check FILE` lists them)")
        self.problems = problems


def _near(word: str, known: list[str]) -> str:
    match = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _parse(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"]) from None
    except IsADirectoryError:
        raise ConfigError([f"config file {path} is a folder"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read config file {path}: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _table_values(path: Path, section: str, table: Any, problems: list[str]
                  ) -> dict[str, Any]:
    if not isinstance(table, dict):
        problems.append(f"{path}: [{section}] must be a table of settings")
        return {}
    values = {}
    keys = [s.key for s in SETTINGS if s.section == section]
    for key, value in table.items():
        setting = BY_KEY.get((section, key))
        if setting is None:
            problems.append(f"{path}: unknown key {section}.{key}{_near(key, keys)}")
            continue
        problem = value_problem(setting, value)
        if problem:
            problems.append(f"{path}: {problem}")
        else:
            values[setting.name] = value
    return values


def contradictions(values: dict[str, Any]) -> list[str]:
    """Settings that make no sense together (names are the file's `section.key`)."""
    def has(name: str) -> bool:
        value = values.get(name)
        return value is not None and value is not False and value not in ((), [])

    out = []
    if has("camera") and has("source"):
        out.append("source.camera and source.input are both set: choose one")
    for needs, needed in (("snapshots_keep", "snapshots"), ("save_fps", "save"),
                          ("serve_auth", "serve"), ("serve_insecure", "serve"),
                          ("device_name", "mqtt")):
        if has(needs) and not has(needed):
            out.append(f"{BY_NAME[needs].dotted} is set but {BY_NAME[needed].dotted} is not")
    if has("serve_auth") and has("serve_insecure"):
        out.append("serve.auth and serve.insecure are both set: with credentials the page is "
                   "not insecure; drop serve.insecure")
    return out


def read_config(path: Path) -> dict[str, Any]:
    """The settings a file gives, by `RunOptions` name; ConfigError lists every problem."""
    data = _parse(path)
    problems: list[str] = []
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            problems.append(f"{path}: unknown table [{section}]{_near(section, list(SECTIONS))}")
            continue
        values.update(_table_values(path, section, table, problems))
    problems += [f"{path}: {line}" for line in contradictions(values)]
    if problems:
        raise ConfigError(problems)
    return values


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _entry(setting: Setting) -> list[str]:
    help_text = setting.help + (f" Better from the environment: ${setting.env}."
                                if setting.env else "")
    lines = textwrap.wrap(help_text, 98, initial_indent="# ", subsequent_indent="# ")
    if setting.default is None:
        low = setting.low if setting.low is not None else 0
        example = {"int": f"{int(low)}", "float": f"{max(low, 0.5):g}"}.get(setting.kind, '""')
        lines.append(f"# {setting.key} = {example}")
    else:
        lines.append(f"{setting.key} = {_toml_value(setting.default)}")
    return lines


def init_text(camera: int | None = 0) -> str:
    """A config file with every setting, its help and its default (unset ones commented)."""
    out = ["# maskedge `edge run` settings (`edge run --config THIS_FILE`). Every setting is",
           "# here with its default; a line starting with # is not set. Options on the command",
           "# line override this file. Check it with `edge config check THIS_FILE`.", ""]
    for section in SECTIONS:
        out.append(f"[{section}]")
        for setting in (s for s in SETTINGS if s.section == section):
            lines = _entry(setting)
            if setting.name == "camera" and camera is not None:
                lines[-1] = f"{setting.key} = {camera}"
            out += lines
        out.append("")
    return "\n".join(out)
