"""Count the multiply-accumulates of one inference from a Keras model's layers.

Conv2D: output positions x output channels x kernel area x input channels per group;
DepthwiseConv2D: output positions x output channels x kernel area; Dense: units x inputs per
leading position. Nested models (the MobileNetV2 backbone inside the classifier) are walked.
Batch-norm, activations, pooling and additions are not multiply-accumulates and are not counted
(they are a few percent of the work; TFLite folds batch-norm into the convolutions anyway).
"""

from __future__ import annotations

import math
from typing import Any


def _shape(tensor_or_shape: Any) -> tuple[int, ...]:
    shape = getattr(tensor_or_shape, "shape", tensor_or_shape)
    return tuple(int(d) for d in shape[1:])  # drop the batch dimension


def layer_macs(layer: Any) -> int:
    """Multiply-accumulates of one (non-nested) Keras layer for a batch of one."""
    kind = type(layer).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return 0
    out = _shape(layer.output)
    inp = _shape(layer.input)
    if kind == "Dense":
        return math.prod(out[:-1]) * inp[-1] * out[-1]
    kh, kw = layer.kernel_size
    positions = out[0] * out[1]
    if kind == "DepthwiseConv2D":
        return positions * out[-1] * kh * kw
    groups = getattr(layer, "groups", 1) or 1
    return positions * out[-1] * kh * kw * (inp[-1] // groups)


def count_macs(model: Any) -> dict[str, Any]:
    """Total multiply-accumulates per inference of `model`, and the split by layer type."""
    by_kind: dict[str, int] = {}
    for layer in _walk(model):
        macs = layer_macs(layer)
        if macs:
            kind = type(layer).__name__
            by_kind[kind] = by_kind.get(kind, 0) + macs
    return {"macs": sum(by_kind.values()), "by_layer_type": by_kind}


def _walk(model: Any):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested Model / Sequential
            yield from _walk(layer)
        else:
            yield layer
