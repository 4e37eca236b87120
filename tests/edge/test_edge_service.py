"""`edge service unit|install`: the systemd unit that runs `edge run --config FILE` (its text,
`systemd-analyze verify` where the machine has it), installing it into a folder (atomic, refusal
without --force, a bad config ends with its problems and writes nothing), and the clean stop the
unit relies on: SIGTERM ends `edge run` with exit 0, its summary and a complete JSON file."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import DATA_VOC, ROOT
from typer.testing import CliRunner

from edge.cli import app
from edge.service.unit import TEMPLATE, ServiceError, build_unit, unit_name

EDGE = [sys.executable, "-m", "edge"]


def write_config(path: Path, **tables: dict) -> Path:
    """A config file with these tables (values are strings, numbers or booleans)."""
    lines = []
    for section, values in tables.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def directives(text: str) -> dict[str, list[str]]:
    """The unit's `Key=value` lines, by key (comments and [sections] left out)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def exec_words(value: str) -> list[str]:
    """ExecStart's words as systemd reads them: quotes removed, %% and $$ undone."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(value)]


def invoke(*args: str):
    return CliRunner().invoke(app, ["service", *args])


@pytest.fixture
def outputs_config(tmp_path: Path) -> Path:
    """A camera config that writes history, snapshots and JSON lines, with a webhook secret."""
    return write_config(
        tmp_path / "config.toml", source={"camera": 0},
        history={"db": str(tmp_path / "state" / "events.db")},
        snapshots={"folder": str(tmp_path / "snaps")},
        json={"path": str(tmp_path / "out" / "frames.jsonl")},
        webhook={"url": "https://user:s3cret@hooks.example/alert"})


def test_unit_text(outputs_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                   ) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("unit", "--config", outputs_config.name)  # relative: made absolute
    assert result.exit_code == 0, result.output
    unit = directives(result.stdout)
    words = exec_words(unit["ExecStart"][0])
    assert Path(words[0]).is_absolute() and os.access(words[0], os.X_OK)
    assert Path(words[0]).parent == Path(sys.executable).parent  # this environment's edge
    assert Path(words[0]).name == "edge" or words[1:3] == ["-m", "edge"]
    assert words[-3:] == ["run", "--config", str(outputs_config)]
    assert Path(words[-1]).is_absolute()
    expected = {"Type": ["simple"], "Restart": ["on-failure"], "RestartSec": ["5"],
                "KillSignal": ["SIGTERM"], "TimeoutStopSec": ["30"], "User": ["maskedge"],
                "SupplementaryGroups": ["video"], "StandardOutput": ["journal"],
                "StandardError": ["journal"], "SyslogIdentifier": ["maskedge"],
                "NoNewPrivileges": ["yes"], "ProtectSystem": ["strict"],
                "ProtectHome": ["read-only"], "PrivateTmp": ["yes"],
                "WorkingDirectory": ["/var/lib/maskedge"], "WantedBy": ["multi-user.target"]}
    assert {key: unit.get(key) for key in expected} == expected
    assert unit["ReadWritePaths"][0].split() == [
        f"-{tmp_path / 'state'}", f"-{tmp_path / 'out'}", f"-{tmp_path / 'snaps'}"]
    assert "PrivateDevices" not in unit  # it would hide /dev/video*
    assert "s3cret" not in result.stdout and "hooks.example" not in result.stdout
    assert "EnvironmentFile=-/etc/maskedge.env" in result.stdout


def test_user_and_name_options(outputs_config: Path) -> None:
    unit = directives(invoke("unit", "--config", str(outputs_config), "--user", "pi",
                             "--name", "door.service").stdout)
    assert unit["User"] == ["pi"] and unit["SyslogIdentifier"] == ["door"]
    assert unit["WorkingDirectory"] == ["/var/lib/door"] and unit["StateDirectory"] == ["door"]


def test_paths_are_escaped_and_relative_ones_live_in_the_working_directory(tmp_path: Path
                                                                           ) -> None:
    odd = tmp_path / "a 50% folder"
    options = {"history": Path("events.db"), "json_out": "-", "save": str(odd) + "/",
               "snapshots": None}
    unit = build_unit(odd / "config.toml", options, user="pi")
    text = unit.text()
    assert unit.folders == (Path("/var/lib/maskedge"), odd)
    rw = directives(text)["ReadWritePaths"][0]
    assert shlex.split(rw) == ["-/var/lib/maskedge", f"-{str(odd).replace('%', '%%')}"]
    assert exec_words(directives(text)["ExecStart"][0])[-1] == str(odd / "config.toml")
    with pytest.raises(ServiceError, match="control character"):
        build_unit(tmp_path / "a\nb.toml", {}, user="pi")
    with pytest.raises(ServiceError, match="unprivileged"):
        build_unit(tmp_path / "c.toml", {}, user="root")
    with pytest.raises(ServiceError, match="--name"):
        unit_name("../etc")


def test_the_check_sees_the_secrets_of_the_environment_file(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """`[serve] address` beyond loopback needs credentials, which live in the unit's
    EnvironmentFile (or, when that cannot be read, in the environment), never in the unit."""
    import edge.service.unit

    monkeypatch.delenv("MASKEDGE_SERVE_AUTH", raising=False)
    monkeypatch.setattr(edge.service.unit, "ENV_ROOT", tmp_path)
    config = write_config(tmp_path / "c.toml", source={"camera": 0},
                          serve={"address": "0.0.0.0:8080"})
    refused = invoke("unit", "--config", str(config))
    assert refused.exit_code == 2 and "MASKEDGE_SERVE_AUTH" in refused.stderr
    (tmp_path / "maskedge.env").write_text('# secrets\nMASKEDGE_SERVE_AUTH="viewer:a-long-pw"\n')
    result = invoke("unit", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"EnvironmentFile=-{tmp_path / 'maskedge.env'}" in result.stdout
    assert "a-long-pw" not in result.stdout
    (tmp_path / "maskedge.env").unlink()
    monkeypatch.setenv("MASKEDGE_SERVE_AUTH", "viewer:a-long-pw")
    assert invoke("unit", "--config", str(config)).exit_code == 0


def test_the_template_ships_in_the_wheel() -> None:
    from importlib import resources

    assert resources.files("edge.service").joinpath(TEMPLATE).is_file()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "edge.service" in setuptools["packages"]
    assert any(Path(TEMPLATE).match(p) for p in setuptools["package-data"]["edge.service"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed on this machine")
def test_systemd_analyze_verifies_the_installed_unit(outputs_config: Path, tmp_path: Path
                                                     ) -> None:
    units = tmp_path / "units"
    units.mkdir()
    result = invoke("install", "--config", str(outputs_config), "--user", "nobody",
                    "--unit-dir", str(units))
    assert result.exit_code == 0, result.output
    verify = subprocess.run(["systemd-analyze", "verify", str(units / "maskedge.service")],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    problems = [line for line in verify.stderr.splitlines() if "nobody" not in line]
    assert not problems, problems  # only "Special user nobody configured, this is not safe!"
    odd = tmp_path / "a 50% $HOME folder"
    quoted = units / "odd.service"
    quoted.write_text(build_unit(odd / "config.toml", {"snapshots": odd}, user="pi").text())
    verify = subprocess.run(["systemd-analyze", "verify", str(quoted)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_install_refuses_a_different_unit_without_force(outputs_config: Path, tmp_path: Path
                                                        ) -> None:
    units = tmp_path / "units"
    units.mkdir()
    base = ["install", "--config", str(outputs_config), "--unit-dir", str(units)]
    first = invoke(*base, "--user", "nobody")
    assert first.exit_code == 0, first.output
    target = units / "maskedge.service"
    assert first.stdout.splitlines()[0] == f"wrote {target}"
    assert "  sudo systemctl daemon-reload && sudo systemctl enable --now maskedge" in (
        first.stdout.splitlines())
    assert "  journalctl -u maskedge -f" in first.stdout.splitlines()
    assert f"  sudo systemctl link {target}" in first.stdout.splitlines()  # not /etc/systemd
    text = target.read_text()
    assert directives(text)["User"] == ["nobody"]
    assert [p.name for p in units.iterdir()] == ["maskedge.service"]  # no temporary file left

    again = invoke(*base, "--user", "nobody")
    assert again.exit_code == 0 and again.stdout.startswith("unchanged ")
    other = invoke(*base, "--user", "daemon")
    assert other.exit_code == 2 and "--force" in other.stderr
    assert len([x for x in other.stderr.splitlines() if ": error: " in x]) == 1
    assert target.read_text() == text
    forced = invoke(*base, "--user", "daemon", "--force")
    assert forced.exit_code == 0 and forced.stdout.startswith("replaced ")
    assert "sudo systemctl restart maskedge" in forced.stdout
    assert directives(target.read_text())["User"] == ["daemon"]


def test_install_notes_missing_folders(outputs_config: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    result = invoke("install", "--config", str(outputs_config), "--user", "nobody",
                    "--unit-dir", str(units))
    assert result.exit_code == 0
    assert f"sudo install -d -o nobody {tmp_path / 'snaps'}" in result.stderr


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    bad = write_config(tmp_path / "bad.toml", source={"camra": 0},
                       detector={"threshold": 3.0}, snapshots={"keep": 5})
    check = CliRunner().invoke(app, ["config", "check", str(bad)])
    for extra in (["install", "--unit-dir", str(units)], ["unit"]):
        result = invoke(*extra, "--config", str(bad), "--user", "nobody")
        assert result.exit_code == 2, result.output
        errors = [x for x in result.stderr.splitlines() if ": error: " in x]
        assert len(errors) == 3 and errors == result.stderr.splitlines(), result.stderr
        assert errors == [x for x in check.stderr.splitlines() if ": error: " in x]
        assert result.stdout == ""
    assert list(units.iterdir()) == []


@pytest.mark.parametrize(("tables", "named"), [
    ({"detector": {"threshold": 0.5}}, "give exactly one of"),  # no source
    ({"source": {"camera": 0}, "mqtt": {"url": "http://127.0.0.1:1883"}}, "scheme"),
])
def test_the_runs_own_checks_are_one_line(tmp_path: Path, tables: dict, named: str) -> None:
    config = write_config(tmp_path / "c.toml", **tables)
    result = invoke("install", "--config", str(config), "--unit-dir", str(tmp_path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr


def test_install_errors_are_one_line(outputs_config: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = ["install", "--config", str(outputs_config)]
    cases = [
        ([*config, "--user", "no-such-user-here", "--unit-dir", str(tmp_path)], "useradd"),
        ([*config, "--user", "nobody", "--unit-dir", str(outputs_config)], "not a folder"),
        ([*config, "--user", "root", "--unit-dir", str(tmp_path)], "unprivileged"),
        (["install", "--config", str(tmp_path / "none.toml"), "--user", "nobody"], "not found"),
    ]
    for args, named in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr

    import edge.core.fileio

    def denied(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(edge.core.fileio, "write_text_atomic", denied)
    result = invoke(*config, "--user", "nobody", "--unit-dir", str(tmp_path))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "permission denied; run it as root: sudo " in result.stderr


# -- the clean stop the unit relies on (KillSignal=SIGTERM, TimeoutStopSec=30) -----------------

def wait_for_line(stream, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if needle in line:
            return line
        if not line:
            time.sleep(0.05)
    raise AssertionError(f"no line with {needle!r} within {timeout} s")


def test_sigterm_stops_the_configured_run_cleanly(tmp_path: Path) -> None:
    """What `systemctl stop` does: SIGTERM; `edge run` exits 0 (docs/run.md: a signal stop is
    a finished run) with its summary, and the JSON file is whole."""
    video = tmp_path / "clip.avi"
    made = subprocess.run([*EDGE, "make-video", str(DATA_VOC / "images"), str(video),
                           "--limit", "4", "--size", "320x240", "--hold", "2"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    events = tmp_path / "out" / "frames.jsonl"
    config = write_config(tmp_path / "config.toml",
                          source={"input": str(video), "loop": True, "realtime": True},
                          json={"path": str(events)})
    proc = subprocess.Popen([*EDGE, "run", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_line(proc.stderr, " FPS")  # the first status line: frames are flowing
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by  signal SIGTERM" in out and "Traceback" not in err
    text = events.read_text()
    assert text.endswith("\n")
    frames = [json.loads(line)["frame"] for line in text.splitlines()
              if "frame" in json.loads(line)]
    assert len(frames) >= 10 and frames == list(range(len(frames)))
    assert [p.name for p in events.parent.iterdir()] == ["frames.jsonl"]  # nothing left over


def test_a_service_keeps_its_history_unless_the_config_says_where(tmp_path: Path) -> None:
    words = exec_words(directives(build_unit(tmp_path / "c.toml", {}, user="pi").text())
                       ["ExecStart"][0])
    assert words[-2:] == ["--history", "/var/lib/maskedge/events.db"]
    named = build_unit(tmp_path / "c.toml", {"history": tmp_path / "h.db"}, user="pi")
    assert "--history" not in exec_words(directives(named.text())["ExecStart"][0])
