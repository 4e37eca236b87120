"""Face detectors on real photos, BlazeFace decoding golden values, detector file downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_VOC, DETECTORS

from edge.config.schema import DETECTOR_NAMES
from edge.core import assets
from edge.core.boxes import iou
from edge.core.fileio import sha256_file
from edge.detection.blazeface import (
    FULL_RANGE,
    SHORT_RANGE,
    decode_boxes,
    letterbox,
    sigmoid_scores,
    ssd_anchors,
    weighted_nms,
)
from edge.detection.detectors import DETECTORS as REGISTRY
from edge.detection.detectors import (
    DetectorOptions,
    WholeFrameDetector,
    YuNetDetector,
    create_detector,
)
from edge.inference.evaluate import load_voc, read_rgb

YUNET = DETECTORS / "face_detection_yunet_2023mar.onnx"
SHORT = DETECTORS / "face_detection_short_range.tflite"
FULL = DETECTORS / "face_detection_full_range.tflite"
# One person, large masked face (annotated box 95,253 - 195,357 in a 300x400 photo).
PORTRAIT = "maksssksksss10"


def annotated(name: str):
    item = next(i for i in load_voc(DATA_VOC) if i.path.stem == name)
    return read_rgb(item.path), item.annotations


# --- BlazeFace decoding, golden values -------------------------------------------------------

def test_anchor_layouts_match_mediapipe() -> None:
    short, full = ssd_anchors(SHORT_RANGE), ssd_anchors(FULL_RANGE)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # Short range: 16x16 cells x 2 anchors at stride 8, then 8x8 cells x 6 anchors at stride 16.
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[1], short[0])
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(short[512:518], np.repeat(short[512:513], 6, axis=0))
    np.testing.assert_allclose(short[-1], [7.5 / 8, 7.5 / 8])
    # Full range: 48x48 cells, one anchor each, row-major (x varies fastest).
    np.testing.assert_allclose(full[1], [1.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(full[48], [0.5 / 48, 1.5 / 48])


def test_decode_boxes_and_scores_golden() -> None:
    anchors = np.array([[0.5, 0.5], [0.25, 0.75]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[0, :4] = [0, 0, 64, 32]  # centred box, 64x32 px on a 128 input
    raw[1, :4] = [16, -16, 32, 32]
    boxes = decode_boxes(raw, anchors, 128)
    np.testing.assert_allclose(boxes[0], [0.25, 0.375, 0.75, 0.625])
    np.testing.assert_allclose(boxes[1], [0.25, 0.5, 0.5, 0.75])
    np.testing.assert_allclose(sigmoid_scores(np.array([0.0, 200.0, -200.0])),
                               [0.5, 1.0, 0.0], atol=1e-6)


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[0.10, 0.10, 0.30, 0.30], [0.12, 0.10, 0.32, 0.30],
                      [0.60, 0.60, 0.80, 0.80], [0.0, 0.0, 0.9, 0.9]], np.float32)
    scores = np.array([0.9, 0.6, 0.8, 0.3], np.float32)
    merged = weighted_nms(boxes, scores, iou_threshold=0.3, score_threshold=0.5)
    assert [round(s, 2) for _, s in merged] == [0.9, 0.8]
    x1 = (0.10 * 0.9 + 0.12 * 0.6) / 1.5
    np.testing.assert_allclose(merged[0][0], [x1, 0.10, x1 + 0.20, 0.30], atol=1e-6)
    np.testing.assert_allclose(merged[1][0], boxes[2])


def test_letterbox_keeps_aspect_ratio_and_scales_to_minus_one_one() -> None:
    frame = np.full((100, 200, 3), 255, np.uint8)
    tensor, fit = letterbox(frame, 128)
    assert tensor.shape == (1, 128, 128, 3) and tensor.dtype == np.float32
    assert fit.scale == pytest.approx(0.64) and fit.pad_x == 0 and fit.pad_y == 32
    assert tensor[0, 0, 0, 0] == pytest.approx(-1.0) and tensor[0, 64, 64, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["blazeface-short", "blazeface-full"])
def test_blazeface_finds_the_masked_portrait(name: str) -> None:
    rgb, truth = annotated(PORTRAIT)
    detector = create_detector(DetectorOptions(name, SHORT if name.endswith("short") else FULL))
    faces = detector.detect(rgb)
    assert faces, f"{name} found no face"
    assert iou(faces[0].box, truth[0].box) >= 0.5
    assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == []


# --- YuNet and the whole-frame detector -----------------------------------------------------

def test_yunet_matches_annotated_faces_on_a_group_photo() -> None:
    rgb, truth = annotated("maksssksksss0")  # three faces 30-50 px wide
    faces = create_detector(DetectorOptions("yunet", YUNET, input_width=0)).detect(rgb)
    matched = [max(iou(f.box, t.box) for f in faces) >= 0.5 for t in truth]
    assert sum(matched) >= 2, (faces, truth)
    assert all(0 < f.score <= 1 for f in faces)
    assert faces == sorted(faces, key=lambda f: -f.score)


def test_yunet_downscaled_input_maps_boxes_back_to_frame_pixels() -> None:
    rgb, truth = annotated(PORTRAIT)
    big = np.ascontiguousarray(np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1))  # 600x800
    small_input = YuNetDetector(YUNET, input_width=320)
    faces = small_input.detect(big)
    box = tuple(v * 2 for v in truth[0].box)
    assert faces and iou(faces[0].box, box) >= 0.5
    assert all(0 <= f.box[0] < f.box[2] <= 600 and 0 <= f.box[1] < f.box[3] <= 800
               for f in faces)


def test_whole_frame_detector_and_registry() -> None:
    faces = WholeFrameDetector().detect(np.zeros((48, 64, 3), np.uint8))
    assert [f.box for f in faces] == [(0.0, 0.0, 64.0, 48.0)]
    assert set(REGISTRY) == {"yunet", "yunet-stock", "blazeface-short", "blazeface-full", "none"}
    assert tuple(REGISTRY) == DETECTOR_NAMES  # the CLI's list, kept apart for a fast start
    with pytest.raises(ValueError, match="unknown detector 'retina'"):
        create_detector(DetectorOptions("retina"))


def test_missing_detector_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(assets.AssetError, match="--detector-model"):
        create_detector(DetectorOptions("yunet", tmp_path / "nope.onnx"))


# --- downloads: cached, sha256-verified, one clear line without internet ---------------------

@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "maskedge"


def test_pinned_hashes_are_those_of_the_shared_detector_files() -> None:
    for name, remote in assets.DETECTOR_FILES.items():
        assert sha256_file(DETECTORS / remote.filename) == remote.sha256, name
    assert "opencv_zoo" in assets.DETECTOR_FILES["yunet"].url


def test_fetch_downloads_once_verifies_and_caches(cache: Path) -> None:
    real = assets.DETECTOR_FILES["yunet"]
    local = assets.RemoteFile(real.filename, YUNET.as_uri(), real.sha256)  # no network: file://
    path = assets.fetch(local)
    assert path == cache / real.filename and sha256_file(path) == real.sha256
    gone = assets.RemoteFile(real.filename, "file:///nonexistent/x.onnx", real.sha256)
    assert assets.fetch(gone) == path  # served from the cache, no download attempted


def test_fetch_rejects_a_file_with_the_wrong_hash_and_keeps_nothing(cache: Path) -> None:
    wrong = assets.RemoteFile("yunet.onnx", YUNET.as_uri(), "0" * 64)
    with pytest.raises(assets.AssetError, match=r"sha256.*--detector-model PATH"):
        assets.fetch(wrong)
    assert not cache.exists() or not any(cache.iterdir())


def test_fetch_without_network_is_one_line_naming_the_option(cache: Path) -> None:
    offline = assets.RemoteFile("yunet.onnx", "http://127.0.0.1:9/yunet.onnx", "0" * 64)
    with pytest.raises(assets.AssetError) as info:
        assets.fetch(offline, timeout=5)
    message = str(info.value)
    assert "\n" not in message and "cannot download yunet.onnx" in message
    assert "--detector-model PATH" in message


def test_default_model_path_and_env_override(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.delenv(assets.MODEL_ENV, raising=False)
    assert assets.default_model_path() == (Path(assets.__file__).resolve().parents[2]
                                           / "models" / "face_mask_3c_student_int8.tflite")
    monkeypatch.setenv(assets.MODEL_ENV, str(tmp_path / "m.tflite"))
    assert assets.default_model_path() == tmp_path / "m.tflite"
    with pytest.raises(assets.AssetError, match="MASKEDGE_MODEL is missing"):
        assets.resolve_model(None)


def test_the_default_model_says_three_states_in_under_4_mb(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29's contract for the default: the three labels, int8, one small file."""
    from edge.core.tflite_metadata import read_contract

    monkeypatch.delenv(assets.MODEL_ENV, raising=False)
    path = assets.resolve_model(None)
    contract = read_contract(path)
    assert set(contract.labels) == {"with_mask", "without_mask", "mask_weared_incorrect"}
    assert contract.input_size == (128, 128)
    assert path.stat().st_size <= 4_000_000
    assert contract.metrics.get("passed_gate") is True
    for other in (assets.TWO_CLASS_MODEL_NAME, assets.ENSEMBLE_MODEL_NAME):
        assert (assets.project_models_dir() / other).is_file(), other
