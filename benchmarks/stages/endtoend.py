"""Section `endtoend`: detectors and the whole camera pipeline on face-mask-voc.

1. Photos: every detector (`edge.detection.detectors.DETECTORS`) inside
`edge.inference.pipeline.Pipeline` with the
   int8 classifier, scored by `edge.inference.evaluate` (VOC matching at IoU 0.5): detector latency,
   recall on masked faces, per-face accuracy, and detector time on 640x480 frames.
2. Video: the photos with one to four annotated faces made into a 640x480 video
   (`edge.video.videomaker`); the pipeline (default detector, int8, faces batched) and the reference
   projects' loop (same detector, Keras `predict` on each face) each run on it in their own
   process (`benchmarks.worker`); FPS, per-stage milliseconds, and the ratio.

The classifier is the input size the `sizes` section of this run recommends (the model the project
would ship), else the profile's main size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.context import SectionContext, run_child
from benchmarks.tables import fmt, image, pct, short, table

NAME = "endtoend"
FRAME = (640, 480)
MAX_FACES_IN_VIDEO = 4
WARMUP_FRAMES = 5


def detector_file(detectors_dir: Path, name: str) -> Path | None:
    """The local model file of a detector in ../shared/detectors (None for `none`)."""
    from edge.core.assets import DETECTOR_FILES

    return detectors_dir / DETECTOR_FILES[name].filename if name in DETECTOR_FILES else None


def e2e_size(ctx: SectionContext) -> tuple[int, str]:
    rec = (ctx.results.get("sizes") or {}).get("recommended")
    if rec:
        return int(rec["size"]), "recommended by this run's size sweep"
    return ctx.cfg.main_size, "the profile's main size (no size sweep in this run)"


def video_photos(voc: Path, frames: int, hold: int | None = None,
                 exclude: set[str] | None = None) -> tuple[list[Path], int]:
    """The photos of a VOC folder with 1-4 annotated faces (names in `exclude` left out), as
    many as `frames` need at `hold` frames each (None: spread over every such photo), and the
    hold."""
    from edge.inference.evaluate import load_voc

    photos = [item.path for item in load_voc(voc, exclude=exclude)
              if 1 <= len(item.annotations) <= MAX_FACES_IN_VIDEO and item.path.is_file()]
    hold = hold or max(1, math.ceil(frames / max(len(photos), 1)))
    return photos[: math.ceil(frames / hold)], hold


def video_info(made: Any, hold: int, pan: float = 0.0) -> dict[str, Any]:
    """What a result file says about a video `edge.video.videomaker.make_video` made."""
    return {"path": str(made.path), "frames": made.frames, "photos": made.photos, "hold": hold,
            "pan_px_per_frame": pan, "size": f"{FRAME[0]}x{FRAME[1]}",
            "unreadable": made.unreadable}


def make_test_video(ctx: SectionContext, hold: int | None = None,
                    pan: float = 0.0) -> dict[str, Any]:
    """The 640x480 video of photos with 1-4 annotated faces, each held for a few frames (enough
    photos for the profile's frame count); `hold` / `pan`: a steadier video of fewer photos, each
    held `hold` frames and moving `pan` pixels a frame (edge.video.videomaker)."""
    from edge.video.videomaker import make_video

    cfg = ctx.cfg
    photos, hold = video_photos(cfg.data_voc, cfg.video_frames + WARMUP_FRAMES, hold)
    steady = f"_hold{hold}_pan{pan:g}" if pan else ""
    target = cfg.work / f"voc_1to{MAX_FACES_IN_VIDEO}_faces_{FRAME[0]}x{FRAME[1]}{steady}.avi"
    ctx.log(f"  video: {len(photos)} photos x {hold} frames -> {target.name}")
    made = make_video(photos, target, size=FRAME, fps=30.0, hold=hold, pan=pan)
    return video_info(made, hold, pan)


def evaluate_detectors(ctx: SectionContext, int8: Path, threads: int) -> tuple[list, dict]:
    from edge.detection.detectors import DETECTORS, DetectorOptions, create_detector
    from edge.inference.classifier import ClassifierOptions, MaskClassifier
    from edge.inference.evaluate import MASKED, SMALL_FACE, evaluate, frame_latency, load_voc
    from edge.inference.pipeline import Pipeline, PipelineOptions

    cfg = ctx.cfg
    photos = load_voc(cfg.data_voc, limit=cfg.voc_photos)
    classifier = MaskClassifier(ClassifierOptions(model=int8, threads=threads, runtime="litert"))
    rows, extra = [], {}
    for name in DETECTORS:
        ctx.log(f"  detector {name} on {len(photos)} photos")
        try:
            detector = create_detector(DetectorOptions(
                name=name, model=detector_file(cfg.detectors, name), threads=threads,
                runtime="litert"))
        except Exception as exc:  # a missing model file is a row, not a crash
            rows.append({"detector": name, "status": "error", "error": str(exc)[:200]})
            continue
        pipeline = Pipeline.from_parts(detector, classifier, PipelineOptions(
            model=int8, detector=name, threads=threads))
        report = evaluate(pipeline, photos)
        frames = frame_latency(pipeline, photos, size=FRAME,
                               frames=min(40, len(photos)))
        row = {"detector": name, "status": "ok", "description": DETECTORS[name][1],
               "detect_ms_per_image": report["detect_ms_per_image"],
               "detect_ms_640x480": frames.get("detect_ms"),
               "recall_masked": report["recall"].get(MASKED),
               "recall_masked_min32": report[f"recall_{MASKED}_min{SMALL_FACE}px"],
               "masked_min32_faces": report[f"{MASKED}_min{SMALL_FACE}px_faces"],
               "recall_all": report["recall"].get("all"), "precision": report["precision"],
               "accuracy_on_found_faces": report["accuracy_on_found_faces"],
               "end_to_end": report["end_to_end"], "faces": report["faces"],
               "images": report["images"]}
        rows.append(row)
        extra = {"accuracy_on_annotated_boxes": report["accuracy_on_annotated_boxes"],
                 "annotated_faces": sum(v for k, v in report["faces"].items()
                                        if k in classifier.labels)}
        ctx.log(f"    recall masked {_p(row['recall_masked'])} (>=32 px "
                f"{_p(row['recall_masked_min32'])}), per-face accuracy "
                f"{_p(row['accuracy_on_found_faces'])}, {row['detect_ms_per_image']:.1f} ms/photo")
    return rows, extra


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def run(ctx: SectionContext) -> dict[str, Any]:
    from edge.detection.detectors import DEFAULT_DETECTOR

    cfg = ctx.cfg
    size, why = e2e_size(ctx)
    model = ctx.store.trained(size)
    int8 = ctx.store.variant(size, "int8")
    threads = max(cfg.threads)
    rows, extra = evaluate_detectors(ctx, int8, threads)
    video = make_test_video(ctx)
    # The default detector as a device runs it: the YuNet shipped in the package, calibrated.
    common = {"detector": DEFAULT_DETECTOR, "threads": threads, "video": video["path"],
              "warmup": WARMUP_FRAMES}
    ctx.log(f"  pipeline on the video ({DEFAULT_DETECTOR}, int8, {threads} threads)")
    pipeline = run_child({**common, "kind": "pipeline_video", "model": str(int8),
                          "frames": cfg.video_frames})
    ctx.log(f"    {_fps(pipeline)}")
    ctx.log(f"  reference loop on the video ({DEFAULT_DETECTOR}, Keras predict per face)")
    reference = run_child({**common, "kind": "reference_video", "model": str(model.model_keras),
                           "frames": cfg.reference_frames})
    ctx.log(f"    {_fps(reference)}")
    for run_result in (pipeline, reference):
        run_result["detector"], run_result["threads"] = DEFAULT_DETECTOR, threads
    matched = matched_ratio(pipeline, reference)
    video["faces_per_frame"] = pipeline.get("faces_per_frame")
    notes = []
    if any(r["detector"] == "none" for r in rows):
        notes.append("detector `none` treats the whole frame as one face (for kiosk cameras "
                     "framing one person); on street photos its box never matches a face at "
                     "IoU 0.5, so its recall is 0 by construction.")
    if pipeline.get("status") != "ok" or reference.get("status") != "ok":
        notes.append(f"video loop failed: pipeline {pipeline.get('error', 'ok')}; reference "
                     f"{reference.get('error', 'ok')}")
    return {"model": str(int8), "input_size": size, "model_choice": why,
            "photos": rows[0]["images"] if rows and rows[0].get("status") == "ok" else None,
            "detectors": rows, **extra, "video": video,
            "pipeline": pipeline if pipeline.get("status") == "ok" else None,
            "reference_loop": reference if reference.get("status") == "ok" else None,
            "ratio": matched, "notes": notes}


def matched_ratio(pipeline: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any] | None:
    """Pipeline FPS over the reference loop's FPS on the *same* frames (the reference, being slow,
    runs only the video's first frames; both skip the same warm-up frames)."""
    ref_ms = reference.get("per_frame_ms") or []
    pipe_ms = (pipeline.get("per_frame_ms") or [])[: len(ref_ms)]
    if not ref_ms or len(pipe_ms) < len(ref_ms):
        return None
    pipe_fps = 1000.0 * len(pipe_ms) / sum(pipe_ms)
    ref_fps = 1000.0 * len(ref_ms) / sum(ref_ms)
    return {"frames": len(ref_ms), "pipeline_fps": pipe_fps, "reference_fps": ref_fps,
            "ratio": pipe_fps / ref_fps,
            "same_faces": pipeline.get("per_frame_faces", [])[: len(ref_ms)]
            == reference.get("per_frame_faces")}


def _fps(result: dict[str, Any]) -> str:
    if result.get("status") != "ok":
        return f"{result.get('status')}: {result.get('error')}"
    stages = ", ".join(f"{k} {v:.2f} ms" for k, v in result["stages_ms"].items())
    return (f"{result['fps']:.1f} FPS ({stages}; {result['faces_per_frame']:.2f} faces/frame, "
            f"{result['frames']} frames)")


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's end-to-end section from this section's result `r`."""
    lines = [f"Classifier: `{short(r.get('model', '?'))}` ({r.get('input_size', '?')} px, "
             f"{r.get('model_choice', '')}). Photos: {r.get('photos', '?')} "
             "face-mask-voc photos through `edge.inference.pipeline.Pipeline` per detector "
             "(matching at IoU 0.5, `edge.inference.evaluate`). Recall on masked faces counts "
             "every annotated `with_mask` face, and separately those at least 32 px on their "
             "short side.", ""]
    rows = []
    for d in r.get("detectors", []):
        if d.get("status", "ok") != "ok":
            rows.append([d["detector"], f"**{d['status']}**: {d.get('error', '')}", *["-"] * 6])
            continue
        rows.append([d["detector"], fmt(d.get("detect_ms_per_image"), 1),
                     fmt(d.get("detect_ms_640x480"), 1), pct(d.get("recall_masked")),
                     pct(d.get("recall_masked_min32")), pct(d.get("precision")),
                     pct(d.get("accuracy_on_found_faces")), pct(d.get("end_to_end"))])
    lines += table(["detector", "detect ms / photo", "detect ms / 640x480", "recall masked",
                    "recall masked >=32 px", "precision", "per-face accuracy (found faces)",
                    "found and right"], rows)
    acc = r.get("accuracy_on_annotated_boxes")
    if acc is not None:
        lines += ["", f"Classifier alone on the annotated boxes: {pct(acc)} "
                  f"({r.get('annotated_faces', '?')} faces of the model's classes)."]
    p, ref = r.get("pipeline") or {}, r.get("reference_loop") or {}
    video = r.get("video") or {}
    if p:
        lines += ["", f"Pipeline on `{short(video.get('path', '?'))}` "
                  f"({video.get('frames', '?')} frames "
                  f"of {video.get('size', '?')}, {fmt(video.get('faces_per_frame'), 2)} faces "
                  f"per frame): detector `{p.get('detector')}`, {p.get('threads')} thread(s), "
                  "frames decoded beforehand (camera capture is not timed).", ""]
        stage_rows = []
        for name, run in (("maskedge pipeline (int8, batched faces)", p),
                          ("reference loop (same detector, Keras predict per face)", ref)):
            if not run:
                continue
            stages = run.get("stages_ms", {})
            stage_rows.append([name, fmt(run.get("fps"), 1),
                               fmt(stages.get("detect"), 2), fmt(stages.get("classify"), 2),
                               fmt(run.get("frame_ms", {}).get("p50_ms"), 2),
                               fmt(run.get("frame_ms", {}).get("p99_ms"), 2),
                               fmt(run.get("frames"))])
        lines += table(["loop", "FPS", "detect ms", "crop + classify ms", "frame p50 ms",
                        "frame p99 ms", "frames"], stage_rows)
        matched = r.get("ratio") or {}
        if matched:
            lines += ["", f"On the same first {matched['frames']} frames (the reference loop is "
                      f"too slow to run them all): pipeline {matched['pipeline_fps']:.1f} FPS, "
                      f"reference {matched['reference_fps']:.1f} FPS, "
                      f"**{matched['ratio']:.1f}x**"
                      + ("" if matched.get("same_faces") else
                         " (the two loops' detectors found different face counts on some "
                         "frames)") + "."]
    if ctx.get("plots", {}).get("pipeline_stages"):
        lines += ["", image(ctx["plots"]["pipeline_stages"], ctx["report"],
                            "per-stage pipeline time")]
    return lines
