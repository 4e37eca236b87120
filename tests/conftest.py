"""Shared test fixtures: where the real data, weights and detectors live (../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.console import quiet_tensorflow_logs

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKEDGE_SHARED", ROOT.parent / "shared"))
DATA_2C = SHARED / "datasets" / "face-mask-2c"
DATA_VOC = SHARED / "datasets" / "face-mask-voc"
BACKBONE = SHARED / "weights" / "mobilenet_v2_1.0_no_top.weights.h5"
DETECTORS = SHARED / "detectors"

quiet_tensorflow_logs()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set MASKEDGE_SHARED")
    return SHARED


def make_tiny_run(root: Path) -> Path:
    """A run folder in seconds in `root`: a one-conv-layer maskedge model (untrained) and a split
    of 24 real face-mask-2c images (12 per class); returns `root`."""
    import keras
    import numpy as np

    from edge.contract import ModelContract
    from trainer.artifacts import save_keras_model
    from trainer.datasets import discover
    from trainer.split import make_manifest, write_manifest

    dataset = discover(DATA_2C)
    samples = [s for label in dataset.labels
               for s in [x for x in dataset.samples if x.label == label][:12]]
    manifest = make_manifest(dataset.root, dataset.format, dataset.labels, samples,
                             np.arange(len(samples)), seed=0, fractions=(0.25, 0.25))
    write_manifest(manifest, root / "split.json")
    contract = ModelContract.for_labels(dataset.labels, 32,
                                        source={"split_manifest": "split.json"})
    keras.utils.set_random_seed(0)
    pixels = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(pixels)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    save_keras_model(keras.Model(pixels, out), contract, root)
    return root
