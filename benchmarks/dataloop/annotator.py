"""The simulated person at the labelling page: each kept face labelled from the photo's VOC box.

For each manifest line (`edge run --collect`'s kept face: the frame it came from and its box in
frame pixels) the person looks at that frame's ground truth (benchmarks/dataloop/clip.py's
`truth.jsonl`: the annotated boxes moved with the view) and takes the face whose box overlaps the
kept box most, if that overlap is at least `MATCH_IOU` (Pascal VOC's 0.5, as `edge evaluate`
matches). Its VOC class is the label, through `TWO_CLASS`: with_mask and without_mask as they
are; `mask_weared_incorrect` is skipped (key `s`), because the two-class model has no such class,
the comparison scores only with_mask / without_mask faces, and calling a visible mask
"without_mask" would teach the model that a mask under the nose is no mask (the shipped card
says it counts as whichever it looks closer to; a person cannot label that consistently). A kept
box that matches no annotated face (a false detection, or a box too far off) is skipped too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.core.boxes import iou_matrix

MATCH_IOU = 0.5
#: VOC class -> the 2-class model's label; None = skip the face.
TWO_CLASS: dict[str, str | None] = {"with_mask": "with_mask", "without_mask": "without_mask",
                                    "mask_weared_incorrect": None}
NO_MATCH = "no matching annotated face"
INCORRECT = "mask_weared_incorrect (no such class in the 2-class model)"


@dataclass(frozen=True)
class Decision:
    """What the person does with one kept face: a label, or a skip and why."""

    file: str
    label: str | None
    reason: str  # "labelled", NO_MATCH, INCORRECT, or "unknown class NAME"
    iou: float
    truth_label: str | None
    identity: str | None
    raw_label: str | None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "label": self.label, "reason": self.reason,
                "iou": round(self.iou, 3), "truth_label": self.truth_label,
                "identity": self.identity, "raw_label": self.raw_label}


def best_match(box: Sequence[float], faces: Sequence[dict[str, Any]],
               threshold: float = MATCH_IOU) -> tuple[dict[str, Any] | None, float]:
    """The ground-truth face overlapping `box` most, with that IoU; None below `threshold`."""
    if not faces:
        return None, 0.0
    ious = iou_matrix(np.array([box], np.float64),
                      np.array([f["box"] for f in faces], np.float64))[0]
    k = int(ious.argmax())
    return (faces[k] if ious[k] >= threshold else None), float(ious[k])


def decide(entry: dict[str, Any], truth: dict[int, list[dict[str, Any]]],
           label_map: dict[str, str | None] = TWO_CLASS) -> Decision:
    """The label of one manifest entry, from its frame's ground truth (module docstring)."""
    face, iou = best_match(entry["box"], truth.get(int(entry["frame"]), []))
    common = {"file": entry["file"], "iou": iou, "raw_label": entry.get("raw_label")}
    if face is None:
        return Decision(label=None, reason=NO_MATCH, truth_label=None, identity=None, **common)
    voc = face["label"]
    if voc not in label_map:
        reason: str = f"unknown class {voc}"
        label = None
    else:
        label = label_map[voc]
        reason = "labelled" if label is not None else INCORRECT
    return Decision(label=label, reason=reason, truth_label=voc, identity=face["identity"],
                    **common)


def decide_all(entries: Iterable[dict[str, Any]],
               truth: dict[int, list[dict[str, Any]]]) -> list[Decision]:
    """A decision for every kept face that has no label yet (a rerun leaves labelled ones)."""
    return [decide(e, truth) for e in entries if "label" not in e]


def tally(decisions: Sequence[Decision]) -> dict[str, Any]:
    """Counts for the results: labelled per class, skipped per reason, and how many labels say
    something else than the model's raw label on that frame (the model's mistakes found)."""
    labelled = Counter(d.label for d in decisions if d.label is not None)
    skipped = Counter(d.reason for d in decisions if d.label is None)
    corrected = Counter(d.label for d in decisions
                        if d.label is not None and d.label != d.raw_label)
    return {"labelled": dict(sorted(labelled.items())), "labelled_total": sum(labelled.values()),
            "skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values()),
            "model_was_wrong": dict(sorted(corrected.items())),
            "model_was_wrong_total": sum(corrected.values())}
