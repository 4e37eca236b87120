"""Before any work: the model, its test split, and where the files will go.

Everything a user can get wrong is checked here, before the slow part starts: the model file and
its contract, the output paths (tried for writability), the split manifest and its test images,
and that the loaded Keras model has the input and output its contract promises.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConvertError
from converters.formats import Format
from converters.quiet import quiet_output
from edge.core import console
from edge.core.contract import ModelContract
from trainer.data.split import SplitManifest, load_split, read_manifest
from trainer.errors import UserError


def resolve_model_path(path: Path) -> Path:
    """The model file; a run folder stands for the model.h5 (or model.keras) inside it."""
    path = path.expanduser()
    if path.is_dir():
        for name in ("model.h5", "model.keras"):
            if (path / name).is_file():
                return path / name
        raise ConvertError(f"{path} is a folder without model.h5 or model.keras")
    return path


def output_targets(model: Path, formats: list[Format], out: Path | None,
                   out_dir: Path | None) -> list[Path]:
    """The file each requested variant is written to (default: beside the model)."""
    if out is not None:
        if len(formats) != 1:
            raise ConvertError("--out names one file: use --out-dir with --all")
        out = out.expanduser()
        return [out / formats[0].file_name(model.stem)] if out.is_dir() else [out]
    folder = out_dir.expanduser() if out_dir is not None else model.parent
    return [folder / fmt.file_name(model.stem) for fmt in formats]


def ensure_writable(target: Path, model: Path) -> None:
    """ConvertError (one line) unless `target` can be created or replaced."""
    if target.suffix != ".tflite":
        raise ConvertError(f"output {target} must end in .tflite")
    if target.exists() and target.resolve() == model.resolve():
        raise ConvertError(f"output {target} would overwrite the source model")
    if target.is_dir():
        raise ConvertError(f"output {target} is a folder")
    ancestor = target.parent
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConvertError(f"cannot write {target}: {ancestor} is not a folder")
    try:  # root ignores permission bits, so try it rather than ask os.access
        fd, probe = tempfile.mkstemp(prefix=".convert-probe-", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConvertError(f"cannot write {target}: {exc.strerror or exc}") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise ConvertError(f"cannot write {target}: permission denied")


def manifest_path(model: Path, contract: ModelContract, split: Path | None) -> Path:
    """The split manifest: --split, else the model's own (relative to the model's folder)."""
    if split is not None:
        return split.expanduser()
    named = contract.source.get("split_manifest")
    if not named:
        raise ConvertError(f"{model} names no split manifest (source.split_manifest): "
                           f"pass --split PATH to its run's split.json")
    path = Path(named)
    return path if path.is_absolute() else model.parent / path


def load_test_split(path: Path, contract: ModelContract,
                    show_progress: bool) -> tuple[SplitManifest, np.ndarray, np.ndarray]:
    """The manifest and the test split's pixels and labels, at the model's input size."""
    try:
        manifest = read_manifest(path)
    except UserError as exc:
        raise ConvertError(str(exc)) from None
    if tuple(manifest.labels) != tuple(contract.labels):
        raise ConvertError(f"split manifest {path} has labels {list(manifest.labels)}, the model "
                           f"{list(contract.labels)}: not this model's split")
    rows = manifest.rows_of("test")
    if not rows:
        raise ConvertError(f"split manifest {path} has no test images to check against")
    try:
        with console.task("test split", len(rows), show_progress) as advance:
            images, labels = load_split(manifest, "test", contract.input_size, advance=advance)
    except UserError as exc:
        raise ConvertError(f"cannot read the test split: {exc}") from None
    return manifest, images, labels


def test_split_files(manifest: SplitManifest) -> list[Path]:
    """The image files of the test split (none for array data sets)."""
    sources = manifest.all_sources()
    return sorted({sources[r.get("source") or 0].root / r["path"] for r in manifest.rows_of("test")
                   if sources[r.get("source") or 0].format != "arrays"})


def load_model(path: Path, contract: ModelContract) -> Any:
    """The Keras model, checked against its contract (input size, output units)."""
    with quiet_output():
        from trainer.fit.artifacts import ModelFileError, load_keras_model

        try:
            model, _ = load_keras_model(path)
        except ModelFileError as exc:
            error: str | None = str(exc)
        else:
            error = None
    if error is not None:
        raise ConvertError(error)
    shape = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else None
    want = (*contract.input_size, 3)
    if shape is None or tuple(shape[1:]) != want:
        raise ConvertError(f"{path}: model input {shape} does not match its contract "
                           f"(None, {want[0]}, {want[1]}, 3)")
    units = 1 if contract.output == "sigmoid" else contract.num_classes
    out = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else None
    if out is None or out[-1] != units:
        raise ConvertError(f"{path}: model output {out} does not match its contract "
                           f"({units} {contract.output} unit(s))")
    return model
