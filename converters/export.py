"""The conversion driver: Keras model -> checked `.tflite` files with their contract inside.

For each requested variant: convert (`converters.formats`), embed a provisional contract, run the
candidate with the device's classifier on the model's held-out test split and compare with Keras
(`converters.check`), gate on the accuracy drop, embed the final contract with the measured metrics
(`converters.embed`) and only then write the file atomically (`edge.core.fileio`). Candidates live
in a temporary folder: a failed, refused or interrupted conversion leaves no file and never replaces
a good one. Output paths are checked for writability before any work starts.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from converters.calibration import Calibration, from_directory
from converters.calibration import from_split as calibration_from_split
from converters.check import check_tflite, keras_probabilities, tflite_probabilities
from converters.defaults import DEFAULT_MAX_DROP, DEFAULT_SAMPLES, DEFAULT_SEED
from converters.describe import tensor_summary
from converters.embed import embed_contract
from converters.errors import ConvertError
from converters.formats import (
    DEFAULT_INT8_IO,
    INT8_IO,
    Format,
    convert_format,
    export_saved_model,
)
from converters.inputs import (
    ensure_writable,
    load_model,
    load_test_split,
    manifest_path,
    output_targets,
    resolve_model_path,
    test_split_files,
)
from converters.quiet import quiet_output
from converters.report import ConvertOutcome, VariantResult, variant_line
from edge.core import console
from edge.core.contract import ModelContract
from edge.core.fileio import sha256_file, write_bytes_atomic
from trainer.data.split import SplitManifest

#: Test images re-run after the final embedding to prove the written file answers identically.
VERIFY_IMAGES = 16

Say = Callable[[str], None]


@dataclass
class ConvertRequest:
    """What `convert` was asked to do (the CLI's options)."""

    model: Path
    formats: list[Format]
    out: Path | None = None  # one variant: the file (or a folder to put it in)
    out_dir: Path | None = None  # several variants: the folder (default: beside the model)
    split: Path | None = None  # split manifest (default: the model's source.split_manifest)
    representative: Path | None = None  # calibration folder (default: sample the train split)
    samples: int = DEFAULT_SAMPLES
    seed: int = DEFAULT_SEED
    io: str = DEFAULT_INT8_IO
    max_drop: float = DEFAULT_MAX_DROP
    bias_correction: bool = True  # int8: correct biases for weight rounding
    force: bool = False
    threads: int | None = None
    show_progress: bool = True


@dataclass(frozen=True)
class Reference:
    """What every variant is checked against: the Keras model's answers on the test split."""

    contract: ModelContract
    keras_sha256: str
    split_path: Path
    images: np.ndarray  # (N, h, w, 3) uint8 test images
    labels: np.ndarray  # (N,) label indices
    keras_probs: np.ndarray  # (N, C) the Keras model's probabilities
    calibration: Calibration | None  # int8 calibration images, if int8 was asked for


# ---------------------------------------------------------------------------------------------
# The conversion


def _tensor_details(path: Path) -> dict[str, Any]:
    from edge.core.runtime import load_interpreter

    interpreter = load_interpreter(path).interpreter
    return {"input": tensor_summary(interpreter.get_input_details()[0]),
            "output": tensor_summary(interpreter.get_output_details()[0])}


def _contract_for(request: ConvertRequest, ref: Reference, fmt: Format, target: Path,
                  metrics: dict[str, Any]) -> ModelContract:
    """The contract written into one variant: the Keras model's, plus how it was converted."""
    import tensorflow as tf

    int8 = fmt.quantization == "int8"
    source = dict(ref.contract.source)
    source["split_manifest"] = os.path.relpath(ref.split_path.resolve(), target.parent.resolve())
    source.update({"keras_sha256": ref.keras_sha256, "converted_from": request.model.name,
                   "io": request.io if int8 else "float32",
                   "converter": f"tensorflow {tf.__version__}",
                   "converted_at": datetime.now(UTC).isoformat(timespec="seconds")})
    if int8 and ref.calibration is not None:
        source["calibration"] = {**ref.calibration.source,
                                 "bias_correction": request.bias_correction}
    return ref.contract.with_(quantization=fmt.quantization, source=source, metrics=metrics)


def convert_model(request: ConvertRequest, say: Say) -> ConvertOutcome:
    """Convert, check, gate and write every requested variant (see module docstring)."""
    with quiet_output():  # importing Keras brings TensorFlow's start-up notices
        from trainer.fit.artifacts import ModelFileError, read_keras_contract

    model_path = resolve_model_path(request.model)
    request = dataclasses.replace(request, model=model_path)
    try:
        contract = read_keras_contract(model_path)
    except ModelFileError as exc:
        raise ConvertError(str(exc)) from None
    targets = output_targets(model_path, request.formats, request.out, request.out_dir)
    for target in targets:
        ensure_writable(target, model_path)
    if request.samples < 1:
        raise ConvertError("--samples must be at least 1")
    if request.io not in INT8_IO:
        raise ConvertError(f"--io must be one of {', '.join(INT8_IO)}")
    keras_sha = sha256_file(model_path)
    h, w = contract.input_size
    say(f"model      {model_path}: {contract.architecture} {h}x{w}, labels "
        f"{', '.join(contract.labels)}, sha256 {keras_sha[:12]}")

    split_path = manifest_path(model_path, contract, request.split)
    manifest, images, labels = load_test_split(split_path, contract, request.show_progress)
    needs_calibration = any(f.quantization == "int8" for f in request.formats)
    calibration = _calibration(request, manifest, contract) if needs_calibration else None
    if calibration is not None:
        say(f"calibrate  {calibration.source['samples']} images from "
            f"{calibration.source['from']} (seed {calibration.source['seed']}), bias correction "
            f"{'on' if request.bias_correction else 'off'}")

    model = load_model(model_path, contract)
    with console.task("Keras model on the test split", len(images),
                      request.show_progress) as advance:
        keras_probs = keras_probabilities(model, contract, images, advance)
    keras_acc = float((keras_probs.argmax(1) == labels).mean())
    say(f"test split {len(images)} images ({split_path}); Keras accuracy {keras_acc:.2%}")

    reference = Reference(contract=contract, keras_sha256=keras_sha, split_path=split_path,
                          images=images, labels=labels, keras_probs=keras_probs,
                          calibration=calibration)
    results: list[VariantResult] = []
    with tempfile.TemporaryDirectory(prefix="maskedge-convert-") as tmp:
        start = time.perf_counter()
        saved_model = export_saved_model(model, Path(tmp) / "saved_model")
        export_seconds = time.perf_counter() - start
        say(f"export     SavedModel in {export_seconds:.1f} s")
        for fmt, target in zip(request.formats, targets, strict=True):
            results.append(_convert_one(request, reference, fmt, target, saved_model, Path(tmp),
                                        say))
    return ConvertOutcome(model=model_path, contract=contract, keras_sha256=keras_sha,
                          manifest=split_path, test_samples=len(images), keras_accuracy=keras_acc,
                          max_drop=request.max_drop,
                          calibration=calibration.source if calibration else None,
                          export_seconds=export_seconds, results=results)


def _calibration(request: ConvertRequest, manifest: SplitManifest,
                 contract: ModelContract) -> Calibration:
    size, show = contract.input_size, request.show_progress
    if request.representative is not None:
        return from_directory(request.representative, size, request.samples, request.seed,
                              test_split_files(manifest), show)
    return calibration_from_split(manifest, size, request.samples, request.seed, show)


def _convert_one(request: ConvertRequest, ref: Reference, fmt: Format, target: Path,
                 saved_model: Path, tmp: Path, say: Say) -> VariantResult:
    """Convert one variant, check it, gate it, and write it if it may be written."""
    io = request.io if fmt.quantization == "int8" else "float32"
    calibration = ref.calibration if fmt.quantization == "int8" else None

    start = time.perf_counter()
    raw = convert_format(fmt, saved_model, calibration.images if calibration else None, io,
                         request.bias_correction)
    convert_seconds = time.perf_counter() - start

    def contract_with(metrics: dict[str, Any]) -> ModelContract:
        return _contract_for(request, ref, fmt, target, metrics)

    candidate = tmp / f"candidate_{fmt.variant}.tflite"  # the classifier reads its contract
    candidate.write_bytes(embed_contract(raw, contract_with({})))
    start = time.perf_counter()
    with console.task(f"check {fmt.variant}", len(ref.images),
                      request.show_progress) as advance:
        check = check_tflite(candidate, ref.images, ref.labels, ref.keras_probs, request.threads,
                             advance)
    check_seconds = time.perf_counter() - start
    passed = check.drop_points <= request.max_drop

    metrics = {**check.to_dict(), "split": "test", "max_drop_points": request.max_drop,
               "passed_gate": passed, "keras_metrics": dict(ref.contract.metrics)}
    final = embed_contract(raw, contract_with(metrics))
    verified = tmp / f"final_{fmt.variant}.tflite"
    verified.write_bytes(final)
    _verify_same_answers(candidate, verified, ref.images[:VERIFY_IMAGES])
    tensors = _tensor_details(verified)

    written = passed or request.force
    if written:
        try:
            write_bytes_atomic(target, final)
        except OSError as exc:
            raise ConvertError(f"cannot write {target}: {exc.strerror or exc}") from None
    say(variant_line(fmt, check, convert_seconds, len(final), target, passed, written,
                     request.max_drop))
    return VariantResult(format=fmt, target=target, io=io, convert_seconds=convert_seconds,
                         check_seconds=check_seconds, size_bytes=len(final), check=check,
                         passed=passed, written=written, tensors=tensors)


def _verify_same_answers(candidate: Path, final: Path, images: np.ndarray) -> None:
    before, _ = tflite_probabilities(candidate, images)
    after, _ = tflite_probabilities(final, images)
    if not np.array_equal(before, after):
        raise ConvertError(f"embedding the metadata changed the answers of {final.name}")
