"""The TensorFlow internals `convert` relies on, in one list, pinned to the tested version.

TensorFlow's public converter API cannot (a) stop after calibration so that biases can be
corrected before quantizing, nor (b) read and write a `.tflite` FlatBuffer to embed the model
contract. Both go through modules outside its public API:

- `TFLiteConverter._experimental_calibrate_only` and `tensorflow.lite.python.convert.mlir_quantize`:
  int8 with bias correction (converters/formats.py);
- `tensorflow.lite.python.schema_py_generated` and `tensorflow.lite.tools.flatbuffer_utils`:
  FlatBuffer objects, read and write (embed.py, bias_correction.py, formats.py);
- `tensorflow.python.framework.convert_to_constants`: the fast feature-model conversion
  (trainer/fit/features.py, which falls back to the public path without it).

pyproject.toml pins TensorFlow to `TESTED_TENSORFLOW` and `tests/converters/test_convert_units.py`
checks that every entry still exists in the installed version. When TensorFlow moves: raise the pin,
run that test and `pytest tests/converters/test_convert.py` (every variant converted and checked
against Keras); if an entry is gone, `convert --no-bias-correction` still writes int8 through the
public API only, and the contract embedding must be ported to the `flatbuffers` package with the
published TFLite schema before the pin can move.
"""

from __future__ import annotations

import importlib

#: The TensorFlow release these internals were tested with (pyproject.toml pins the same).
TESTED_TENSORFLOW = "2.21"

#: (module, attribute or None) for every internal used; attribute None: the module itself.
PRIVATE_APIS: tuple[tuple[str, str | None], ...] = (
    ("tensorflow.lite.python.convert", "mlir_quantize"),
    ("tensorflow.lite.python.schema_py_generated", "ModelT"),
    ("tensorflow.lite.tools.flatbuffer_utils", "read_model_from_bytearray"),
    ("tensorflow.lite.tools.flatbuffer_utils", "convert_object_to_bytearray"),
    ("tensorflow.python.framework.convert_to_constants", "convert_variables_to_constants_v2"),
)
#: Set on a TFLiteConverter (an attribute it reads during `convert`).
CONVERTER_FLAGS = ("_experimental_calibrate_only",)


def missing_private_apis() -> list[str]:
    """The entries of `PRIVATE_APIS` / `CONVERTER_FLAGS` the installed TensorFlow lacks."""
    import tensorflow as tf

    missing = []
    for module, attribute in PRIVATE_APIS:
        try:
            found = importlib.import_module(module)
        except ImportError:
            missing.append(module)
            continue
        if attribute is not None and not hasattr(found, attribute):
            missing.append(f"{module}.{attribute}")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([], tf.Module())
    missing += [f"TFLiteConverter.{flag}" for flag in CONVERTER_FLAGS
                if not hasattr(converter, flag)]
    return missing
