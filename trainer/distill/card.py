"""The texts of a distillation run folder: `report.txt` and `MODEL_CARD.md`.

Both say which figures are cross-validated (mean ± sd over folds of held-in photos, never the
held-out ones) and which are the fit on the faces the student trained on, and the card names every
data source with its licence, because a model inherits the terms of what it learnt from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Licence notes per data set folder name (../shared/README.md).
LICENCES = {
    "face-mask-voc": "andrewmvd's Face Mask Detection dataset, CC0 (as republished in MaskON)",
    "face-mask-ilc-dev": ("face-mask-dataset-ilc-2021 (jolignier), **no licence stated**: "
                          "development and evaluation use only"),
    "face-mask-2c": ("chandrikadeb7's Face-Mask-Detection dataset (MIT repository; images "
                     "gathered from Bing, Kaggle and RMFD, of mixed origin): used unlabelled, "
                     "as close-ups the teacher labels"),
}
TEACHER_NOTE = ("the shipped 3-class ensemble `models/face_mask_3c_int8.tflite` (three "
                "MobileNetV2s at 320 px with the nose band, mirrored, int8; see "
                "`models/MODEL_CARD_3c.md`), trained on face-mask-voc and face-mask-ilc-dev "
                "held-in photos")


def _pct(entry: dict[str, float]) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['sd']:.1f} %"


def _f1(entry: dict[str, float]) -> str:
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}"


def cv_lines(cv: dict[str, Any], labels: list[str]) -> list[str]:
    """Markdown table rows of a cross-validation summary (student and teacher, both framings)."""
    lines = ["| crops | model | accuracy | " + " | ".join(f"F1 {x}" for x in labels) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in labels) + " |"]
    for key, entry in cv["summary"].items():
        kind, model = key.split("/")
        framing = "detector-framed" if kind == "detector" else "annotated boxes"
        note = " (trained on these photos)" if model == "teacher" else ""
        lines.append(f"| {framing} | {model}{note} | {_pct(entry['accuracy'])} | "
                     + " | ".join(_f1(entry[f"f1_{x}"]) for x in labels) + " |")
    return lines


def _fit_lines(fit: dict[str, Any]) -> list[str]:
    lines = []
    for kind, models in fit.items():
        for model, m in models.items():
            f1 = ", ".join(f"{k} {v['f1']:.3f}" for k, v in m["per_class"].items())
            lines.append(f"- {kind} crops, {model}: accuracy {100 * m['accuracy']:.1f} % on "
                         f"{m['n']} faces (F1 {f1})")
    return lines


def _sources(config: Any) -> list[str]:
    names = [Path(p).name for p in (*config.data, *config.closeups)]
    return [f"- {n}: {LICENCES.get(n, 'licence: see the data set')}" for n in names]


def report_text(config: Any, summary: dict[str, Any], cv: dict[str, Any] | None) -> str:
    """report.txt: data, cross-validation (if run), fit on the training faces."""
    s = config.setting
    data = summary["data"]
    lines = [f"trainer distill: {config.out}",
             f"student: MobileNetV2 alpha {s.alpha} at {s.input_size} px"
             f"{' + nose band' if s.nose_band else ''}, teacher {config.teacher.name}",
             f"faces: {data['faces']} ({data['by_kind']}), {data['groups']} photo groups, "
             f"per fold {data['per_fold']}",
             f"close-up folder names vs teacher: {summary.get('closeup_hint_agreement')}", ""]
    if cv:
        folds = len(cv["folds"])
        lines += [f"cross-validated ({folds} folds of held-in photos, grouped by photo and "
                  "near-duplicate; mean ± sd across folds):", *cv_lines(cv, list(
                      next(iter(cv["folds"]))["annotation"]["student"]["per_class"])), ""]
        if cv["setting"].get("ft_epochs") != s.ft_epochs:
            lines.append(f"(cross-validation ran phase 2 for {cv['setting']['ft_epochs']} "
                         f"epochs; the final model {s.ft_epochs})")
    if "fit_on_training_faces" in summary:
        lines += ["fit on the training faces (the student trained on them: not an estimate of "
                  "accuracy on new photos):", *_fit_lines(summary["fit_on_training_faces"])]
    return "\n".join(lines) + "\n"


def model_card(config: Any, summary: dict[str, Any], cv: dict[str, Any] | None) -> str:
    """MODEL_CARD.md of the student."""
    s = config.setting
    band = " + the nose-and-mouth band" if s.nose_band else ""
    lines = [
        "# Model card: distilled 3-class student", "",
        f"One MobileNetV2 (alpha {s.alpha}) at {s.input_size} px{band} + the trainer's head "
        f"(dense {s.hidden}, dropout, softmax), trained by `trainer distill` to match the "
        "teacher's probabilities (\"patient and consistent\" distillation, Beyer et al. 2022: "
        "teacher and student read the same views). Labels in the teacher's order.", "",
        "## How it was made", "",
        f"- teacher: {TEACHER_NOTE}",
        f"- faces: annotated VOC boxes and the shipped detector's boxes over the same photos "
        f"(matched at IoU >= 0.5: labelled, else unlabelled), {summary['data']['faces']} in "
        f"all; faces >= {config.min_face} px",
        f"- views: {config.views.views} per face rendered (the device's framing, then "
        f"re-framed, mirrored, brightness/contrast) and {config.views.mix} mixup, each read by "
        f"the teacher once; the student trained on the first {min(s.views, config.views.views)}"
        + (" and the mixups" if s.mix and config.views.mix else " (no mixups)"),
        f"- head: dense {s.hidden} ({s.head_activation}), dropout {s.dropout}, softmax",
        f"- loss: cross-entropy to (1 - {s.ce_weight}) x teacher + {s.ce_weight} x label",
        f"- phase 1: head on cached features, {s.head_epochs} epochs, Adam {s.head_lr} "
        f"(cosine); phase 2: top {s.ft_layers} backbone layers, {s.ft_epochs} epochs, Adam "
        f"{s.ft_lr} (cosine), BatchNorm frozen",
        "- held out, never read in training or in choosing settings: "
        + ", ".join(f"`{Path(p).name}`" for p in config.exclude_lists), "",
        "## Data and licences", "", *_sources(config),
        f"- teacher: {config.teacher.name} (made from face-mask-voc and face-mask-ilc-dev; the "
        "terms of face-mask-ilc-dev carry over: development and evaluation use)",
        "- not used: maskedfacenet-3c (CC BY-NC-SA, non-commercial)", ""]
    if cv:
        labels = list(cv["folds"][0]["annotation"]["student"]["per_class"])
        lines += ["## Cross-validated (held-in photos only)", "", *cv_lines(cv, labels), ""]
    lines += ["Held-out figures (face-mask-ilc-dev test photos, read once for the model that "
              "ships) are in benchmarks/RESULTS.md.", ""]
    return "\n".join(lines)
