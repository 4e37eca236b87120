"""`trainer` command line: `trainer fit DATA --out RUN` and `trainer evaluate MODEL --data DATA`.

User errors (bad data, bad options, missing weights or model files) print one line,
`error: ...`, on stderr and exit with code 2; no traceback, no partial run folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(help="Train and evaluate maskedge face-mask classifiers (MobileNetV2).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

EXIT_USAGE = 2


def _model_errors() -> tuple[type[Exception], ...]:
    """WeightsError / ModelFileError, if their (Keras-importing) modules are loaded."""
    errors: list[type[Exception]] = []
    if "trainer.model" in sys.modules:
        errors.append(sys.modules["trainer.model"].WeightsError)
    if "trainer.artifacts" in sys.modules:
        errors.append(sys.modules["trainer.artifacts"].ModelFileError)
    return tuple(errors)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up log lines (oneDNN notices) kept off stderr."""
    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _user_errors(json_out: bool) -> Any:
    """Turn known user errors into one line + exit 2; keep stdout for --json only."""
    from edge.contract import ContractError
    from trainer.errors import UserError

    known: tuple[type[Exception], ...] = (UserError, ContractError)

    target = sys.stderr if json_out else sys.stdout
    try:
        with contextlib.redirect_stdout(target):
            yield
    except Exception as exc:
        if not isinstance(exc, (*known, *_model_errors())):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(message) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


@app.command()
def fit(
    data: list[Path] = typer.Argument(None, help="One or more data sources, each class folders, "
                                      "dataset.npy+labels.npy, or VOC images/+annotations/."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder to create (must be "
                                    "new or empty unless --overwrite)."),
    weights: str = typer.Option("imagenet", help="imagenet | none | PATH to no-top MobileNetV2 "
                                "weights (.h5)."),
    input_size: int = typer.Option(224, help="Square input size in pixels."),
    alpha: float = typer.Option(1.0, help="MobileNetV2 width multiplier."),
    epochs: int = typer.Option(20, help="Phase-1 epochs (at most; early stopping)."),
    batch_size: int = typer.Option(32, help="Batch size."),
    learning_rate: float = typer.Option(1e-4, help="Phase-1 Adam learning rate."),
    patience: int = typer.Option(5, help="Early-stopping patience in epochs (0: off)."),
    seed: int = typer.Option(0, help="Seed for split, augmentation and training."),
    val_fraction: float = typer.Option(0.15, help="Share of images for validation."),
    test_fraction: float = typer.Option(0.15, help="Share of images for the test set."),
    feature_cache: bool = typer.Option(True, "--feature-cache/--no-feature-cache",
                                       help="Train the head on cached backbone features (fast) "
                                       "or the whole model on images every epoch (reference)."),
    augment_views: int = typer.Option(1, help="Augmented views per training image whose "
                                      "features are cached (feature-cache path)."),
    fine_tune_layers: int = typer.Option(0, help="Phase 2: unfreeze the top N backbone layers "
                                         "(BatchNorm stays frozen); 0 skips phase 2."),
    fine_tune_epochs: int = typer.Option(5, help="Phase-2 epochs."),
    fine_tune_learning_rate: float = typer.Option(1e-5, help="Phase-2 learning rate."),
    min_face: int = typer.Option(16, help="VOC: drop face boxes smaller than PX pixels."),
    limit_per_class: int | None = typer.Option(None, help="Use at most N images per class "
                                               "(quick runs)."),
    mixed_precision: bool = typer.Option(False, help="float16 compute on a GPU (ignored "
                                         "without one)."),
    class_weights: bool = typer.Option(True, "--class-weights/--no-class-weights",
                                       help="Weight classes against imbalance."),
    cache_dir: Path | None = typer.Option(None, help="Feature cache folder (default "
                                          "$MASKEDGE_CACHE/features or ~/.cache/maskedge)."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty --out folder."),
    label_map: list[str] = typer.Option([], "--label-map", help="FROM=TO renames class FROM "
                                        "in every source; FROM= leaves it out (repeatable)."),
    exclude_list: list[Path] = typer.Option([], "--exclude-list", help="File of image file "
                                            "names, one a line: their samples are never used "
                                            "(held-out photos; repeatable)."),
    source_weight: list[str] = typer.Option([], "--source-weight", help="NAME=W weights the "
                                            "training samples of the source named NAME (its "
                                            "folder name) by W (repeatable)."),
    strategy: str = typer.Option("auto", help="auto | one-device | mirrored | multi-worker "
                                 "(tf.distribute; multi-worker reads TF_CONFIG; auto: mirrored "
                                 "with 2+ GPUs, else one device)."),
    scale_batch: bool = typer.Option(False, help="--batch-size per replica (global batch = "
                                     "batch x replicas) and learning rate x replicas; default: "
                                     "--batch-size is the global batch."),
    stream: str = typer.Option("auto", help="on | off | auto: decode in chunks and keep "
                               "backbone features in shards on disk (bounded memory); auto "
                               "streams when decoded images would exceed 2 GiB, and always "
                               "for multi-worker."),
    stream_chunk: int = typer.Option(256, help="Streaming: images decoded at a time = rows per "
                                     "feature shard."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the killed run whose "
                                       "--out was RUN_DIR, with its options, from its last "
                                       "finished epoch (no DATA or --out needed)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON on "
                                  "stdout."),
) -> None:
    """Train a classifier on DATA (one or more sources) and write a run folder."""
    with _user_errors(json_out):
        from trainer.config import FitConfig, preflight

        config = _resume_config(resume, bool(data) and out is not None)
        if config is None:
            if not data or out is None:
                raise _fail("DATA and --out are required (or --resume RUN_DIR)")
            config = FitConfig(data=data[0] if len(data) == 1 else list(data), out=out,
                               weights=weights, input_size=input_size,
                               alpha=alpha, epochs=epochs, batch_size=batch_size,
                               learning_rate=learning_rate, patience=patience, seed=seed,
                               val_fraction=val_fraction, test_fraction=test_fraction,
                               feature_cache=feature_cache, augment_views=augment_views,
                               fine_tune_layers=fine_tune_layers, fine_tune_epochs=fine_tune_epochs,
                               fine_tune_learning_rate=fine_tune_learning_rate, min_face=min_face,
                               limit_per_class=limit_per_class, mixed_precision=mixed_precision,
                               class_weighting=class_weights, cache_dir=cache_dir,
                               overwrite=overwrite, label_map=list(label_map),
                               exclude_lists=list(exclude_list),
                               source_weights=list(source_weight), strategy=strategy,
                               scale_batch=scale_batch, stream=stream, stream_chunk=stream_chunk)
            preflight(config)  # bad data / options / paths: one line, before TensorFlow loads
        result = _run_fit(config, quiet)
    _print_fit(result, json_out)


def _resume_config(resume: Path | None, can_start: bool) -> Any:
    """The killed run's options for --resume; None when there is nothing to resume and DATA
    and --out were given too (so one command starts a run and, restarted, resumes it)."""
    if resume is None:
        return None
    from trainer.resume import config_for_resume, resumable

    if can_start and not resumable(resume):
        return None
    return config_for_resume(resume)


def _run_fit(config: Any, quiet: bool) -> Any:
    """Import TensorFlow, make the strategy first (multi-worker needs that), then fit."""
    _import_tensorflow_quietly()
    from trainer.distribute import make_strategy
    from trainer.fit import fit as run_fit

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
    model: Path = typer.Argument(..., help="A maskedge model.h5 or model.keras."),
    data: Path = typer.Option(..., "--data", "-d", help="A data set (any format fit accepts) or "
                              "a run's split.json."),
    split: str = typer.Option("test", help="With a split.json: all | train | val | test."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for report.txt, "
                                    "metrics.json, confusion_matrix.png, summary.json."),
    min_face: int = typer.Option(16, help="VOC: drop face boxes smaller than PX pixels."),
    drop_unknown_labels: bool = typer.Option(False, help="Leave out images whose label the "
                                             "model does not know (instead of an error)."),
    label_map: list[str] = typer.Option([], "--label-map", help="FROM=TO renames a data class; "
                                        "FROM= leaves it out (repeatable)."),
    only_list: Path | None = typer.Option(None, help="File of image file names: evaluate only "
                                          "their samples (e.g. held-out photos)."),
    exclude_list: Path | None = typer.Option(None, help="File of image file names whose "
                                             "samples are left out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Measure MODEL on labelled DATA: accuracy, per-class report, confusion matrix."""
    with _user_errors(json_out):
        from trainer.config import check_evaluate, name_list, parse_label_map

        check_evaluate(model, data, split, out, min_face)  # one line, before TensorFlow
        label_map_ = parse_label_map(label_map)
        only, exclude = name_list(only_list), name_list(exclude_list)
        _import_tensorflow_quietly()
        from trainer.evaluate import Selection
        from trainer.evaluate import evaluate as run_evaluate

        selection = Selection(label_map_, only=only, exclude=exclude)
        result = run_evaluate(model, data, split=split, out=out, min_face=min_face,
                              progress=not quiet, drop_unknown_labels=drop_unknown_labels,
                              selection=selection)
    text = result.summary.pop("report_text")
    if json_out:
        typer.echo(json.dumps(result.summary, indent=2, default=str))
    else:
        typer.echo(text)


@app.command("fit-detector")
def fit_detector(
    data: list[Path] = typer.Argument(..., help="Pascal VOC folders (images/ + annotations/)."),
    onnx: Path = typer.Option(..., "--onnx", help="YuNet 2023mar ONNX file: the starting "
                              "weights (OpenCV model zoo, face_detection_yunet_2023mar.onnx)."),
    out: Path = typer.Option(..., "--out", "-o", help="The .tflite to write (with OUT.json: "
                             "data, settings, loss per epoch)."),
    exclude_list: list[Path] = typer.Option([], "--exclude-list", help="File of image file "
                                            "names never trained on (repeatable)."),
    epochs: int = typer.Option(4, min=1, help="Passes over the photos."),
    learning_rate: float = typer.Option(5e-5, min=1e-7, max=1e-2, help="Adam learning rate."),
    batch: int = typer.Option(4, min=1, max=64, help="Photos per step (640 x 640 canvases)."),
    seed: int = typer.Option(0, help="Random seed (order, augmentation)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Fine-tune the YuNet face detector on annotated photos (masked faces too) and write a
    `.tflite` that `edge run --detector-model` runs (see models/DETECTOR_CARD.md)."""
    with _user_errors(False):
        from trainer.config import check_output_file, name_lists

        exclude = name_lists(exclude_list)
        check_output_file(out, "--out")
        if seed < 0:
            raise _fail("--seed must be >= 0")
        if not onnx.is_file():
            raise _fail(f"YuNet ONNX file not found: {onnx}")
        from edge.voc import DatasetError, load_voc

        try:
            items = [item for root in data for item in load_voc(root, exclude=exclude)]
        except DatasetError as exc:
            raise _fail(str(exc)) from None
        _import_tensorflow_quietly()
        from trainer.detector import DetectorFitConfig, fit_detector, write_history
        from trainer.progress import task

        config = DetectorFitConfig(onnx=onnx, out=out, epochs=epochs, batch=batch,
                                   learning_rate=learning_rate, seed=seed)
        steps = max(1, len([i for i in items if i.annotations]) // batch)
        with task("fine-tuning YuNet", epochs * steps, not quiet) as advance:
            summary = fit_detector(config, items, lambda *_: advance(1))
        summary.update(data=[str(d) for d in data], onnx=str(onnx),
                       excluded=[str(p) for p in exclude_list], learning_rate=learning_rate,
                       batch=batch, seed=seed)
        write_history(out.with_suffix(".json"), summary)
    typer.echo(f"wrote {out}: {summary['photos']} photos, {summary['faces']} faces, "
               f"{epochs} epochs, final loss {summary['history'][-1]['loss']:.3f}")


if __name__ == "__main__":
    app()
