"""The face-mask classifier on the device: a `.tflite` file, its contract, and batched inference.

`MaskClassifier` reads the labels, input size and output kind from the metadata inside the file
(`edge/core/tflite_metadata.py`), feeds raw RGB pixels in whatever type the model's input wants
(float32, uint8 or int8, quantized with the input's own scale and zero point), and returns class
probabilities. Faces of one frame go through in one batch. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.contract import ContractError, ModelContract
from edge.core.runtime import BatchRunner, load_interpreter
from edge.core.tflite_metadata import read_contract


def check_tensors(contract: ModelContract, inp: dict[str, Any], out: dict[str, Any],
                  path: str | Path) -> None:
    """ContractError unless the model's input (N, H, W, 3) and output (N, units) tensors are the
    ones its embedded contract describes (a file whose metadata lies is refused, not run)."""
    shape = [int(v) for v in inp["shape"]]
    want = [*contract.input_size, 3]
    if len(shape) != 4 or shape[1:] != want:
        raise ContractError(f"{path}: input tensor {shape[1:]} does not match its metadata "
                            f"(input size {want[0]}x{want[1]}, RGB): refused")
    units = 1 if contract.output == "sigmoid" else contract.num_classes
    out_shape = [int(v) for v in out["shape"]]
    if len(out_shape) != 2 or out_shape[1] != units:
        raise ContractError(f"{path}: output tensor {out_shape[1:]} does not match its metadata "
                            f"({units} {contract.output} unit(s) for {list(contract.labels)}): "
                            "refused")


@dataclass(frozen=True)
class ClassifierOptions:
    """How to run the classifier."""

    model: Path
    threads: int | None = None  # None lets the runtime choose
    runtime: str = "auto"  # auto | litert | tflite_runtime | tensorflow


class MaskClassifier:
    """Run a maskedge `.tflite` classifier on batches of RGB face images."""

    def __init__(self, options: ClassifierOptions) -> None:
        self.options = options
        self.contract: ModelContract = read_contract(options.model)
        loaded = load_interpreter(options.model, options.threads, options.runtime)
        self.runtime = loaded.runtime
        self._run = BatchRunner(loaded.interpreter)
        inp, out = self._run.input_detail, self._run.output_detail
        check_tensors(self.contract, inp, out, options.model)
        self.input_dtype = np.dtype(inp["dtype"])
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_dtype = np.dtype(out["dtype"])
        self._out_scale, self._out_zero = out["quantization"]

    @property
    def interpreter(self) -> Any:
        """The underlying TFLite interpreter (for measurements against bare calls)."""
        return self._run.interpreter

    @property
    def labels(self) -> tuple[str, ...]:
        return self.contract.labels

    @property
    def input_size(self) -> tuple[int, int]:
        return self.contract.input_size

    def to_input(self, images: np.ndarray) -> np.ndarray:
        """Raw RGB pixels as the input tensor wants them (float32, or quantized uint8/int8)."""
        if self.input_dtype == np.float32:
            return images.astype(np.float32)
        if self.input_dtype == np.uint8 and self._in_scale == 1.0 and self._in_zero == 0:
            return images.astype(np.uint8, copy=False)
        info = np.iinfo(self.input_dtype)
        q = np.round(images.astype(np.float32) / self._in_scale + self._in_zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _from_output(self, raw: np.ndarray) -> np.ndarray:
        if self._out_dtype == np.float32:
            return raw.astype(np.float32)
        return (raw.astype(np.float32) - self._out_zero) * self._out_scale

    def raw_outputs(self, images: np.ndarray) -> np.ndarray:
        """Model outputs (N, units) for images (N, H, W, 3) already at the model's input size."""
        n = len(images)
        if n == 0:
            return np.zeros((0, 1 if self.contract.output == "sigmoid" else len(self.labels)),
                            np.float32)
        return self._from_output(self._run(self.to_input(images)))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) for RGB images (N, H, W, 3) at the model's input size."""
        return self.contract.probabilities(self.raw_outputs(np.asarray(images)))

    def classify(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, C) for RGB crops of any size, resized here in one batch."""
        if not crops:
            return self.predict(np.zeros((0, *self.input_size, 3), np.uint8))
        # Imported here: OpenCV is needed only for resizing, and a bare tflite_runtime venv (the
        # benchmark's side interpreter) has numpy and the runtime alone.
        from edge.core.imageops import resize_to_input

        return self.predict(np.stack([resize_to_input(c, self.input_size) for c in crops]))
