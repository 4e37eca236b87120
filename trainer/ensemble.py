"""`trainer ensemble`: several runs of one recipe as one model file.

The members' class probabilities are averaged inside one Keras model (one input, the members side
by side, an `Average` layer), so the converters and `edge` read it like any classifier; it costs
one member's time per member. Members must share labels, input size and test split (train them
with the same `--split-seed`; `--val-seed` lets each hold out, and so train on, different faces):
the ensemble keeps that test split, so the converters calibrate int8 on its training images (those
any member trained on) and check it on its test images, which no member trained on.

`--logit-adjust TAU` first shifts each member's decisions from the class-balanced prior toward its
training class frequencies (`trainer.fit.model.adjust_prior`, as `trainer fit --logit-adjust` does
for one run); with one run, that shift is all the command does. `--flip` also runs every member on
the mirrored face (`trainer.fit.model.Mirror`) and averages all the views: twice the time per face.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge.core import console
from edge.core.contract import ModelContract
from edge.core.fileio import write_text_atomic
from edge.core.metrics import classification_report, per_class_summary
from trainer.config import EnsembleConfig, check_ensemble
from trainer.data.split import SplitManifest, load_split, read_manifest, write_manifest
from trainer.errors import UserError
from trainer.fit.artifacts import load_keras_model, read_keras_contract, save_keras_model
from trainer.fit.model import Mirror, adjust_prior
from trainer.fit.publish import publish_run
from trainer.fit.reports import report_text, write_json
from trainer.fit.training import predict


@dataclass(frozen=True)
class Member:
    """One run folder of `trainer fit`."""

    run: Path
    contract: ModelContract
    summary: dict[str, Any]
    manifest: SplitManifest  # its split.json

    @property
    def split_rows(self) -> list[tuple[Any, ...]]:
        """(source, path, box, is-test, label) of every row: what members must share."""
        return [(r.get("source", 0), r["path"], tuple(r.get("box") or ()), r["split"] == "test",
                 r["label"]) for r in self.manifest.rows]


@dataclass
class EnsembleResult:
    """What `trainer ensemble` wrote and measured."""

    out: Path
    contract: ModelContract
    test: dict[str, Any]  # classification report on the shared test split
    summary: dict[str, Any] = field(default_factory=dict)


def read_member(run: Path) -> Member:
    """A member run folder's contract, summary and split rows (checked by `check_ensemble`)."""
    run = Path(run).expanduser()
    try:
        summary = json.loads((run / "summary.json").read_text())
    except ValueError as exc:
        raise UserError(f"{run / 'summary.json'} is not valid JSON: {exc}") from None
    return Member(run, read_keras_contract(run / "model.h5"), summary,
                  read_manifest(run / "split.json"))


def check_members(members: list[Member], tau: float) -> None:
    """Members must have the same labels, input size and test split (train/val may differ);
    adjusting needs class weights and members not adjusted already."""
    first = members[0]
    for m in members[1:]:
        if (m.contract.labels, m.contract.input_size) != (first.contract.labels,
                                                          first.contract.input_size):
            raise UserError(f"{m.run} has labels {list(m.contract.labels)} at "
                            f"{m.contract.input_size}, {first.run} has "
                            f"{list(first.contract.labels)} at {first.contract.input_size}")
        if m.split_rows != first.split_rows:
            raise UserError(f"{m.run} and {first.run} have different test splits (train members "
                            "with the same --split-seed and data)")
    for m in members:
        if tau and m.contract.source.get("logit_adjust"):
            raise UserError(f"{m.run} was trained with --logit-adjust already")
        if tau and not (m.summary.get("imbalance") or {}).get("class_weights"):
            raise UserError(f"{m.run} was trained without class weights: nothing to adjust")


def merged_manifest(members: list[Member]) -> SplitManifest:
    """The ensemble's split: test as the members', train where any member trained, else val."""
    rows = []
    for i, row in enumerate(members[0].manifest.rows):
        seen = [m.manifest.rows[i]["split"] for m in members]
        rows.append({**row, "split": "test" if seen[0] == "test"
                     else "train" if "train" in seen else "val"})
    return dataclasses.replace(members[0].manifest, rows=rows)


def combine(models: list[keras.Model], input_size: tuple[int, int],
            flip: bool = False) -> keras.Model:
    """One model whose output is the mean of the members' outputs (one model, no `flip`:
    itself); with `flip`, of each member on the face and on its mirror too."""
    if len(models) == 1 and not flip:
        return models[0]
    pixels = keras.Input(shape=(*input_size, 3), name="pixels")
    for i, model in enumerate(models):
        model.name = f"member_{i}"  # nested models need distinct names to be saved
    views = [pixels, Mirror(name="mirror")(pixels)] if flip else [pixels]
    mean = keras.layers.Average(name="ensemble_mean")(
        [model(view) for view in views for model in models])
    return keras.Model(pixels, mean, name="maskedge_ensemble")


def _member_model(member: Member, tau: float) -> tuple[keras.Model, dict[str, float] | None]:
    model, contract = load_keras_model(member.run / "model.h5")
    if not tau:
        return model, None
    return model, adjust_prior(model, member.summary["imbalance"]["class_weights"],
                               contract.labels, tau)


def _test_report(model: keras.Model, members: list[Member], show: bool) -> dict[str, Any]:
    """The ensemble on the members' shared test split."""
    contract = members[0].contract
    images, y = load_split(members[0].run / "split.json", "test", contract.input_size)
    console.say(f"ensemble on the test split ({len(images)} images)", show)
    probs = contract.probabilities(predict(model, images.astype(np.float32), batch_size=32))
    return classification_report(y, probs.argmax(1), contract.labels)


def _contract(members: list[Member], test: dict[str, Any], config: EnsembleConfig,
              offsets: list[dict[str, float] | None]) -> ModelContract:
    first, tau = members[0].contract, config.logit_adjust
    own = ("seed", "val_seed", "logit_adjust")  # each member's, recorded per member
    source = {k: v for k, v in first.source.items() if k not in own}
    source |= {"split_manifest": "split.json",
               "ensemble": [{"run": str(m.run.resolve()), "seed": m.contract.source.get("seed"),
                             **({"val_seed": m.contract.source["val_seed"]}
                                if "val_seed" in m.contract.source else {}),
                             **({"logit_adjust": m.contract.source["logit_adjust"]}
                                if "logit_adjust" in m.contract.source else {}),
                             **({"logit_offsets": o} if o else {})}
                            for m, o in zip(members, offsets, strict=True)],
               **({"logit_adjust": {"tau": tau}} if tau else {}),
               **({"flip": True} if config.flip else {})}
    views = " on the face and its mirror" if config.flip else ""
    architecture = first.architecture if len(members) == 1 and not config.flip else \
        f"{first.architecture} x{len(members)} (mean of the members' probabilities{views})"
    metrics = {"test_accuracy": round(test["accuracy"], 6),
               "n_test": sum(v["support"] for v in test["per_class"].values()),
               "per_class": per_class_summary(test),
               "macro_f1": round(test["macro"]["f1"], 6)}
    return first.with_(architecture=architecture, source=source, metrics=metrics)


def ensemble(config: EnsembleConfig, progress: bool = True) -> EnsembleResult:
    """Build, measure and write the ensemble of `config.runs` (see the module docstring)."""
    start = time.perf_counter()
    check_ensemble(config.runs, config.out, config.logit_adjust, config.overwrite)
    out = Path(config.out).expanduser()
    members = [read_member(r) for r in config.runs]
    check_members(members, config.logit_adjust)
    loaded = [_member_model(m, config.logit_adjust) for m in members]
    model = combine([m for m, _ in loaded], members[0].contract.input_size, config.flip)
    test = _test_report(model, members, progress)
    contract = _contract(members, test, config, [o for _, o in loaded])
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        save_keras_model(model, contract, work)
        write_manifest(merged_manifest(members), work / "split.json")
        write_text_atomic(work / "metadata.json", contract.to_json() + "\n")
        write_text_atomic(work / "report.txt", report_text("Test set (shared split)", test, [
            f"ensemble of {len(members)}: {', '.join(str(m.run) for m in members)}",
            f"logit adjust: {config.logit_adjust}", f"mirror too (--flip): {config.flip}"]))
        summary = {"run_dir": str(out.resolve()), "model_h5": str(out.resolve() / "model.h5"),
                   "members": [str(m.run.resolve()) for m in members],
                   "logit_adjust": config.logit_adjust, "flip": config.flip,
                   "labels": list(contract.labels),
                   "test_accuracy": round(test["accuracy"], 6),
                   "per_class": contract.metrics["per_class"],
                   "wall_seconds": round(time.perf_counter() - start, 2)}
        write_json(work / "summary.json", summary)
        publish_run(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return EnsembleResult(out, contract, test, summary)
