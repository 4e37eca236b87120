"""Section `training`: wall time to the same test accuracy, cached features vs the reference recipe.

Cached path: the store's `trainer.fit` run at the main size (defaults: backbone features computed
once into a cold cache, head trained on them); its wall time and test accuracy come from `fit`.
Reference recipe (the reference projects', = `trainer.fit` with `feature_cache=False`): augmented
images through the frozen base every epoch, built from the trainer's own pieces
(`trainer.training.image_dataset`, `compile_model`, `class_weights`) on the *same* split
(`split.json` of the cached run), with the test accuracy measured after every epoch. It stops at the
first epoch that reaches the cached path's accuracy, or at the profile's epoch/time cap, in which
case the speed-up is reported as a lower bound. Test evaluation time is not counted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.context import SectionContext

NAME = "training"
#: Time kept back from the run budget for the test evaluations after each epoch and the report.
MARGIN_S = 90.0
#: The reference always gets at least this long, even when earlier sections overran.
MIN_BUDGET_S = 120.0


def reference_budget(ctx: SectionContext) -> tuple[float, str]:
    """Seconds the reference may train, and where that number came from."""
    cfg = ctx.cfg
    if cfg.reference_budget_s is not None:
        return cfg.reference_budget_s, "set for this run"
    left = cfg.run_budget_s - ctx.run_elapsed_s() - MARGIN_S
    return max(MIN_BUDGET_S, left), (f"what was left of the {cfg.run_budget_s / 60:.0f}-minute "
                                     "run budget")


def run(ctx: SectionContext) -> dict[str, Any]:
    import keras

    from edge.contract import ModelContract
    from trainer.model import build_classifier
    from trainer.split import load_split, read_manifest
    from trainer.training import class_weights, compile_model, image_dataset, predict, targets

    cfg = ctx.cfg
    size = cfg.main_size
    cached = ctx.store.trained(size)
    fit_cfg = ctx.store.fit_config(size, Path("unused"), Path("unused"))
    goal = cached.test_accuracy
    budget, budget_why = reference_budget(ctx)
    ctx.log(f"  cached path: {goal:.2%} test accuracy in {cached.wall_s:.1f} s; reference recipe "
            f"until it reaches that (cap {cfg.reference_max_epochs} epochs / {budget:.0f} s, "
            f"{budget_why})")

    manifest = read_manifest(cached.manifest)
    contract = ModelContract.for_labels(manifest.labels, size)
    test_x, test_y = load_split(manifest, "test", (size, size))

    epochs: list[dict[str, Any]] = []
    state = {"eval_s": 0.0, "reached": None}

    start = time.perf_counter()
    train_x, train_y = load_split(manifest, "train", (size, size))
    val_x, val_y = load_split(manifest, "val", (size, size))
    keras.utils.set_random_seed(fit_cfg.seed)
    clf = build_classifier(contract, fit_cfg.weights, fit_cfg.alpha)
    compile_model(clf.model, contract, fit_cfg.learning_rate)
    train_ds = image_dataset(train_x, targets(contract, train_y), fit_cfg.batch_size,
                             fit_cfg.seed, True)
    val_ds = image_dataset(val_x, targets(contract, val_y), fit_cfg.batch_size, fit_cfg.seed,
                           False) if len(val_x) else None
    weights = (class_weights(train_y, contract.num_classes) if fit_cfg.class_weighting
               else None)
    setup_s = time.perf_counter() - start

    class TestEachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            elapsed = time.perf_counter() - start - state["eval_s"]
            t0 = time.perf_counter()
            probs = contract.probabilities(predict(self.model, test_x))
            acc = float((probs.argmax(1) == test_y).mean())
            state["eval_s"] += time.perf_counter() - t0
            last = elapsed - (epochs[-1]["elapsed_s"] if epochs else setup_s)
            epochs.append({"epoch": epoch + 1, "test_accuracy": acc, "elapsed_s": elapsed,
                           "val_accuracy": (logs or {}).get("val_accuracy")})
            ctx.log(f"    epoch {epoch + 1}: test {acc:.2%} at {elapsed:.1f} s")
            if acc >= goal:
                state["reached"] = epochs[-1]
                self.model.stop_training = True
            elif elapsed + last > budget:  # the next epoch would end past the budget
                self.model.stop_training = True

    clf.model.fit(train_ds, validation_data=val_ds, epochs=cfg.reference_max_epochs,
                  class_weight=weights, callbacks=[TestEachEpoch()], verbose=0)
    reached = state["reached"]
    last = epochs[-1]["elapsed_s"] if epochs else None
    speedup = (reached["elapsed_s"] if reached else last) / cached.wall_s if epochs else None
    return {
        "data": str(cfg.data_2c), "seed": fit_cfg.seed, "input_size": size,
        "split_manifest": str(cached.manifest),
        "n_train": len(train_y), "n_val": len(val_y), "n_test": len(test_y),
        "cached": {"test_accuracy": goal, "wall_s": cached.wall_s, "epochs": cached.epochs_run,
                   "run_dir": str(cached.run_dir)},
        "reference": {"epochs": epochs, "reached": reached is not None,
                      "reached_epoch": reached["epoch"] if reached else None,
                      "reached_s": reached["elapsed_s"] if reached else None,
                      "max_epochs": cfg.reference_max_epochs,
                      "budget_s": budget, "budget_from": budget_why, "setup_s": setup_s,
                      "test_eval_s_not_counted": state["eval_s"],
                      "learning_rate": fit_cfg.learning_rate, "batch_size": fit_cfg.batch_size},
        "speedup": speedup, "speedup_is_lower_bound": reached is None,
    }
