"""Bias correction for int8: cancel the shift that rounding weights to int8 adds to each channel.

TFLite quantizes a layer's weights per output channel, symmetrically, to 127 steps of
max|w| / 127. Rounding changes every output channel by dW . x, whose expectation dW . E[x] is a
constant shift per channel. In MobileNetV2's first depthwise layer batch-norm folding makes some
channels' weights ~100x larger than their outputs, so that shift alone flips ~1 % of face-mask
predictions. Subtracting it from the layer's bias before quantizing removes it (empirical bias
correction: Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction"; NNCF's FastBiasCorrection). E[x] is measured on the representative images.

Works on the calibrated float TFLite model (`TFLiteConverter` with `_experimental_calibrate_only`),
whose weights are exactly the ones the quantizer will round: batch norm already folded in.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass

import numpy as np

#: Layers whose weights are rounded per output channel, and the axis of that channel.
CHANNEL_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
#: Representative images used to measure the layers' mean inputs (the mean settles quickly).
STATS_IMAGES = 200


@dataclass(frozen=True)
class CorrectionReport:
    """How many layers were corrected, measured on how many images."""

    layers: int
    images: int


def rounding_error(weights: np.ndarray, axis: int) -> np.ndarray:
    """Rounded minus float weights, per-channel symmetric int8 (scale = max|w| / 127)."""
    others = tuple(i for i in range(weights.ndim) if i != axis)
    scale = np.abs(weights).max(axis=others, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.round(weights / scale) * scale - weights


def channel_shift(kind: str, weights: np.ndarray, input_mean: np.ndarray) -> np.ndarray:
    """Expected change of each output channel, dW . E[x], for one layer."""
    error = rounding_error(weights, CHANNEL_AXIS[kind])
    if kind == "DEPTHWISE_CONV_2D":  # [1, kh, kw, in * multiplier]
        multiplier = weights.shape[3] // len(input_mean)
        return error.sum(axis=(0, 1, 2)) * np.repeat(input_mean, multiplier)
    # CONV_2D [out, kh, kw, in] and FULLY_CONNECTED [out, in]: the input channel is the last axis
    per_input = error.reshape(error.shape[0], -1, error.shape[-1]).sum(axis=1)
    return per_input @ input_mean


def _operator_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _correctable(model: object) -> list[tuple[str, object]]:
    """(kind, operator) of every layer with constant float weights and a constant bias."""
    names = _operator_names()
    graph = model.subgraphs[0]
    found = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        if kind not in CHANNEL_AXIS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        weights, bias = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
        if all(model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)
               for t in (weights, bias)):
            found.append((kind, op))
    return found


def _input_means(calibrated: bytes, tensor_ids: set[int],
                 images: np.ndarray) -> dict[int, np.ndarray]:
    """Mean of each listed tensor over images and positions, per channel (last axis)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=(
                                  OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    model_input = interpreter.get_input_details()[0]["index"]
    sums: dict[int, np.ndarray] = {}
    for image in images:
        interpreter.set_tensor(model_input, image[None].astype(np.float32))
        interpreter.invoke()
        for index in tensor_ids:
            values = interpreter.get_tensor(index)
            mean = values.reshape(-1, values.shape[-1]).astype(np.float64).mean(axis=0)
            sums[index] = sums[index] + mean if index in sums else mean
    return {index: total / len(images) for index, total in sums.items()}


def _own_copy(graph: object, index: int, users: Counter) -> int:
    """Index of a new copy of tensor `index` (same buffer for now; `users` counts it)."""
    tensor = copy.deepcopy(graph.tensors[index])
    suffix = f"/use{len(graph.tensors)}"
    tensor.name = tensor.name + (suffix.encode() if isinstance(tensor.name, bytes) else suffix)
    graph.tensors.append(tensor)
    users[tensor.buffer] += 1
    return len(graph.tensors) - 1


def correct_biases(calibrated: bytes, images: np.ndarray,
                   max_images: int = STATS_IMAGES) -> tuple[bytes, CorrectionReport]:
    """The calibrated float model with every correctable layer's bias corrected (see above)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    layers = _correctable(model)
    stats_images = images[:max_images]
    means = _input_means(calibrated, {op.inputs[0] for _, op in layers}, stats_images)
    users = Counter(t.buffer for t in graph.tensors)
    biases = {op.inputs[2]: np.frombuffer(bytes(model.buffers[graph.tensors[op.inputs[2]].buffer]
                                                .data), np.float32) for _, op in layers}
    corrected_tensors: set[int] = set()
    for kind, op in layers:
        weights_t = graph.tensors[op.inputs[1]]
        weights = np.frombuffer(bytes(model.buffers[weights_t.buffer].data),
                                np.float32).reshape(weights_t.shape)
        shift = channel_shift(kind, weights.astype(np.float64), means[op.inputs[0]])
        corrected = (biases[op.inputs[2]].astype(np.float64) - shift).astype(np.float32)
        if op.inputs[2] in corrected_tensors:  # a layer used twice (a shared backbone) sees
            op.inputs[2] = _own_copy(graph, op.inputs[2], users)  # other inputs: own bias
        corrected_tensors.add(op.inputs[2])
        bias_t = graph.tensors[op.inputs[2]]
        if users[bias_t.buffer] > 1:  # identical constants may share a buffer: give it its own
            users[bias_t.buffer] -= 1
            model.buffers.append(schema.BufferT())
            bias_t.buffer = len(model.buffers) - 1
        model.buffers[bias_t.buffer].data = np.frombuffer(corrected.tobytes(), dtype=np.uint8)
    report = CorrectionReport(layers=len(layers), images=len(stats_images))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), report
