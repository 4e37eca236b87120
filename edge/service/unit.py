"""The systemd unit that runs `edge run --config FILE` at boot (`edge service unit|install`).

The text is a template shipped as package data (maskedge.service.in, read with
importlib.resources), so the unit can be read and reviewed as the file systemd gets; this module
fills it in:

- ExecStart: this environment's `edge`, by its absolute path (a unit has no PATH to find it on,
  and this venv is the one with the models and the extras), then `run --config` and the config
  file's absolute path (the service does not start in the folder it was installed from);
- User=: an unprivileged user (never root);
- ReadWritePaths=: the folders the config file writes to (history database, snapshots, JSON
  lines, saved video), because ProtectSystem=strict makes every other folder read-only. Relative
  paths in the config are relative to the unit's WorkingDirectory, /var/lib/NAME.

Values are escaped for systemd: `%` (specifiers) doubled, `$` doubled in ExecStart (variable
expansion), a word with a space, a quote, a backslash or `;` in double quotes; control
characters are refused. Standard library only, so `edge --help` stays fast.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

TEMPLATE = "maskedge.service.in"
DEFAULT_NAME = "maskedge"
DEFAULT_USER = "maskedge"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
#: StateDirectory= and CacheDirectory= are these folders plus the unit's name.
STATE_ROOT = Path("/var/lib")
CACHE_ROOT = Path("/var/cache")
#: The unit's EnvironmentFile= (the secrets) is this folder's NAME.env.
ENV_ROOT = Path("/etc")
#: Settings (RunOptions names) naming a file the run writes: its folder must be writable (the
#: atomic writers' temporary files and SQLite's journal go beside the file).
FILE_OUTPUTS = ("history", "json_out", "save")
#: Settings naming a folder the run writes into.
FOLDER_OUTPUTS = ("snapshots",)
#: Settings holding a path the run reads or writes.
PATH_SETTINGS = ("source", "model", "detector_model", *FILE_OUTPUTS, *FOLDER_OUTPUTS)

_NAME = re.compile(r"[A-Za-z0-9_.:-]+")  # systemd's unit-name characters, without @ (templates)
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


class ServiceError(ValueError):
    """A name, user or path that cannot go into a unit (one line for the user)."""


#: The service's event history when the config file names none (in its StateDirectory).
DEFAULT_HISTORY = "events.db"


def unit_name(name: str) -> str:
    """`name` without a `.service` suffix, checked against systemd's unit-name characters (the
    name is also the journal's identifier and the state folder's name)."""
    stem = name.removesuffix(".service")
    if not _NAME.fullmatch(stem) or stem.startswith(("-", ".")):
        raise ServiceError(f"--name {name!r}: use letters, digits and _ . : - (e.g. maskedge)")
    return stem


def env_file(name: str) -> Path:
    """The EnvironmentFile= of the unit `name`: where its secrets live, readable only by root."""
    return ENV_ROOT / f"{name}.env"


def check_user(user: str) -> str:
    """A user name fit for User=; root is refused: the camera needs only the video group."""
    if not _USER.fullmatch(user):
        raise ServiceError(f"--user {user!r} is not a user name")
    if user == "root":
        raise ServiceError("--user root: the service runs as an unprivileged user (e.g. "
                           "maskedge, in the video group)")
    return user


def edge_command() -> list[str]:
    """How the unit starts this environment's `edge`: its console script by absolute path
    (symlinks kept, so a venv stays a venv), else `python -m edge` with this interpreter."""
    script = Path(sysconfig.get_path("scripts")) / "edge"
    if script.is_file() and os.access(script, os.X_OK):
        return [os.path.abspath(script)]
    return [os.path.abspath(sys.executable), "-m", "edge"]


def absolute(path: str | Path, working_dir: Path) -> Path:
    """`path` as the service sees it: `~` expanded, a relative one inside `working_dir`."""
    return Path(os.path.normpath(working_dir / Path(path).expanduser()))


def _is_folder_target(value: str | Path, path: Path) -> bool:
    """`[save] path` names a folder when it ends with / or is one (edge.sinks.outputs's rule)."""
    return str(value).endswith(("/", os.sep)) or path.is_dir()


def written_folders(options: dict[str, Any], working_dir: Path) -> list[Path]:
    """The folders the run writes into, absolute, each once, in settings order."""
    folders: list[Path] = []
    for name in (*FILE_OUTPUTS, *FOLDER_OUTPUTS):
        value = options.get(name)
        if value is None or str(value) == "-":  # json to stdout: the journal
            continue
        path = absolute(value, working_dir)
        is_folder = name in FOLDER_OUTPUTS or (name == "save" and _is_folder_target(value, path))
        folder = path if is_folder else path.parent
        if folder not in folders:
            folders.append(folder)
    return folders


def relative_settings(options: dict[str, Any]) -> list[str]:
    """The config's `section.key`s holding a relative path (the service reads them from its
    WorkingDirectory, not from where `edge config check` ran)."""
    from edge.config.schema import BY_NAME

    found = []
    for name in PATH_SETTINGS:
        value = options.get(name)
        if value is None or str(value) == "-" or "://" in str(value):
            continue
        if not Path(value).expanduser().is_absolute():
            found.append(BY_NAME[name].dotted)
    return found


def _clean(text: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ServiceError(f"{text!r} holds a control character, which a unit file cannot carry")
    return text


def _word(text: str, exec_line: bool = False) -> str:
    """One word of a unit line, escaped (see the module's docstring)."""
    text = _clean(text).replace("%", "%%")
    if exec_line:
        text = text.replace("$", "$$")
    if _NEEDS_QUOTES.search(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


@dataclass(frozen=True)
class ServiceUnit:
    """A filled-in unit: what `edge service unit` prints and `edge service install` writes."""

    name: str
    user: str
    config: Path  # absolute
    command: tuple[str, ...]  # ExecStart's words, unescaped
    folders: tuple[Path, ...]  # ReadWritePaths=, absolute

    @property
    def filename(self) -> str:
        return f"{self.name}.service"

    @property
    def working_dir(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def cache_dir(self) -> Path:
        return CACHE_ROOT / self.name

    @property
    def env_file(self) -> Path:
        return env_file(self.name)

    def text(self) -> str:
        """The unit file's text."""
        template = resources.files("edge.service").joinpath(TEMPLATE).read_text(encoding="utf-8")
        paths = " ".join(_word(f"-{folder}") for folder in self.folders)
        return Template(template).substitute(
            name=self.name, user=self.user, config=self.config, env_file=self.env_file,
            exec_start=" ".join(_word(w, exec_line=True) for w in self.command),
            working_dir=self.working_dir,
            read_write_paths=(f"ReadWritePaths={paths}" if paths
                              else "# ReadWritePaths=: the config file writes no files"))


def build_unit(config: Path, options: dict[str, Any], user: str = DEFAULT_USER,
               name: str = DEFAULT_NAME) -> ServiceUnit:
    """The unit for `edge run --config config` (`options`: the config's checked settings)."""
    name = unit_name(name)
    config = Path(os.path.abspath(_clean(str(config))))
    command = (*edge_command(), "run", "--config", str(config))
    if options.get("history") is None:  # a service keeps its history unless the file says where
        command += ("--history", str(STATE_ROOT / name / DEFAULT_HISTORY))
    folders = tuple(written_folders(options, STATE_ROOT / name))
    for word in (*command, *map(str, folders)):
        _clean(word)
    return ServiceUnit(name, check_user(user), config, command, folders)
