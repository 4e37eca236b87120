"""`trainer fit --resume RUN_DIR`: continue a killed run from its last finished epoch.

A run is assembled in a hidden `.NAME.partial-*` folder beside its `--out` (see `trainer.fit.run`);
a run killed outright (SIGKILL, a lost worker) leaves that folder behind. Each training phase
keeps, under `<partial>/resume/<phase>/`:

- `keras/`: Keras' own `BackupAndRestore` checkpoint (model and optimizer state, epoch), saved at
  the end of every epoch and restored by `fit` at the start of the resumed phase;
- `state.json` + `best.npz`: what Keras does not keep -- the history rows so far, the best
  validation loss, its epoch and weights (`BestWeights`), early stopping's counter -- and, once the
  phase has finished, `final.npz` with the weights it ended with, so a resumed run skips it.

`--resume RUN_DIR` reads the killed run's `config.json` from that folder, so it runs with the same
options; decoding and the split repeat (seeded, so identical), backbone features come from the
feature cache, and each phase picks up where it stopped. A resumed run trains the same number of
epochs in total as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge.core.fileio import atomic_path, write_text_atomic
from trainer.config import FitConfig
from trainer.errors import UserError

PATH_FIELDS = ("out", "cache_dir")
PATH_LIST_FIELDS = ("exclude_lists",)


def find_partial(run_dir: Path) -> Path:
    """The killed run's hidden assembly folder for `--out run_dir` (or that folder itself)."""
    run_dir = Path(run_dir).expanduser()
    if (run_dir / "config.json").is_file() and run_dir.name.startswith("."):
        return run_dir
    found = sorted((p for p in run_dir.parent.glob(f".{run_dir.name}.partial-*")
                    if (p / "config.json").is_file()), key=lambda p: p.stat().st_mtime)
    if not found:
        if (run_dir / "summary.json").is_file():
            raise UserError(f"{run_dir} is a finished run: nothing to resume")
        raise UserError(f"no interrupted run to resume for {run_dir} (no "
                        f".{run_dir.name}.partial-* folder with a config.json beside it)")
    return found[-1]


def resumable(run_dir: Path) -> bool:
    """There is a killed run to resume for `run_dir`."""
    try:
        find_partial(run_dir)
    except UserError:
        return False
    return True


def config_for_resume(run_dir: Path) -> FitConfig:
    """The killed run's options, from the config.json in its partial folder."""
    partial = find_partial(run_dir)
    try:
        saved = json.loads((partial / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {partial / 'config.json'}: {exc}") from None
    known = {f.name for f in fields(FitConfig)}
    values = {k: v for k, v in saved.items() if k in known}
    data = values["data"]
    values["data"] = [Path(d) for d in data] if isinstance(data, list) else Path(data)
    for key in PATH_FIELDS:
        if values.get(key) is not None:
            values[key] = Path(values[key])
    for key in PATH_LIST_FIELDS:
        values[key] = [Path(p) for p in values.get(key) or []]
    values["resume"] = partial
    values["overwrite"] = True  # --out may hold nothing yet; the partial folder is reused
    return FitConfig(**values)


class PhaseState(keras.callbacks.Callback):
    """Persist what BackupAndRestore does not: history rows, best weights, early stopping."""

    def __init__(self, directory: Path, rows: list[dict[str, Any]], best: Any,
                 stopper: keras.callbacks.EarlyStopping | None) -> None:
        super().__init__()
        self.directory, self.rows, self.best, self.stopper = directory, rows, best, stopper
        self.restored = False

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def finished(self, model: keras.Model) -> bool:
        """If the phase already finished: its final weights into `model`, its rows restored."""
        state = self.load()
        if not state or not state.get("done") or not (self.directory / "final.npz").is_file():
            return False
        model.set_weights(_load_arrays(self.directory / "final.npz"))
        self.rows[:] = state["rows"]
        return True

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        state = self.load()
        if not state:
            return
        keras_epoch = _keras_epoch(self.directory / "keras")
        self.rows[:] = [r for r in state["rows"] if r["epoch"] <= keras_epoch]
        if state.get("best_epoch", -1) >= 0 and (self.directory / "best.npz").is_file():
            best = state["best"]
            self.best.best = np.inf if best is None else best
            self.best.best_epoch = state["best_epoch"]
            self.best.weights = _load_arrays(self.directory / "best.npz")
        if self.stopper is not None and "wait" in state:
            self.stopper.wait, self.stopper.best = state["wait"], state["stopper_best"]
            self.stopper.best_epoch = state.get("stopper_best_epoch", 0)
        self.restored = bool(self.rows)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.best.best_epoch == epoch and self.best.weights is not None:
            _save_arrays(self.directory / "best.npz", self.best.weights)
        self._write(done=False)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        _save_arrays(self.directory / "final.npz", self.model.get_weights())
        self._write(done=True)

    def _write(self, done: bool) -> None:
        state: dict[str, Any] = {"rows": self.rows, "best": _finite(self.best.best),
                                 "best_epoch": self.best.best_epoch, "done": done}
        if self.stopper is not None:
            state.update(wait=self.stopper.wait, stopper_best=_finite(self.stopper.best),
                         stopper_best_epoch=self.stopper.best_epoch)
        write_text_atomic(self.state_file, json.dumps(state) + "\n")


def backup(directory: Path) -> keras.callbacks.BackupAndRestore:
    """Keras' BackupAndRestore under `directory/keras` (kept after the phase: see PhaseState)."""
    return keras.callbacks.BackupAndRestore(str(directory / "keras"), delete_checkpoint=False,
                                            double_checkpoint=True)


def _keras_epoch(directory: Path) -> int:
    try:
        return int(json.loads((directory / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]
