"""`trainer` command line: `trainer fit DATA --out RUN`, `trainer evaluate MODEL --data DATA`,
`trainer ensemble RUN [RUN ...] --out DIR`, `trainer fit-detector` and
`trainer distill DATA --out RUN`.

User errors (bad data, bad options, missing weights or model files) print one line,
`trainer: error: ...`, on stderr and exit with code 2 (edge/core/console.py); no traceback, no
partial run folder. So does every command in an install without the `train` extra (the device's
`maskedge[edge]`): it names the extra to install. `trainer fit`'s defaults are
`trainer.config.FitConfig`'s, defined once there.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.core.console import (
    EXIT_FAILED,
    cli_app,
    fail,
    native_stderr_silenced,
    quiet_tensorflow_logs,
    require_extra,
    task,
    user_errors,
)
from edge.core.contract import ContractError
from trainer.config import MAX_SKIPPED_SHARE, DetectorFitConfig, EnsembleConfig, FitConfig
from trainer.errors import ClusterError, ModelFileError, UserError, WeightsError

quiet_tensorflow_logs()

app = cli_app(help="Train and evaluate maskedge face-mask classifiers (MobileNetV2).")

PROG = "trainer"
DEFAULTS = FitConfig(data=Path(), out=Path())  # `trainer fit`'s defaults, from trainer/config.py
ENSEMBLE = EnsembleConfig([], Path())  # `trainer ensemble`'s, from there too
DETECTOR = DetectorFitConfig(onnx=Path(), out=Path())  # `trainer fit-detector`'s
#: The errors that are the user's to fix: one line and exit 2.
KNOWN_ERRORS = (UserError, WeightsError, ModelFileError, ContractError)
#: FitConfig fields that are not `trainer fit` options of the same name.
NOT_OPTIONS = ("data", "out", "resume")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up log lines (oneDNN notices) kept off stderr."""
    if "tensorflow" in sys.modules:
        return
    quiet_tensorflow_logs()
    with native_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


@app.command()
def fit(
    ctx: typer.Context,
    data: Annotated[list[Path] | None, typer.Argument(
        metavar="DATA", help="One or more data sources, each class folders, "
        "dataset.npy+labels.npy, or VOC images/+annotations/.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run folder to create (must be new or empty unless --overwrite).")
    ] = None,
    weights: Annotated[str, typer.Option(
        help="imagenet | none | PATH to no-top MobileNetV2 weights (.h5).")] = DEFAULTS.weights,
    input_size: Annotated[int, typer.Option(help="Square input size in pixels.")
                          ] = DEFAULTS.input_size,
    alpha: Annotated[float, typer.Option(help="MobileNetV2 width multiplier.")] = DEFAULTS.alpha,
    nose_band: Annotated[bool, typer.Option(
        "--nose-band/--no-nose-band", help="Also read the nose-and-mouth band (rows 30-80 %, "
        "columns 15-85 % of the face) at full --input-size, the whole face at half; about 2.5x "
        "the classifier's time. For mask_weared_incorrect (benchmarks/RESULTS.md, 3-class).")
    ] = DEFAULTS.nose_band,
    epochs: Annotated[int, typer.Option(help="Phase-1 epochs (at most; early stopping).")
                      ] = DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = DEFAULTS.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Phase-1 Adam learning rate.")
                             ] = DEFAULTS.learning_rate,
    patience: Annotated[int, typer.Option(
        help="Early-stopping patience in epochs (0: off).")] = DEFAULTS.patience,
    seed: Annotated[int, typer.Option(help="Seed for split, augmentation and training.")
                    ] = DEFAULTS.seed,
    split_seed: Annotated[int | None, typer.Option(
        help="Seed of the split alone (default: --seed): runs that differ only in --seed then "
             "share their split, as `trainer ensemble` members must.")] = DEFAULTS.split_seed,
    val_seed: Annotated[int | None, typer.Option(
        help="Draw train/val again with this seed, keeping the test split: ensemble members "
             "that share a test split then train on different faces (bagging).")
    ] = DEFAULTS.val_seed,
    val_fraction: Annotated[float, typer.Option(help="Share of images for validation.")
                            ] = DEFAULTS.val_fraction,
    test_fraction: Annotated[float, typer.Option(help="Share of images for the test set.")
                             ] = DEFAULTS.test_fraction,
    feature_cache: Annotated[bool, typer.Option(
        "--feature-cache/--no-feature-cache", help="Train the head on cached backbone features "
        "(fast) or the whole model on images every epoch (reference).")] = DEFAULTS.feature_cache,
    augment_views: Annotated[int, typer.Option(
        help="Augmented views per training image whose features are cached (feature-cache "
             "path).")] = DEFAULTS.augment_views,
    augment: Annotated[str, typer.Option(
        help="Augmentation policy: 'reference' (rotation 20, shift 20 %, zoom, shear, flip) or "
             "'mild' (rotation 10, shift/zoom 5 %, flip, brightness/contrast).")
    ] = DEFAULTS.augment,
    label_smoothing: Annotated[float, typer.Option(
        help="Label smoothing of the cross-entropy, every phase (0: none).")
    ] = DEFAULTS.label_smoothing,
    fine_tune_layers: Annotated[int, typer.Option(
        help="Phase 2: unfreeze the top N backbone layers (BatchNorm stays frozen); 0 skips "
             "phase 2.")] = DEFAULTS.fine_tune_layers,
    fine_tune_epochs: Annotated[int, typer.Option(help="Phase-2 epochs.")
                                ] = DEFAULTS.fine_tune_epochs,
    fine_tune_learning_rate: Annotated[float, typer.Option(
        help="Phase-2 learning rate, decaying along a cosine to 0 over the phase-2 epochs.")
                                       ] = DEFAULTS.fine_tune_learning_rate,
    logit_adjust: Annotated[float, typer.Option(
        help="After training, shift the decisions from the class-balanced prior back toward "
             "the training split's class frequencies by TAU (0: balanced, 1: the training "
             "frequencies; adds -TAU x log(class weight) to the output logits).")
    ] = DEFAULTS.logit_adjust,
    min_face: Annotated[int, typer.Option(help="VOC: drop face boxes smaller than PX pixels.")
                        ] = DEFAULTS.min_face,
    min_per_class: Annotated[int, typer.Option(
        help="Refuse data where a class has fewer images than this (files that are not "
             "images do not count).")
    ] = DEFAULTS.min_per_class,
    allow_skipped: Annotated[bool, typer.Option(
        "--allow-skipped", help=f"Train even when more than {MAX_SKIPPED_SHARE:.0%} of the "
        "files in the class folders are not images (refused by default: it looks like the "
        "wrong folder).")] = DEFAULTS.allow_skipped,
    limit_per_class: Annotated[int | None, typer.Option(
        help="Use at most N images per class (quick runs).")] = DEFAULTS.limit_per_class,
    mixed_precision: Annotated[bool, typer.Option(
        help="float16 compute on a GPU (ignored without one).")] = DEFAULTS.mixed_precision,
    class_weighting: Annotated[bool, typer.Option(
        "--class-weights/--no-class-weights", help="Weight classes against imbalance.")
    ] = DEFAULTS.class_weighting,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Feature cache folder (default $MASKEDGE_CACHE/features or ~/.cache/maskedge).")
    ] = DEFAULTS.cache_dir,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")
                         ] = DEFAULTS.overwrite,
    label_map: Annotated[list[str] | None, typer.Option(
        "--label-map", help="FROM=TO renames class FROM in every source; FROM= leaves it out "
        "(repeatable).")] = None,
    exclude_lists: Annotated[list[Path] | None, typer.Option(
        "--exclude-list", help="File of image file names, one a line: their samples are never "
        "used (held-out photos; repeatable).")] = None,
    source_weights: Annotated[list[str] | None, typer.Option(
        "--source-weight", help="NAME=W weights the training samples of the source named NAME "
        "(its folder name) by W (repeatable).")] = None,
    strategy: Annotated[str, typer.Option(
        help="auto | one-device | mirrored | multi-worker (tf.distribute; multi-worker reads "
             "TF_CONFIG; auto: mirrored with 2+ GPUs, else one device).")] = DEFAULTS.strategy,
    scale_batch: Annotated[bool, typer.Option(
        help="--batch-size per replica (global batch = batch x replicas) and learning rate x "
             "replicas; default: --batch-size is the global batch.")] = DEFAULTS.scale_batch,
    stream: Annotated[str, typer.Option(
        help="on | off | auto: decode in chunks and keep backbone features in shards on disk "
             "(bounded memory); auto streams when decoded images would exceed 2 GiB, and always "
             "for multi-worker.")] = DEFAULTS.stream,
    stream_chunk: Annotated[int, typer.Option(
        help="Streaming: images decoded at a time = rows per feature shard.")
    ] = DEFAULTS.stream_chunk,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue the killed run whose --out was RUN_DIR, with its options, "
        "from its last finished epoch (no DATA or --out needed).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the run summary as JSON on stdout.")] = False,
) -> None:
    """Train a classifier on DATA (one or more sources) and write a run folder."""
    require_extra(PROG)
    with user_errors(PROG, KNOWN_ERRORS, json_out=json_out):
        from trainer.config import preflight

        config = _resume_config(resume, bool(data) and out is not None)
        if config is None:
            if not data or out is None:
                raise fail(PROG, "DATA and --out are required (or --resume RUN_DIR)")
            config = _fit_config(ctx.params)  # the parsed options, by name
            preflight(config)  # bad data / options / paths: one line, before TensorFlow loads
        try:
            result = _run_fit(config, quiet)
        except ClusterError as exc:  # not a usage error: restarting the workers resumes it
            raise fail(PROG, str(exc), EXIT_FAILED) from None
    _print_fit(result, json_out)


def _fit_config(given: dict[str, Any]) -> FitConfig:
    """A new run's FitConfig from `trainer fit`'s arguments (its options are FitConfig's fields
    under the same names; repeatable options arrive as lists or None)."""
    values = {f.name: given[f.name] for f in dataclasses.fields(FitConfig)
              if f.name not in NOT_OPTIONS}
    for name in ("label_map", "exclude_lists", "source_weights"):
        values[name] = list(values[name] or ())
    data = list(given["data"])
    return FitConfig(data=data[0] if len(data) == 1 else data, out=given["out"], **values)


def _resume_config(resume: Path | None, can_start: bool) -> Any:
    """The killed run's options for --resume; None when there is nothing to resume and DATA
    and --out were given too (so one command starts a run and, restarted, resumes it)."""
    if resume is None:
        return None
    from trainer.fit.resume import config_for_resume, resumable

    if can_start and not resumable(resume):
        return None
    return config_for_resume(resume)


def _run_fit(config: Any, quiet: bool) -> Any:
    """Import TensorFlow, make the strategy first (multi-worker needs that), then fit."""
    _import_tensorflow_quietly()
    from trainer.distribute import make_strategy
    from trainer.fit.run import fit as run_fit

    make_strategy(config.strategy)
    return run_fit(config, progress=not quiet)


def _print_fit(result: Any, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(result.summary, indent=2, default=str))
    elif not result.summary.get("chief", True):
        d = result.summary["distribution"]
        typer.echo(f"worker {d['worker_index']} of {d['workers']}: trained "
                   f"{result.summary['epochs_run']} epochs; the chief writes the run folder")
    else:
        counts = result.summary["counts"]["test"]
        typer.echo(f"test accuracy {100 * result.test_accuracy:.2f} % on {sum(counts.values())} "
                   f"test images; run folder {result.run_dir} ({result.wall_seconds:.0f} s)")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(metavar="MODEL",
                                          help="A maskedge model.h5 or model.keras.")],
    data: Annotated[Path, typer.Option(
        "--data", "-d", help="A data set (any format fit accepts) or a run's split.json.")],
    split: Annotated[str, typer.Option(help="With a split.json: all | train | val | test.")
                     ] = "test",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for report.txt, metrics.json, confusion_matrix.png, "
        "summary.json, and errors.csv + errors.jpg: the misclassified images, most confident "
        "first (where a label is likeliest to be wrong).")] = None,
    min_face: Annotated[int, typer.Option(help="VOC: drop face boxes smaller than PX pixels.")
                        ] = DEFAULTS.min_face,
    drop_unknown_labels: Annotated[bool, typer.Option(
        help="Leave out images whose label the model does not know (instead of an error).")
    ] = False,
    label_map: Annotated[list[str] | None, typer.Option(
        "--label-map", help="FROM=TO renames a data class; FROM= leaves it out (repeatable).")
    ] = None,
    only_list: Annotated[Path | None, typer.Option(
        help="File of image file names: evaluate only their samples (e.g. held-out photos).")
    ] = None,
    exclude_list: Annotated[Path | None, typer.Option(
        help="File of image file names whose samples are left out.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Measure MODEL on labelled DATA: accuracy, per-class report, confusion matrix."""
    require_extra(PROG)
    with user_errors(PROG, KNOWN_ERRORS, json_out=json_out):
        from trainer.config import check_evaluate, name_list, parse_label_map

        check_evaluate(model, data, split, out, min_face)  # one line, before TensorFlow
        label_map_ = parse_label_map(label_map)
        only, exclude = name_list(only_list), name_list(exclude_list)
        _import_tensorflow_quietly()
        from trainer.fit.evaluate import Selection
        from trainer.fit.evaluate import evaluate as run_evaluate

        selection = Selection(label_map_, only=only, exclude=exclude)
        result = run_evaluate(model, data, split=split, out=out, min_face=min_face,
                              progress=not quiet, drop_unknown_labels=drop_unknown_labels,
                              selection=selection)
    text = result.summary.pop("report_text")
    if json_out:
        typer.echo(json.dumps(result.summary, indent=2, default=str))
    else:
        typer.echo(text)


@app.command("ensemble")
def ensemble_(
    runs: Annotated[list[Path], typer.Argument(
        metavar="RUNS", help="Run folders of `trainer fit` (model.h5, split.json, "
        "summary.json) that share labels, input size and test split (the same --split-seed).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write model.h5, model.keras, metadata.json, split.json, "
        "report.txt (must be new or empty unless --overwrite).")],
    logit_adjust: Annotated[float, typer.Option(
        help="First shift each member's decisions from the class-balanced prior toward its "
             "training class frequencies by TAU (as `trainer fit --logit-adjust`).")
    ] = ENSEMBLE.logit_adjust,
    flip: Annotated[bool, typer.Option(
        "--flip/--no-flip", help="Also read each face mirrored and average both views "
        "(test-time augmentation): twice the time per face.")] = ENSEMBLE.flip,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")
                         ] = ENSEMBLE.overwrite,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Average RUNS' class probabilities in one model file (one member's cost per member),
    measured on their shared test split; `convert` and `edge` take it like any model."""
    require_extra(PROG)
    with user_errors(PROG, KNOWN_ERRORS, json_out=json_out):
        from trainer.config import check_ensemble

        check_ensemble(runs, out, logit_adjust, overwrite)  # one line, before TensorFlow
        _import_tensorflow_quietly()
        from trainer.ensemble import ensemble

        result = ensemble(EnsembleConfig(list(runs), out, logit_adjust, overwrite, flip),
                          progress=not quiet)
    if json_out:
        typer.echo(json.dumps(result.summary, indent=2, default=str))
    else:
        n = sum(v["support"] for v in result.test["per_class"].values())
        typer.echo(f"ensemble of {len(runs)}: test accuracy {100 * result.test['accuracy']:.2f} % "
                   f"on {n} test images (shared split); folder {result.out}")


@app.command("fit-detector")
def fit_detector(
    data: Annotated[list[Path], typer.Argument(
        metavar="DATA", help="Pascal VOC folders (images/ + annotations/).")],
    onnx: Annotated[Path, typer.Option(
        "--onnx", help="YuNet 2023mar ONNX file: the starting weights (OpenCV model zoo, "
        "face_detection_yunet_2023mar.onnx).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="The .tflite to write (with OUT.json: data, settings, loss per "
        "epoch).")],
    exclude_list: Annotated[list[Path] | None, typer.Option(
        "--exclude-list", help="File of image file names never trained on (repeatable).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the photos.")
                      ] = DETECTOR.epochs,
    learning_rate: Annotated[float, typer.Option(
        min=1e-7, max=1e-2, help="Adam learning rate.")] = DETECTOR.learning_rate,
    batch: Annotated[int, typer.Option(
        min=1, max=64, help="Photos per step (640 x 640 canvases).")] = DETECTOR.batch,
    seed: Annotated[int, typer.Option(help="Random seed (order, augmentation).")
                    ] = DETECTOR.seed,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Fine-tune the YuNet face detector on annotated photos (masked faces too) and write a
    `.tflite` that `edge run --detector-model` runs (see models/DETECTOR_CARD.md)."""
    require_extra(PROG)
    with user_errors(PROG, KNOWN_ERRORS):
        items = _detector_photos(data, onnx, out, exclude_list, seed)
        _import_tensorflow_quietly()
        from trainer.detector import fit_detector, write_history

        config = DetectorFitConfig(onnx=onnx, out=out, epochs=epochs, batch=batch,
                                   learning_rate=learning_rate, seed=seed)
        steps = max(1, len([i for i in items if i.annotations]) // batch)
        with task("fine-tuning YuNet", epochs * steps, not quiet) as advance:
            summary = fit_detector(config, items, lambda *_: advance(1))
        summary.update(data=[str(d) for d in data], onnx=str(onnx),
                       excluded=[str(p) for p in exclude_list or ()],
                       learning_rate=learning_rate, batch=batch, seed=seed)
        write_history(out.with_suffix(".json"), summary)
    typer.echo(f"wrote {out}: {summary['photos']} photos, {summary['faces']} faces, "
               f"{epochs} epochs, final loss {summary['history'][-1]['loss']:.3f}")


def _detector_photos(data: list[Path], onnx: Path, out: Path, exclude_list: list[Path] | None,
                     seed: int) -> list[Any]:
    """`fit-detector`'s checks before TensorFlow loads, then its photos (VOC items)."""
    from edge.core.voc import DatasetError, load_voc
    from trainer.config import check_output_file, name_lists

    exclude = name_lists(exclude_list)
    check_output_file(out, "--out")
    if seed < 0:
        raise fail(PROG, "--seed must be >= 0")
    if not onnx.is_file():
        raise fail(PROG, f"YuNet ONNX file not found: {onnx}")
    with user_errors(PROG, (DatasetError,)):
        return [item for root in data for item in load_voc(root, exclude=exclude)]


# `trainer distill` lives in trainer/distill/command.py (its own Typer app too, for tests);
# registered here as the same function.
from trainer.distill.command import distill as _distill  # noqa: E402

app.command("distill")(_distill)


if __name__ == "__main__":
    app()
