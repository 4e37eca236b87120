"""The TFLite formats `convert` can write: one table, one function per format.

Modelled on Ultralytics' exporter: `FORMATS` lists every variant (the contract's quantization name,
the tag in the file name, what it is), and each variant has one function that takes the model,
exported once as a SavedModel by `export_saved_model`, and returns the `.tflite` FlatBuffer bytes.
(`TFLiteConverter.from_keras_model` does the same export internally on every call; exporting once
saves ~4 s per variant with `--all`.)

* float32 -- no quantization: the reference, should answer exactly like Keras;
* float16 -- float16 weights, float32 math: half the size, near-identical answers;
* dynamic -- int8 weights, float activations quantized on the fly (dynamic range);
* int8    -- full-integer: weights and activations int8, calibrated on representative images
             (raw RGB 0-255, as the model takes them), biases corrected for weight rounding
             (`converters.bias_correction`); input/output uint8, int8 or float32.

TensorFlow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConvertError
from converters.quiet import one_line_error, quiet_output

#: Input/output types a full-integer model can have; uint8 suits the camera (uint8 RGB frames).
INT8_IO = ("uint8", "int8", "float32")
DEFAULT_INT8_IO = "uint8"


@dataclass(frozen=True)
class Format:
    """One TFLite variant."""

    quantization: str  # the contract's name: none | float16 | dynamic | int8
    variant: str  # tag in the file name: <stem>_<variant>.tflite
    description: str
    convert: Callable[..., bytes]  # (saved_model_dir, representative, io, bias_correction)

    def file_name(self, stem: str) -> str:
        return f"{stem}_{self.variant}.tflite"


@contextlib.contextmanager
def _tensorflow_step(what: str) -> Iterator[None]:
    """Run a TensorFlow step quietly; its errors become ConvertError("cannot <what>: <line>")."""
    error: Exception | None = None
    with quiet_output() as captured:
        try:
            yield
        except ConvertError:
            raise
        except Exception as exc:  # the captured text is complete only once the block has ended
            error = exc
    if error is not None:
        raise ConvertError(f"cannot {what}: {one_line_error(error, captured.text)}")


def export_saved_model(model: Any, directory: Path) -> Path:
    """Export a Keras 3 model's inference call (training=False) as a SavedModel."""
    with _tensorflow_step("export the model for conversion"):
        import keras
        import tensorflow as tf

        archive = keras.export.ExportArchive()
        archive.track(model)
        signature = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                             signature)
        archive.write_out(str(directory))
    return directory


def _converter(saved_model: Path) -> Any:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model))


def to_float32(saved_model: Path, representative: np.ndarray | None = None,
               io: str = "float32", bias_correction: bool = False) -> bytes:
    return _converter(saved_model).convert()


def to_float16(saved_model: Path, representative: np.ndarray | None = None,
               io: str = "float32", bias_correction: bool = False) -> bytes:
    import tensorflow as tf

    converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def to_dynamic(saved_model: Path, representative: np.ndarray | None = None,
               io: str = "float32", bias_correction: bool = False) -> bytes:
    import tensorflow as tf

    converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def to_int8(saved_model: Path, representative: np.ndarray | None = None,
            io: str = DEFAULT_INT8_IO, bias_correction: bool = True) -> bytes:
    """Full-integer quantization calibrated on `representative` (N, H, W, 3) raw RGB pixels.

    Calibration records each tensor's range (TFLite's calibrator); with `bias_correction` the
    calibrated float model's biases absorb the mean error of int8 weight rounding
    (`converters.bias_correction`) before TFLite's quantizer turns it into int8.
    """
    import tensorflow as tf

    if representative is None or len(representative) == 0:
        raise ConvertError("int8 needs representative images to calibrate on")
    if io not in INT8_IO:
        raise ConvertError(f"--io must be one of {', '.join(INT8_IO)}, not {io!r}")

    def samples() -> Iterator[list[np.ndarray]]:
        for image in representative:
            yield [image[None].astype(np.float32)]  # batch of 1, raw pixels 0-255

    converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, io)
    converter.inference_output_type = getattr(tf, io)
    if not bias_correction:
        return require_full_integer(converter.convert(), io)

    from tensorflow.lite.python.convert import mlir_quantize

    from converters.bias_correction import correct_biases

    converter._experimental_calibrate_only = True  # stop after calibration: float model + ranges
    corrected, _ = correct_biases(converter.convert(), representative)
    quantized = mlir_quantize(corrected, input_data_type=getattr(tf, io),
                              output_data_type=getattr(tf, io))
    return require_full_integer(quantized, io)


def require_full_integer(tflite: bytes, io: str) -> bytes:
    """`tflite` unchanged if every tensor between its input and output is integer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    ends = set(graph.inputs) | set(graph.outputs)
    floats = [i for i, t in enumerate(graph.tensors)
              if t.type == schema.TensorType.FLOAT32 and not (io == "float32" and i in ends)]
    if floats:
        names = ", ".join(graph.tensors[i].name.decode()[-40:] for i in floats[:3])
        raise ConvertError(f"int8 conversion left {len(floats)} float tensor(s) (e.g. {names}): "
                           f"a layer has no int8 kernel")
    return tflite


FORMATS: tuple[Format, ...] = (
    Format("none", "float32", "float32 weights and math (reference)", to_float32),
    Format("float16", "float16", "float16 weights, float32 math", to_float16),
    Format("dynamic", "dynamic", "int8 weights, float activations (dynamic range)", to_dynamic),
    Format("int8", "int8", "full integer, calibrated on representative images", to_int8),
)
QUANTIZE_CHOICES = tuple(f.quantization for f in FORMATS)


def format_for(quantize: str) -> Format:
    """The format for a --quantize value (its variant tag, e.g. float32 for none, also works)."""
    for fmt in FORMATS:
        if quantize in (fmt.quantization, fmt.variant):
            return fmt
    choices = ", ".join(QUANTIZE_CHOICES)
    raise ConvertError(f"unknown --quantize {quantize!r}: choose from {choices}")


def convert_format(fmt: Format, saved_model: Path, representative: np.ndarray | None = None,
                   io: str = DEFAULT_INT8_IO, bias_correction: bool = True) -> bytes:
    """Run one format's conversion quietly; ConvertError with one line when TFLite refuses."""
    with _tensorflow_step(f"convert to {fmt.variant}"):
        data = fmt.convert(saved_model, representative, io, bias_correction)
    return bytes(data)
