"""The contract between stages: what a model file says about itself.

Every model maskedge writes (Keras `.h5`/`.keras` from the trainer, `.tflite` from the
converters) carries one JSON document, `ModelContract`, inside the file. It names the labels in
class order, the input size, how pixels are fed (raw RGB 0-255: preprocessing is a layer inside the
model), how to read the output (one sigmoid unit for two classes, softmax for more), the
quantization, where the model came from and how well it measured. Each stage reads it instead of
guessing.

This module is pure Python + numpy so the edge runtime can import it without TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

SCHEMA = "maskedge-model/1"
#: Name of the metadata entry inside a `.tflite` file and of the attribute inside an `.h5` file.
METADATA_KEY = "maskedge_metadata"
#: Name of the JSON member added to a `.keras` zip archive.
KERAS_MEMBER = "maskedge_metadata.json"

INPUT_FORMAT = "RGB, HWC, values 0-255 (raw pixels; the model normalises them itself)"
PREPROCESSING = "inside the model: Rescaling(1/127.5, offset=-1), as mobilenet_v2.preprocess_input"
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


class ContractError(ValueError):
    """A model file's metadata is missing or not a maskedge contract."""


@dataclass(frozen=True)
class ModelContract:
    """What every maskedge model file says about itself (see module docstring)."""

    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width) in pixels
    output: str  # "sigmoid" (one unit = P(labels[1])) or "softmax" (one unit per label)
    input_format: str = INPUT_FORMAT
    preprocessing: str = PREPROCESSING
    quantization: str = "none"  # one of QUANTIZATIONS
    architecture: str = "MobileNetV2"
    source: dict[str, Any] = field(default_factory=dict)  # fingerprints, run dir, split manifest
    metrics: dict[str, Any] = field(default_factory=dict)  # measured accuracy etc.
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        labels = tuple(str(x) for x in self.labels)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ContractError(f"need at least two distinct labels, got {list(labels)}")
        expected = "sigmoid" if len(labels) == 2 else "softmax"
        if self.output != expected:
            raise ContractError(f"{len(labels)} labels need a {expected} output, not {self.output}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ContractError(f"input size must be (height, width) >= 32, got {self.input_size}")
        if self.quantization not in QUANTIZATIONS:
            raise ContractError(f"unknown quantization {self.quantization!r}")

    @staticmethod
    def for_labels(labels: list[str] | tuple[str, ...], input_size: int | tuple[int, int],
                   **kwargs: Any) -> ModelContract:
        """Contract for a classifier over `labels` at a square or (h, w) input size."""
        size = (input_size, input_size) if isinstance(input_size, int) else input_size
        output = "sigmoid" if len(labels) == 2 else "softmax"
        return ModelContract(labels=tuple(labels), input_size=size, output=output, **kwargs)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def with_(self, **changes: Any) -> ModelContract:
        """A copy with some fields changed (dicts are replaced, not merged)."""
        return replace(self, **changes)

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["input_size"] = list(self.input_size)
        return json.dumps(data, indent=2, sort_keys=True)

    @staticmethod
    def from_json(text: str | bytes) -> ModelContract:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"model metadata is not valid JSON: {exc}") from None
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema != SCHEMA:
            raise ContractError(f"model metadata is not a maskedge contract (schema {schema!r})")
        known = set(ModelContract.__dataclass_fields__)
        try:
            return ModelContract(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ContractError(f"model metadata is incomplete: {exc}") from None

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Turn raw model outputs of shape (N, 1) or (N, C) into class probabilities (N, C)."""
        out = np.asarray(outputs, dtype=np.float32).reshape(len(outputs), -1)
        if self.output == "sigmoid":
            p = np.clip(out[:, :1], 0.0, 1.0)
            return np.concatenate([1.0 - p, p], axis=1)
        return out

    def targets(self, label_indices: np.ndarray) -> np.ndarray:
        """Training targets for integer labels: (N,) floats for sigmoid, (N,) ints for softmax."""
        idx = np.asarray(label_indices)
        return idx.astype(np.float32) if self.output == "sigmoid" else idx.astype(np.int64)
