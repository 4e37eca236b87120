"""The data loop's benchmark: the simulated person labels from the truth, the quick round runs
every real command end to end (collect, label, fit, convert, evaluate) and resumes, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED
from typer.testing import CliRunner

from benchmarks.dataloop import annotator
from benchmarks.dataloop.cli import app
from benchmarks.dataloop.report import TITLE, render_dataloop

runner = CliRunner()

TRUTH = {3: [{"identity": "a", "box": [10, 10, 50, 50], "label": "without_mask"},
             {"identity": "b", "box": [100, 10, 140, 50], "label": "mask_weared_incorrect"}]}


def entry(box: list[float], frame: int = 3, raw: str = "with_mask") -> dict:
    return {"file": f"faces/{box[0]}.jpg", "frame": frame, "box": box, "raw_label": raw}


def test_the_person_labels_from_the_best_overlapping_annotation() -> None:
    labelled = annotator.decide(entry([12, 12, 52, 52]), TRUTH)
    assert (labelled.label, labelled.reason, labelled.identity) == ("without_mask", "labelled", "a")
    incorrect = annotator.decide(entry([100, 10, 140, 50]), TRUTH)
    assert incorrect.label is None and incorrect.reason == annotator.INCORRECT
    nothing = annotator.decide(entry([300, 300, 340, 340]), TRUTH)
    assert nothing.label is None and nothing.reason == annotator.NO_MATCH
    other_frame = annotator.decide(entry([12, 12, 52, 52], frame=4), TRUTH)
    assert other_frame.reason == annotator.NO_MATCH
    counts = annotator.tally([labelled, incorrect, nothing])
    assert counts["labelled_total"] == 1 and counts["skipped_total"] == 2
    assert counts["model_was_wrong"] == {"without_mask": 1}


def test_renderer_says_what_was_read_once() -> None:
    result = {"command": "python -m benchmarks.dataloop", "date": "2026-12-07",
              "held_out": {"scored_photos": 139, "list": "x.txt"},
              "comparison": [{"model": "before", "faces_scored": 10, "accuracy": 0.9,
                              "f1": {"with_mask": 0.9, "without_mask": 0.8},
                              "support": {"with_mask": 6, "without_mask": 4}}]}
    lines = render_dataloop(result)
    assert lines[0] == TITLE
    assert any("**Read once**" in line for line in lines)
    assert any(line.startswith("| before: base data only, retrained | 10 | 6 / 4 | 90.0%")
               for line in lines)


@pytest.mark.slow  # trains two tiny models and runs five commands: about 2 minutes on 2 cores
def test_quick_round_runs_every_step_and_resumes(tmp_path: Path) -> None:
    args = ["--quick", "--json", "--out", str(tmp_path), "--work", str(tmp_path / "work"),
            "--shared", str(SHARED)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "dataloop.json").read_text())
    assert [r["model"] for r in data["comparison"]] == ["before", "after", "shipped"]
    assert all(r["faces_scored"] > 0 for r in data["comparison"])
    assert 0 < data["collected"]["faces"] <= 10
    labelled = data["labels"]["labelled_total"]
    on_disk = list((tmp_path / "work" / "collected" / "labelled").rglob("*.jpg"))
    assert len(on_disk) == labelled
    split = json.loads((tmp_path / "work" / "after" / "split.json").read_text())
    assert [s["name"] for s in split["sources"]] == ["face-mask-2c", "labelled"]
    steps = set(data["steps"])
    assert {"collect", "label", "fit before", "fit after", "evaluate after"} <= steps
    again = runner.invoke(app, args)  # every step is done: nothing runs again
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "dataloop.json").read_text())["steps"] == data["steps"]


def test_missing_shared_data_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--quick", "--out", str(tmp_path), "--shared",
                                 str(tmp_path / "nothing")])
    assert result.exit_code == 2, result.output
    assert "face-mask-2c not found at" in result.output and "Traceback" not in result.output
