"""Section `training`: wall time to the same test accuracy, cached features vs the reference recipe.

Cached path: the store's `trainer.fit.run` run at the main size (defaults: backbone features
computed once into a cold cache, the head trained on the clean ones, then with the augmented view
added). The store keeps each epoch's weights and the time
since `fit` started, so its test accuracy after every epoch is known (evaluated afterwards).
Reference recipe (the reference projects', = `trainer.fit.run` with `feature_cache=False`):
augmented images through the frozen base every epoch, run by the trainer's own `fit_images` (what
`trainer fit --no-feature-cache` runs) on the *same* split
(`split.json` of the cached run), with the test accuracy measured after every epoch. It stops at the
first epoch that reaches the cached run's final accuracy, or at the profile's epoch/time cap.

Both clocks run from the start (decoding, conversion, feature extraction included) to the end of an
epoch; test evaluations are not counted. The speed-up is time-to-accuracy at the highest test
accuracy both paths reached: the reference's time to first reach it over the cached path's. When
the reference never reached the cached run's final accuracy, the report also gives the lower bound
at that accuracy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.context import SectionContext
from benchmarks.store import TrainedModel, load_snapshots
from benchmarks.tables import fmt, image, pct, table

NAME = "training"
#: Time kept back from the run budget for the test evaluations after each epoch and the report.
MARGIN_S = 45.0
#: The reference always gets at least this long, even when earlier sections overran.
MIN_BUDGET_S = 120.0


def reference_budget(ctx: SectionContext) -> tuple[float, str]:
    """Seconds the reference may train, and where that number came from."""
    cfg = ctx.cfg
    if cfg.reference_budget_s is not None:
        return cfg.reference_budget_s, "set for this run"
    left = cfg.run_budget_s - ctx.run_elapsed_s() - MARGIN_S
    return max(MIN_BUDGET_S, left), (f"what was left of the {cfg.run_budget_s / 60:g}-minute "
                                     "run budget")


#: Accuracy levels always tabulated beside the common and final ones.
LADDER = (0.95, 0.97, 0.98, 0.99)


def first_reaching(curve: list[dict[str, Any]], accuracy: float) -> dict[str, Any] | None:
    """The first epoch row of a curve whose test accuracy reaches `accuracy`."""
    return next((row for row in curve if row["test_accuracy"] >= accuracy - 1e-9), None)


def head_accuracy(head: Any, contract: Any, test_feats: Any, test_y: Any) -> float:
    """Test accuracy of the head on the frozen backbone's test features.

    The backbone is frozen in both paths (inference-mode BatchNorm, no dropout at test time), so
    this equals the full model's accuracy on the test images, at a fraction of the cost.
    """
    from trainer.fit.training import predict

    probs = contract.probabilities(predict(head, test_feats))
    return float((probs.argmax(1) == test_y).mean())


def cached_curve(model: TrainedModel, head: Any, contract: Any, test_feats: Any,
                 test_y: Any) -> list[dict[str, Any]]:
    """Test accuracy of the cached run after each epoch, with its time since `fit` started."""
    if not model.epochs_file or not Path(model.epochs_file).is_file():
        return []
    elapsed, per_epoch = load_snapshots(Path(model.epochs_file))
    curve = []
    for epoch, (seconds, epoch_weights) in enumerate(zip(elapsed, per_epoch, strict=True)):
        head.set_weights(epoch_weights)
        curve.append({"epoch": epoch + 1, "elapsed_s": float(seconds),
                      "test_accuracy": head_accuracy(head, contract, test_feats, test_y)})
    return curve


def compare(cached: list[dict[str, Any]], cached_wall_s: float, final: float,
            reference: list[dict[str, Any]]) -> dict[str, Any]:
    """Time-to-accuracy of both paths at the common accuracy and along a ladder of levels."""
    if not cached:  # no per-epoch record: the whole cached run stands for its final accuracy
        cached = [{"epoch": None, "test_accuracy": final, "elapsed_s": cached_wall_s}]
    ref_best = max((e["test_accuracy"] for e in reference), default=None)
    common = min(final, ref_best) if ref_best is not None else None

    def at(accuracy: float) -> dict[str, Any]:
        c, r = first_reaching(cached, accuracy), first_reaching(reference, accuracy)
        c_s = c["elapsed_s"] if c else (cached_wall_s if accuracy <= final else None)
        r_s = r["elapsed_s"] if r else None
        return {"accuracy": accuracy, "cached_s": c_s, "cached_epoch": c["epoch"] if c else None,
                "reference_s": r_s, "reference_epoch": r["epoch"] if r else None,
                "speedup": r_s / c_s if r_s and c_s else None}

    levels = sorted({*LADDER, final, *([common] if common is not None else [])})
    ladder = [at(level) for level in levels]
    headline = at(common) if common is not None else None
    at_final = at(final)
    if at_final["reference_s"] is None and reference and at_final["cached_s"]:
        at_final["speedup_lower_bound"] = reference[-1]["elapsed_s"] / at_final["cached_s"]
    return {"common_accuracy": common, "at_common": headline, "at_final": at_final,
            "ladder": ladder, "speedup": headline["speedup"] if headline else None}


def run(ctx: SectionContext) -> dict[str, Any]:
    import keras

    from edge.core.contract import ModelContract
    from trainer.data.split import load_split, read_manifest
    from trainer.fit.model import build_classifier
    from trainer.fit.training import predict

    cfg = ctx.cfg
    size = cfg.main_size
    cached = ctx.store.trained(size)
    fit_cfg = ctx.store.fit_config(size, Path("unused"), Path("unused"))
    goal = cached.test_accuracy
    manifest = read_manifest(cached.manifest)
    contract = ModelContract.for_labels(manifest.labels, size)
    test_x, test_y = load_split(manifest, "test", (size, size))
    probe = build_classifier(contract, fit_cfg.weights, fit_cfg.alpha)
    test_feats = predict(probe.features, test_x)  # the frozen backbone: same for both paths
    curve = cached_curve(cached, probe.head, contract, test_feats, test_y)
    if curve:
        reached = first_reaching(curve, goal)
        ctx.log(f"  cached path per epoch: {len(curve)} epochs; first at {goal:.2%} after "
                f"{reached['elapsed_s']:.1f} s" if reached else
                f"  cached path per epoch: {len(curve)} epochs")
    keras.backend.clear_session()
    budget, budget_why = reference_budget(ctx)
    ctx.log(f"  cached path: {goal:.2%} test accuracy in {cached.wall_s:.1f} s; reference recipe "
            f"until it reaches that (cap {cfg.reference_max_epochs} epochs / {budget:.0f} s, "
            f"{budget_why})")

    epochs, state, setup_s = _reference_run(ctx, manifest, contract, fit_cfg, (test_feats, test_y),
                                            goal, budget)
    reached = state["reached"]
    comparison = compare(curve, cached.wall_s, goal, epochs)
    return {
        "data": str(cfg.data_2c), "seed": fit_cfg.seed, "input_size": size,
        "split_manifest": str(cached.manifest),
        "n_train": state["n_train"], "n_val": state["n_val"], "n_test": len(test_y),
        "cached": {"test_accuracy": goal, "wall_s": cached.wall_s, "epochs": cached.epochs_run,
                   "run_dir": str(cached.run_dir), "per_epoch": curve},
        "reference": {"epochs": epochs, "reached": reached is not None,
                      "reached_epoch": reached["epoch"] if reached else None,
                      "reached_s": reached["elapsed_s"] if reached else None,
                      "max_epochs": cfg.reference_max_epochs,
                      "budget_s": budget, "budget_from": budget_why, "setup_s": setup_s,
                      "test_eval_s_not_counted": state["eval_s"],
                      "learning_rate": fit_cfg.learning_rate, "batch_size": fit_cfg.batch_size},
        **comparison, "speedup_is_lower_bound": False,
    }


def _reference_run(ctx: SectionContext, manifest: Any, contract: Any, fit_cfg: Any,
                   test: tuple[Any, Any], goal: float,
                   budget: float) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """The reference recipe until it reaches `goal` on the test set or the budget runs out:
    (per-epoch rows, state, setup seconds). Test evaluations are not counted."""
    import keras

    from trainer.data.split import load_split
    from trainer.fit.model import build_classifier
    from trainer.fit.training import Schedule, class_weights, fit_images

    cfg, size = ctx.cfg, contract.input_size[0]
    test_feats, test_y = test
    epochs: list[dict[str, Any]] = []
    state: dict[str, Any] = {"eval_s": 0.0, "reached": None}

    start = time.perf_counter()
    train_x, train_y = load_split(manifest, "train", (size, size))
    val_x, val_y = load_split(manifest, "val", (size, size))
    keras.utils.set_random_seed(fit_cfg.seed)
    clf = build_classifier(contract, fit_cfg.weights, fit_cfg.alpha)
    weights = (class_weights(train_y, contract.num_classes) if fit_cfg.class_weighting
               else None)
    setup_s = time.perf_counter() - start

    class TestEachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            elapsed = time.perf_counter() - start - state["eval_s"]
            t0 = time.perf_counter()
            acc = head_accuracy(clf.head, contract, test_feats, test_y)  # layers shared w/ model
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

    # What `trainer fit --no-feature-cache` runs, with no early stop: the goal or budget stops it.
    fit_images(clf.model, contract, (train_x, train_y), (val_x, val_y), Schedule(
        fit_cfg.learning_rate, cfg.reference_max_epochs, fit_cfg.batch_size, patience=0,
        weights=weights, seed=fit_cfg.seed, phase="reference", callbacks=[TestEachEpoch()]))
    state["n_train"], state["n_val"] = len(train_y), len(val_y)
    return epochs, state, setup_s


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's training section from this section's result `r`."""
    cached, ref = r.get("cached", {}), r.get("reference", {})
    lines = [f"Same data ({r.get('data', '?')}), split (seed {r.get('seed', '?')}), input size "
             f"{r.get('input_size', '?')} px and head. Cached path: `trainer.fit.run` defaults "
             "(backbone features computed once; the head trains on the clean ones first, then "
             "with the augmented view added: epochs count both stages). Reference recipe: "
             "`feature_cache=False`, augmented images through the frozen base every epoch. Both "
             "clocks run from the start (decoding, backbone conversion and feature extraction "
             "included) to the end of the first epoch whose test accuracy reaches the level; "
             "the test evaluations are not counted.", ""]
    lines += table(["path", "final test accuracy", "wall s (whole run)", "epochs"],
                   [["cached features (this trainer)", pct(cached.get("test_accuracy"), 2),
                     fmt(cached.get("wall_s"), 1), fmt(cached.get("epochs"))],
                    ["reference recipe", pct(max((e["test_accuracy"] for e in
                                                  ref.get("epochs", [])), default=None), 2)
                     + " (best)", fmt((ref.get("epochs") or [{}])[-1].get("elapsed_s"), 1),
                     fmt(len(ref.get("epochs", [])))]])
    ladder = r.get("ladder") or []
    if ladder:
        lines += ["", "Time to reach each test accuracy (s, epoch in brackets):", ""]

        def when(s: float | None, epoch: int | None) -> str:
            if s is None:
                return "not reached"
            return fmt(s, 1) + (f" ({epoch})" if epoch is not None else "")

        lines += table(["test accuracy", "cached path", "reference recipe", "speed-up"],
                       [[pct(row["accuracy"], 2)
                         + (" (common)" if row["accuracy"] == r.get("common_accuracy") else ""),
                         when(row["cached_s"], row["cached_epoch"]),
                         when(row["reference_s"], row["reference_epoch"]),
                         fmt(row.get("speedup"), 1, "x")] for row in ladder])
    epochs = ref.get("epochs", [])
    head = r.get("at_common") or {}
    if head.get("speedup") is not None:
        lines += ["", f"At {pct(r.get('common_accuracy'), 2)}, the highest test accuracy both "
                  f"reached, the speed-up is **{fmt(r.get('speedup'), 1)}x**: "
                  f"{fmt(head.get('reference_s'), 1)} s for the reference recipe against "
                  f"{fmt(head.get('cached_s'), 1)} s for the cached path."]
    final = r.get("at_final") or {}
    if epochs and final.get("reference_s") is None:
        lines += ["", f"The reference did not reach the cached run's final "
                  f"{pct(cached.get('test_accuracy'), 2)} within {len(epochs)} epochs "
                  f"({fmt(epochs[-1].get('elapsed_s'), 0)} s; this run capped it at "
                  f"{fmt(ref.get('max_epochs'))} epochs / {fmt(ref.get('budget_s'), 0)} s, "
                  f"{ref.get('budget_from', 'its time cap')}): at that accuracy the speed-up is "
                  f"at least {fmt(final.get('speedup_lower_bound'), 1)}x. "
                  "`--reference-budget SECONDS` lets it run longer."]
    if epochs:
        lines += ["", "Test accuracy after each epoch:", ""]
        curve = {row["epoch"]: row for row in cached.get("per_epoch", [])}
        lines += table(["epoch", "reference accuracy", "reference s", "cached accuracy",
                        "cached s"],
                       [[e["epoch"], pct(e.get("test_accuracy"), 2), fmt(e.get("elapsed_s"), 1),
                         pct(curve.get(e["epoch"], {}).get("test_accuracy"), 2),
                         fmt(curve.get(e["epoch"], {}).get("elapsed_s"), 1)]
                        for e in epochs])
    if ctx.get("plots", {}).get("training_curves"):
        lines += ["", image(ctx["plots"]["training_curves"], ctx["report"],
                            "test accuracy against training time")]
    return lines
