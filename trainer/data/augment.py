"""Training-time augmentation with Keras preprocessing layers.

Two policies (`--augment`):
- "reference": rotation 20 degrees, zoom 15 %, shift 20 % each way, shear 0.15, horizontal flip,
  edges filled with the nearest pixel -- as the reference `ImageDataGenerator` did.
- "mild": rotation 10 degrees, zoom 5 %, shift 5 %, horizontal flip, brightness and contrast
  +-20 %. Small geometric moves keep the nose-and-mouth band (`--nose-band`) on the nose and
  mouth; the photometric ones stand in for other cameras (3-class ablation, benchmarks/RESULTS.md).
Works on raw 0-255 pixels (float), so it can sit before the model's own preprocessing. Never part
of a saved model.
"""

from __future__ import annotations

import keras

from trainer.config import AUGMENT_POLICIES as POLICIES

ROTATION_DEGREES = 20.0
ZOOM = 0.15
SHIFT = 0.2
SHEAR = 0.15


MILD_ROTATION_DEGREES = 10.0
MILD_SHIFT_ZOOM = 0.05
MILD_PHOTOMETRIC = 0.2


def build_augmenter(seed: int = 0, policy: str = "reference") -> keras.Sequential:
    """A Sequential of random layers; call it with training=True on float pixels (N, H, W, 3)."""
    fill = "nearest"
    if policy == "mild":
        return keras.Sequential([
            keras.layers.RandomRotation(MILD_ROTATION_DEGREES / 360.0, fill_mode=fill, seed=seed),
            keras.layers.RandomZoom(MILD_SHIFT_ZOOM, MILD_SHIFT_ZOOM, fill_mode=fill,
                                    seed=seed + 1),
            keras.layers.RandomTranslation(MILD_SHIFT_ZOOM, MILD_SHIFT_ZOOM, fill_mode=fill,
                                           seed=seed + 2),
            keras.layers.RandomFlip("horizontal", seed=seed + 4),
            keras.layers.RandomBrightness(MILD_PHOTOMETRIC, value_range=(0, 255), seed=seed + 5),
            keras.layers.RandomContrast(MILD_PHOTOMETRIC, seed=seed + 6),
        ], name="augment")
    if policy != "reference":
        raise ValueError(f"unknown augmentation policy {policy!r} (one of {POLICIES})")
    return keras.Sequential([
        keras.layers.RandomRotation(ROTATION_DEGREES / 360.0, fill_mode=fill, seed=seed),
        keras.layers.RandomZoom(ZOOM, ZOOM, fill_mode=fill, seed=seed + 1),
        keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode=fill, seed=seed + 2),
        keras.layers.RandomShear(SHEAR, SHEAR, fill_mode=fill, seed=seed + 3),
        keras.layers.RandomFlip("horizontal", seed=seed + 4),
    ], name="augment")
