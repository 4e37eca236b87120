"""Section `detector`: how many faces the detector finds, per class and size, and at what cost.

1. Photos: detector settings (before: YuNet ONNX at width 320, raw boxes, as v0.1 shipped; the
   detect-width policy at 320 / 480 / 640 / 800 / full size; the box calibration; the shipped
   `.tflite` YuNet that `edge run` uses by default; a lower threshold; BlazeFace full range) each
   inside `edge.pipeline.Pipeline` with the shipped classifier, scored by `edge.evaluate.compare`
   (IoU 0.5) on the held-out photos of face-mask-ilc-dev (`benchmarks/holdout/`: the settings and
   the box calibration were chosen on the rest) and on every face-mask-voc photo.
2. Video: the whole camera pipeline (default detector, shipped int8 classifier) on the section
   `endtoend`'s 640x480 video of face-mask-voc photos, in its own process, before and after.

Goal (issue 14): >= 90 % of faces >= 32 px found in every class, precision not below v0.1's,
pipeline >= 60 FPS on 640x480.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.context import SectionContext, run_child
from benchmarks.endtoend import WARMUP_FRAMES, make_test_video

NAME = "detector"
GOAL_RECALL = 0.90
GOAL_FPS = 60.0
BEFORE = "before: yunet onnx w320 raw"
AFTER = "default: shipped yunet tflite, calibrated"


def settings(cfg: Any) -> list[tuple[str, dict[str, Any]]]:
    """(label, pipeline options) per compared setting; the first is v0.1's, the second today's."""
    onnx = cfg.detectors / "face_detection_yunet_2023mar.onnx"
    rows: list[tuple[str, dict[str, Any]]] = [
        (BEFORE, {"detector_model": onnx, "detect_width": 320, "calibrate_boxes": False}),
        (AFTER, {}),
    ]
    for width in (480, 640, 800, 0):
        rows.append((f"yunet onnx w{width or 'full'} raw",
                     {"detector_model": onnx, "detect_width": width, "calibrate_boxes": False}))
    rows += [
        ("yunet onnx w640 calibrated", {"detector_model": onnx, "detect_width": 640}),
        ("shipped yunet, threshold 0.5", {"detector_threshold": 0.5}),
        ("blazeface-full", {"detector": "blazeface-full",
                            "detector_model": cfg.detectors / "face_detection_full_range.tflite"}),
    ]
    return rows[:2] if cfg.quick else rows  # quick (CI): before and after only


def photo_sets(cfg: Any) -> dict[str, list]:
    from benchmarks.holdout_split import ILC_TEST_LIST
    from edge.voc import load_voc, read_name_list

    ilc = cfg.shared / "datasets" / "face-mask-ilc-dev"
    held_out = load_voc(ilc, only=read_name_list(ILC_TEST_LIST))
    voc = load_voc(cfg.data_voc)
    if cfg.voc_photos:  # quick profile
        held_out, voc = held_out[: cfg.voc_photos // 2], voc[: cfg.voc_photos // 2]
    return {"face-mask-ilc-dev held-out": held_out, "face-mask-voc": voc}


def evaluate_settings(ctx: SectionContext, model: Path, threads: int) -> dict[str, Any]:
    from edge.evaluate import SMALL_FACE, compare
    from edge.evaluate import Setting as EvalSetting
    from edge.pipeline import PipelineOptions

    out: dict[str, Any] = {}
    for set_name, photos in photo_sets(ctx.cfg).items():
        rows = []
        for label, opts in settings(ctx.cfg):
            ctx.log(f"  {set_name}: {label} on {len(photos)} photos")
            base = PipelineOptions(model=model, threads=threads, runtime="litert",
                                   calibrate_boxes=opts.get("calibrate_boxes", True))
            setting = EvalSetting(opts.get("detector", "yunet"), opts.get("detector_model"),
                                  opts.get("detect_width"), opts.get("detector_threshold"))
            report = next(iter(compare([setting], base, photos).values()))
            large = report[f"recall_min{SMALL_FACE}px"]
            rows.append({"setting": label, "recall_min32px": large,
                         "faces_min32px": report[f"faces_min{SMALL_FACE}px"],
                         "min_class_recall_min32px": report["min_class_recall_min32px"],
                         "recall_all": report["recall"], "precision": report["precision"],
                         "accuracy_on_found_faces": report["accuracy_on_found_faces"],
                         "detect_ms_per_image": report["detect_ms_per_image"],
                         "detect_ms_640x480": report["latency_640x480"].get("detect_ms"),
                         "images": report["images"]})
            ctx.log(f"    min class recall >=32 px {rows[-1]['min_class_recall_min32px']:.3f}, "
                    f"precision {rows[-1]['precision']:.3f}, "
                    f"{rows[-1]['detect_ms_640x480']:.1f} ms per 640x480 frame")
        out[set_name] = rows
    return out


def run(ctx: SectionContext) -> dict[str, Any]:
    from edge.assets import default_model_path

    cfg = ctx.cfg
    threads = max(cfg.threads)
    model = default_model_path()
    photos = evaluate_settings(ctx, model, threads)
    video = make_test_video(ctx)
    common = {"kind": "pipeline_video", "detector": "yunet", "threads": threads,
              "video": video["path"], "model": str(model), "frames": cfg.video_frames,
              "warmup": WARMUP_FRAMES}
    loops = {}
    for label, extra in ((BEFORE, {"detector_model": str(cfg.detectors /
                                                          "face_detection_yunet_2023mar.onnx"),
                                   "detect_width": 320, "calibrate_boxes": False}),
                         (AFTER, {})):
        ctx.log(f"  pipeline on the 640x480 video: {label}")
        result = run_child({**common, **extra})
        result.pop("per_frame_ms", None)
        result.pop("per_frame_faces", None)
        loops[label] = result
        if result.get("status") == "ok":
            ctx.log(f"    {result['fps']:.1f} FPS, detect {result['stages_ms']['detect']:.2f} ms")
    return {"classifier": str(model), "threads": threads, "photos": photos, "video": video,
            "pipeline": loops, "goal": {"recall_min32px_every_class": GOAL_RECALL,
                                        "pipeline_fps": GOAL_FPS}}
