"""Training-time augmentation with Keras preprocessing layers (the reference recipe's ranges).

rotation 20 degrees, zoom 15 %, shift 20 % each way, shear 0.15, horizontal flip, edges filled with
the nearest pixel -- as the reference `ImageDataGenerator` did. Works on raw 0-255 pixels (float),
so it can sit before the model's own preprocessing. Never part of a saved model.
"""

from __future__ import annotations

import keras

ROTATION_DEGREES = 20.0
ZOOM = 0.15
SHIFT = 0.2
SHEAR = 0.15


def build_augmenter(seed: int = 0) -> keras.Sequential:
    """A Sequential of random layers; call it with training=True on float pixels (N, H, W, 3)."""
    fill = "nearest"
    return keras.Sequential([
        keras.layers.RandomRotation(ROTATION_DEGREES / 360.0, fill_mode=fill, seed=seed),
        keras.layers.RandomZoom(ZOOM, ZOOM, fill_mode=fill, seed=seed + 1),
        keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode=fill, seed=seed + 2),
        keras.layers.RandomShear(SHEAR, SHEAR, fill_mode=fill, seed=seed + 3),
        keras.layers.RandomFlip("horizontal", seed=seed + 4),
    ], name="augment")
