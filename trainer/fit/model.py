"""The classifier: MobileNetV2 backbone + the reference head, taking raw RGB pixels.

    pixels (0-255) -> Rescaling(1/127.5, -1) -> MobileNetV2 (no top) -> AveragePooling2D (whole map)
    -> Flatten -> Dense 128 relu -> Dropout 0.5 -> Dense (1 sigmoid | C softmax)

The head layers are built once and shared by two models: the full classifier and `head_model`, which
takes the backbone's pooled features. Training the head on cached features therefore trains the full
classifier's weights directly (AveragePooling2D over the whole feature map then Flatten is the same
vector as the pooled feature).

With `--nose-band` (`build_classifier(nose_band=True)`) the same backbone also reads the
nose-and-mouth band of the face at twice the whole face's resolution:

    pixels (S x S) -> Rescaling -+-> AveragePooling2D 2x2 (S/2) -> MobileNetV2 -> pool, Flatten
                                 +-> Cropping2D (the band) -> MobileNetV2 -> pool, Flatten
    -> Concatenate -> the same head
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge.core.contract import ModelContract
from trainer.errors import WeightsError

WEIGHT_CHOICES = "imagenet | none | PATH to a no-top MobileNetV2 weights file"
#: The nose-and-mouth band of a face crop (fractions of its height and width), where a mask worn
#: under the nose shows; chosen by 5-fold cross-validation on training faces (2026-11-30).
NOSE_BAND = ((0.30, 0.80), (0.15, 0.85))


@keras.saving.register_keras_serializable(package="maskedge")
class Mirror(keras.layers.Layer):
    """The image mirrored left to right (a face and its mirror: `trainer ensemble --flip`).
    A registered layer, not a Lambda, so the file loads in safe mode; TFLite runs it as one
    REVERSE_V2 op on the quantized pixels."""

    def call(self, images: Any) -> Any:
        return keras.ops.flip(images, axis=2)


@dataclass
class Classifier:
    """The full model, its frozen backbone, and the head that reads pooled backbone features."""

    model: keras.Model  # raw pixels -> class output; what gets saved and converted
    backbone: keras.Model  # MobileNetV2 without top
    features: keras.Model  # raw pixels -> pooled backbone features (N, D)
    head: keras.Model  # pooled features -> class output, sharing layers with `model`


def resolve_weights(weights: str) -> str | None:
    """Keras `weights=` argument for 'imagenet', 'none' or a local weights file path."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {weights} (use {WEIGHT_CHOICES})")
    return str(path)


def build_backbone(input_size: tuple[int | None, int | None], weights: str = "imagenet",
                   alpha: float = 1.0) -> keras.Model:
    """MobileNetV2 without its top, taking inputs already scaled to [-1, 1] (None: any size)."""
    h, w = input_size
    try:
        return keras.applications.MobileNetV2(input_shape=(h, w, 3), alpha=alpha,
                                              include_top=False, weights=resolve_weights(weights))
    except Exception as exc:  # Keras raises a bare Exception when a download fails
        if isinstance(exc, WeightsError):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if weights == "imagenet" and not isinstance(exc, ValueError):
            raise WeightsError(f"could not download the ImageNet weights for MobileNetV2 "
                               f"({msg[:160]}); pass --weights PATH to a no-top MobileNetV2 "
                               "weights file (or --weights none)") from None
        if not isinstance(exc, (ValueError, OSError)):
            raise
        raise WeightsError(f"cannot load weights {weights!r} for MobileNetV2 alpha={alpha} "
                           f"at {f'{h}x{w}' if h else 'any size'}: {msg}") from None


def _pooled(backbone: keras.Model, x: Any, name: str) -> Any:
    """Backbone feature map of `x` averaged over the whole map, flattened to (N, D)."""
    fmap = backbone(x, training=False)  # BatchNorm stays in inference mode, also when fine-tuning
    pooled = keras.layers.AveragePooling2D(pool_size=tuple(fmap.shape[1:3]),  # the whole map
                                           name=f"{name}avg_pool")(fmap)
    return keras.layers.Flatten(name=f"{name}flatten")(pooled)


def band_rows_cols(h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Cropping2D margins ((top, bottom), (left, right)) that keep the nose-and-mouth band."""
    (r0, r1), (c0, c1) = NOSE_BAND
    return (round(r0 * h), h - round(r1 * h)), (round(c0 * w), w - round(c1 * w))


def build_classifier(contract: ModelContract, weights: str = "imagenet", alpha: float = 1.0,
                     dropout: float = 0.5, hidden: int = 128,
                     nose_band: bool = False, head_activation: str = "relu") -> Classifier:
    """Build the full classifier for `contract` with a frozen backbone.

    With `nose_band` the model sees the face twice through the same backbone: whole, at half
    the input size (2x2 average pooling), and the `NOSE_BAND` part of it at full size; the two
    pooled feature vectors are concatenated before the head. One input, so the contract and
    every later stage are unchanged.

    `head_activation` "relu6" bounds the hidden layer to [0, 6], as MobileNetV2 bounds its own
    activations: full-integer int8 quantizes each activation tensor with one scale, and an
    unbounded hidden layer whose few live units grow to thousands leaves the others one step.
    """
    h, w = contract.input_size
    backbone = build_backbone((None, None) if nose_band else (h, w), weights, alpha)
    backbone.trainable = False

    pixels = keras.Input(shape=(h, w, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(pixels)
    if nose_band:
        whole = keras.layers.AveragePooling2D(pool_size=2, name="half_size")(x)
        band = keras.layers.Cropping2D(band_rows_cols(h, w), name="nose_band")(x)
        flat = keras.layers.Concatenate(name="face_and_band")(
            [_pooled(backbone, whole, ""), _pooled(backbone, band, "band_")])
    else:
        flat = _pooled(backbone, x, "")

    dense = keras.layers.Dense(hidden, activation=head_activation, name="head_dense")
    drop = keras.layers.Dropout(dropout, name="head_dropout")
    units, activation = (1, "sigmoid") if contract.output == "sigmoid" else (
        contract.num_classes, "softmax")
    out_layer = keras.layers.Dense(units, activation=activation, name="head_output")

    model = keras.Model(pixels, out_layer(drop(dense(flat))), name="maskedge_classifier")
    features = keras.Model(pixels, flat, name="maskedge_features")
    feat_in = keras.Input(shape=(flat.shape[-1],), name="pooled_features")
    head = keras.Model(feat_in, out_layer(drop(dense(feat_in))), name="maskedge_head")
    return Classifier(model=model, backbone=backbone, features=features, head=head)


def unfreeze_top(backbone: keras.Model, layers: int) -> int:
    """Make the top `layers` backbone layers trainable, keeping every BatchNorm frozen.

    Returns how many layers hold trainable weights afterwards.
    """
    backbone.trainable = True
    cut = max(0, len(backbone.layers) - layers)
    for i, layer in enumerate(backbone.layers):
        trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
    return sum(1 for layer in backbone.layers if layer.trainable and layer.weights)


def prior_shift(class_weights: Mapping[str, float], labels: Sequence[str],
                tau: float) -> np.ndarray:
    """Logit offsets, one per label, that undo `tau` of a run's class weighting: -tau x log(w).

    Class-balanced weights (w proportional to 1 / training count) make a model decide as if every
    class were equally frequent, which over-calls a rare class. Adding tau x log(1 / w), that
    is tau x log(count) up to a constant, moves its decisions back toward the training
    frequencies (logit adjustment, Menon et al. 2021): 0 keeps them balanced, 1 undoes the
    weighting.
    """
    missing = [label for label in labels if label not in class_weights]
    if missing:
        raise ValueError(f"no class weight for {missing}")
    return -float(tau) * np.log(np.array([class_weights[x] for x in labels], np.float64))


def adjust_prior(model: keras.Model, class_weights: Mapping[str, float],
                 labels: Sequence[str], tau: float) -> dict[str, float]:
    """`shift_output` by `prior_shift`: the logit adjustment of `trainer fit --logit-adjust` and
    `trainer ensemble --logit-adjust`. Returns the offsets per label (rounded, for the record)."""
    offsets = prior_shift(class_weights, labels, tau)
    shift_output(model, offsets)
    return {k: round(float(v), 6) for k, v in zip(labels, offsets, strict=True)}


def shift_output(model: keras.Model, offsets: np.ndarray) -> None:
    """Add `offsets` (one per label) to the logits of `model`'s output layer, in place.

    Softmax: one offset per unit. Sigmoid (two labels): the unit's logit is label 1's minus
    label 0's, so it moves by offsets[1] - offsets[0].
    """
    layer = model.get_layer("head_output")
    kernel, bias = layer.get_weights()
    step = np.array([offsets[1] - offsets[0]]) if bias.shape[0] == 1 else np.asarray(offsets)
    layer.set_weights([kernel, (bias + step).astype(bias.dtype)])
