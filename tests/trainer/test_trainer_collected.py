"""The faces a camera collected and a person labelled (`edge run --collect DIR`, `edge label DIR`)
are one more training source: `trainer fit BASE DIR/labelled` reads the folder-per-class layout
as it reads any class folders (trainer/data/datasets.py, `discover_many`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA_2C, DATA_VOC
from typer.testing import CliRunner

from edge.cli import app as edge_app
from edge.collect import manifest
from edge.core.voc import load_voc
from trainer.cli import app as trainer_app

runner = CliRunner()


@pytest.mark.slow  # trains a (tiny) model: about 17 s on 2 cores
def test_fit_takes_the_labelled_folder_as_one_more_source(tmp_path: Path) -> None:
    base = tmp_path / "base"
    for label in ("with_mask", "without_mask"):
        (base / label).mkdir(parents=True)
        for photo in sorted((DATA_2C / label).iterdir())[:10]:
            (base / label / photo.name).symlink_to(photo)
    photos = tmp_path / "photos"
    photos.mkdir()
    for item in load_voc(DATA_VOC, limit=40):
        (photos / item.path.name).symlink_to(item.path)
    collected = tmp_path / "collected"
    result = runner.invoke(edge_app, ["run", "--source", str(photos), "--collect",
                                      str(collected), "--collect-max", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    faces = manifest.read_entries(collected)
    sets = [f"{e['file']}={e['raw_label']}" for e in faces]
    result = runner.invoke(edge_app, ["label", str(collected),
                                      *(x for s in sets for x in ("--set", s))])
    assert result.exit_code == 0, result.output

    out = tmp_path / "run"
    result = runner.invoke(trainer_app, [
        "fit", str(base), str(collected / "labelled"), "--out", str(out), "--weights", "none",
        "--input-size", "64", "--epochs", "1", "--quiet", "--json", "--min-per-class", "1",
        "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    split = json.loads((out / "split.json").read_text())
    assert [s["name"] for s in split["sources"]] == ["base", "labelled"]
    assert split["sources"][1]["format"] == "folders"
    rows = [r for r in split["rows"] if r["source"] == 1]
    assert len(rows) == len(faces) == 8
    assert sorted(Path(r["path"]).name for r in rows) == sorted(Path(e["file"]).name
                                                               for e in faces)
    summary = json.loads((out / "summary.json").read_text())
    assert "labelled" in summary["per_source"]
