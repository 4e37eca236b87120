"""RESULTS.md's data-loop section from `benchmarks/results/dataloop.json` (`render_dataloop`)."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.tables import fmt, pct, table

TITLE = "## The data loop: one round of collect, label, retrain"
CLASSES = ("with_mask", "without_mask")
ROW_NAMES = {"before": "before: base data only, retrained",
             "after": "after: base data + the labelled faces",
             "shipped": "shipped `face_mask_2c_int8.tflite` (reference)"}


def _row(r: dict[str, Any]) -> list[str]:
    f1, support = r.get("f1", {}), r.get("support", {})
    return [ROW_NAMES.get(r.get("model", ""), str(r.get("model"))),
            fmt(r.get("faces_scored")),
            " / ".join(fmt(support.get(c)) for c in CLASSES),
            pct(r.get("accuracy")),
            *(fmt(f1.get(c), 3) for c in CLASSES),
            fmt(r.get("macro_f1"), 3), pct(r.get("accuracy_on_annotated_boxes"))]


def _counts(d: dict[str, Any]) -> str:
    col, lab = d.get("collected", {}), d.get("labels", {})
    labelled = lab.get("labelled", {})
    skipped = "; ".join(f"{n} {why}" for why, n in lab.get("skipped", {}).items()) or "none"
    reasons = ", ".join(f"{n} {k}" for k, n in sorted(col.get("by_reason", {}).items()))
    return (f"`edge run --collect` kept {fmt(col.get('faces'))} faces (budget "
            f"{fmt(col.get('collect_max'))}; {reasons}); the simulated person labelled "
            f"{fmt(lab.get('labelled_total'))} ({fmt(labelled.get('with_mask', 0))} with_mask, "
            f"{fmt(labelled.get('without_mask', 0))} without_mask), of which "
            f"{fmt(lab.get('model_was_wrong_total', 0))} say another class than the shipped "
            f"model did, and skipped {fmt(lab.get('skipped_total', 0))} ({skipped}).")


def _times(d: dict[str, Any]) -> str:
    s = d.get("steps", {})
    names = ("video", "collect", "label", "fit before", "convert before", "fit after",
             "convert after", "evaluate before", "evaluate after", "evaluate shipped")
    return ", ".join(f"{n} {fmt(s[n].get('seconds'), 0)} s" for n in names if n in s)


def _gain(d: dict[str, Any]) -> list[str]:
    """After minus before, with one standard error of an accuracy on that many faces."""
    rows = {r.get("model"): r for r in d.get("comparison", [])}
    before, after = rows.get("before", {}), rows.get("after", {})
    if before.get("accuracy") is None or after.get("accuracy") is None:
        return []
    n, p = before.get("faces_scored") or 0, before["accuracy"]
    se = math.sqrt(p * (1 - p) / n) * 100 if n else float("nan")
    gain = (after["accuracy"] - p) * 100
    return [f"One round gains {gain:+.1f} points of accuracy on the held-out faces (one "
            f"standard error of an accuracy on {n} faces: {se:.1f} points).", ""]


def render_dataloop(d: dict[str, Any]) -> list[str]:
    """The section: what was simulated and held out, the counts, the table, the commands."""
    video, held = d.get("video", {}), d.get("held_out", {})
    lines = [TITLE, "",
             f"From `{d.get('command', 'python -m benchmarks.dataloop')}` ({d.get('date', '?')}"
             f"{', quick profile: not a measurement' if d.get('quick') else ''}). The new door: "
             "face-mask-ilc-dev, web photos of another origin than face-mask-2c, on which the "
             f"shipped 2-class model was trained. A {video.get('size', '640x480')} video of "
             f"{fmt(video.get('photos'))} held-in ilc-dev photos (in neither list of "
             f"`benchmarks/holdout/`; {fmt(video.get('frames'))} frames, each photo held "
             f"{fmt(video.get('hold'))} frames with a little pan and zoom and sensor noise, seed "
             f"{video.get('seed', '?')}) played through `edge run` with the shipped model. "
             "The person is simulated with the annotations: each kept face takes the VOC class of "
             "the annotated face its box overlaps at IoU >= 0.5 in that frame; "
             "mask_weared_incorrect faces and faces matching no annotation are skipped.", "",
             _counts(d), "",
             "Both models are trained by the same command, the shipped model's recipe "
             "(`models/MODEL_CARD.md`: MobileNetV2, 128 px, phase 1 on cached features), and "
             "converted with `convert --quantize int8` (gate passed); they differ only in the "
             "second data source.", "",
             f"Scored on the {fmt(held.get('scored_photos'))} **held-out** ilc-dev photos "
             f"(`{held.get('list', 'benchmarks/holdout/face-mask-ilc-dev-test.txt')}`, never "
             "collected from nor trained on), faces found by the default detector (`edge "
             "evaluate`, IoU 0.5), with_mask and without_mask faces. **Read once**: these "
             "photos were scored once, after everything above was fixed; nothing was tuned on "
             "them.", ""]
    lines += table(["model (int8)", "faces", "with / without", "accuracy", "F1 with_mask",
                    "F1 without_mask", "macro F1", "on annotated boxes"],
                   [_row(r) for r in d.get("comparison", [])])
    lines += ["", "accuracy and F1: the faces the detector found (matched to an annotation); "
              "on annotated boxes: the classifier alone on every annotated face of the two "
              "classes.", "", *_gain(d), f"Time per step: {_times(d)}.", ""]
    lines += ["Commands:", ""] + [f"    {s.get('command')}" for s in d.get("steps", {}).values()
                                   if s.get("command")]
    return lines
