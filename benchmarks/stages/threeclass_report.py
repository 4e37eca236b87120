"""The 3-class ablation in words: RESULTS.md's 3-class section and models/MODEL_CARD_3c.md.

Pure functions from `threeclass.json`'s content to Markdown (nothing measured, no TensorFlow):
`render_threeclass` (benchmarks/run.py appends it to RESULTS.md), `seed_spread` (the chance-alone
paragraph of a recipe's seed rows) and `model_card` (written by benchmarks/stages/threeclass.py
when it ships). What may ship is decided in benchmarks/stages/shipping.py; this module only says
so.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.config import REPO
from benchmarks.stages.shipping import WEAK, best_held_in, flip_wins, is_seed_row
from benchmarks.tables import fmt, pct, table


def render_threeclass(r: dict[str, Any]) -> list[str]:
    """RESULTS.md's 3-class section from `threeclass.json` (`python -m
    benchmarks.stages.threeclass`)."""
    lines = ["## 3-class: incorrectly worn masks (ablation and the shipped model)", "",
             f"From `{r.get('command', 'python -m benchmarks.stages.threeclass')}` (started "
             f"{r.get('started', '?')}{_rerun(r)}). Every row trains with both held-out photo "
             "lists excluded and is measured (Keras) on the faces >= 16 px of the held-out ilc-dev "
             f"photos ({fmt(r.get('holdout', {}).get('ilc-dev held-out'))} faces) and of "
             f"face-mask-voc's test photos ({fmt(r.get('holdout', {}).get('face-mask-voc test'))}"
             " faces). F1 = mask_weared_incorrect F1; each row changes one thing against its "
             f"base row.{_combined_text(r.get('rows', []))}", ""]
    rows = [[f"`{row['name']}`", row["change"], f"`{row.get('base') or '-'}`",
             fmt(row.get("train_faces")), *_threeclass_cells(row.get("keras", {})),
             f"{fmt(row.get('train_seconds'), 0)} s"] for row in r.get("rows", [])]
    lines += table(["row", "change", "base", "train faces", "ilc acc", "ilc F1", "voc acc",
                    "voc F1", "train time"], rows)
    lines += seed_spread(r.get("rows", []))
    lines += _tau_choice(r.get("tau_choice"))
    shipped = r.get("shipped")
    if not shipped:
        return lines
    speed = (f", {fmt(shipped['ms_per_face'], 1)} ms per face with LiteRT, batch of 1"
             if shipped.get("ms_per_face") is not None else "")
    lines += ["", f"Shipped: row `{shipped['row']}` as `{shipped['model']}` "
              f"({fmt(shipped['size_bytes'] / 1e6)} MB{speed}), int8 vs Keras:", ""]
    head = ["model", "set", "accuracy", *(f"{c} P / R / F1" for c in
                                         ("with_mask", "without_mask", WEAK))]
    body = []
    for kind in ("keras", "int8"):
        for name, m in shipped[kind].items():
            per = m["per_class"]
            body.append([kind, name, pct(m["accuracy"]), *(
                f"{fmt(per[c]['precision'])} / {fmt(per[c]['recall'])} / {fmt(per[c]['f1'])}"
                if c in per else "-" for c in ("with_mask", "without_mask", WEAK))])
    lines += table(head, body)
    int8 = shipped["int8"].get("ilc-dev held-out", {})
    f1 = int8.get("per_class", {}).get(WEAK, {}).get("f1", 0.0)
    met = f1 >= 0.75 and int8.get("accuracy", 0.0) >= 0.92
    lines += ["", f"Target (int8, held-out ilc-dev: mask_weared_incorrect F1 >= 0.75 and accuracy "
              f">= 92 %): **{'met' if met else 'not met'}** (F1 {fmt(f1)}, accuracy "
              f"{pct(int8.get('accuracy'))}). int8 conversion gate: "
              f"{shipped.get('gate', 'passed')}."]
    commands = " ".join(f"`{c}`," for c in shipped["command"].split(" && "))
    lines += ["", f"Reproduce: {commands} then `{shipped['convert_command']}`."]
    return lines


STUDENT_KINDS = (("detector", "detector-framed"), ("annotation", "annotated boxes"))


def render_student_cv(d: dict[str, Any]) -> list[str]:
    """The distilled student's settings side by side (`python -m trainer.distill.compare`):
    5-fold cross-validation on held-in photos only, mean and sd over the folds."""
    lines = ["### The distilled 3-class student: settings compared by cross-validation", "",
             "From `python -m trainer.distill.compare` (`trainer distill`'s settings, issue 29). "
             "**Cross-validated figures**: 5 folds of the held-in photos (face-mask-voc and "
             "face-mask-ilc-dev minus both held-out lists), grouped by photo and near-duplicate "
             "group; each fold's student is trained on the other four and scored on its faces as "
             "the shipped detector frames them and as annotated. No held-out photo was read. The "
             "teacher is the shipped ensemble, which trained on these photos, so its row is "
             "optimistic.", ""]
    rows = []
    for entry in d.get("entries", []):
        s = entry.get("summary", {})
        for who in ("student", "teacher"):
            if who == "teacher" and entry is not d["entries"][-1]:
                continue
            cells = [f"`{entry['setting']['name']}`" if who == "student" else "teacher",
                     entry.get("change", "") if who == "student" else "the shipped ensemble"]
            for kind, _ in STUDENT_KINDS:
                m = s.get(f"{kind}/{who}", {})
                cells += [_mean_sd(m.get("accuracy")), _mean_sd(m.get("f1_mask_weared_incorrect")),
                          _mean_sd(m.get("f1_with_mask")), _mean_sd(m.get("f1_without_mask"))]
            rows.append(cells)
    head = ["setting", "what it changes"]
    for _, name in STUDENT_KINDS:
        head += [f"{name}: accuracy", "F1 incorrect", "F1 with", "F1 without"]
    return lines + table(head, rows) + _student_final(d.get("final"))


def _student_final(final: dict[str, Any] | None) -> list[str]:
    """What became of the best setting trained on every held-in face (measured by hand, with
    the commands recorded in the file)."""
    if not final:
        return []
    lines = ["", f"The best setting, `{final['setting']}`, trained on every held-in face "
             f"(`{final['train']}`; {final.get('measured', '?')}):", ""]
    lines += [f"- `{c['command']}`: {c['result']}" + (
        f", accuracy {100 * c['tflite_accuracy']:.2f} % on the gate rows (faces the student "
        "trained on: a check of the conversion, not of accuracy)"
        if "tflite_accuracy" in c else "") for c in final.get("convert", [])]
    if final.get("cause"):
        lines += [f"- why full int8 failed: {final['cause']}"]
    ms = final.get("ms_per_face", {})
    lines += ["- ms per face (" + ms.get("note", "") + "): " + ", ".join(
        f"{k} {v:.2f}" for k, v in ms.items() if k != "note")]
    lines += ["", f"Held-out photos: {final.get('held_out', '?')}."]
    return lines


def _mean_sd(m: dict[str, float] | None) -> str:
    if not m:
        return "-"
    return f"{100 * m['mean']:.1f} ± {100 * m['sd']:.1f}"


def _rerun(r: dict[str, Any]) -> str:
    """'; `x`, `y` run DATE, `z` run DATE2 with `--only`' for the rows `--only` runs added to
    an earlier results file."""
    runs = [", ".join(f"`{n}`" for n in run.get("rows", [])) + f" run {run.get('started', '?')}"
            for run in reruns(r)]
    return f"; {', '.join(runs)} with `--only`" if runs else ""


def reruns(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The `--only` runs recorded in a results file (`reruns`; older files have one `rerun`)."""
    return list(r.get("reruns") or ([r["rerun"]] if r.get("rerun") else []))


def _threeclass_cells(measured: dict[str, Any]) -> list[str]:
    cells = []
    for name in ("ilc-dev held-out", "face-mask-voc test"):
        m = measured.get(name, {})
        weak = m.get("per_class", {}).get(WEAK, {})
        cells += [pct(m.get("accuracy")), fmt(weak.get("f1"))]
    return cells


def _threeclass_values(measured: dict[str, Any]) -> list[float | None]:
    """Accuracy and mask_weared_incorrect F1 on held-out ilc-dev, then on face-mask-voc test."""
    values = []
    for name in ("ilc-dev held-out", "face-mask-voc test"):
        m = measured.get(name, {})
        values += [m.get("accuracy"), m.get("per_class", {}).get(WEAK, {}).get("f1")]
    return values


def seed_spread(rows: list[dict[str, Any]], base: str | None = None) -> list[str]:
    """A paragraph per recipe with `@seedN` repeats: mean and standard deviation of the recipe's
    row and its repeats (only `base`'s when given)."""
    bases = list(dict.fromkeys(row.get("base") for row in rows if is_seed_row(row)))
    lines: list[str] = []
    for b in bases if base is None else [x for x in bases if x == base]:
        lines += _spread_of(rows, b)
    return lines


def _spread_of(rows: list[dict[str, Any]], base: str | None) -> list[str]:
    runs = [row for row in rows if row["name"] == base or (
        is_seed_row(row) and row.get("base") == base)]
    columns = zip(*(_threeclass_values(row.get("keras", {})) for row in runs), strict=True)
    parts = []
    for name, column in zip(("ilc accuracy", "ilc F1", "voc accuracy", "voc F1"), columns,
                            strict=True):
        xs = [x for x in column if x is not None]
        if len(xs) < 2:
            return []
        scale, unit = (100.0, "%") if "accuracy" in name else (1.0, "")
        parts.append(f"{name} {scale * statistics.mean(xs):.{1 if unit else 2}f}{unit} ± "
                     f"{scale * statistics.stdev(xs):.{1 if unit else 2}f}")
    return ["", f"Chance alone: `{base}` and its {len(runs) - 1} seed rows (the same recipe; the "
            "seed moves the head's start and the order, and the split unless `--split-seed` holds "
            "it) give, in Keras, "
            f"{'; '.join(parts)} "
            f"(mean ± standard deviation of {len(runs)} runs). Differences between rows smaller "
            "than about two standard deviations are not evidence; seed rows are never shipped."]


def _tau_choice(choice: dict[str, Any] | None) -> list[str]:
    """How the rows' `--logit-adjust` was chosen on held-in faces, with the whole grid."""
    if not choice:
        return []
    runs = ", ".join(f"`{x}`" for x in choice["runs"])
    grid = choice["grid"]
    return ["", f"Logit adjustment: TAU = {choice['chosen']:g}, chosen on held-in faces only: the "
            f"val and test faces of {runs} (each run's own, never trained on by it; "
            f"{fmt(choice['faces'])} faces, {fmt(choice['weak_faces'])} mask_weared_incorrect), "
            f"pooled; rule: {choice['rule']}. The held-in grid:", "",
            *table(["TAU", *(f"{g['tau']:g}" for g in grid)],
                   [["accuracy", *(f"{100 * g['accuracy']:.1f}" for g in grid)],
                    ["F1", *(f"{g['f1']:.3f}" for g in grid)],
                    *_flip_grid(choice)]), *_flip_choice(choice)]


def _flip_grid(choice: dict[str, Any]) -> list[list[str]]:
    """The held-in grid with each face's mirror averaged in (`--flip`), when it was measured."""
    grid = choice.get("grid_flip")
    if not grid:
        return []
    chosen = f" (TAU {choice['chosen_flip']:g} chosen)"
    return [[f"accuracy, mirror too{chosen}", *(f"{100 * g['accuracy']:.1f}" for g in grid)],
            [f"F1, mirror too{chosen}", *(f"{g['f1']:.3f}" for g in grid)]]


def _flip_choice(choice: dict[str, Any]) -> list[str]:
    """The held-in decision on `--flip`, in words."""
    if not choice.get("grid_flip"):
        return []
    best, wins = best_held_in(choice), flip_wins(choice)
    return ["", "Mirror (`--flip`), decided on the same held-in faces: its best accuracy + F1 is "
            f"{100 * best[True]['accuracy']:.1f} % / {best[True]['f1']:.3f} (TAU "
            f"{choice['chosen_flip']:g}) against {100 * best[False]['accuracy']:.1f} % / "
            f"{best[False]['f1']:.3f} (TAU {choice['chosen']:g}) without, so `--flip` rows "
            + ("may ship." if wins else "do not ship.")]


def _combined_text(rows: list[dict[str, Any]]) -> str:
    """Which rows train nothing (built by `trainer ensemble` from other rows' runs)."""
    combined = [row for row in rows if row.get("options", {}).get("members")]
    if not combined:
        return ""
    names = ", ".join(f"`{row['name']}`" for row in combined)
    members = "`, `".join(dict.fromkeys(m for row in combined for m in row["options"]["members"]))
    return (f" {names} train nothing: `trainer ensemble` builds each from the runs of the rows "
            f"it names (`{members}`); their train time is their members' sum.")


CARD = REPO / "models" / "MODEL_CARD_3c.md"
LICENCES = {
    "voc": "face-mask-voc: andrewmvd's Face Mask Detection dataset (CC0), as republished in MaskON",
    "ilc": "face-mask-ilc-dev: face-mask-dataset-ilc-2021 (jolignier), **no licence stated**: "
           "development and evaluation use only",
    "mfn": "maskedfacenet-3c: MaskedFace-Net (Cabani et al.) on FFHQ faces, **CC BY-NC-SA 4.0, "
           "non-commercial**; this model inherits that licence",
    "2c": "face-mask-2c: chandrikadeb7's Face-Mask-Detection images (MIT repository; Bing, "
          "Kaggle and RMFD)",
}


def model_card(report: dict[str, Any]) -> str:
    """models/MODEL_CARD_3c.md from a full run's results (the shipped row and its numbers)."""
    shipped = report["shipped"]
    row = next(r for r in report["rows"] if r["name"] == shipped["row"])
    table = render_threeclass({**report, "rows": []})
    measured = table[table.index(next(x for x in table if x.startswith("| model"))):]
    sources = [f"- {LICENCES[k]}" for k in row["sources"]]
    return "\n".join([
        "# Model card: `face_mask_3c_int8.tflite`", "",
        "A 3-class face classifier for `edge run --model models/face_mask_3c_int8.tflite`: "
        "`mask_weared_incorrect` (a mask under the nose or on the chin), `with_mask`, "
        "`without_mask`. Full-integer (int8) MobileNetV2 alpha 1.0 + the trainer's head"
        f"{_members_text(row['options'])}, {_input_text(row['options'])} (uint8 camera pixels), "
        f"softmax output; {shipped['size_bytes']:,} bytes. Labels and input size are inside the "
        "file (`convert inspect`). It is the teacher of the default classifier, the 3-class "
        "student `face_mask_3c_student_int8.tflite` (MODEL_CARD_3c_student.md), which costs "
        "about a 25th of its time per face.", "",
        "## Data and licences", "", *sources,
        f"- training faces: {row['train_faces']:,} ({row['train_counts']}) after leaving out the "
        "held-out photos (`--exclude-list`): every ilc-dev photo in "
        "`benchmarks/holdout/face-mask-ilc-dev-test.txt` and every face-mask-voc photo in "
        "`benchmarks/holdout/face-mask-voc-test.txt`; faces >= 16 px.", "",
        "## How well it does (faces >= 16 px of the held-out photos; precision / recall / F1)",
        "", *measured[:-2], "",
        f"Time: {fmt(shipped.get('ms_per_face'), 1, ' ms')} per face (int8, LiteRT, batch of 1, "
        "median over 60 held-out faces) on the machine of the run.",
        *seed_spread(report["rows"], row["name"]), "",
        f"Recipe (row `{row['name']}` of the ablation in `benchmarks/RESULTS.md`, 3-class "
        "section, and the rows it builds on): " + "; ".join(_lineage(report, row)) + ".", "",
        "## Reproduce", "", "```bash", *row["command"].split(" && "),
        shipped["convert_command"],
        "trainer evaluate runs/3c/model.h5 --data ../shared/datasets/face-mask-ilc-dev "
        "--only-list benchmarks/holdout/face-mask-ilc-dev-test.txt",
        "```", "", "All rows and the shipping step: `python -m benchmarks.stages.threeclass`.", ""])


def _lineage(report: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """'name: change' for `row` and each base row under it, down to the first."""
    rows, out, seen = {r["name"]: r for r in report["rows"]}, [], set()
    while row is not None and row["name"] not in seen:
        seen.add(row["name"])
        out.append(f"`{row['name']}`: {row['change']}")
        row = rows.get(row.get("base") or "")
    return out


def _members_text(options: dict[str, Any]) -> str:
    members, tau = options.get("members", []), options.get("logit_adjust")
    split = ("one test split, each validating on other faces (`--val-seed`)"
             if options.get("bagged") else "one split")
    text = (f" ({len(members)} networks trained alike with different seeds on {split}, their "
            "probabilities averaged: `trainer ensemble`)" if len(members) > 1 else "")
    return text + (f", decisions shifted toward the training class frequencies (logit "
                   f"adjustment {tau:g})" if tau else "") + (
        ", each face read as it is and mirrored, the two averaged" if options.get("flip") else "")


def _input_text(options: dict[str, Any]) -> str:
    size = options.get("input_size", 224)
    if options.get("nose_band"):
        return (f"{size} px RGB input, read twice: the whole face at {size // 2} px and its "
                f"nose-and-mouth band at {size} px (`--nose-band`)")
    return f"{size} px RGB input"
