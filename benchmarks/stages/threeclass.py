"""3-class ablation: `python -m benchmarks.stages.threeclass [--quick] [--only NAME ...]
[--no-ship]`.

Trains one 3-class model per row of `ROWS` (each row changes one thing against the row named in
its `base`), always holding out the same photos: the face-mask-ilc-dev held-out list
(`benchmarks/holdout/face-mask-ilc-dev-test.txt`) and face-mask-voc's test photos
(`benchmarks/holdout/face-mask-voc-test.txt`), both passed to `trainer fit` as `--exclude-list`.
Every row's Keras model is measured on the faces of those photos (face boxes >= the trainer's
min-face), as `trainer evaluate --only-list` would. `COMBINED` rows train nothing: they are
`trainer ensemble` of finished rows' runs, with the logit adjustment chosen on held-in faces only
(`choose_tau`: each run's own val and test faces). The best row (mask_weared_incorrect F1 on
held-out ilc-dev, then accuracy) is converted to int8 (`convert -q int8`) and measured again
through LiteRT; with the full profile it is written to `models/face_mask_3c_int8.tflite`.

Results go to `benchmarks/results/threeclass.json` (full) or `benchmarks/work/quick/` (quick).
The rows are defined in benchmarks/stages/threeclass_rows.py, the rules of what may ship in
benchmarks/stages/shipping.py; benchmarks/stages/threeclass_report.py turns the results into
RESULTS.md's 3-class section and the model card.
"""

from __future__ import annotations

# Before anything heavy: without the train extra, one line naming it and exit 2.
import benchmarks.needs_train  # noqa: F401  # isort: skip

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.config import FULL_OUT, FULL_WORK, QUICK_OUT, REPO, default_shared
from benchmarks.stages.shipping import WEAK, candidates, score
from benchmarks.stages.threeclass_report import CARD, model_card, reruns
from benchmarks.stages.threeclass_rows import (
    COMBINED,
    ILC_LIST,
    LABEL_MAP,
    QUICK_ROWS,
    ROWS,
    SOURCES,
    TAU_GRID,
    TAU_RUNS,
    VOC_LIST,
    WEIGHTS,
    Combined,
    Row,
    combined_command,
    command_of,
)
from edge.core.fileio import write_text_atomic
from edge.core.metrics import classification_report, per_class_summary

SHIPPED = REPO / "models" / "face_mask_3c_int8.tflite"
#: int8 calibration images (training split) for the shipped model; rows tried if one is refused.
CALIBRATION_SAMPLES = 1000
SHIP_TRIES = 3


def _fit_config(row: Row, shared: Path, out: Path) -> Any:
    from trainer.config import FitConfig

    return FitConfig(data=[shared / SOURCES[s] for s in row.sources], out=out,
                     weights=str(shared / WEIGHTS), label_map=list(LABEL_MAP),
                     exclude_lists=[ILC_LIST, VOC_LIST], overwrite=True, **row.options)


def holdout_sets(shared: Path, min_face: int, quick: bool) -> dict[str, Any]:
    """{name: (sources, samples)} of the two held-out sets (faces >= min_face)."""
    from edge.core.voc import read_name_list
    from trainer.config import parse_label_map
    from trainer.data.datasets import discover

    sets = {}
    for name, key, names in (("ilc-dev held-out", "ilc", ILC_LIST),
                             ("face-mask-voc test", "voc", VOC_LIST)):
        data = discover(shared / SOURCES[key], min_face, parse_label_map(LABEL_MAP),
                        only=read_name_list(names))
        samples = data.samples[::8] if quick else data.samples
        sets[name] = (data.all_sources(), samples)
    return sets


def _pixels(sets: dict[str, Any], size: tuple[int, int],
            cache: dict[Any, Any]) -> dict[str, tuple[np.ndarray, list[str]]]:
    from trainer.data.pixels import load_from_sources

    if size not in cache:
        out = {}
        for name, (sources, samples) in sets.items():
            loaded = load_from_sources(sources, samples, size)
            out[name] = (loaded.images, [s.label for s in loaded.samples])
        cache[size] = out
    return cache[size]


def probabilities(predict: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """`predict` (images -> probabilities) over `images` in batches."""
    return np.concatenate([predict(images[i:i + batch]) for i in range(0, len(images), batch)])


def measure(predict: Any, labels: tuple[str, ...],
            pixels: dict[str, tuple[np.ndarray, list[str]]]) -> dict[str, Any]:
    """Accuracy and per-class precision/recall/F1 of `predict` (images -> probs) per set."""
    out = {}
    for name, (images, truth) in pixels.items():
        probs = probabilities(predict, images)
        index = {x: i for i, x in enumerate(labels)}
        report = classification_report(np.array([index[t] for t in truth]), probs.argmax(1),
                                       labels)
        out[name] = {"n": len(truth), "accuracy": round(report["accuracy"], 4),
                     "per_class": per_class_summary(report),
                     "confusion_matrix": report["confusion_matrix"]}
    return out


def keras_predictor(model_path: Path) -> tuple[Any, tuple[str, ...], tuple[int, int]]:
    from trainer.fit.artifacts import load_keras_model

    model, contract = load_keras_model(model_path)

    def predict(images: np.ndarray) -> np.ndarray:
        return contract.probabilities(np.asarray(model.predict_on_batch(
            images.astype(np.float32)), np.float32))

    return predict, contract.labels, contract.input_size


def run_row(row: Row, shared: Path, work: Path, sets: dict[str, Any], cache: dict[Any, Any],
            reuse: bool = False) -> dict[str, Any]:
    """Train one row (or, with `reuse`, take its finished run) and measure its Keras model."""
    from trainer.fit.run import fit

    run = work / row.name
    t0 = time.perf_counter()
    if not (reuse and (run / "summary.json").is_file() and (run / "model.h5").is_file()):
        fit(_fit_config(row, shared, run), progress=False)
    summary = json.loads((run / "summary.json").read_text())
    seconds = summary["timing"]["wall_seconds"] if reuse else time.perf_counter() - t0
    predict, labels, size = keras_predictor(run / "model.h5")
    return {"name": row.name, "change": row.change, "base": row.base,
            "sources": list(row.sources), "options": row.options, "command": command_of(row),
            "train_seconds": round(seconds, 1),
            "train_faces": sum(summary["counts"]["train"].values()),
            "train_counts": summary["counts"]["train"],
            "own_test_accuracy": summary["test_accuracy"],
            "keras": measure(predict, labels, _pixels(sets, size, cache)),
            "run_dir": str(run)}


def choose_tau(work: Path) -> dict[str, Any]:
    """The logit adjustment (`TAU_GRID`) with the best accuracy + mask_weared_incorrect F1 on
    held-in faces: the val and test faces of each `TAU_RUNS` run, pooled (ties: the smaller);
    again with each face's mirror averaged in (`--flip`: `grid_flip`, `chosen_flip`).

    Offsets added to the log-probabilities give the probabilities that offsets added to the
    logits give (`trainer.fit.model.shift_output`), so no model is rebuilt per candidate.
    """
    from trainer.data.split import load_split, read_manifest
    from trainer.fit.model import prior_shift

    scores, truth = [], []
    for name in TAU_RUNS:
        run = work / name
        predict, labels, size = keras_predictor(run / "model.h5")
        weights = json.loads((run / "summary.json").read_text())["imbalance"]["class_weights"]
        manifest = read_manifest(run / "split.json")
        for split in ("val", "test"):
            images, y = load_split(manifest, split, size)
            views = [probabilities(predict, x) for x in (images, images[:, :, ::-1])]
            scores.append(([np.log(np.clip(p, 1e-12, 1.0)) for p in views],
                           prior_shift(weights, labels, 1.0)))
            truth.append(y)
    y, weak = np.concatenate(truth), labels.index(WEAK)
    grids = {flip: _tau_grid(scores, y, labels, flip) for flip in (False, True)}
    return {"runs": list(TAU_RUNS), "faces": len(y), "weak_faces": int((y == weak).sum()),
            "grid": grids[False], "chosen": pick_tau(grids[False]),
            "grid_flip": grids[True], "chosen_flip": pick_tau(grids[True]),
            "rule": "best held-in accuracy + mask_weared_incorrect F1, ties to the smaller"}


def _tau_grid(scores: list[tuple[list[np.ndarray], np.ndarray]], y: np.ndarray,
              labels: tuple[str, ...], flip: bool) -> list[dict[str, float]]:
    """Held-in accuracy and weak-class F1 per TAU: each view's shifted softmax, averaged."""
    def shifted(lp: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        z = np.exp(lp + offsets - (lp + offsets).max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    grid = []
    for tau in TAU_GRID:
        pred = np.concatenate([
            np.mean([shifted(lp, tau * shift) for lp in (views if flip else views[:1])], 0)
            for views, shift in scores]).argmax(1)
        report = classification_report(y, pred, labels)
        grid.append({"tau": tau, "accuracy": round(report["accuracy"], 5),
                     "f1": round(report["per_class"][WEAK]["f1"], 5)})
    return grid


def pick_tau(grid: list[dict[str, float]]) -> float:
    """The grid's TAU with the best accuracy + F1 (ties: the smaller TAU, the smaller change)."""
    return max(grid, key=lambda g: (round(g["accuracy"] + g["f1"], 5), -g["tau"]))["tau"]


def run_combined(row: Combined, work: Path, sets: dict[str, Any], cache: dict[Any, Any],
                 tau: float) -> dict[str, Any]:
    """Build a combined row from its members' finished runs and measure its Keras model."""
    from trainer.ensemble import EnsembleConfig, ensemble

    t0 = time.perf_counter()
    built = ensemble(EnsembleConfig([work / m for m in row.members], work / row.name,
                                    tau if row.adjust else 0.0, overwrite=True, flip=row.flip),
                     progress=False)
    seconds = time.perf_counter() - t0
    first = next(r for r in ROWS if r.name == row.members[0])
    summaries = [json.loads((work / m / "summary.json").read_text()) for m in row.members]
    predict, labels, size = keras_predictor(built.out / "model.h5")
    return {"name": row.name, "change": row.change.replace("TAU", f"{tau:g}"), "base": row.base,
            "sources": list(first.sources),
            "options": {**first.options, "members": list(row.members),
                        **({"logit_adjust": tau} if row.adjust else {}),
                        **({"flip": True} if row.flip else {}),
                        **({"bagged": True} if any("val_seed" in r.options for r in ROWS
                                                   if r.name in row.members) else {})},
            "command": combined_command(row, tau),
            "train_seconds": round(sum(x["timing"]["wall_seconds"] for x in summaries)
                                   + seconds, 1),
            "train_faces": sum(summaries[0]["counts"]["train"].values()),
            "train_counts": summaries[0]["counts"]["train"],
            "own_test_accuracy": built.summary["test_accuracy"],
            "keras": measure(predict, labels, _pixels(sets, size, cache)),
            "run_dir": str(built.out)}


def run_combined_rows(rows: tuple[Combined, ...], work: Path, sets: dict[str, Any],
                      cache: dict[Any, Any], tau_choice: dict[str, Any] | None
                      ) -> list[dict[str, Any]]:
    """`run_combined` for each row, with the TAU chosen on held-in faces for its views."""
    results = []
    for row in rows:
        tau = tau_choice["chosen_flip" if row.flip else "chosen"] if tau_choice else 0.0
        results.append(run_combined(row, work, sets, cache, tau))
        print(_line(results[-1]), flush=True)
    return results


def ship(best: dict[str, Any], target: Path, sets: dict[str, Any],
         cache: dict[Any, Any], force: bool = False) -> dict[str, Any]:
    """Convert a row to int8 at `target`; measure int8 and Keras on the held-out sets.

    RuntimeError when `convert` refuses it (int8 more than 1 point below Keras on the run's own
    test split).
    """
    from edge.inference.classifier import ClassifierOptions, MaskClassifier

    model_h5 = Path(best["run_dir"]) / "model.h5"
    tmp = Path(best["run_dir"]) / "model_int8.tflite"
    proc = subprocess.run([sys.executable, "-m", "converters.cli", str(model_h5), "-q", "int8",
                           "--samples", str(CALIBRATION_SAMPLES), "--out", str(tmp), "--json",
                           *(["--force"] if force else [])],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 and not (force and tmp.is_file()):
        raise RuntimeError(f"convert failed: {proc.stderr.strip()[-500:]}")
    clf = MaskClassifier(ClassifierOptions(tmp))
    pixels = _pixels(sets, clf.input_size, cache)
    int8 = measure(clf.predict, clf.labels, pixels)
    report = json.loads(proc.stdout) if proc.stdout.strip() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp, target)
    return {"row": best["name"], "model": str(target.relative_to(REPO))
            if target.is_relative_to(REPO) else str(target),
            "size_bytes": target.stat().st_size, "command": best["command"],
            "convert_command": f"convert runs/3c/model.h5 -q int8 --samples "
                               f"{CALIBRATION_SAMPLES} --out "
                               f"{SHIPPED.relative_to(REPO)}" + (" --force" if force else ""),
            "keras": best["keras"], "int8": int8, "ms_per_face": ms_per_face(clf, pixels),
            "gate": "passed" if proc.returncode == 0 else _gate_failed(report),
            "convert_report": report}


def ms_per_face(clf: Any, pixels: dict[str, tuple[np.ndarray, list[str]]],
                faces: int = 60) -> float:
    """Median milliseconds to classify one face (batch of 1, after 5 warm-up runs)."""
    images = next(iter(pixels.values()))[0][:faces]
    for image in images[:5]:
        clf.predict(image[None])
    times = []
    for image in images:
        t0 = time.perf_counter()
        clf.predict(image[None])
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 2)


def _gate_failed(report: dict[str, Any] | None) -> str:
    variant = (report or {}).get("variants", [{}])[0]
    drop = -variant.get("delta_points", float("nan"))
    return (f"int8 {drop:.2f} points below Keras on the run's own {variant.get('samples', '?')} "
            "test faces (more than the 1 point allowed); shipped with --force")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two tiny rows (a smoke test)")
    parser.add_argument("--only", nargs="*", help="row names to run (default: all)")
    parser.add_argument("--no-ship", action="store_true", help="do not convert the best row")
    parser.add_argument("--out", type=Path, help="results folder")
    parser.add_argument("--ship", metavar="ROW", help="only convert and ship this row of the "
                        "results file (with --force even past the int8 gate)")
    parser.add_argument("--force", action="store_true", help="with --ship: past the gate")
    parser.add_argument("--reuse", action="store_true",
                        help="measure rows whose run folder is already complete, no training")
    args = parser.parse_args(argv)
    from trainer.cli import _import_tensorflow_quietly

    _import_tensorflow_quietly()
    shared = default_shared()
    if args.ship:
        return ship_row(args.ship, args.force, args.out or FULL_OUT, shared)
    rows = QUICK_ROWS if args.quick else ROWS
    rows = tuple(r for r in rows if not args.only or r.name in args.only)
    unknown = set(args.only or ()) - {r.name for r in (*ROWS, *COMBINED, *QUICK_ROWS)}
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    out = args.out or (QUICK_OUT if args.quick else FULL_OUT)
    work = (QUICK_OUT if args.quick else FULL_WORK) / "threeclass"
    sets, cache = holdout_sets(shared, 16, args.quick), {}
    started, results = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), []
    for row in rows:
        results.append(run_row(row, shared, work, sets, cache, args.reuse))
        print(_line(results[-1]), flush=True)
    earlier = _earlier(out / "threeclass.json") if args.only else {}
    combined = () if args.quick else tuple(
        c for c in COMBINED if not args.only or c.name in args.only)
    tau_choice = choose_tau(work) if any(c.adjust for c in combined) else \
        earlier.get("tau_choice")
    results += run_combined_rows(combined, work, sets, cache, tau_choice)
    results = _merged(earlier, results)
    report = {"started": earlier.get("started", started),
              **({"reruns": _reruns(earlier, started, [r.name for r in (*rows, *combined)])}
                 if earlier else {}),
              "quick": args.quick,
              "rows": results, "best": max(results, key=score)["name"], "shipped": None,
              **({"tau_choice": tau_choice} if tau_choice else {}),
              "holdout": {name: len(s) for name, (_, s) in sets.items()},
              "command": ("python -m benchmarks.stages.threeclass"
                          + (" --quick" if args.quick else ""))}
    if args.no_ship:  # models/ is untouched, so the earlier record of what shipped stays true
        report.update({k: earlier[k] for k in ("shipped", "not_shipped") if k in earlier})
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "threeclass.json", json.dumps(report, indent=1) + "\n")
    if not args.no_ship:
        report["shipped"], report["not_shipped"] = ship_best(
            results, work / "face_mask_3c_int8.tflite" if args.quick else SHIPPED, sets, cache,
            tau_choice)
        write_text_atomic(out / "threeclass.json", json.dumps(report, indent=1) + "\n")
    shipped = report["shipped"]
    if shipped and not args.quick:  # with --no-ship: the kept record, with the new rows
        write_text_atomic(CARD, model_card(report))
    print(f"best: {report['best']}; shipped: {shipped and shipped['row']}; results in "
          f"{out / 'threeclass.json'}")
    return 0


def ship_best(results: list[dict[str, Any]], target: Path, sets: dict[str, Any],
              cache: dict[Any, Any], tau_choice: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """Ship the best row whose int8 conversion passes the gate; list the rows that did not.
    Seed rows never ship; `--flip` rows only when the mirror wins on held-in faces."""
    refused = []
    for row in candidates(results, tau_choice)[:SHIP_TRIES]:
        try:
            return ship(row, target, sets, cache), refused
        except RuntimeError as exc:
            refused.append({"row": row["name"], "reason": str(exc)[-300:]})
            print(f"not shipped: {row['name']}: {str(exc)[-200:]}", flush=True)
    return None, refused


def ship_row(name: str, force: bool, out: Path, shared: Path) -> int:
    """`--ship ROW`: convert one measured row of `out/threeclass.json`, update it and the card."""
    path = out / "threeclass.json"
    report = json.loads(path.read_text())
    row = next(r for r in report["rows"] if r["name"] == name)
    sets, cache = holdout_sets(shared, 16, False), {}
    report["shipped"] = ship(row, SHIPPED, sets, cache, force=force)
    write_text_atomic(path, json.dumps(report, indent=1) + "\n")
    write_text_atomic(CARD, model_card(report))
    int8 = report["shipped"]["int8"]["ilc-dev held-out"]
    print(f"shipped {name}: int8 on held-out ilc-dev {100 * int8['accuracy']:.1f} %, incorrect "
          f"F1 {int8['per_class'][WEAK]['f1']:.2f}")
    return 0


def _earlier(path: Path) -> dict[str, Any]:
    """The results file an --only run adds its rows to ({} when there is none)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _reruns(earlier: dict[str, Any], started: str, names: list[str]) -> list[dict[str, Any]]:
    """The earlier `--only` runs (each naming only rows not run again now) and this one."""
    kept = [{**run, "rows": [n for n in run["rows"] if n not in names]} for run in reruns(earlier)]
    return [run for run in kept if run["rows"]] + [{"started": started, "rows": names}]


def _merged(earlier: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With --only: the earlier results file's rows, the re-run ones replaced, in ROWS order."""
    if not earlier:
        return results
    rows = {r["name"]: r for r in earlier.get("rows", [])}
    rows.update({r["name"]: r for r in results})
    order = [r.name for r in (*ROWS, *COMBINED)]
    return sorted(rows.values(), key=lambda r: order.index(r["name"])
                  if r["name"] in order else len(order))


def _line(row: dict[str, Any]) -> str:
    ilc, voc = row["keras"]["ilc-dev held-out"], row["keras"]["face-mask-voc test"]
    return (f"{row['name']:<20} ilc acc {100 * ilc['accuracy']:.1f} % incorrect F1 "
            f"{ilc['per_class'].get(WEAK, {}).get('f1', 0):.2f} | voc acc "
            f"{100 * voc['accuracy']:.1f} % | {row['train_seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
