"""The models under test: trained with `trainer.fit.run`, converted with `converters`, made once.

Sections ask the store for "the run at 224 px" or "the int8 file at 128 px"; the store trains or
converts on first request and hands the same files to every later section of the invocation.
Each training run gets a fresh, empty feature-cache folder, so its wall time is a cold first run.
Every epoch's phase-1 weights and the time since the start of `fit` are kept beside the run
(`epochs.npz`, `epoch_snapshots`), so the training section can tell when the cached path first
reached an accuracy.
Files live in `<work>/models/size-<N>/`; `--reuse-models` uses those of an earlier invocation
(for re-running one section), otherwise each size is retrained and reconverted over them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from edge.core.fileio import write_text_atomic

#: TFLite variants by the converters' variant tag, in report order.
TFLITE_VARIANTS = ("float32", "float16", "dynamic", "int8")

Log = Callable[[str], None]


@dataclass
class TrainedModel:
    """One `trainer.fit.run` run and the files made from it."""

    size: int
    run_dir: Path
    model_keras: Path
    model_h5: Path
    manifest: Path
    test_accuracy: float
    wall_s: float
    epochs_run: int | None = None
    epochs_file: str | None = None  # EpochSnapshots.save: each epoch's weights and elapsed time
    variants: dict[str, str] = field(default_factory=dict)  # variant tag -> .tflite path
    convert: dict[str, Any] = field(default_factory=dict)  # variant tag -> converter check

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("run_dir", "model_keras", "model_h5", "manifest"):
            data[key] = str(data[key])
        return json.dumps(data, indent=1)

    @staticmethod
    def from_json(text: str) -> TrainedModel:
        data = json.loads(text)
        for key in ("run_dir", "model_keras", "model_h5", "manifest"):
            data[key] = Path(data[key])
        return TrainedModel(**data)


def epoch_snapshots(start: float) -> Any:
    """A Keras callback keeping each epoch's weights and its end time since `start`.

    `.save(path)` writes them as one .npz (read back by `load_snapshots`). Built in a function so
    importing this module does not import Keras.
    """
    import keras

    class EpochSnapshots(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.elapsed: list[float] = []
            self.weights: list[list[np.ndarray]] = []

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.elapsed.append(time.perf_counter() - start)
            self.weights.append(self.model.get_weights())

        def save(self, path: Path) -> None:
            arrays = {f"w{e}_{i}": w for e, ws in enumerate(self.weights)
                      for i, w in enumerate(ws)}
            np.savez(path, elapsed=np.array(self.elapsed), **arrays)

    return EpochSnapshots()


def load_snapshots(path: Path) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """(elapsed seconds per epoch, weights per epoch) written by EpochSnapshots.save."""
    with np.load(path) as data:
        elapsed = data["elapsed"]
        count = sum(1 for k in data.files if k.startswith("w0_"))
        weights = [[data[f"w{e}_{i}"] for i in range(count)] for e in range(len(elapsed))]
    return elapsed, weights


class ModelStore:
    """Trains, converts and remembers the models of one benchmark invocation."""

    def __init__(self, cfg: BenchConfig, log: Log) -> None:
        self.cfg, self.log = cfg, log
        self.root = cfg.work / "models"
        self._models: dict[int, TrainedModel] = {}
        self._test: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._failed: dict[int, str] = {}  # a size whose training failed is not retried

    def _record(self, size: int) -> Path:
        return self.root / f"size-{size}" / "record.json"

    def _save(self, model: TrainedModel) -> None:
        write_text_atomic(self._record(model.size), model.to_json())

    def trained(self, size: int) -> TrainedModel:
        """The run at `size` px (trained now unless this invocation or --reuse-models has it)."""
        if size in self._models:
            return self._models[size]
        record = self._record(size)
        if self.cfg.reuse_models and record.is_file():
            model = TrainedModel.from_json(record.read_text())
            if model.model_keras.is_file() and model.manifest.is_file():
                self.log(f"reusing the {size} px run in {model.run_dir}")
                self._models[size] = model
                return model
        if size in self._failed:
            raise RuntimeError(f"training at {size} px failed earlier in this run: "
                               f"{self._failed[size]}")
        try:
            model = self._train(size)
        except Exception as exc:
            self._failed[size] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            raise
        self._models[size] = model
        self._save(model)
        return model

    def fit_config(self, size: int, out: Path, cache_dir: Path, **overrides: Any) -> Any:
        """The trainer's FitConfig for this benchmark at `size` (trainer defaults otherwise)."""
        from trainer.fit.run import FitConfig

        kwargs: dict[str, Any] = dict(data=self.cfg.data_2c, out=out,
                                      weights=str(self.cfg.backbone), input_size=size,
                                      seed=self.cfg.seed, limit_per_class=self.cfg.limit_per_class,
                                      cache_dir=cache_dir, overwrite=True)
        if self.cfg.epochs is not None:
            kwargs["epochs"] = self.cfg.epochs
        kwargs.update(overrides)
        return FitConfig(**kwargs)

    def _train(self, size: int) -> TrainedModel:
        from trainer.fit.run import fit

        folder = self.root / f"size-{size}"
        cache = folder / "feature-cache"
        if cache.exists():
            shutil.rmtree(cache)  # a cold cache: the timing is a first run
        config = self.fit_config(size, folder / "run", cache)
        self.log(f"training the 2-class model at {size} px (trainer.fit.run, cached features)")
        start = time.perf_counter()
        snapshots = epoch_snapshots(start)
        result = fit(config, progress=False, callbacks=[snapshots])
        wall = time.perf_counter() - start
        shutil.rmtree(cache, ignore_errors=True)
        epochs_file = folder / "epochs.npz"
        snapshots.save(epochs_file)
        self.log(f"  {size} px: test accuracy {result.test_accuracy:.2%}, "
                 f"{result.wall_seconds:.1f} s (fit's own clock), {wall:.1f} s (ours)")
        return TrainedModel(size=size, run_dir=result.run_dir, model_keras=result.model_keras,
                            model_h5=result.model_h5, manifest=result.run_dir / "split.json",
                            test_accuracy=float(result.test_accuracy),
                            wall_s=float(result.wall_seconds),
                            epochs_run=result.summary.get("epochs_run"),
                            epochs_file=str(epochs_file))

    def variant(self, size: int, tag: str) -> Path:
        """The `.tflite` file of one variant at `size` px (converted now if needed)."""
        return self.variants(size, (tag,))[tag]

    def variants(self, size: int, tags: tuple[str, ...] = TFLITE_VARIANTS) -> dict[str, Path]:
        """The `.tflite` files of several variants at `size` px, converting the missing ones."""
        model = self.trained(size)
        missing = [t for t in tags if t not in model.variants
                   or not Path(model.variants[t]).is_file()]
        if missing:
            self._convert(model, missing)
            self._save(model)
        return {t: Path(model.variants[t]) for t in tags}

    def _convert(self, model: TrainedModel, tags: list[str]) -> None:
        from converters.export import ConvertRequest, convert_model
        from converters.formats import format_for

        out_dir = self.root / f"size-{model.size}" / "tflite"
        self.log(f"converting the {model.size} px model to {', '.join(tags)} (converters)")
        request = ConvertRequest(model=model.model_keras, formats=[format_for(t) for t in tags],
                                 out_dir=out_dir, split=model.manifest, force=True,
                                 show_progress=False)
        outcome = convert_model(request, say=lambda line: None)
        for result in outcome.results:
            info = result.to_dict()
            model.variants[result.format.variant] = str(result.target)
            model.convert[result.format.variant] = {
                k: info.get(k) for k in ("passed", "accuracy", "delta_points", "top1_agreement",
                                         "size_bytes", "convert_seconds", "io")}
            self.log(f"  {result.format.variant}: {result.size_bytes / 1e6:.2f} MB, "
                     f"converted in {result.convert_seconds:.1f} s")

    def test_split(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The run's test images (uint8, at `size` px) and label indices, decoded once."""
        if size not in self._test:
            from trainer.data.split import load_split

            self._test[size] = load_split(self.trained(size).manifest, "test", (size, size))
        return self._test[size]

    def test_images_file(self, size: int, count: int) -> Path:
        """The first `count` test images at `size` px saved as .npy, for timing child processes."""
        path = self.cfg.work / f"test_images_{size}px_{count}.npy"
        images, _ = self.test_split(size)
        np.save(path, np.ascontiguousarray(images[:count]))
        return path
