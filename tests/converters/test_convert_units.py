"""converters' pieces alone: sampling, bias correction, error lines, embedding, quiet output."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import DETECTORS

from converters.bias_correction import channel_shift, rounding_error
from converters.calibration import stratified_sample
from converters.embed import embed_contract
from converters.errors import ConvertError
from converters.formats import FORMATS, format_for, require_full_integer
from converters.quiet import one_line_error, quiet_output
from edge.core.contract import ModelContract
from edge.core.runtime import load_interpreter
from edge.core.tflite_metadata import read_contract, read_metadata_entries


def test_stratified_sample_keeps_class_shares_and_is_seeded() -> None:
    rows = [{"label": "a", "i": i} for i in range(700)] + [{"label": "b", "i": i}
                                                           for i in range(300)]
    sample = stratified_sample(rows, 100, seed=3)
    assert Counter(r["label"] for r in sample) == {"a": 70, "b": 30}
    assert sample == stratified_sample(rows, 100, seed=3)
    assert sample != stratified_sample(rows, 100, seed=4)
    assert len({(r["label"], r["i"]) for r in sample}) == 100  # no repeats
    rare = [*rows[:500], {"label": "c", "i": 0}]
    assert "c" in {r["label"] for r in stratified_sample(rare, 20, seed=0)}  # every class kept
    assert stratified_sample(rows[:5], 100, seed=0) == rows[:5]


def test_one_line_error_finds_the_sentence_in_converter_noise() -> None:
    noise = ("Could not translate MLIR to FlatBuffer.<unknown>:0: error: loc(callsite(fused["
             "\"MatrixInverse:\", \"m/inv/MatrixInverse@f\"])): 'tf.MatrixInverse' op is neither "
             "a custom op nor a flex op\n<unknown>:0: note: called from\n"
             "TF Select ops: MatrixInverse\nDetails:\n\ttf.MatrixInverse(...)\n")
    line = one_line_error(RuntimeError(noise))
    assert line == ("the model uses TensorFlow ops that TFLite built-ins do not have: "
                    "MatrixInverse")
    plain = "x: error: loc(fused[\"a\"]): 'tf.Foo' op failed\nmore\nlines"
    assert one_line_error(ValueError(plain)) == "'tf.Foo' op failed"
    assert one_line_error(ValueError("\n\nfirst real line\nsecond")) == "first real line"
    assert one_line_error(ValueError("")) == "ValueError"


def test_quiet_output_captures_python_and_native_writes() -> None:
    with quiet_output() as captured:
        print("python says hello")
        os.write(1, b"native stdout\n")
        os.write(2, b"native stderr\n")
    assert "python says hello" in captured.text
    assert "native stdout" in captured.text and "native stderr" in captured.text


def test_embedding_round_trips_and_replaces_an_earlier_contract(tmp_path: Path) -> None:
    model = (DETECTORS / "face_detection_short_range.tflite").read_bytes()
    first = ModelContract.for_labels(["with_mask", "without_mask"], 128, quantization="int8",
                                     metrics={"accuracy": 0.5})
    once = embed_contract(model, first)
    path = tmp_path / "m.tflite"
    path.write_bytes(once)
    assert read_contract(path) == first
    second = first.with_(metrics={"accuracy": 0.9})
    twice = embed_contract(once, second)
    path.write_bytes(twice)
    assert read_contract(path) == second
    assert list(read_metadata_entries(twice)).count("maskedge_metadata") == 1
    assert len(twice) == pytest.approx(len(once), abs=64)  # replaced, not appended
    # the model itself is untouched: same tensors, same answers
    outputs = []
    for data in (model, twice):
        p = tmp_path / f"{len(outputs)}.tflite"
        p.write_bytes(data)
        interpreter = load_interpreter(p).interpreter
        inp = interpreter.get_input_details()[0]
        x = np.random.default_rng(0).uniform(-1, 1, inp["shape"]).astype(np.float32)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    assert np.array_equal(outputs[0], outputs[1])


def test_format_table_names_every_quantization_once() -> None:
    assert [f.quantization for f in FORMATS] == ["none", "float16", "dynamic", "int8"]
    assert [f.file_name("model") for f in FORMATS] == [
        "model_float32.tflite", "model_float16.tflite", "model_dynamic.tflite",
        "model_int8.tflite"]
    assert format_for("none") is format_for("float32") is FORMATS[0]
    with pytest.raises(ValueError, match="choose from none, float16, dynamic, int8"):
        format_for("int4")


def test_weight_rounding_error_is_per_channel_symmetric_int8() -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(8, 3, 3, 5)) * np.array([0.01, 1, 100, 5, 0.5])  # in-channel scales
    for axis in (0, 3):
        error = rounding_error(weights, axis)
        others = tuple(i for i in range(4) if i != axis)
        scale = np.abs(weights).max(axis=others, keepdims=True) / 127
        assert np.all(np.abs(error) <= scale / 2 + 1e-12)
        rounded = (weights + error) / scale
        assert np.allclose(rounded, np.round(rounded)) and np.abs(rounded).max() <= 127 + 1e-9


def test_channel_shift_is_the_mean_output_change_of_rounded_weights() -> None:
    rng = np.random.default_rng(1)
    mean_in = rng.uniform(0, 6, size=4)
    conv = rng.normal(size=(6, 3, 3, 4))  # CONV_2D [out, kh, kw, in]
    error = rounding_error(conv, 0)
    # a constant input (every pixel = the mean) through the rounding error, one output pixel
    direct = np.einsum("okhi,i->o", error, mean_in)
    assert np.allclose(channel_shift("CONV_2D", conv, mean_in), direct)
    depthwise = rng.normal(size=(1, 3, 3, 8))  # multiplier 2 over 4 input channels
    error = rounding_error(depthwise, 3)
    direct = error.sum(axis=(0, 1, 2)) * np.repeat(mean_in, 2)
    assert np.allclose(channel_shift("DEPTHWISE_CONV_2D", depthwise, mean_in), direct)
    dense = rng.normal(size=(3, 4))  # FULLY_CONNECTED [out, in]
    assert np.allclose(channel_shift("FULLY_CONNECTED", dense, mean_in),
                       rounding_error(dense, 0) @ mean_in)


def test_a_float_model_is_not_full_integer() -> None:
    blazeface = (DETECTORS / "face_detection_short_range.tflite").read_bytes()
    with pytest.raises(ConvertError, match="float tensor"):
        require_full_integer(blazeface, "uint8")


def test_convert_defaults_are_the_convert_request_defaults() -> None:
    """`convert`'s --samples, --seed, --max-drop (and the other shared options) default to
    ConvertRequest's values, defined once in converters/defaults.py."""
    import dataclasses

    from typer.main import get_command

    from converters.cli import app
    from converters.export import ConvertRequest

    params = {p.name: p for p in get_command(app).commands["export"].params}  # type: ignore[attr-defined]
    fields = {f.name: f.default for f in dataclasses.fields(ConvertRequest)}
    shared = (set(params) & set(fields)) - {"model", "io"}  # --io: None means "uint8 for int8"
    assert {"samples", "seed", "max_drop", "bias_correction", "force", "threads"} <= shared
    for name in shared:
        assert params[name].default == fields[name], name
    assert (fields["samples"], fields["seed"], fields["max_drop"]) == (300, 0, 1.0)


def test_private_tensorflow_apis_exist_in_the_pinned_version() -> None:
    """converters/tf_private.py lists every TensorFlow internal `convert` uses; the installed
    TensorFlow is the pinned one and still has them all (what to do when it moves: that file)."""
    import re
    import tomllib

    import tensorflow as tf

    from converters.tf_private import TESTED_TENSORFLOW, missing_private_apis

    root = Path(__file__).resolve().parents[2]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {re.sub(r"\s", "", d) for group in deps["optional-dependencies"].values()
            for d in group if d.startswith(("tensorflow==", "tensorflow-cpu=="))}
    assert pins and all(p.split(";")[0].endswith(f"=={TESTED_TENSORFLOW}.*") for p in pins), pins
    assert tf.__version__.startswith(TESTED_TENSORFLOW + ".")
    assert missing_private_apis() == []
    used = "".join(p.read_text() for p in (root / "converters").glob("*.py")
                   if p.name != "tf_private.py")
    for module in ("mlir_quantize", "_experimental_calibrate_only", "schema_py_generated",
                   "flatbuffer_utils"):
        assert module in used  # still used: keep the list honest both ways


def test_bias_correction_gives_each_use_of_a_shared_layer_its_own_bias() -> None:
    """A layer called twice (the `--nose-band` backbone) shares one bias tensor in the converted
    model; each use sees other inputs, so each gets its own correction (not the sum of both)."""
    import keras
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    from converters.bias_correction import _correctable, _input_means, correct_biases

    rng = np.random.default_rng(2)
    pixels = keras.Input((6, 6, 3))
    shared = keras.layers.Conv2D(4, 3, name="shared")
    smaller = keras.layers.AveragePooling2D(2)(keras.layers.ZeroPadding2D(2)(pixels))  # 5 x 5
    twice = [shared(pixels), shared(smaller)]
    model = keras.Model(pixels, keras.layers.Concatenate()([keras.layers.Flatten()(t)
                                                            for t in twice]))
    shared.set_weights([rng.normal(size=(3, 3, 3, 4)) * np.array([0.01, 1, 100, 5]),
                        rng.normal(size=4)])
    images = rng.uniform(0, 1, (16, 6, 6, 3)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in images)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()

    def layers(data: bytes) -> tuple[object, list]:
        graph_model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
        return graph_model, _correctable(graph_model)

    before, ops = layers(calibrated)
    assert len(ops) == 2 and len({op.inputs[2] for _, op in ops}) == 1  # one shared bias
    corrected, report = correct_biases(calibrated, images)
    after, new_ops = layers(corrected)
    assert report.layers == 2 and len({op.inputs[2] for _, op in new_ops}) == 2
    means = _input_means(calibrated, {op.inputs[0] for _, op in ops}, images)

    def const(graph_model: object, index: int) -> np.ndarray:
        tensor = graph_model.subgraphs[0].tensors[index]
        data = bytes(graph_model.buffers[tensor.buffer].data)
        return np.frombuffer(data, np.float32).reshape(tensor.shape)

    bias = const(before, ops[0][1].inputs[2]).astype(np.float64)
    for (kind, op), (_, new_op) in zip(ops, new_ops, strict=True):
        shift = channel_shift(kind, const(before, op.inputs[1]).astype(np.float64),
                              means[op.inputs[0]])
        assert np.allclose(const(after, new_op.inputs[2]), bias - shift, atol=1e-6)
