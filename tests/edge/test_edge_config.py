"""Issue 31.1: one settings schema for `edge run`, a TOML config file, `edge config init/check`.

The schema (edge/config/schema.py) is the only place a default, a bound or a help text is written:
the CLI's options and `--help` come from it, `edge config init` writes every default from it, and
a file is read with every problem named on its own line.
"""

from __future__ import annotations

import inspect
import json
import tomllib
from pathlib import Path

import pytest
from conftest import DATA_VOC, ROOT
from typer.testing import CliRunner

from edge.cli import app
from edge.config.files import ConfigError, contradictions, init_text, read_config
from edge.config.schema import BY_NAME, DEFAULTS, SECTIONS, SETTINGS, markdown_table
from edge.runner import RunOptions

runner = CliRunner()


def test_every_setting_has_a_section_a_help_and_a_default_in_one_place() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for setting in SETTINGS:
        assert setting.section in SECTIONS, setting.name
        assert setting.help.strip(), setting.name
    # RunOptions takes its defaults from the schema, field by field.
    fields = {f for f in RunOptions.__dataclass_fields__}
    for name, value in DEFAULTS.items():
        if name in fields:
            assert getattr(RunOptions(), name) == value, name


def test_run_options_and_help_come_from_the_schema() -> None:
    from edge.cli import run

    params = inspect.signature(run).parameters
    assert {s.name for s in SETTINGS} <= set(params)
    result = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    threshold = BY_NAME["detector_threshold"]
    assert "--detector-threshold" in result.output
    assert threshold.help.split()[0] in result.output
    assert "--config" in result.output


def test_init_writes_every_default_and_the_file_reads_back(tmp_path: Path) -> None:
    target = tmp_path / "maskedge.toml"
    result = runner.invoke(app, ["config", "init", str(target)])
    assert result.exit_code == 0, result.output
    text = target.read_text()
    parsed = tomllib.loads(text)
    assert set(parsed) <= set(SECTIONS)
    for setting in SETTINGS:  # every setting is in the file, as a value or a commented line
        assert setting.key in text, setting.name
    assert read_config(target) is not None
    check = runner.invoke(app, ["config", "check", str(target)])
    assert check.exit_code == 0, check.output
    # init never overwrites without --force; with --force it does
    again = runner.invoke(app, ["config", "init", str(target)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["config", "init", str(target), "--force"]).exit_code == 0
    assert init_text().startswith("#")


def test_check_names_every_problem_on_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\ncamra = 0\n\n[detector]\nthreshold = 1.5\n\n[tracking]\n'
                   'max_age = "long"\n\n[nonsense]\nx = 1\n')
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) >= 4, result.output
    assert any("camra" in line and "camera" in line for line in lines)  # did you mean
    assert any("threshold" in line and "1.5" in line for line in lines)
    assert any("max_age" in line for line in lines)
    assert any("nonsense" in line for line in lines)
    assert "Traceback" not in result.output
    assert all(str(bad.name) in line or "bad.toml" in line for line in lines), lines


def test_not_toml_and_missing_file_are_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[source\ncamera = 0\n")
    for path in (broken, tmp_path / "missing.toml"):
        result = runner.invoke(app, ["config", "check", str(path)])
        assert result.exit_code == 2
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert path.name in result.output
    with pytest.raises(ConfigError) as info:
        read_config(broken)
    assert len(info.value.problems) == 1


def test_contradictions_are_problems() -> None:
    problems = contradictions({"camera": 0, "source": "clip.mp4"})
    assert problems and "camera" in problems[0] and "source" in problems[0]


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    """A file sets the source, a threshold and a frame limit; the command line overrides the
    threshold; the run's JSON lines show both took effect."""
    photos = sorted((DATA_VOC / "images").glob("*"))[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "faces.jsonl"
    config = tmp_path / "door.toml"
    key = BY_NAME["source"].key
    config.write_text(f'[{BY_NAME["source"].section}]\n{key} = "{folder}"\n\n'
                      f'[{BY_NAME["detector_threshold"].section}]\n'
                      f'{BY_NAME["detector_threshold"].key} = 0.99\n')
    result = runner.invoke(app, ["run", "--config", str(config), "--json", str(out),
                                 "--detector-threshold", "0.5", "--quiet"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(photos)  # the file's source was used
    assert sum(len(r.get("faces", [])) for r in records) > 0  # 0.5 from the command line, not 0.99


def test_docs_settings_table_is_the_schema() -> None:
    """docs/run.md holds the table `markdown_table()` makes (regenerated, never hand-edited)."""
    table = markdown_table()
    for setting in SETTINGS:
        assert setting.key in table
    docs = (ROOT / "docs" / "settings.md").read_text()
    assert table.strip() in docs, "run: python -m edge.config.schema > docs/settings.md"


def test_check_takes_secrets_from_the_environment_and_names_a_bad_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dashboard beyond loopback whose password is in $MASKEDGE_SERVE_AUTH checks out, as
    `edge run --config` would run it; a bad MQTT URL is one line, not a traceback."""
    served = tmp_path / "served.toml"
    served.write_text('[source]\ncamera = 0\n\n[serve]\naddress = "0.0.0.0:8080"\n')
    monkeypatch.delenv("MASKEDGE_SERVE_AUTH", raising=False)
    assert runner.invoke(app, ["config", "check", str(served)]).exit_code == 2
    monkeypatch.setenv("MASKEDGE_SERVE_AUTH", "door:a-long-password")
    result = runner.invoke(app, ["config", "check", str(served)])
    assert result.exit_code == 0, result.output
    assert "a-long-password" not in result.output
    bad = tmp_path / "mqtt.toml"
    bad.write_text('[source]\ncamera = 0\n\n[mqtt]\nurl = "http://broker"\n')
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "mqtt" in result.output
