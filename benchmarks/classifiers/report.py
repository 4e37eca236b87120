"""RESULTS.md's section from `classifiers.json` (`render_classifiers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.classifiers.rows import (
    CLASSES,
    HOLD,
    INCORRECT,
    MIN_FACE,
    PROG,
    SIZE_BUCKETS,
    STUDENT_TARGET,
    TITLE,
    bucket_name,
)
from benchmarks.tables import fmt, pct, table


def _f1s(row: dict[str, Any]) -> str:
    per_class = row.get("heldout", {}).get("per_class", {})
    cells = [per_class.get(c) for c in CLASSES]
    return " / ".join("n/a" if not isinstance(c, dict) else f"{c['f1']:.2f}" for c in cells)


def _main_cells(row: dict[str, Any]) -> list[str]:
    ms, held = row.get("ms_per_face", {}), row.get("heldout", {})
    fps, ratio = row.get("pipeline", {}).get("fps"), row.get("fps_vs_2c")
    acc = pct(held.get("accuracy"))
    if INCORRECT in row.get("labels", []):
        acc += f" ({pct(held.get('accuracy_with_without'))})"
    return [f"{row['name']} (`{Path(row['model']).name}`)", fmt(row.get("size_mb")),
            fmt(row.get("macs", 0) / 1e6, 0), fmt(ms.get("1")), fmt(ms.get("2")),
            fmt(row.get("pi4", {}).get("ms_per_face"), 0),
            f"{fmt(fps, 1)} ({fmt(ratio)}x)", acc, _f1s(row)]


def _size_cells(row: dict[str, Any]) -> list[str]:
    sizes = row.get("heldout", {}).get("by_size", {})
    return [row["name"], *(f"{pct(b.get('accuracy'))} ({b.get('faces', 0)})"
                           for b in (sizes.get(bucket_name(lo, hi), {})
                                     for lo, hi in SIZE_BUCKETS))]


def _intro(d: dict[str, Any]) -> list[str]:
    held, video, prof = d.get("heldout", {}), d.get("video", {}), d.get("profile", {})
    cpu = d.get("machine", {}).get("cpu", {})
    return [TITLE, "", f"From `{d.get('command', PROG)}` (started {d.get('started', '?')}, "
            f"{fmt(d.get('seconds'), 0)} s, on {cpu.get('model', '?')}, "
            f"{cpu.get('logical_cpus', '?')} logical CPUs; 1-minute load "
            f"{fmt((d.get('load_average_start') or [None])[0])} at the start). Every row is "
            "measured in the same run on the same inputs. MACs are counted from each .tflite "
            "graph (convolutions and fully connected layers, batch of one; the ensemble's one "
            "call covers its three members on the face and its mirror). ms per face: the "
            "device's `MaskClassifier.classify` on one real face crop at a time, median of "
            f"{prof.get('runs', '?')} calls after {prof.get('warmup', '?')} of warm-up. "
            f"Pipeline FPS: one {video.get('size', '640x480')} video of "
            f"{fmt(video.get('frames'))} frames ({fmt(video.get('photos'))} face-mask-voc "
            f"photos with 1-4 faces, each held {video.get('hold', HOLD)} frames) played by "
            f"`edge run --source VIDEO --model M --threads {d.get('pipeline_threads', 2)}` "
            "(every other option at its default, not realtime), the same file for every row. "
            f"Held-out accuracy: the {fmt(held.get('photos'))} face-mask-ilc-dev held-out "
            "photos, framed by the shipped default detector as the device does, matched to the "
            f"annotations at IoU 0.5: {fmt(held.get('matched_faces'))} of "
            f"{fmt(held.get('annotated_faces'))} annotated faces of at least "
            f"{d.get('min_face', MIN_FACE)} px found, the same faces for every row (in brackets: "
            "accuracy on the with_mask / without_mask faces alone, the 2-class model's set).", ""]


def render_classifiers(d: dict[str, Any]) -> list[str]:
    """RESULTS.md's section from `classifiers.json`."""
    rows, ref = d.get("rows", []), d.get("pi4_reference", {})
    lines = _intro(d)
    lines += table(["model", "file MB", "MACs (M)", "ms/face 1 thread", "ms/face 2 threads",
                    "Pi 4 est. ms/face", "pipeline FPS (x 2-class)", "held-out accuracy",
                    "F1 with / without / incorrect"], [_main_cells(r) for r in rows])
    lines += ["", "Held-out accuracy by face size (short side of the annotated box; faces in "
              "brackets):", ""]
    lines += table(["model", *(f"{bucket_name(lo, hi)} px" for lo, hi in SIZE_BUCKETS)],
                   [_size_cells(r) for r in rows])
    ratio = d.get("student_fps_ratio")
    verdict = ("met" if ratio is not None and ratio >= d.get("student_target", STUDENT_TARGET)
               else "**not met**")
    lines += ["", f"The student's pipeline FPS is {fmt(ratio)}x the 2-class model's (target >= "
              f"{d.get('student_target', STUDENT_TARGET)}x: {verdict}). The 2-class model "
              "cannot say mask_weared_incorrect: it is scored on the with_mask / without_mask "
              "faces only, and its incorrect F1 is n/a.",
              "", "The Pi 4 column is an **extrapolation, not a measurement**: each row's MACs "
              "at this machine's achieved 1-thread rate for that row (MACs / ms), scaled by a "
              f"Pi 4 Cortex-A72 core's nominal int8 peak ({fmt(ref.get('pi_core_int8_gmacs'), 0)}"
              f" GMAC/s) over this CPU core's ({fmt(ref.get('here_core_int8_gmacs'), 0)} GMAC/s), "
              "the constants of the input size sweep.",
              "", "What was read from held-out photos: these face-mask-ilc-dev held-out photos "
              "are read once, for the models that ship; nothing was chosen on them."]
    return lines

