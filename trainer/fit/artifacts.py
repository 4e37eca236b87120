"""Keras model files that carry their contract: save atomically, load with clear errors.

`save_keras_model` writes `model.h5` (contract in the root attribute) and `model.keras` (contract as
a zip member) through temporary files renamed into place, so an interrupted save never leaves a
partial file or replaces a good one. `load_keras_model` reads either back with its contract,
always in Keras safe mode: loading a model file never runs code from it.
"""

from __future__ import annotations

import contextlib
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import keras

from edge.core.contract import KERAS_MEMBER, METADATA_KEY, ContractError, ModelContract
from edge.core.fileio import atomic_path
from trainer.errors import ModelFileError
from trainer.fit.model import Mirror  # noqa: F401  (registers the layer for loading)


def save_keras_model(model: keras.Model, contract: ModelContract, out_dir: Path,
                     stem: str = "model") -> tuple[Path, Path]:
    """Write `<stem>.h5` and `<stem>.keras` with the contract embedded; returns both paths."""
    out_dir = Path(out_dir)
    h5_path, keras_path = out_dir / f"{stem}.h5", out_dir / f"{stem}.keras"
    text = contract.to_json()
    # Keras picks the format from the suffix; atomic_path keeps it on the temporary name.
    for target in (h5_path, keras_path):
        with atomic_path(target) as tmp:
            tmp.unlink()  # Keras refuses to overwrite some files it did not create
            with _quiet_absl():  # Keras warns that .h5 is "legacy": maskedge ships it on purpose
                model.save(tmp)
            if target.suffix == ".h5":
                with h5py.File(tmp, "a") as f:
                    f.attrs[METADATA_KEY] = text
            else:
                with zipfile.ZipFile(tmp, "a") as z:
                    z.writestr(KERAS_MEMBER, text)
    return h5_path, keras_path


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_keras_contract(path: str | Path) -> ModelContract:
    """The contract embedded in a maskedge `.h5` or `.keras` file, without loading the model."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        if path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                raw = f.attrs.get(METADATA_KEY)
        elif path.suffix == ".keras":
            with zipfile.ZipFile(path) as z:
                raw = z.read(KERAS_MEMBER) if KERAS_MEMBER in z.namelist() else None
        else:
            raise ModelFileError(f"{path}: expected a .h5 or .keras model file")
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelFileError(f"{path} is not a readable Keras model file "
                             f"(truncated or wrong format: {str(exc).splitlines()[0]})") from None
    if raw is None:
        raise ModelFileError(f"{path} carries no maskedge metadata (was it made by `trainer fit`?)")
    try:
        return ModelContract.from_json(raw)
    except ContractError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def load_keras_model(path: str | Path) -> tuple[keras.Model, ModelContract]:
    """Load a maskedge Keras model and its contract (ModelFileError with one line on failure)."""
    contract = read_keras_contract(path)
    try:
        # Safe mode, always: a model file must never run code (a Lambda layer holding Python).
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for damaged files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safe_mode" in str(exc) or "arbitrary code" in str(exc):
            msg = ("refused: it holds Python code (a Lambda layer) that loading would run; "
                   "maskedge loads models in Keras safe mode only")
        raise ModelFileError(f"cannot load model {path}: {msg[:200]}") from None
    return model, contract
