"""One round of the loop, step after step (benchmarks/dataloop/steps.py), and its results.

The held-out photos are read by the `evaluate` steps only, after both models are converted, and
each model once: the three evaluation files are kept and a rerun reuses them, so no number of
the held-out photos is ever looked at before the recipe, the budget and the labelling rule are
fixed (they are all constants of this package, chosen before the first full run).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.dataloop import annotator, clip, steps
from benchmarks.dataloop.steps import DONE, SHIPPED, Plan, State, StepError
from benchmarks.holdout_split import ILC_TEST_LIST
from benchmarks.tables import short
from edge.collect import manifest
from edge.core.voc import read_name_list

MODELS = ("before", "after")
Say = Callable[[str], None]


def _log(plan: Plan) -> Path:
    return plan.work / "commands.log"


def video_step(plan: Plan, state: State, say: Say) -> clip.Video:
    made = clip.existing_video(plan.work)
    if made is not None:
        say(f"video: kept {made.path} ({made.info['frames']} frames)")
        return made
    say("video: rendering the held clip of held-in ilc-dev photos")
    start = datetime.now(UTC)
    made = clip.make_collect_video(plan.shared, plan.work, plan.photos, plan.hold)
    state.record("video", seconds=(datetime.now(UTC) - start).total_seconds(),
                 command="benchmarks.dataloop.clip.make_collect_video", **made.info)
    return made


def collect_step(plan: Plan, state: State, video: clip.Video, say: Say) -> None:
    if (plan.collected / DONE).is_file():
        say(f"collect: kept {plan.collected}")
        return
    if plan.collected.exists():  # an interrupted collect: start it again
        shutil.rmtree(plan.collected)
    argv = steps.collect_argv(plan, video.path)
    say(f"collect: {steps.shown(argv)}")
    summary = plan.work / "collect_summary.json"
    seconds = steps.run(argv, _log(plan), stdout=summary)
    (plan.collected / DONE).write_text("")
    state.record("collect", seconds=seconds, command=steps.shown(argv))


def label_step(plan: Plan, state: State, video: clip.Video, say: Say) -> dict[str, Any]:
    """Label every kept face from the truth (annotator.py) with one `edge label --set ...`."""
    decisions_file = plan.work / "labels.json"
    if decisions_file.is_file() and "label" in state.steps:
        say("label: kept")
        return json.loads(decisions_file.read_text())
    entries = manifest.read_entries(plan.collected)
    decisions = annotator.decide_all(entries, clip.read_truth(video.truth))
    pairs = [(d.file, d.label) for d in decisions if d.label is not None]
    argv = steps.label_argv(plan, pairs)
    say(f"label: {steps.shown(argv[:3])} --set FILE=LABEL x {len(pairs)} "
        f"({len(decisions) - len(pairs)} skipped)")
    seconds = steps.run(argv, _log(plan)) if pairs else 0.0
    result = {"decisions": [d.to_json() for d in decisions], **annotator.tally(decisions)}
    steps.write_text_atomic(decisions_file, json.dumps(result, indent=1) + "\n")
    shown = steps.shown([*argv[:3], "--set", "FILE=LABEL", "..."])
    state.record("label", seconds=seconds, command=f"{shown} ({len(pairs)} --set)")
    return result


def command_step(plan: Plan, state: State, step: str, output: Path, argv: list[str],
                 say: Say) -> None:
    """Run `argv` as step `step` (its stdout into WORK/<step>.json) unless `output` exists and
    the step is recorded as done."""
    if output.is_file() and step in state.steps:
        say(f"{step}: kept {output}")
        return
    say(f"{step}: {steps.shown(argv)}")
    seconds = steps.run(argv, _log(plan), stdout=plan.work / f"{step.replace(' ', '_')}.json")
    state.record(step, seconds=seconds, command=steps.shown(argv))


def fit_step(plan: Plan, state: State, name: str, say: Say) -> None:
    command_step(plan, state, f"fit {name}", plan.work / name / "model.h5",
                 steps.fit_argv(plan, name), say)


def convert_step(plan: Plan, state: State, name: str, say: Say) -> None:
    command_step(plan, state, f"convert {name}", plan.work / name / "model_int8.tflite",
                 steps.convert_argv(plan, name), say)


def evaluate_step(plan: Plan, state: State, name: str, model: Path, say: Say) -> dict[str, Any]:
    """`edge evaluate` of one int8 model on the held-out photos, once (module docstring)."""
    target = plan.work / "evaluate" / f"{name}.json"
    if not target.is_file():
        argv = steps.evaluate_argv(plan, model, target, ILC_TEST_LIST)
        target.parent.mkdir(parents=True, exist_ok=True)
        say(f"evaluate {name}: {steps.shown(argv)}")
        seconds = steps.run(argv, _log(plan))
        state.record(f"evaluate {name}", seconds=seconds, command=steps.shown(argv))
    else:
        say(f"evaluate {name}: kept {target} (read once)")
    reports = json.loads(target.read_text())  # {setting name: report}; one setting here
    return next(iter(reports.values())) if "images" not in reports else reports


def score(name: str, model: Path, report: dict[str, Any]) -> dict[str, Any]:
    """One row of the comparison: the with_mask / without_mask faces the detector found."""
    per_class = (report.get("report_on_found_faces") or {}).get("per_class", {})
    return {"model": name, "file": short(model),
            "faces_scored": sum(v["support"] for v in per_class.values()),
            "accuracy": report.get("accuracy_on_found_faces"),
            "f1": {k: v["f1"] for k, v in per_class.items()},
            "recall": {k: v["recall"] for k, v in per_class.items()},
            "support": {k: v["support"] for k, v in per_class.items()},
            "macro_f1": (report.get("report_on_found_faces") or {}).get("macro", {}).get("f1"),
            "accuracy_on_annotated_boxes": report.get("accuracy_on_annotated_boxes"),
            "end_to_end": report.get("end_to_end"), "photos": report.get("images"),
            "annotated_faces": report.get("faces"), "recall_detector": report.get("recall"),
            "confusion_matrix": (report.get("report_on_found_faces") or {}).get(
                "confusion_matrix"),
            "incorrect_mask_faces_predicted_as": report.get(
                "predictions_for_unknown_classes", {}).get("mask_weared_incorrect", {})}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def train_info(plan: Plan, name: str, state: State) -> dict[str, Any]:
    """Per model: training and conversion time, samples per source and split, the run's own
    test split accuracy (Keras), the int8 file's gate."""
    summary = _json(plan.work / f"fit_{name}.json")
    conv = _json(plan.work / f"convert_{name}.json")
    variants = conv.get("variants") or [{}]
    keep = ("passed", "accuracy", "keras_accuracy", "delta_points", "top1_agreement",
            "max_prob_diff", "samples")
    return {"train_seconds": state.steps.get(f"fit {name}", {}).get("seconds"),
            "convert_seconds": state.steps.get(f"convert {name}", {}).get("seconds"),
            "per_source": {src: {"counts": v.get("counts"), "test_accuracy": v.get(
                "test_accuracy")} for src, v in (summary.get("per_source") or {}).items()},
            "test_accuracy_keras": summary.get("test_accuracy"),
            "int8": {k: variants[0].get(k) for k in keep}, "max_drop_points": conv.get(
                "max_drop_points")}


def collected_info(plan: Plan) -> dict[str, Any]:
    entries = manifest.read_entries(plan.collected)
    return {"faces": len(entries), "collect_max": plan.collect_max,
            "by_reason": dict(Counter(e.get("reason") for e in entries)),
            "by_raw_label": dict(Counter(e.get("raw_label") for e in entries)),
            "summary": _json(plan.work / "collect_summary.json")}


def run_round(plan: Plan, say: Say) -> dict[str, Any]:
    """Every step in order (each skipped when done); the results dictionary."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    plan.work.mkdir(parents=True, exist_ok=True)
    state = State.load(plan.work)
    video = video_step(plan, state, say)
    collect_step(plan, state, video, say)
    labels = label_step(plan, state, video, say)
    for name in MODELS:
        fit_step(plan, state, name, say)
        convert_step(plan, state, name, say)
    models = {"before": plan.work / "before" / "model_int8.tflite",
              "after": plan.work / "after" / "model_int8.tflite", "shipped": SHIPPED}
    rows = [score(name, path, evaluate_step(plan, state, name, path, say))
            for name, path in models.items()]
    return {"command": "python -m benchmarks.dataloop" + (" --quick" if plan.quick else ""),
            "quick": plan.quick, "date": datetime.now(UTC).date().isoformat(),
            "started": started, "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "plan": plan.to_json(), "video": {k: v for k, v in video.info.items()
                                              if k != "photo_names"},
            "held_out": {"list": "benchmarks/holdout/face-mask-ilc-dev-test.txt",
                         "photos": len(read_name_list(ILC_TEST_LIST)),
                         "scored_photos": rows[0].get("photos"), "read_once": True},
            "collected": collected_info(plan),
            "labels": {k: v for k, v in labels.items() if k != "decisions"},
            "label_rule": {"match_iou": annotator.MATCH_IOU, "classes": annotator.TWO_CLASS},
            "train": {name: train_info(plan, name, state) for name in MODELS},
            "steps": state.steps, "comparison": rows}


__all__ = ["StepError", "run_round", "score"]
