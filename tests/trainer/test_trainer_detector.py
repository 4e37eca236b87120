"""`trainer fit-detector`: YuNet rebuilt in Keras from its ONNX file, fine-tuned on VOC boxes,
exported to a .tflite that the edge runtime runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DETECTORS, ROOT, SHARED

YUNET_ONNX = DETECTORS / "face_detection_yunet_2023mar.onnx"
DATA_ILC = SHARED / "datasets" / "face-mask-ilc-dev"


def test_keras_yunet_equals_the_shipped_stock_tflite() -> None:
    from edge.core.assets import shipped_yunet_model
    from edge.core.voc import load_voc
    from edge.detection.yunet import YuNetLite
    from edge.inference.evaluate import read_rgb
    from trainer.detector import build_yunet

    model = build_yunet(YUNET_ONNX)
    assert model.count_params() == 53104
    rgb = read_rgb(load_voc(DATA_ILC, limit=1)[0].path)
    bgr = np.ascontiguousarray(rgb[:224, :320, ::-1]).astype(np.float32)
    keras_out = model(bgr[None])
    lite = YuNetLite(shipped_yunet_model(stock=True))
    lite.detect_bgr(bgr.astype(np.uint8))
    for name, index in lite.outputs.items():
        assert np.abs(np.asarray(keras_out[name]) - lite.interpreter.get_tensor(index)).max() < 1e-4


def test_assignment_puts_faces_on_cells_inside_them() -> None:
    from trainer.detector import PRIORS, assign, decode_boxes

    truth = np.array([[100, 100, 180, 200]], np.float32)
    boxes = decode_boxes(np.zeros((len(PRIORS), 4), np.float32))
    fg, target, iou = assign(np.full(len(PRIORS), 0.5), boxes, truth)
    assert fg.sum() >= 1 and (target[fg] == truth[0]).all() and (iou[fg] >= 0).all()
    inside = PRIORS[fg]
    assert ((inside[:, 0] > 100) & (inside[:, 0] < 180) & (inside[:, 1] > 100)).all()
    assert not assign(np.zeros(len(PRIORS)), boxes, np.zeros((0, 4), np.float32))[0].any()


@pytest.mark.slow
def test_fit_detector_cli_writes_a_tflite_edge_runs(tmp_path: Path) -> None:
    data = tmp_path / "voc"
    (data / "images").mkdir(parents=True)
    (data / "annotations").mkdir()
    for xml in sorted((DATA_ILC / "annotations").glob("*.xml"))[:8]:
        (data / "annotations" / xml.name).write_bytes(xml.read_bytes())
        image = DATA_ILC / "images" / f"{xml.stem}.jpg"
        (data / "images" / image.name).write_bytes(image.read_bytes())
    out = tmp_path / "yunet_ft.tflite"
    done = subprocess.run([sys.executable, "-m", "trainer.cli", "fit-detector", str(data),
                           "--onnx", str(YUNET_ONNX), "--out", str(out), "--epochs", "1",
                           "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["photos"] == 8 and len(summary["history"]) == 1
    from edge.detection.detectors import DetectorOptions, create_detector
    from edge.inference.evaluate import read_rgb

    detector = create_detector(DetectorOptions(model=out, calibrate=False))
    rgb = read_rgb(next((data / "images").iterdir()))
    assert isinstance(detector.detect(rgb), list)
    bad = subprocess.run([sys.executable, "-m", "trainer.cli", "fit-detector", str(data),
                          "--onnx", str(tmp_path / "missing.onnx"), "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith(
        "trainer: error: YuNet ONNX file not found")
