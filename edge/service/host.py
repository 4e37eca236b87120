"""What `edge service install` checks on the machine the unit is installed on, before systemd
finds out at start-up (status 217/USER, 203/EXEC, or a run that cannot write its files):

- the unit's user exists (else one error line naming the `useradd` to run);
- that user can run the `edge` executable and read the config file: Raspberry Pi OS Bookworm
  makes home folders private (0700), so a venv in /home/pi does not run as `maskedge`;
- the folders the config writes to exist and are the user's to write (ProtectSystem=strict
  lets the service write only there, so it cannot create them itself), except inside its
  StateDirectory/CacheDirectory, which systemd creates and hands to the user;
- the group `video` exists (SupplementaryGroups=video).

`service_secrets` gives the config check the secrets the service will get from its
EnvironmentFile (a `[serve] address` beyond loopback is refused without the credentials that
live there).

The access checks read the mode bits only (no ACLs), so what they find is a note, not an error.
Standard library only.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from edge.service.unit import ServiceUnit

CAMERA_GROUP = "video"


@dataclass(frozen=True)
class Account:
    """A user as the service runs it: its uid and every group it has (video included)."""

    name: str
    uid: int
    gids: frozenset[int]


def account(user: str) -> Account | None:
    """The user with its primary, supplementary and camera groups; None if there is none."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    gids = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    with contextlib.suppress(KeyError):
        gids.add(grp.getgrnam(CAMERA_GROUP).gr_gid)  # SupplementaryGroups=video
    return Account(user, entry.pw_uid, frozenset(gids))


def _allowed(path: Path, who: Account, want: int) -> bool:
    """Whether the mode bits give `who` the `want` bits (os.R_OK | os.W_OK | os.X_OK)."""
    try:
        st = path.stat()
    except OSError:
        return False
    shift = 6 if st.st_uid == who.uid else 3 if st.st_gid in who.gids else 0
    return (st.st_mode >> shift) & want == want


def can_reach(path: Path, who: Account, want: int) -> bool:
    """Whether `who` may pass every folder above `path` and has `want` on it (root may)."""
    if who.uid == 0:
        return True
    return (all(_allowed(folder, who, os.X_OK) for folder in path.parents)
            and _allowed(path, who, want))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _folder_notes(unit: ServiceUnit, who: Account) -> list[str]:
    notes = []
    for folder in unit.folders:
        if _inside(folder, unit.working_dir) or _inside(folder, unit.cache_dir):
            continue  # systemd creates these for the user
        if not folder.exists():
            notes.append(f"{folder} does not exist, and the service may write only into "
                         f"existing folders: sudo install -d -o {who.name} {folder}")
        elif not can_reach(folder, who, os.W_OK | os.X_OK):
            notes.append(f"user {who.name} cannot write {folder}: sudo chown {who.name} "
                         f"{folder}")
    return notes


def install_notes(unit: ServiceUnit, who: Account) -> list[str]:
    """What would stop the service or its outputs, one line each (empty: nothing found)."""
    notes = []
    executable = Path(unit.command[0])
    if not can_reach(executable, who, os.R_OK | os.X_OK):
        notes.append(f"user {who.name} cannot run {executable} (a folder above it is private?): "
                     f"install the venv where it can, e.g. /opt/maskedge")
    if not can_reach(unit.config, who, os.R_OK):
        notes.append(f"user {who.name} cannot read {unit.config}: sudo chmod a+r {unit.config}")
    notes += _folder_notes(unit, who)
    try:
        grp.getgrnam(CAMERA_GROUP)
    except KeyError:
        notes.append(f"this machine has no group {CAMERA_GROUP!r}: the unit's "
                     f"SupplementaryGroups={CAMERA_GROUP} will stop it from starting")
    return notes


def _env_value(text: str) -> str:
    """An EnvironmentFile value: surrounding blanks and one pair of quotes removed."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def service_secrets(env_file: Path) -> dict[str, str]:
    """The settings read from environment variables (MASKEDGE_SERVE_AUTH, MASKEDGE_MQTT,
    MASKEDGE_WEBHOOK), by setting name, as the service will get them: from `env_file` when this
    user may read it (root may), else from this process's environment."""
    from edge.config.schema import SETTINGS

    names = {s.env: s.name for s in SETTINGS if s.env}
    found = {names[key]: value for key, value in os.environ.items() if key in names and value}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in env_file.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() in names and _env_value(value):
                found[names[key.strip()]] = _env_value(value)
    return found
