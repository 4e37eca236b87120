"""The classifiers side by side: MACs counted from the graph, one quick run of every row on real
held-out photos and a real video, the RESULTS.md section, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED
from typer.testing import CliRunner

from benchmarks.classifiers.bench import app
from benchmarks.classifiers.graph import op_macs, tflite_macs
from benchmarks.classifiers.report import render_classifiers
from benchmarks.classifiers.rows import ROWS, TITLE
from edge.core.assets import project_models_dir

runner = CliRunner()


def test_op_macs_follow_the_layer_formulas() -> None:
    # a 3x3 conv from 16 to 32 channels on an 8x8 output: 8*8*32*3*3*16
    assert op_macs("CONV_2D", (32, 3, 3, 16), (1, 8, 8, 32)) == 8 * 8 * 32 * 9 * 16
    assert op_macs("DEPTHWISE_CONV_2D", (1, 3, 3, 32), (1, 8, 8, 32)) == 8 * 8 * 32 * 9
    assert op_macs("FULLY_CONNECTED", (3, 1280), (1, 3)) == 3 * 1280
    assert op_macs("ADD", (1,), (1, 8, 8, 32)) == 0


def test_mobilenet_v2_at_128_px_counts_as_google_says() -> None:
    # MobileNetV2 1.0 is 300 M MACs at 224 px (Sandler et al. 2018), so ~98 M at 128 px
    macs = tflite_macs(project_models_dir() / "face_mask_3c_student_int8.tflite")
    assert 90e6 < macs["macs"] < 105e6, macs
    assert macs["ops"]["DEPTHWISE_CONV_2D"] == 17


def test_quick_run_measures_every_row_and_renders(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--quick", "--json", "--out", str(tmp_path),
                                 "--shared", str(SHARED)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "classifiers.json").read_text())
    rows = {r["key"]: r for r in data["rows"]}
    assert list(rows) == [r.key for r in ROWS]
    for row in rows.values():
        assert row["ms_per_face"]["1"] > 0 and row["ms_per_face"]["2"] > 0
        assert row["pipeline"]["frames"] == data["video"]["frames"] > 0
        assert row["heldout"]["faces"] > 0 and row["pi4"]["ms_per_face"] > 0
    assert rows["2c"]["heldout"]["per_class"]["mask_weared_incorrect"] == "n/a"
    assert rows["ensemble"]["macs"] > 10 * rows["student"]["macs"]
    assert rows["2c"]["fps_vs_2c"] == 1.0
    lines = render_classifiers(data)
    assert lines[0] == TITLE
    assert sum(line.startswith("| model |") for line in lines) == 2
    assert any("3-class student (`face_mask_3c_student_int8.tflite`)" in line for line in lines)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "student=/nonexistent.tflite"], "model file not found: /nonexistent.tflite"),
    (["--model", "bogus=x.tflite"], "--model takes KEY=PATH"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["--quick", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "classifiers.json").exists()
