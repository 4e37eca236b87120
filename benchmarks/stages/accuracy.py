"""Section `accuracy`: each variant on the leak-free test split, and agreement with Keras.

The test images come from the run's `split.json` (`trainer.data.split.load_split`), so no image seen
in training is counted. Keras and each TFLite file are run the way the converters check them
(`converters.check`: Keras in inference mode, TFLite through `MaskClassifier`).
"""

from __future__ import annotations

from typing import Any

from benchmarks.context import SectionContext
from benchmarks.stages.latency import LABELS
from benchmarks.store import TFLITE_VARIANTS
from benchmarks.tables import fmt, pct, short, table
from edge.core.metrics import agreement, classification_report

NAME = "accuracy"


def run(ctx: SectionContext) -> dict[str, Any]:
    from converters.check import keras_probabilities, tflite_probabilities
    from trainer.fit.artifacts import load_keras_model

    size = ctx.cfg.main_size
    model = ctx.store.trained(size)
    files = ctx.store.variants(size, TFLITE_VARIANTS)
    images, labels = ctx.store.test_split(size)
    keras_model, contract = load_keras_model(model.model_keras)
    ctx.log(f"  Keras on {len(images)} test images")
    keras_probs = keras_probabilities(keras_model, contract, images)
    probs = {"keras": keras_probs}
    for tag in TFLITE_VARIANTS:
        ctx.log(f"  {tag}")
        probs[tag], _ = tflite_probabilities(files[tag], images, threads=max(ctx.cfg.threads))
    rows = []
    for name, p in probs.items():
        report = classification_report(labels, p.argmax(1), contract.labels)
        agree = agreement(p, keras_probs)
        rows.append({"variant": name, "label": "Keras (predict / tf.function)" if name == "keras"
                     else LABELS[name], "accuracy": report["accuracy"],
                     "top1_agreement": agree["top1_agreement"],
                     "max_prob_diff": agree["max_prob_diff"], "n": len(labels),
                     "macro_f1": report["macro"]["f1"],
                     "confusion_matrix": report["confusion_matrix"]})
        ctx.log(f"    {name}: {report['accuracy']:.2%}, agreement "
                f"{agree['top1_agreement']:.2%}")
    return {"model": str(model.model_keras), "input_size": size,
            "split": {"manifest": str(model.manifest), "n": len(labels),
                      "labels": list(contract.labels),
                      "per_class": {lab: int((labels == i).sum())
                                    for i, lab in enumerate(contract.labels)}},
            "rows": rows}


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's accuracy section from this section's result `r`."""
    split = r.get("split", {})
    lines = [f"{split.get('n', '?')} test images of `{short(split.get('manifest', '?'))}` "
             f"(labels {', '.join(split.get('labels', []))}), never seen in training; "
             "each variant through its own runtime (TFLite variants through `MaskClassifier`).",
             ""]
    lines += table(["variant", "accuracy", "top-1 agreement with Keras",
                    "max abs. probability difference", "images"],
                   [[row["label"], pct(row.get("accuracy"), 2),
                     pct(row.get("top1_agreement"), 2), fmt(row.get("max_prob_diff"), 4),
                     fmt(row.get("n"))] for row in r.get("rows", [])])
    return lines
