"""The edge runtime never imports TensorFlow, and falls back LiteRT -> tflite_runtime -> tf.lite.

Each check runs in a fresh interpreter whose PYTHONPATH starts with a folder of stand-in packages
that raise ImportError (and leave a marker file when something tries to import them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_VOC, DETECTORS, ROOT

from edge.core.console import TF_LOG_LEVEL

MODEL = Path(os.environ.get("MASKEDGE_MODEL") or ROOT / "models" / "face_mask_2c_int8.tflite")
YUNET = DETECTORS / "face_detection_yunet_2023mar.onnx"
needs_model = pytest.mark.skipif(not MODEL.is_file(),
                                 reason=f"shipped model {MODEL} not built yet")


def blocker_dir(tmp_path: Path, *packages: str) -> tuple[Path, Path]:
    """A folder of packages that refuse to import; returns (folder, marker folder)."""
    root, markers = tmp_path / "blocked", tmp_path / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    for name in packages:
        pkg = root / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(
            "import pathlib\n"
            f"pathlib.Path({str(markers)!r}, {name!r}).touch()\n"
            f"raise ImportError('{name} is blocked for this test')\n")
    return root, markers


def run_python(code: str, blocked: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)]),
           "TF_CPP_MIN_LOG_LEVEL": TF_LOG_LEVEL}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


@needs_model
def test_edge_run_works_with_tensorflow_and_keras_unimportable(tmp_path: Path) -> None:
    blocked, markers = blocker_dir(tmp_path, "tensorflow", "keras", "tf_keras")
    events, video = tmp_path / "events.jsonl", tmp_path / "out.mp4"
    photos = sorted((DATA_VOC / "images").glob("*.jpg"))[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        (folder / p.name).symlink_to(p)
    argv = ["run", "--source", str(folder), "--model", str(MODEL), "--detector-model",
            str(YUNET), "--json", str(events), "--save", str(video), "--quiet"]
    code = (
        "import sys, json\n"
        "from edge.cli import app\n"
        "try:\n"
        f"    app({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras'))\n"
        "print('MODULES=' + json.dumps(loaded))\n"
        "sys.exit(code)\n")
    proc = run_python(code, blocked)
    assert proc.returncode == 0, proc.stderr
    assert "MODULES=[]" in proc.stdout
    assert not list(markers.iterdir()), "something tried to import TensorFlow or Keras"
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert len(lines) == 3 and all("faces" in x for x in lines)
    assert video.stat().st_size > 0


def test_importing_every_edge_module_needs_no_tensorflow(tmp_path: Path) -> None:
    blocked, markers = blocker_dir(tmp_path, "tensorflow", "keras")
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                     for p in (ROOT / "edge").rglob("*.py") if p.stem != "__main__")
    assert "edge.core.contract" in modules and "edge.sinks.mqtt" in modules
    code = ("import importlib\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "print('ok')\n")
    proc = run_python(code, blocked)
    assert proc.returncode == 0, proc.stderr
    assert not list(markers.iterdir())


@needs_model
@pytest.mark.slow
def test_auto_falls_back_past_litert_and_missing_tflite_runtime_to_tensorflow(
        tmp_path: Path) -> None:
    blocked, markers = blocker_dir(tmp_path, "ai_edge_litert", "tflite_runtime")
    code = (
        "import numpy as np\n"
        "from edge.inference.classifier import MaskClassifier, ClassifierOptions\n"
        f"k = MaskClassifier(ClassifierOptions({str(MODEL)!r}))\n"
        "p = k.predict(np.zeros((2, *k.input_size, 3), np.uint8))\n"
        "print('RUNTIME=' + k.runtime, p.shape)\n")
    proc = run_python(code, blocked)
    assert proc.returncode == 0, proc.stderr
    assert "RUNTIME=tensorflow (2, 2)" in proc.stdout
    assert {p.name for p in markers.iterdir()} == {"ai_edge_litert", "tflite_runtime"}


@needs_model
def test_no_runtime_at_all_is_one_clear_error(tmp_path: Path) -> None:
    blocked, _ = blocker_dir(tmp_path, "ai_edge_litert", "tflite_runtime", "tensorflow")
    code = ("import sys\nfrom edge.cli import app\n"
            f"app(['run', '--source', {str(tmp_path)!r}, '--model', {str(MODEL)!r}, "
            f"'--detector', 'none'])\n")
    proc = run_python(code, blocked)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("edge: error: no TFLite runtime could load")
    for name in ("litert", "tflite_runtime", "tensorflow"):
        assert name in err
    assert "Traceback" not in proc.stderr


@needs_model
def test_named_runtime_that_is_not_installed_is_a_usage_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    result = CliRunner().invoke(app, ["run", "--source", str(tmp_path), "--model", str(MODEL),
                                      "--detector", "none", "--runtime", "tflite_runtime"])
    assert result.exit_code == 2
    assert "tflite_runtime: not installed" in result.output


def test_runtime_order_and_litert_is_used_here() -> None:
    from edge.core.runtime import RUNTIMES, available_runtimes

    assert [name for name, _ in RUNTIMES] == ["litert", "tflite_runtime", "tensorflow"]
    assert available_runtimes()[0] == "litert"
    # Listing runtimes imports none of them: checked in a fresh interpreter, since other tests
    # of this session may have imported TensorFlow already.
    code = ("import sys; from edge.core.runtime import available_runtimes; available_runtimes(); "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
