"""Multi-source training (issue 9): several data sources of mixed formats in one run, label maps,
photo exclusion lists, per-source reports, and the shipped 3-class model through `edge run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKBONE, DATA_VOC, DETECTORS, ROOT, SHARED
from PIL import Image
from typer.testing import CliRunner

from edge.core.voc import load_voc
from trainer.config import FitConfig, preflight
from trainer.errors import UserError

DATA_ILC = SHARED / "datasets" / "face-mask-ilc-dev"
ILC_HELD_OUT = ROOT / "benchmarks" / "holdout" / "face-mask-ilc-dev-test.txt"
MODEL_3C = ROOT / "models" / "face_mask_3c_int8.tflite"
YUNET = str(DETECTORS / "face_detection_yunet_2023mar.onnx")
THREE = {"with_mask", "without_mask", "mask_weared_incorrect"}
runner = CliRunner()


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny class-folder source cut from ilc-dev faces, under other class names:
    `no_mask/` and `with_incorrect_mask/` (no with_mask class at all)."""
    root = tmp_path_factory.mktemp("crops") / "crops"
    wanted = {"without_mask": "no_mask", "mask_weared_incorrect": "with_incorrect_mask"}
    held_out = set(ILC_HELD_OUT.read_text().split())
    counts = dict.fromkeys(wanted.values(), 0)
    for item in load_voc(DATA_ILC):
        if item.path.name in held_out:
            continue
        for k, ann in enumerate(item.annotations):
            folder = wanted.get(ann.label)
            if folder is None or counts[folder] >= 6 or ann.short_side < 40:
                continue
            (root / folder).mkdir(parents=True, exist_ok=True)
            with Image.open(item.path) as img:
                img.convert("RGB").crop(tuple(round(v) for v in ann.box)).save(
                    root / folder / f"{item.path.stem}_{k}.jpg")
            counts[folder] += 1
    assert all(v == 6 for v in counts.values()), counts
    return root


def _config(tmp_path: Path, data: list[Path], **kw: object) -> FitConfig:
    return FitConfig(data=data, out=tmp_path / "run", weights="none", **kw)


def test_label_map_merges_a_clash_of_names_and_a_class_missing_from_one_source(
        crops: Path, tmp_path: Path) -> None:
    dataset = preflight(_config(tmp_path, [crops, DATA_VOC], label_map=[
        "no_mask=without_mask", "with_incorrect_mask=mask_weared_incorrect"]))
    assert dataset.format == "mixed" and set(dataset.labels) == THREE
    by_source = {k: {s.label for s in dataset.samples if s.origin == k} for k in (0, 1)}
    assert by_source[0] == {"without_mask", "mask_weared_incorrect"}  # no with_mask here
    assert by_source[1] == THREE
    assert [s.name for s in dataset.sources] == ["crops", "face-mask-voc"]


def test_label_map_leaves_a_class_out_everywhere(crops: Path, tmp_path: Path) -> None:
    dataset = preflight(_config(tmp_path, [crops, DATA_VOC], label_map=[
        "no_mask=without_mask", "with_incorrect_mask=", "mask_weared_incorrect="]))
    assert set(dataset.labels) == {"with_mask", "without_mask"}


def test_exclude_list_keeps_the_listed_photos_out(tmp_path: Path) -> None:
    held_out = set(ILC_HELD_OUT.read_text().split())
    everything = preflight(_config(tmp_path, [DATA_ILC]))
    kept = preflight(_config(tmp_path, [DATA_ILC, DATA_VOC], exclude_lists=[ILC_HELD_OUT]))
    ilc_names = {Path(s.path).name for s in kept.samples if s.origin == 0}
    assert ilc_names and not ilc_names & held_out
    assert {Path(s.path).name for s in everything.samples} & held_out


@pytest.mark.parametrize(("args", "message"), [
    (["--label-map", "no_mask"], "--label-map takes FROM=TO"),
    (["--label-map", "=with_mask"], "--label-map takes FROM=TO"),
    (["--label-map", "a=b", "--label-map", "a=c"], "two targets"),
    (["--exclude-list", "/nonexistent/list.txt"], "cannot read photo list"),
    (["--source-weight", "nosuch=2"], "no source named 'nosuch'"),
    (["--source-weight", "crops=x"], "--source-weight takes NAME=WEIGHT"),
])
def test_bad_label_map_or_list_is_one_error_line(crops: Path, tmp_path: Path, args: list[str],
                                                 message: str) -> None:
    from trainer.cli import app

    result = runner.invoke(app, ["fit", str(crops), str(DATA_VOC), "--out",
                                 str(tmp_path / "run"), "--weights", "none", *args])
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("trainer: error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_same_folder_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="twice"):
        preflight(_config(tmp_path, [DATA_VOC, DATA_VOC]))


def test_multi_source_fit_split_report_and_evaluate(crops: Path, tmp_path: Path) -> None:
    """A mixed folders + VOC run: split.json records each row's source, the report counts per
    source, and `trainer evaluate` reads the split and a VOC folder with --only-list."""
    from trainer.cli import app

    out = tmp_path / "run"
    result = runner.invoke(app, [
        "fit", str(crops), str(DATA_ILC), "--out", str(out), "--weights", str(BACKBONE),
        "--input-size", "64", "--epochs", "1", "--limit-per-class", "12", "--quiet",
        "--label-map", "no_mask=without_mask",
        "--label-map", "with_incorrect_mask=mask_weared_incorrect",
        "--exclude-list", str(ILC_HELD_OUT), "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert result.exit_code == 0, result.output
    split = json.loads((out / "split.json").read_text())
    assert [s["name"] for s in split["sources"]] == ["crops", "face-mask-ilc-dev"]
    assert {r["source"] for r in split["rows"]} <= {0, 1}
    held_out = set(ILC_HELD_OUT.read_text().split())
    assert not {Path(r["path"]).name for r in split["rows"]} & held_out
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["per_source"]) == {"crops", "face-mask-ilc-dev"}
    assert "Per data source" in (out / "report.txt").read_text()

    evaluated = runner.invoke(app, ["evaluate", str(out / "model.h5"), "--data",
                                    str(out / "split.json"), "--split", "all", "--quiet",
                                    "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["n"] == len(split["rows"])
    names = tmp_path / "few.txt"
    names.write_text("".join(f"{n}\n" for n in sorted(held_out)[:5]))
    evaluated = runner.invoke(app, ["evaluate", str(out / "model.h5"), "--data", str(DATA_ILC),
                                    "--only-list", str(names), "--quiet", "--json",
                                    "--out", str(tmp_path / "ev")])
    assert evaluated.exit_code == 0, evaluated.output
    expected = sum(a.short_side >= 16 for i in load_voc(DATA_ILC, only=set(
        names.read_text().split())) for a in i.annotations)
    result = json.loads(evaluated.stdout)
    assert result["n"] == expected
    # the misclassified faces, most confident first, for auditing the labels
    import csv

    errors = list(csv.DictReader((tmp_path / "ev" / "errors.csv").open()))
    assert len(errors) == result["errors"] == round(expected * (1 - result["accuracy"]))
    assert all(e["source"] == "face-mask-ilc-dev" and e["label"] != e["predicted"]
               and len(e["box"].split()) == 4 for e in errors)
    confidence = [float(e["confidence"]) for e in errors]
    assert confidence == sorted(confidence, reverse=True)
    with Image.open(tmp_path / "ev" / "errors.jpg") as sheet:
        assert sheet.width == 10 * 112 and sheet.height >= 126


@pytest.mark.skipif(not MODEL_3C.is_file(), reason="3-class model not built yet")
def test_shipped_3c_model_through_edge_run(tmp_path: Path) -> None:
    from edge.cli import app as edge_app
    from edge.core.tflite_metadata import read_contract
    from edge.sinks.draw import label_colour

    assert set(read_contract(MODEL_3C).labels) == THREE
    assert len({label_colour(x) for x in THREE}) == 3
    photos = tmp_path / "photos"
    photos.mkdir()
    chosen = [i for i in load_voc(DATA_ILC, only=set(ILC_HELD_OUT.read_text().split()))
              if any(a.label == "mask_weared_incorrect" for a in i.annotations)][:4]
    for item in chosen:
        (photos / item.path.name).symlink_to(item.path)
    events, video = tmp_path / "events.jsonl", tmp_path / "out.mp4"
    result = runner.invoke(edge_app, [
        "run", "--source", str(photos), "--model", str(MODEL_3C), "--detector-model", YUNET,
        "--detect-width", "0", "--json", str(events), "--save", str(video), "--quiet",
        "--alert-after", "1"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    faces = [f for x in lines if "faces" in x for f in x["faces"]]
    assert faces and {f["label"] for f in faces} <= THREE
    assert "mask_weared_incorrect" in {f["label"] for f in faces}
    alerts = [x for x in lines if x.get("event") == "alert"]
    assert {a["label"] for a in alerts} <= {"without_mask", "mask_weared_incorrect"}
    assert video.stat().st_size > 0
    assert np.isfinite([f["score"] for f in faces]).all()


def test_threeclass_section_renders_from_its_json() -> None:
    from benchmarks.stages.threeclass_report import render_threeclass
    from benchmarks.stages.threeclass_rows import ROWS, command_of

    measured = {"n": 3, "accuracy": 0.9, "per_class": {
        c: {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 1} for c in THREE}}
    sets = {"ilc-dev held-out": measured, "face-mask-voc test": measured}
    report = {"command": "python -m benchmarks.stages.threeclass", "holdout": {},
              "rows": [{"name": "voc", "change": "baseline", "base": None, "train_faces": 10,
                        "train_seconds": 1.0, "keras": sets}],
              "shipped": {"row": "voc", "model": "models/x.tflite", "size_bytes": 2_000_000,
                          "keras": sets, "int8": sets, "command": command_of(ROWS[0]),
                          "convert_command": "convert runs/3c/model.h5 -q int8"}}
    text = "\n".join(render_threeclass(report))
    assert "| `voc` | baseline |" in text and "90.0%" in text and "0.67" in text
    assert "--exclude-list benchmarks/holdout/face-mask-ilc-dev-test.txt" in text
    assert "with `--only`" not in text
    rerun = {**report, "started": "T0", "rerun": {"started": "T1", "rows": ["voc"]}}  # older file
    assert "(started T0; `voc` run T1 with `--only`)" in "\n".join(render_threeclass(rerun))
    two = {**report, "started": "T0", "reruns": [{"started": "T1", "rows": ["a", "b"]},
                                                 {"started": "T2", "rows": ["c"]}]}
    assert "(started T0; `a`, `b` run T1, `c` run T2 with `--only`)" in "\n".join(
        render_threeclass(two))
    # the model card names every data source, the recipe down its base rows and the time per face
    from benchmarks.stages.threeclass_report import model_card

    band = {"name": "band", "change": "+ the band", "base": "voc", "sources": ["voc", "ilc"],
            "options": {"input_size": 320, "nose_band": True}, "train_faces": 10,
            "train_counts": {}, "command": "trainer fit X --nose-band", "keras": sets}
    card = model_card({**report, "rows": [{**report["rows"][0], "sources": ["voc"]}, band],
                       "shipped": {**report["shipped"], "row": "band", "ms_per_face": 36.64}})
    assert "`band`: + the band; `voc`: baseline." in card and "36.6 ms per face" in card
    assert "whole face at 160 px and its nose-and-mouth band at 320 px" in card
    assert "face-mask-ilc-dev" in card and "trainer fit X --nose-band" in card


def test_threeclass_seed_rows_give_a_spread_and_never_ship() -> None:
    from benchmarks.stages.shipping import is_seed_row, score
    from benchmarks.stages.threeclass_report import render_threeclass
    from benchmarks.stages.threeclass_rows import ROWS, SPREAD_OF, command_of

    def row(name: str, acc: float, f1: float, **options: int) -> dict:
        m = {"accuracy": acc, "per_class": {"mask_weared_incorrect": {"f1": f1}}}
        return {"name": name, "change": "c", "base": SPREAD_OF if options else None,
                "options": options, "keras": {"ilc-dev held-out": m, "face-mask-voc test": m}}

    rows = [row(SPREAD_OF, 0.89, 0.60), row(f"{SPREAD_OF}@seed1", 0.87, 0.70, seed=1),
            row(f"{SPREAD_OF}@seed2", 0.88, 0.65, seed=2)]
    text = "\n".join(render_threeclass({"rows": rows, "holdout": {}}))
    assert f"`{SPREAD_OF}` and its 2 seed rows" in text
    assert "ilc accuracy 88.0% ± 1.0; ilc F1 0.65 ± 0.05" in text
    assert is_seed_row(rows[1]) and not is_seed_row(rows[0])
    assert max(rows, key=score)["name"] == SPREAD_OF  # the best-F1 seed is not picked
    seeded = [r for r in ROWS if r.name.startswith(f"{SPREAD_OF}@seed")]
    assert seeded and all(r.base == SPREAD_OF for r in seeded)
    assert "--seed 1 " in command_of(seeded[0]) and "--nose-band" in command_of(seeded[0])
    assert "Chance alone" not in "\n".join(render_threeclass({"rows": rows[:1]}))
    from benchmarks.stages.threeclass_report import (
        model_card,  # the card of the shipped row shows its spread
    )

    full = {"sources": ["voc", "ilc"], "train_faces": 10, "train_counts": {}, "command": "fit"}
    per = {c: {"precision": 1.0, "recall": 1.0, "f1": 1.0} for c in THREE}
    sets = {k: {"accuracy": 1.0, "per_class": per} for k in rows[0]["keras"]}
    card = model_card({"rows": [{**r, **full} for r in rows], "holdout": {}, "shipped": {
        "row": SPREAD_OF, "model": "m.tflite", "size_bytes": 1, "keras": sets, "int8": sets,
        "command": "fit", "convert_command": "convert"}})
    assert f"`{SPREAD_OF}` and its 2 seed rows" in card
    other = [{**row("b", 0.9, 0.7), "base": None},
             {**row("b@seed1", 0.92, 0.8, seed=1), "base": "b"}]
    text = "\n".join(render_threeclass({"rows": rows + other, "holdout": {}}))
    assert f"`{SPREAD_OF}` and its 2 seed rows" in text and "`b` and its 1 seed rows" in text


def test_threeclass_combined_rows_commands_tau_choice_and_card() -> None:
    """Combined rows: their reproduce commands, the held-in choice of TAU (ties to the smaller)
    rendered with its grid, and the card of an ensemble."""
    from benchmarks.stages.shipping import flip_wins
    from benchmarks.stages.threeclass import pick_tau
    from benchmarks.stages.threeclass_report import model_card, render_threeclass
    from benchmarks.stages.threeclass_rows import COMBINED, combined_command

    rows = {c.name: c for c in COMBINED}
    single = combined_command(rows["mild+fine-tune-all+adjust"], 0.3)
    assert single.startswith("trainer fit ") and single.endswith("--logit-adjust 0.3 --out runs/3c")
    commands = combined_command(rows["ensemble3+adjust"], 0.3).split(" && ")
    assert len(commands) == 4 and "--seed 1 --split-seed 0 --out runs/3c-seed1" in commands[1]
    assert commands[-1] == ("trainer ensemble runs/3c-seed0 runs/3c-seed1 runs/3c-seed2 "
                            "--logit-adjust 0.3 --out runs/3c")
    assert "--logit-adjust" not in combined_command(rows["ensemble3"], 0.3)
    grid = [{"tau": 0.0, "accuracy": 0.9, "f1": 0.7}, {"tau": 0.1, "accuracy": 0.95, "f1": 0.7},
            {"tau": 0.2, "accuracy": 0.94, "f1": 0.71}, {"tau": 0.3, "accuracy": 0.9, "f1": 0.6}]
    assert pick_tau(grid) == 0.1  # 0.1 and 0.2 tie on accuracy + F1: the smaller
    choice = {"runs": ["a", "b"], "faces": 1334, "weak_faces": 91, "grid": grid,
              "chosen": 0.1, "rule": "best held-in accuracy + F1"}
    text = "\n".join(render_threeclass({"rows": [], "holdout": {}, "tau_choice": choice}))
    assert "TAU = 0.1, chosen on held-in faces only" in text and "| F1 | 0.700 |" in text
    flipped = {**choice, "grid_flip": grid, "chosen_flip": 0.2}
    text = "\n".join(render_threeclass({"rows": [], "holdout": {}, "tau_choice": flipped}))
    assert "| F1, mirror too (TAU 0.2 chosen) | 0.700 |" in text
    assert not flip_wins(flipped) and "so `--flip` rows do not ship." in text  # a tie: no
    better = {**flipped, "grid_flip": [{**g, "f1": g["f1"] + 0.01} for g in grid]}
    assert flip_wins(better) and not flip_wins(choice)
    flip = combined_command(rows["bagged3+adjust+flip"], 0.4).split(" && ")[-1]
    assert flip.endswith("runs/3c-seed2 --logit-adjust 0.4 --flip --out runs/3c")
    per = {c: {"precision": 1.0, "recall": 1.0, "f1": 1.0} for c in THREE}
    sets = {k: {"accuracy": 1.0, "per_class": per} for k in ("ilc-dev held-out",
                                                             "face-mask-voc test")}
    ens = {"name": "ensemble3+adjust", "change": "c", "base": None, "sources": ["voc"],
           "options": {"input_size": 320, "nose_band": True, "members": ["a", "b", "c"],
                       "logit_adjust": 0.3}, "train_faces": 10, "train_counts": {},
           "command": " && ".join(commands), "keras": sets}
    card = model_card({"rows": [ens], "holdout": {}, "shipped": {
        "row": ens["name"], "model": "m.tflite", "size_bytes": 1, "keras": sets, "int8": sets,
        "command": ens["command"], "convert_command": "convert runs/3c/model.h5"}})
    assert "3 networks trained alike" in card and "logit adjustment 0.3" in card
    assert "\ntrainer ensemble runs/3c-seed0 runs/3c-seed1 runs/3c-seed2" in card
    bag = combined_command(rows["bagged3+adjust"], 0.3).split(" && ")
    assert "--seed 2 --split-seed 0 --val-seed 2 --out runs/3c-seed2" in bag[2]
    bagged = {**ens, "options": {**ens["options"], "bagged": True, "flip": True}}
    card = model_card({"rows": [bagged], "holdout": {}, "shipped": {
        "row": ens["name"], "model": "m.tflite", "size_bytes": 1, "keras": sets, "int8": sets,
        "command": ens["command"], "convert_command": "convert runs/3c/model.h5"}})
    assert "each validating on other faces (`--val-seed`)" in card
    assert "each face read as it is and mirrored, the two averaged" in card


def test_threeclass_only_keeps_the_earlier_rows_and_start(tmp_path: Path) -> None:
    from benchmarks.stages.threeclass import _earlier, _merged

    path = tmp_path / "threeclass.json"
    assert _earlier(path) == {}
    path.write_text(json.dumps({"started": "T0", "rows": [{"name": "voc", "v": 1},
                                                          {"name": "voc+ilc", "v": 1}]}))
    earlier = _earlier(path)
    merged = _merged(earlier, [{"name": "voc+ilc", "v": 2}, {"name": "new-row", "v": 2}])
    assert [(r["name"], r["v"]) for r in merged] == [("voc", 1), ("voc+ilc", 2), ("new-row", 2)]
    assert earlier["started"] == "T0"
    from benchmarks.stages.threeclass import _reruns

    earlier["reruns"] = [{"started": "T1", "rows": ["a", "b"]}, {"started": "T2", "rows": ["b"]}]
    assert _reruns(earlier, "T3", ["b"]) == [{"started": "T1", "rows": ["a"]},
                                              {"started": "T3", "rows": ["b"]}]


@pytest.mark.slow
def test_threeclass_quick_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "benchmarks.stages.threeclass", "--quick",
                           "--no-ship", "--out", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "threeclass.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["voc", "voc+ilc"]
    assert all(set(r["keras"]) == {"ilc-dev held-out", "face-mask-voc test"}
               for r in report["rows"])
    # an --only --no-ship run adds its rows and keeps the earlier record of what shipped
    shipped = {"row": "voc", "model": "models/x.tflite"}
    (tmp_path / "threeclass.json").write_text(json.dumps({**report, "shipped": shipped}))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.stages.threeclass", "--quick",
                           "--only", "voc", "--reuse", "--no-ship", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "threeclass.json").read_text())
    assert again["shipped"] == shipped and again["reruns"][-1]["rows"] == ["voc"]
    assert [r["name"] for r in again["rows"]] == ["voc", "voc+ilc"]
