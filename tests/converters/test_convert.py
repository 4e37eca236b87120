"""`convert` end to end on real models and real face-mask-2c images.

A small MobileNetV2 classifier is trained by `trainer.fit.run` (96 px, 100 images per class) and
converted to every variant; a tiny model (one conv layer, no training) on a real split manifest
covers the bad-input errors quickly. Every CLI call runs in-process through Typer's runner.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import BACKBONE, DATA_2C, DETECTORS
from PIL import Image
from support.builders import make_tiny_run
from typer.testing import CliRunner, Result

from converters.cli import app
from edge.core.tflite_metadata import read_contract
from edge.inference.classifier import ClassifierOptions, MaskClassifier
from trainer.data.split import load_split, read_manifest
from trainer.fit.artifacts import read_keras_contract, save_keras_model

SIZE = 96
VARIANTS = ("float32", "float16", "dynamic", "int8")


def convert(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Result, code: int = 2, says: str = "",
                          json_mode: bool = False) -> str:
    """Exit `code`, one `convert: error:` line ending stderr (the only line unless --json sent
    the status lines there), no traceback anywhere."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("convert: error: "), result.stderr
    assert [line for line in lines if line.startswith("convert: error")] == lines[-1:]
    if not json_mode:
        assert len(lines) == 1, result.stderr
    lines = lines[-1:]
    assert "Traceback" not in result.output
    assert says.lower() in lines[0].lower(), lines[0]
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tflite_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tflite"))


def leftovers(folder: Path) -> list[Path]:
    """Temporary files a write left behind (edge.core.fileio names them .<stem>.tmp-*)."""
    return [p for p in folder.iterdir() if ".tmp-" in p.name or p.name.startswith(".convert-")]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder from `trainer.fit.run`: MobileNetV2 at 96 px, 100 images per class."""
    from trainer.fit.run import FitConfig, fit

    root = tmp_path_factory.mktemp("convert-run")
    config = FitConfig(data=DATA_2C, out=root / "run", weights=str(BACKBONE), input_size=SIZE,
                       epochs=6, limit_per_class=100, seed=0, cache_dir=root / "cache")
    result = fit(config, progress=False)
    return result.run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder in seconds: a one-conv-layer model (untrained) + a split of 24 real images."""
    return make_tiny_run(tmp_path_factory.mktemp("convert-tiny"))


@pytest.fixture(scope="module")
def converted_all(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`convert model.h5 --all --json` once; its JSON report and output folder."""
    out = tmp_path_factory.mktemp("convert-all")
    result = convert(small_run / "model.h5", "--all", "--out-dir", out, "--json",
                     "--no-progress", "--max-drop", "100")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    report = json.loads(result.stdout)  # stdout is JSON only; status lines went to stderr
    return {"report": report, "out": out, "stderr": result.stderr}


# ---------------------------------------------------------------------------------------------
# The conversion


@pytest.mark.slow
def test_all_variants_convert_and_answer_like_keras(converted_all: dict, small_run: Path) -> None:
    report, out = converted_all["report"], converted_all["out"]
    variants = {v["variant"]: v for v in report["variants"]}
    assert tuple(variants) == VARIANTS
    assert [p.name for p in tflite_files(out)] == sorted(f"model_{v}.tflite" for v in VARIANTS)
    assert not leftovers(out)
    for name, v in variants.items():
        path = Path(v["path"])
        assert v["written"] and v["passed"] and path.is_file(), name
        assert v["size_bytes"] == path.stat().st_size > 100_000, name
        assert v["convert_seconds"] > 0 and v["samples"] == report["test_samples"] > 0, name
        assert 0.0 <= v["accuracy"] <= 1.0 and v["runtime"] == "litert", name
        # every line the user sees names what, how long, the size and the path
        assert f"{path}" in converted_all["stderr"]
    # float32 answers like Keras; quantized variants are smaller
    assert variants["float32"]["max_prob_diff"] < 1e-4
    assert variants["float32"]["top1_agreement"] == 1.0
    assert variants["float32"]["delta_points"] == 0.0
    sizes = {k: v["size_bytes"] for k, v in variants.items()}
    assert sizes["float32"] > 1.8 * sizes["float16"] > 1.5 * sizes["dynamic"]
    assert sizes["int8"] < 0.4 * sizes["float32"]
    # int8 takes camera pixels as they are: uint8 in, scale 1, zero point 0 (Rescaling inside)
    tensors = variants["int8"]["tensors"]
    assert tensors["input"]["dtype"] == "uint8" and tensors["output"]["dtype"] == "uint8"
    assert tensors["input"]["scale"] == pytest.approx(1.0) and tensors["input"]["zero_point"] == 0
    assert variants["float16"]["tensors"]["input"]["dtype"] == "float32"
    assert report["keras_accuracy"] == variants["float32"]["keras_accuracy"]
    assert report["device_command"] == f"edge run --camera 0 --model {variants['int8']['path']}"
    assert report["calibration"]["from"] == "train split"


@pytest.mark.slow
def test_metadata_round_trips_through_the_edge_reader(converted_all: dict,
                                                      small_run: Path) -> None:
    keras_contract = read_keras_contract(small_run / "model.h5")
    quantization = {"float32": "none", "float16": "float16", "dynamic": "dynamic",
                    "int8": "int8"}
    for v in converted_all["report"]["variants"]:
        contract = read_contract(v["path"])  # pure-Python FlatBuffer reader, no TensorFlow
        assert contract.labels == keras_contract.labels
        assert contract.input_size == keras_contract.input_size == (SIZE, SIZE)
        assert contract.output == keras_contract.output
        assert contract.quantization == quantization[v["variant"]]
        assert contract.input_format == keras_contract.input_format  # raw RGB 0-255
        assert contract.source["keras_sha256"] == sha256(small_run / "model.h5")
        assert contract.source["converted_from"] == "model.h5"
        assert contract.source["data_fingerprint"] == keras_contract.source["data_fingerprint"]
        assert contract.source["io"] == ("uint8" if v["variant"] == "int8" else "float32")
        manifest = Path(v["path"]).parent / contract.source["split_manifest"]
        assert manifest.resolve() == (small_run / "split.json").resolve()
        for key in ("accuracy", "keras_accuracy", "top1_agreement", "max_prob_diff"):
            assert contract.metrics[key] == v[key]
        assert contract.metrics["split"] == "test" and contract.metrics["passed_gate"] is True
        assert contract.metrics["keras_metrics"] == keras_contract.metrics
    int8 = read_contract(converted_all["out"] / "model_int8.tflite")
    train = read_manifest(small_run / "split.json").rows_of("train")
    assert int8.source["calibration"]["samples"] == len(train) < 300  # all of it (< --samples)


@pytest.mark.slow
def test_written_int8_file_reproduces_its_embedded_accuracy(converted_all: dict,
                                                            small_run: Path) -> None:
    path = converted_all["out"] / "model_int8.tflite"
    classifier = MaskClassifier(ClassifierOptions(model=path))
    images, labels = load_split(small_run / "split.json", "test", (SIZE, SIZE))
    accuracy = float((classifier.predict(images).argmax(1) == labels).mean())
    assert accuracy == read_contract(path).metrics["accuracy"]
    assert classifier.input_dtype == np.uint8


@pytest.mark.slow
def test_inspect_prints_the_contract_without_tensorflow(converted_all: dict) -> None:
    path = converted_all["out"] / "model_int8.tflite"
    text = convert("inspect", path)
    assert text.exit_code == 0, text.stderr
    for expected in ("with_mask, without_mask", "96x96", "quantization  int8",
                     "uint8 [1, 96, 96, 3], scale 1, zero point 0", "keras_sha256",
                     f"{path.stat().st_size:,} bytes"):
        assert expected in text.stdout, expected
    info = json.loads(convert("inspect", path, "--json").stdout)
    assert info["contract"]["labels"] == ["with_mask", "without_mask"]
    assert info["inputs"][0]["dtype"] == "uint8" and info["size_bytes"] == path.stat().st_size
    code = ("import sys; from typer.testing import CliRunner; from converters.cli import app; "
            f"r = CliRunner().invoke(app, ['inspect', {str(path)!r}]); "
            "assert r.exit_code == 0, r.output; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_accuracy_gate_refuses_the_file_and_force_keeps_it(small_run: Path,
                                                           converted_all: dict) -> None:
    target = small_run / "model_int8.tflite"  # the default output, beside the model
    target.write_bytes(b"a good file from before")
    failed = convert(small_run / "model.keras", "--max-drop", "-100", "--no-bias-correction",
                     "--json", "--no-progress")
    assert_one_line_error(failed, 1, says="accuracy gate: int8", json_mode=True)
    assert target.read_bytes() == b"a good file from before"  # never replaced
    assert not leftovers(small_run)
    plain = json.loads(failed.stdout)["variants"][0]
    assert plain["passed"] is False and plain["written"] is False and plain["path"] is None
    # same calibration images, with and without bias correction: correction brings int8 closer
    corrected = {v["variant"]: v for v in converted_all["report"]["variants"]}["int8"]
    assert corrected["max_prob_diff"] < plain["max_prob_diff"]

    forced = convert("export", small_run / "model.keras", "--max-drop", "-100", "--force",
                     "--io", "int8", "--samples", "20", "--no-progress")
    assert_one_line_error(forced, 1, says="kept anyway (--force)")
    assert "FAILED" in forced.stdout and "kept anyway" in forced.stdout
    contract = read_contract(target)
    assert contract.quantization == "int8" and contract.metrics["passed_gate"] is False
    assert contract.source["converted_from"] == "model.keras" and contract.source["io"] == "int8"
    assert contract.source["calibration"]["samples"] == 20
    classifier = MaskClassifier(ClassifierOptions(model=target))
    assert classifier.input_dtype == np.int8  # --io int8: int8 in, quantized by the classifier
    target.unlink()


@pytest.mark.slow
def test_broken_representative_set_fails_the_int8_gate(small_run: Path, tmp_path: Path) -> None:
    black = tmp_path / "black"
    black.mkdir()
    for i in range(4):
        Image.new("RGB", (SIZE, SIZE)).save(black / f"{i}.png")
    out = tmp_path / "out" / "int8.tflite"
    result = convert(small_run / "model.h5", "--quantize", "int8", "--representative", black,
                     "--out", out, "--no-progress")
    assert_one_line_error(result, 1, says="accuracy gate")
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


# ---------------------------------------------------------------------------------------------
# Bad input: one line, non-zero exit, no file


def test_missing_model_file_in_both_command_forms(tmp_path: Path) -> None:
    for args in (["nothere.h5"], ["export", "nothere.h5"], ["nothere.h5", "--all"]):
        assert_one_line_error(convert(*args), says="not found")


def test_truncated_and_non_model_files(tiny_run: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes((tiny_run / "model.h5").read_bytes()[:2000])
    assert_one_line_error(convert(truncated), says="truncated")
    text = tmp_path / "notes.h5"
    text.write_text("not a model\n")
    assert_one_line_error(convert(text), says="not a readable Keras model")
    zipped = tmp_path / "notes.keras"
    zipped.write_text("not a zip\n")
    assert_one_line_error(convert(zipped), says="not a readable Keras model")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\x08\x07")
    assert_one_line_error(convert(other), says=".h5 or .keras")
    assert not tflite_files(tmp_path)


def test_keras_model_without_maskedge_metadata(tmp_path: Path) -> None:
    plain = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    plain.save(tmp_path / "plain.h5")
    assert_one_line_error(convert(tmp_path / "plain.h5"), says="no maskedge metadata")


def test_unwritable_or_wrong_output_paths(tiny_run: Path, tmp_path: Path) -> None:
    model = tiny_run / "model.h5"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_one_line_error(convert(model, "--out", blocker / "m.tflite"), says="cannot write")
    assert_one_line_error(convert(model, "--out", tmp_path / "m.h5"), says="must end in .tflite")
    assert_one_line_error(convert(model, "--all", "--out", tmp_path / "m.tflite"),
                          says="--out-dir")
    assert_one_line_error(convert(model, "--all", "--out-dir", blocker), says="cannot write")
    assert_one_line_error(convert(model, "-q", "float16", "--io", "int8"), says="int8 only")
    assert not tflite_files(tmp_path) and not tflite_files(tiny_run)


def test_empty_unreadable_or_test_image_representative_sets(tiny_run: Path,
                                                            tmp_path: Path) -> None:
    model = tiny_run / "model.h5"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(convert(model, "--representative", empty, "--no-progress"),
                          says="is empty")
    junk = tmp_path / "junk"
    (junk / "with_mask").mkdir(parents=True)
    for i in range(3):
        (junk / "with_mask" / f"{i}.jpg").write_text("not a picture")
    assert_one_line_error(convert(model, "--representative", junk, "--no-progress"),
                          says="no readable images")
    assert_one_line_error(convert(model, "--representative", tmp_path / "nope",
                                  "--no-progress"), says="not found")
    manifest = read_manifest(tiny_run / "split.json")
    leaked = tmp_path / "leaked"
    leaked.mkdir()
    test_row = manifest.rows_of("test")[0]
    shutil.copy(manifest.root / test_row["path"], leaked / "copy.jpg")
    assert_one_line_error(convert(model, "--representative", leaked, "--no-progress"),
                          says="test split")
    assert not tflite_files(tiny_run)


def test_missing_split_manifest(tiny_run: Path, tmp_path: Path) -> None:
    assert_one_line_error(convert(tiny_run / "model.h5", "--split", tmp_path / "split.json"),
                          says="split manifest not found")


@keras.saving.register_keras_serializable(package="maskedge_tests")
class MatrixInverse(keras.layers.Layer):
    """A layer TFLite's built-in ops cannot run (tf.linalg.inv needs TF Select)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        square = tf.reshape(x[:, :4, :4, 0], (-1, 4, 4)) / 255.0 + tf.eye(4)
        return tf.reshape(tf.linalg.inv(square), (-1, 16))


def test_model_with_a_layer_the_converter_cannot_take(tiny_run: Path, tmp_path: Path) -> None:
    contract = read_keras_contract(tiny_run / "model.h5").with_(source={})
    pixels = keras.Input((32, 32, 3), name="pixels")
    out = keras.layers.Dense(1, activation="sigmoid")(MatrixInverse()(pixels))
    save_keras_model(keras.Model(pixels, out), contract, tmp_path)
    result = convert(tmp_path / "model.h5", "-q", "none", "--split", tiny_run / "split.json",
                     "--no-progress")
    assert_one_line_error(result, says="MatrixInverse")
    assert not tflite_files(tmp_path)


def test_interrupted_conversion_leaves_nothing_and_keeps_the_old_file(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import converters.export

    target = tmp_path / "tiny.tflite"
    target.write_bytes(b"the previous good file")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(converters.export, "check_tflite", interrupted)
    result = convert(tiny_run / "model.h5", "-q", "none", "--out", target, "--no-progress")
    assert_one_line_error(result, 130, says="interrupted")
    assert target.read_bytes() == b"the previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tflite"]


def test_tiny_model_converts_with_its_contract_beside_the_model(tiny_run: Path) -> None:
    result = convert(tiny_run / "model.h5", "-q", "dynamic", "--no-progress", "--max-drop", "100")
    assert result.exit_code == 0, result.stderr
    path = tiny_run / "model_dynamic.tflite"
    assert f"-> {path}" in result.stdout and "run it on the device:" in result.stdout
    assert result.stdout.rstrip().endswith(f"edge run --camera 0 --model {path}")
    assert read_contract(path).quantization == "dynamic"
    path.unlink()


def test_inspect_bad_inputs(tiny_run: Path, tmp_path: Path) -> None:
    assert_one_line_error(convert("inspect", tmp_path / "none.tflite"), says="not found")
    assert_one_line_error(convert("inspect", tiny_run / "model.h5"), says="not a TFLite model")
    blazeface = DETECTORS / "face_detection_short_range.tflite"
    assert_one_line_error(convert("inspect", blazeface), says="no maskedge metadata")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(blazeface.read_bytes()[:64])
    error = assert_one_line_error(convert("inspect", cut))
    assert "cut.tflite" in error


def test_help_is_fast_and_lists_both_commands() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c",
                           "import sys; from converters.cli import app; "
                           "assert 'tensorflow' not in sys.modules"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    result = convert("--help")
    assert result.exit_code == 0 and "export" in result.stdout and "inspect" in result.stdout
    export_help = convert("export", "--help").stdout
    for option in ("--quantize", "--all", "--representative", "--samples", "--io", "--max-drop",
                   "--force", "--out", "--json"):
        assert option in export_help
