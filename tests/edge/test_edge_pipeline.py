"""The pipeline on face-mask-voc photos: its faces match the annotated boxes and their labels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_VOC, DETECTORS, ROOT

from edge.core.boxes import iou_matrix
from edge.inference.evaluate import evaluate, load_voc, match, read_rgb
from edge.inference.pipeline import FaceResult, FrameResult, Pipeline, PipelineOptions
from edge.sinks.draw import GREEN, RED, annotate, label_colour

MODEL = Path(os.environ.get("MASKEDGE_MODEL") or ROOT / "models" / "face_mask_2c_int8.tflite")
YUNET = DETECTORS / "face_detection_yunet_2023mar.onnx"
needs_model = pytest.mark.skipif(not MODEL.is_file(),
                                 reason=f"shipped model {MODEL} not built yet")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(PipelineOptions(model=MODEL, detector_model=YUNET, detect_width=0))


@needs_model
def test_pipeline_faces_match_annotations_and_labels(pipeline: Pipeline) -> None:
    images = load_voc(DATA_VOC, limit=60)
    report = evaluate(pipeline, images)
    assert report["images"] == 60 and report["unreadable_images"] == 0
    # YuNet on full-size photos; most misses are faces under ~15 px (see the model card).
    assert report["recall"]["with_mask"] >= 0.45
    assert report["recall_with_mask_min32px"] >= 0.8
    assert report["precision"] >= 0.6
    assert report["accuracy_on_found_faces"] >= 0.75
    assert report["accuracy_on_annotated_boxes"] >= 0.75
    assert report["end_to_end"] >= 0.35
    assert report["report_on_found_faces"]["labels"] == ["with_mask", "without_mask"]


@needs_model
def test_process_returns_boxes_labels_scores_and_stage_timings(pipeline: Pipeline) -> None:
    rgb = read_rgb(DATA_VOC / "images" / "maksssksksss10.jpg")
    result = pipeline.process(rgb)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.label == "with_mask" and face.score > 0.5
    assert len(face.probabilities) == 2 and sum(face.probabilities) == pytest.approx(1, abs=1e-5)
    assert face.probabilities[0] == pytest.approx(face.score)
    assert iou_matrix(np.array([face.box]), np.array([[95, 253, 195, 357]]))[0, 0] >= 0.5
    assert set(result.timings_ms) == {"detect", "classify"}
    assert face.to_json()["label"] == "with_mask" and len(face.to_json()["box"]) == 4


def count_batches(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the pipeline's classifier is given from now on."""
    batches: list[int] = []
    original = pipeline.classifier.classify

    def spy(crops: list) -> np.ndarray:
        batches.append(len(crops))
        return original(crops)

    monkeypatch.setattr(pipeline.classifier, "classify", spy)
    return batches


@needs_model
def test_faces_of_one_frame_are_classified_in_one_batch(pipeline: Pipeline,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    batches = count_batches(pipeline, monkeypatch)
    rgb = read_rgb(DATA_VOC / "images" / "maksssksksss0.jpg")  # three people
    result = pipeline.process(rgb)
    assert len(result.faces) >= 2 and batches == [len(result.faces)]
    assert pipeline.process(np.zeros((120, 160, 3), np.uint8)).faces == ()
    assert batches == [len(result.faces)]  # no faces: no classifier call


@needs_model
def test_video_frames_reuse_class_probabilities_for_classify_every_frames(
        pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    video = Pipeline.from_parts(pipeline.detector, pipeline.classifier,
                                PipelineOptions(classify_every=3))
    batches = count_batches(video, monkeypatch)
    rgb = read_rgb(DATA_VOC / "images" / "maksssksksss0.jpg")  # three people
    frames = [video.process(rgb, video=True) for _ in range(7)]
    n = len(frames[0].faces)
    assert n >= 2 and batches == [n, n, n]  # frames 0, 3 and 6 are classified
    assert [f.faces[0].reused for f in frames] == [0, 1, 2, 0, 1, 2, 0]
    assert frames[1].faces[0].probabilities == frames[0].faces[0].probabilities
    assert frames[1].faces[0].to_json()["reused"] == 1
    assert "reused" not in frames[0].faces[0].to_json()
    # a face that moved away (no overlap) is classified afresh; photos never reuse
    shifted = np.roll(rgb, rgb.shape[1] // 2, axis=1)
    video.process(shifted, video=True)
    assert batches[-1] >= 1
    batches.clear()
    photos = [video.process(rgb) for _ in range(3)]
    assert batches == [n] * 3 and all(f.reused == 0 for r in photos for f in r.faces)


@needs_model
def test_detect_every_n_video_frames_keeps_the_faces_between(pipeline: Pipeline) -> None:
    video = Pipeline.from_parts(pipeline.detector, pipeline.classifier,
                                PipelineOptions(detect_every=2, classify_every=1))
    rgb = read_rgb(DATA_VOC / "images" / "maksssksksss0.jpg")
    frames = [video.process(rgb, video=True) for _ in range(4)]
    assert [f.timings_ms["detect"] > 0 for f in frames] == [True, False, True, False]
    assert [len(f.faces) for f in frames] == [len(frames[0].faces)] * 4
    assert frames[1].faces[0].box == frames[0].faces[0].box
    blank = np.zeros_like(rgb)  # a photo is always detected afresh, even between video frames
    assert video.process(blank).faces == ()


def test_edge_run_help_states_the_pipeline_video_defaults() -> None:
    """`edge run --help` names the defaults without importing the pipeline: they must agree."""
    import typer

    from edge.cli import app
    from edge.inference.pipeline import DEFAULT_CLASSIFY_EVERY, DEFAULT_DETECT_EVERY

    params = {p.name: p for p in typer.main.get_command(app).commands["run"].params}
    assert f"[default: {DEFAULT_CLASSIFY_EVERY}]" in params["classify_every"].help
    assert f"[default: {DEFAULT_DETECT_EVERY}]" in params["detect_every"].help
    assert PipelineOptions().detect_every == DEFAULT_DETECT_EVERY


@needs_model
def test_whole_frame_mode_classifies_the_frame_as_one_face() -> None:
    kiosk = Pipeline(PipelineOptions(model=MODEL, detector="none"))
    rgb = read_rgb(DATA_VOC / "images" / "maksssksksss10.jpg")
    result = kiosk.process(rgb)
    h, w = rgb.shape[:2]
    assert len(result.faces) == 1 and result.faces[0].box == (0.0, 0.0, float(w), float(h))


def test_greedy_matching_takes_best_scores_first() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    found = np.array([[1, 1, 10, 10], [0, 0, 11, 11], [21, 21, 31, 31]], float)
    matched = match(truth, found, np.array([0.5, 0.9, 0.8]))
    assert matched.tolist() == [1, 2, -1]


def face(label: str, box: tuple[float, float, float, float], score: float = 0.9) -> FaceResult:
    return FaceResult(box, label, score, (1 - score, score), 0.9)


def test_drawing_boxes_labels_and_fps() -> None:
    rgb = np.full((240, 320, 3), 128, np.uint8)
    result = FrameResult((face("with_mask", (20, 40, 120, 160)),
                          face("without_mask", (180, 40, 280, 160))))
    bgr = annotate(rgb, result, fps=42.0)
    assert bgr.shape == rgb.shape and rgb.max() == 128  # the frame itself is untouched
    assert tuple(bgr[100, 20]) == GREEN and tuple(bgr[100, 180]) == RED
    assert label_colour("with_mask") == GREEN and label_colour("without_mask") == RED
    assert (bgr[:20, :100] != 128).any()  # the FPS banner
