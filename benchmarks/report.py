"""Render `RESULTS.md` from the section result files: tables, machine, versions, date, targets.

Pure functions from dicts to Markdown (no measurement, no TensorFlow), so the report can be
re-rendered from the JSON files alone and tested without running anything.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.targets import check_targets

SECTION_ORDER = ("sizes", "latency", "accuracy", "roofline", "endtoend", "detector", "training",
                 "integrations", "scaling")
SECTION_TITLES = {
    "latency": "Classifier latency per image (batch of one)",
    "accuracy": "Accuracy on the trainer's leak-free test split",
    "sizes": "Input size sweep",
    "endtoend": "End to end on face-mask-voc",
    "detector": "Detector: faces found per class and size, and the cost",
    "training": "Training: cached features vs the reference recipe",
    "scaling": "Training at scale: memory and time against data size, strategies",
    "roofline": "Roofline: distance to the CPU's nominal peak",
    "integrations": "Integrations: what tracking, MQTT, snapshots and the dashboard cost",
}


def fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    """A number for a table cell: fixed digits, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}{unit}"
    return f"{value}{unit}"


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100.0 * value:.{digits}f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (cells already formatted as strings)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def short(path: Any) -> str:
    """A path as the reader can use it: relative to the repository when inside it."""
    from benchmarks.config import REPO

    text = str(path)
    prefix = str(REPO) + os.sep
    return text[len(prefix):] if text.startswith(prefix) else text


def image(path: Path, report_path: Path, alt: str) -> str:
    rel = os.path.relpath(path, report_path.parent)
    return f"![{alt}]({Path(rel).as_posix()})"


# ----------------------------------------------------------------------------- sections


def render_latency(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    imgs = r.get("images", {})
    lines = [f"{imgs.get('n', '?')} test images at {imgs.get('size', '?')} px cycled through, "
             f"one image per call; each row is a separate process that loads and runs only that "
             f"variant (warm-up first, then timed calls; tflite_runtime rows a tenth as many, as "
             f"they are about 10x slower). Speed-up is Keras `predict` p50 over the row's p50 "
             f"at the same thread count.", ""]
    rows = []
    for row in r.get("rows", []):
        if row.get("status") != "ok":
            status = "does not load" if row.get("does_not_load") else row.get("status")
            rows.append([row["label"], row.get("runtime", "-"), row["threads"],
                         f"**{status}**: {row.get('error', '')}", *["-"] * 8])
            continue
        rows.append([row["label"], row.get("runtime", "-"), row["threads"],
                     fmt(row.get("load_s", 0) * 1000, 0), fmt(row.get("first_call_ms"), 1),
                     fmt(row["p50_ms"]), fmt(row["p90_ms"]), fmt(row["p99_ms"]),
                     fmt(row["items_per_s"], 1), fmt(row.get("file_mb"), 2),
                     fmt(row.get("peak_rss_mib"), 0), fmt(row.get("speedup"), 1, "x")])
    lines += table(["variant", "runtime", "threads", "load ms", "first call ms", "p50 ms",
                    "p90 ms", "p99 ms", "img/s", "file MB", "peak RSS MiB", "speed-up"], rows)
    side = r.get("tflite_runtime_python")
    if side:
        lines += ["", f"The tflite_runtime rows ran under a side interpreter, "
                  f"`{short(side['python'])}` ({side['runtime']}, numpy {side['numpy']}, "
                  f"Python {side['python_version']}): tflite_runtime 2.14 needs numpy<2 "
                  "(`--tflite-runtime-python PATH` picks another, `none` skips them)."]
    over = r.get("wrapper_overhead", [])
    if over:
        lines += ["", "Wrapper overhead: `MaskClassifier.predict` (uint8 image in, quantize, "
                  "invoke, dequantize, probabilities out) against a bare `set_tensor` / `invoke` "
                  "/ `get_tensor` with a pre-quantized input on the wrapper's own interpreter, "
                  "timed in alternating blocks in one process.", ""]
        lines += table(["threads", "wrapper p50 ms", "bare p50 ms", "overhead (p50)",
                        "overhead (mean)"],
                       [[o["threads"], fmt(o.get("wrapper_p50_ms"), 3),
                         fmt(o.get("bare_p50_ms"), 3), pct(o.get("overhead_p50")),
                         pct(o.get("overhead_mean"))] for o in over])
    return lines


def render_accuracy(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    split = r.get("split", {})
    lines = [f"{split.get('n', '?')} test images of `{short(split.get('manifest', '?'))}` "
             f"(labels {', '.join(split.get('labels', []))}), never seen in training; "
             "each variant through its own runtime (TFLite variants through `MaskClassifier`).",
             ""]
    lines += table(["variant", "accuracy", "top-1 agreement with Keras",
                    "max abs. probability difference", "images"],
                   [[row["label"], pct(row.get("accuracy"), 2),
                     pct(row.get("top1_agreement"), 2), fmt(row.get("max_prob_diff"), 4),
                     fmt(row.get("n"))] for row in r.get("rows", [])])
    return lines


def render_sizes(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    lines = ["The 2-class model trained by `trainer.fit` (cached features, defaults otherwise) at "
             "each input size, converted to int8; accuracy on each run's own test split, "
             "latency of the int8 file under LiteRT (own process, batch of one).", ""]
    lines += table(["input px", "MMACs", "Keras test acc", "int8 test acc", "int8 p50 ms 1t",
                    "int8 p50 ms 2t", "int8 img/s 1t", "int8 MB", "training s"],
                   [[row["size"], fmt(row.get("macs", 0) / 1e6, 0),
                     pct(row.get("keras_accuracy"), 2), pct(row.get("int8_accuracy"), 2),
                     fmt(row.get("int8_p50_ms", {}).get("1")),
                     fmt(row.get("int8_p50_ms", {}).get("2")),
                     fmt(row.get("int8_img_per_s_1t"), 0), fmt(row.get("int8_mb"), 2),
                     fmt(row.get("train_s"), 0)] for row in r.get("rows", [])])
    rec = r.get("recommended")
    if rec:
        lines += ["", f"**Recommended default for a Raspberry Pi-class CPU: {rec['size']} px.** "
                  f"{rec['reason']}"]
    if ctx.get("plots", {}).get("latency_accuracy"):
        lines += ["", image(ctx["plots"]["latency_accuracy"], ctx["report"],
                            "latency against accuracy")]
    return lines


def render_endtoend(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    lines = [f"Classifier: `{short(r.get('model', '?'))}` ({r.get('input_size', '?')} px, "
             f"{r.get('model_choice', '')}). Photos: {r.get('photos', '?')} "
             "face-mask-voc photos through `edge.pipeline.Pipeline` per detector "
             "(matching at IoU 0.5, `edge.evaluate`). Recall on masked faces counts every "
             "annotated `with_mask` face, and separately those at least 32 px on their "
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


def render_training(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    cached, ref = r.get("cached", {}), r.get("reference", {})
    lines = [f"Same data ({r.get('data', '?')}), split (seed {r.get('seed', '?')}), input size "
             f"{r.get('input_size', '?')} px and head. Cached path: `trainer.fit` defaults "
             "(backbone features computed once; the head trains on the clean ones first, then "
             "with the augmented view added: epochs count both stages). Reference recipe: "
             "`feature_cache=False`, augmented images through the frozen base every epoch. Both "
             "clocks run from the start (decoding, backbone conversion and feature extraction "
             "included) to the end of the first epoch whose test accuracy reaches the level; "
             "the test evaluations are not counted.", ""]
    lines += table(["path", "final test accuracy", "wall s (whole run)", "epochs"],
                   [["cached features (this trainer)", pct(cached.get("test_accuracy"), 2),
                     fmt(cached.get("wall_s"), 1), fmt(cached.get("epochs"))],
                    ["reference recipe", pct(max((e["test_accuracy"] for e in
                                                  ref.get("epochs", [])), default=None), 2)
                     + " (best)", fmt((ref.get("epochs") or [{}])[-1].get("elapsed_s"), 1),
                     fmt(len(ref.get("epochs", [])))]])
    ladder = r.get("ladder") or []
    if ladder:
        lines += ["", "Time to reach each test accuracy (s, epoch in brackets):", ""]

        def when(s: float | None, epoch: int | None) -> str:
            if s is None:
                return "not reached"
            return fmt(s, 1) + (f" ({epoch})" if epoch is not None else "")

        lines += table(["test accuracy", "cached path", "reference recipe", "speed-up"],
                       [[pct(row["accuracy"], 2)
                         + (" (common)" if row["accuracy"] == r.get("common_accuracy") else ""),
                         when(row["cached_s"], row["cached_epoch"]),
                         when(row["reference_s"], row["reference_epoch"]),
                         fmt(row.get("speedup"), 1, "x")] for row in ladder])
    epochs = ref.get("epochs", [])
    head = r.get("at_common") or {}
    if head.get("speedup") is not None:
        lines += ["", f"At {pct(r.get('common_accuracy'), 2)}, the highest test accuracy both "
                  f"reached, the speed-up is **{fmt(r.get('speedup'), 1)}x**: "
                  f"{fmt(head.get('reference_s'), 1)} s for the reference recipe against "
                  f"{fmt(head.get('cached_s'), 1)} s for the cached path."]
    final = r.get("at_final") or {}
    if epochs and final.get("reference_s") is None:
        lines += ["", f"The reference did not reach the cached run's final "
                  f"{pct(cached.get('test_accuracy'), 2)} within {len(epochs)} epochs "
                  f"({fmt(epochs[-1].get('elapsed_s'), 0)} s; this run capped it at "
                  f"{fmt(ref.get('max_epochs'))} epochs / {fmt(ref.get('budget_s'), 0)} s, "
                  f"{ref.get('budget_from', 'its time cap')}): at that accuracy the speed-up is "
                  f"at least {fmt(final.get('speedup_lower_bound'), 1)}x. "
                  "`--reference-budget SECONDS` lets it run longer."]
    if epochs:
        lines += ["", "Test accuracy after each epoch:", ""]
        curve = {row["epoch"]: row for row in cached.get("per_epoch", [])}
        lines += table(["epoch", "reference accuracy", "reference s", "cached accuracy",
                        "cached s"],
                       [[e["epoch"], pct(e.get("test_accuracy"), 2), fmt(e.get("elapsed_s"), 1),
                         pct(curve.get(e["epoch"], {}).get("test_accuracy"), 2),
                         fmt(curve.get(e["epoch"], {}).get("elapsed_s"), 1)]
                        for e in epochs])
    if ctx.get("plots", {}).get("training_curves"):
        lines += ["", image(ctx["plots"]["training_curves"], ctx["report"],
                            "test accuracy against training time")]
    return lines


def render_roofline(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    peak = r.get("peak", {})
    lines = [f"MACs counted from the Keras model's Conv2D / DepthwiseConv2D / Dense layers "
             f"({fmt(r.get('macs', 0) / 1e6, 1)} M per inference at {r.get('input_size')} px). "
             f"Nominal peak per core = clock x MACs/cycle: {fmt(peak.get('ghz'), 2)} GHz; "
             f"float32 {peak.get('fp32')} MACs/cycle ({peak.get('fp32_assumption')}); int8 "
             f"{peak.get('int8')} MACs/cycle ({peak.get('int8_assumption')}); "
             f"{peak.get('frequency_assumption', '')}.", ""]
    lines += table(["variant", "threads", "p50 ms", "achieved GMAC/s", "nominal peak GMAC/s",
                    "share of peak"],
                   [[row["label"], row["threads"], fmt(row.get("p50_ms")),
                     fmt(row.get("achieved_gmacs"), 1), fmt(row.get("peak_gmacs"), 0),
                     pct(row.get("fraction_of_peak"))] for row in r.get("rows", [])])
    over = [row for row in r.get("rows", []) if (row.get("fraction_of_peak") or 0) > 1.0]
    if over and peak.get("ghz"):
        top = max(over, key=lambda row: row["fraction_of_peak"])
        lines += ["", f"Rows above 100 % ran faster than the nominal peak allows at the reported "
                  f"{fmt(peak.get('ghz'), 2)} GHz: the cores boost above that clock. "
                  f"{top['label']} at {top['threads']} thread(s) implies at least "
                  f"{fmt(peak['ghz'] * top['fraction_of_peak'], 2)} GHz; read the share of peak "
                  "as relative to the reported clock."]
    return lines


DETECTOR_CLASSES = ("with_mask", "mask_weared_incorrect", "without_mask")


def render_detector(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    goal = r.get("goal", {})
    lines = [f"Classifier `{short(r.get('classifier'))}` (shipped), {r.get('threads')} thread(s). "
             "Found = an annotated face matched by a detection at IoU >= 0.5; class columns count "
             "faces at least 32 px on their short side. The default detector was fine-tuned, and "
             "the settings and box calibrations chosen, on face-mask-ilc-dev and face-mask-voc "
             "minus their held-out photos (`benchmarks/holdout/`); these tables use the held-out "
             "photos only. Goal: "
             f"{pct(goal.get('recall_min32px_every_class'), 0)} in every class, precision not "
             f"below the first row's, {fmt(goal.get('pipeline_fps'), 0)} FPS on 640x480."]
    for set_name, rows in (r.get("photos") or {}).items():
        faces = rows[0]["faces_min32px"] if rows else {}
        lines += ["", f"**{set_name}** ({rows[0]['images'] if rows else 0} photos; faces >= 32 px: "
                  + ", ".join(f"{c} {faces.get(c, 0)}" for c in DETECTOR_CLASSES) + ")", ""]
        lines += table(["setting", *DETECTOR_CLASSES, "weakest class",
                        "weakest at IoU 0.3", "all faces (any size)",
                        "precision", "detect ms / photo", "detect ms / 640x480"],
                       [[row["setting"], *(pct(row["recall_min32px"].get(c))
                                           for c in DETECTOR_CLASSES),
                         pct(row["min_class_recall_min32px"]),
                         pct(min((v for k, v in (row.get("recall_min32px_iou03") or {}).items()
                                  if k != "all" and v is not None), default=None)),
                         pct(row["recall_all"].get("all")),
                         pct(row["precision"]), fmt(row["detect_ms_per_image"], 1),
                         fmt(row["detect_ms_640x480"], 1)] for row in rows])
    lines += ["", "Pipeline on 640x480 videos (frames decoded beforehand). Same as every frame = "
              "the faces of the row that detects and classifies every frame, found on the same "
              "frame (IoU >= 0.5) with the same label."]
    for key, video_key in (("pipeline", "video"), ("steady_pipeline", "steady_video")):
        video = r.get(video_key) or {}
        if not r.get(key):
            continue
        lines += ["", f"`{short(video.get('path'))}`: {video.get('photos')} photos, each held "
                  f"{video.get('hold')} frame(s)" + (f", moving {video['pan_px_per_frame']:g} px "
                                                     "a frame" if video.get("pan_px_per_frame")
                                                     else "") + ":", ""]
        lines += _pipeline_table(r[key])
    return lines


def _pipeline_table(loops: dict[str, Any]) -> list[str]:
    return table(["setting", "FPS", "detect ms", "crop + classify ms", "frame p99 ms",
                  "faces per frame", "same as every frame"],
                 [[label, fmt(v.get("fps"), 1), fmt((v.get("stages_ms") or {}).get("detect")),
                   fmt((v.get("stages_ms") or {}).get("classify")),
                   fmt((v.get("frame_ms") or {}).get("p99_ms")),
                   fmt(v.get("faces_per_frame")), pct(v.get("agreement_with_every_frame"))]
                  if v.get("status", "ok") == "ok"
                  else [label, f"failed: {v.get('error')}", "", "", "", "", ""]
                  for label, v in loops.items()])


def _did(row: dict[str, Any]) -> str:
    """What a row's outputs did, from their counters (MQTT, webhook, snapshots, viewer)."""
    outputs = row.get("outputs") or {}
    done = []
    if "mqtt" in outputs:
        done.append(f"MQTT published {outputs['mqtt'].get('published')}, dropped "
                    f"{outputs['mqtt'].get('dropped')}")
    if "webhook" in outputs:
        done.append(f"webhook sent {outputs['webhook'].get('sent')}")
    if "snapshots" in outputs:
        done.append(f"snapshots of {outputs['snapshots'].get('written')} alerts")
    if row.get("viewer_frames") is not None:
        done.append(f"viewer got {row['viewer_frames']} frames")
    return "; ".join(done) or "-"


def _spread(values: list[float] | None) -> str:
    """' (min-max)' of a row's rounds, when it ran more than once."""
    return f" ({fmt(min(values), 1)}-{fmt(max(values), 1)})" if values and len(values) > 1 else ""


def render_integrations(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    video = r.get("video") or {}
    lines = [f"`{short(video.get('path'))}` ({video.get('size', '640x480')}), the first "
             f"{r.get('frames_per_row', '?')} frames, shipped detector and int8 classifier, "
             f"{r.get('threads')} thread(s); each row is a whole `edge run` in a fresh process "
             "(the first: `Pipeline.process` alone), rows interleaved over "
             f"{r.get('rounds', 1)} round(s), medians shown (FPS of every round in brackets). "
             f"FPS after {r.get('warmup_frames')} warm-up frames; stage columns are ms per frame, "
             "the run summary's `timings_ms`. From the third row on, alerts "
             f"(`--alert-after {r.get('alert_after')}`) and stats (every "
             f"{fmt(r.get('stats_every_s'), 0)} s) are on. CPU ms: CPU time of the whole "
             "process (all threads) per frame, steadier than FPS on a busy machine; "
             "`+CPU ms`: over the loop row's, the cost of what the row adds; differences "
             "smaller than a row's round-to-round spread are noise."]
    load = r.get("load_average")
    if load:
        lines[-1] += (f" Load average (1 min) {fmt(load[0], 1)} at the start and "
                      f"{fmt(load[1], 1)} at the end, on {r.get('logical_cpus', '?')} logical "
                      "CPUs.")
    lines.append("")
    rows = r.get("rows") or []
    loop = next((x for x in rows if x.get("features") == [] and x.get("status") == "ok"), None)
    base_ms = loop.get("cpu_ms") if loop else None
    cells = []
    for row in rows:
        if row.get("status") != "ok":
            cells.append([row.get("row"), f"**{row.get('status')}**: {row.get('error')}",
                          *[""] * 10])
            continue
        ms, stages, cpu = 1000.0 / row["fps"], row.get("stages_ms") or {}, row.get("cpu_ms")
        extra = ("-" if base_ms is None or cpu is None or not row.get("features")
                 or "bare" in row["features"] else f"{cpu - base_ms:+.1f}")
        spread = ", ".join(fmt(f, 1) for f in row.get("fps_rounds", []))
        cells.append([row["row"], fmt(row["fps"], 1) + (f" ({spread})" if spread else ""),
                      fmt(ms, 1), fmt(cpu, 1) + _spread(row.get("cpu_ms_rounds")), extra,
                      *(fmt(stages.get(k), 2 if k in ("track", "draw", "output") else 1)
                        for k in ("detect", "classify", "track", "draw", "output")),
                      fmt(row.get("alerts")), _did(row)])
    lines += table(["row", "FPS", "ms / frame", "CPU ms / frame", "+CPU ms", "detect",
                    "classify", "track", "draw", "output", "alerts", "outputs did"], cells)
    return lines


RENDERERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[str]]] = {
    "latency": render_latency, "accuracy": render_accuracy, "sizes": render_sizes,
    "endtoend": render_endtoend, "training": render_training, "roofline": render_roofline,
    "detector": render_detector, "integrations": render_integrations,
    "scaling": lambda r, ctx: _render_scaling(r, ctx),
}


def _render_scaling(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """Section `scaling` renders itself (benchmarks/scaling.py, issue 11)."""
    from benchmarks.scaling import render

    return render(r, ctx)


# ----------------------------------------------------------------------------- whole report


def render_machine(machine: dict[str, Any], latency: dict[str, Any] | None = None) -> list[str]:
    cpu, versions = machine.get("cpu", {}), machine.get("versions", {})
    rows = [["CPU", f"{cpu.get('model')} ({cpu.get('vendor')}, family {cpu.get('family')})"],
            ["logical CPUs", fmt(cpu.get("logical_cpus"))],
            ["clock (reported)", f"{fmt(cpu.get('mhz'), 0)} MHz"],
            ["SIMD flags", ", ".join(cpu.get("flags", [])) or "-"],
            ["platform", machine.get("platform", "-")]]
    side = (latency or {}).get("tflite_runtime_python")
    rows += [[f"{name} (this venv)" if name == "tflite-runtime" and side else name, version]
             for name, version in versions.items()]
    if isinstance(side, dict):
        rows.append(["tflite_runtime rows (side venv)",
                     f"{side.get('runtime')}, numpy {side.get('numpy')}, Python "
                     f"{side.get('python_version')}"])
    return table(["", ""], rows)


def render_report(sections: dict[str, dict[str, Any]], machine: dict[str, Any],
                  run: dict[str, Any], report_path: Path,
                  plots: dict[str, Path] | None = None) -> str:
    """The whole RESULTS.md. `sections` maps a section name to its result file's content."""
    results = {name: env.get("result", {}) for name, env in sections.items()}
    ctx = {"report": report_path, "plots": plots or {}}
    mode = ("quick mode: a CI smoke run on small data with few iterations, not for quoting"
            if run.get("quick") else "full mode")
    lines = ["# maskedge benchmarks", "",
             f"Generated {run.get('finished', run.get('started', '?'))} by "
             f"`{run.get('command', '?')}` ({mode}; run `{run.get('run_id', '?')}`). "
             "Every number below was measured in that run on the machine described here, one "
             "section at a time; ratios compare measurements of the same run, so they hold where "
             "absolute times drift. Regenerate everything with "
             "`python -m benchmarks.run` (under 30 minutes on this machine; `--quick` for a "
             "smoke run).", "", "## Machine and versions", ""]
    lines += render_machine(machine, results.get("latency"))
    lines += ["", "## Targets", ""]
    checks = check_targets(results)
    lines += table(["target", "measured", "required", "status", "by how much"],
                   [[c.name, _target_value(c), _target_required(c), f"**{c.status}**", c.margin]
                    for c in checks])
    lines += ["", "## Sections", ""]
    lines += table(["section", "run", "measured", "took", "CPU"],
                   [[SECTION_TITLES[name], f"`{sections[name].get('run_id', '?')}`",
                     sections[name].get("started", "?"),
                     f"{fmt(sections[name].get('seconds'), 0)} s",
                     _cpu(sections[name].get("cpu"), machine.get("cpu", {}))]
                    for name in SECTION_ORDER if name in sections])
    stale = [name for name in SECTION_ORDER
             if name in sections and sections[name].get("run_id") != run.get("run_id")]
    if stale:
        lines += ["", f"**Note:** {', '.join(stale)} come from an earlier run (see the run "
                  "column); rerun without `--only` for a report from one run."]
    for name in SECTION_ORDER:
        lines += ["", f"## {SECTION_TITLES[name]}", ""]
        if name not in sections:
            lines.append(f"_Not run: `python -m benchmarks.run --only {name}`._")
            continue
        env = sections[name]
        if env.get("status", "ok") != "ok":
            lines.append(f"**Failed:** {env.get('error', 'unknown error')}")
            continue
        lines += RENDERERS[name](env.get("result", {}), ctx)
        for note in env.get("result", {}).get("notes", []):
            lines += ["", f"_Note: {note}_"]
    return "\n".join(lines) + "\n"


def _cpu(cpu: dict[str, Any] | None, reported: dict[str, Any]) -> str:
    """The CPU a section ran on, when its file records it (older files do not: the machine
    table above is then the only record, and it describes the latest run)."""
    if not cpu:
        return "not recorded"
    same = "" if cpu == reported else " (not the machine above)"
    vnni = ", AVX-512 VNNI" if "avx512_vnni" in cpu.get("flags", []) else ", no AVX-512"
    return (f"{cpu.get('model')} family {cpu.get('family')}, {fmt(cpu.get('mhz'), 0)} MHz"
            f"{vnni}{same}")


def _target_value(check: Any) -> str:
    if check.measured is None:
        return "-"
    prefix = ">= " if check.lower_bound else ""
    if check.unit == "%":
        return f"{prefix}{check.measured:.1f}%"
    if check.unit == "x":
        return f"{prefix}{check.measured:.1f}x"
    return f"{prefix}{check.measured:.1f} {check.unit}"


def _target_required(check: Any) -> str:
    sign = ">=" if check.higher_is_better else "<"
    unit = "%" if check.unit == "%" else ("x" if check.unit == "x" else f" {check.unit}")
    return f"{sign} {check.target:g}{unit}"


THREECLASS_WEAK = "mask_weared_incorrect"


def _threeclass_cells(measured: dict[str, Any]) -> list[str]:
    cells = []
    for name in ("ilc-dev held-out", "face-mask-voc test"):
        m = measured.get(name, {})
        weak = m.get("per_class", {}).get(THREECLASS_WEAK, {})
        cells += [pct(m.get("accuracy")), fmt(weak.get("f1"))]
    return cells


def _rerun(r: dict[str, Any]) -> str:
    """'; `x`, `y` run DATE, `z` run DATE2 with `--only`' for the rows `--only` runs added to
    an earlier results file."""
    runs = [", ".join(f"`{n}`" for n in run.get("rows", [])) + f" run {run.get('started', '?')}"
            for run in reruns(r)]
    return f"; {', '.join(runs)} with `--only`" if runs else ""


def _threeclass_values(measured: dict[str, Any]) -> list[float | None]:
    """Accuracy and mask_weared_incorrect F1 on held-out ilc-dev, then on face-mask-voc test."""
    values = []
    for name in ("ilc-dev held-out", "face-mask-voc test"):
        m = measured.get(name, {})
        values += [m.get("accuracy"), m.get("per_class", {}).get(THREECLASS_WEAK, {}).get("f1")]
    return values


def is_seed_row(row: dict[str, Any]) -> bool:
    """A 3-class row that only repeats another with a different `--seed` (a seed row)."""
    return "seed" in row.get("options", {})


def seed_spread(rows: list[dict[str, Any]], base: str | None = None) -> list[str]:
    """A paragraph per recipe with `@seedN` repeats: mean and standard deviation of the recipe's
    row and its repeats (only `base`'s when given)."""
    bases = list(dict.fromkeys(row.get("base") for row in rows if is_seed_row(row)))
    lines: list[str] = []
    for b in bases if base is None else [x for x in bases if x == base]:
        lines += _spread_of(rows, b)
    return lines


def _spread_of(rows: list[dict[str, Any]], base: str | None) -> list[str]:
    runs = [row for row in rows if row["name"] == base or (
        is_seed_row(row) and row.get("base") == base)]
    columns = zip(*(_threeclass_values(row.get("keras", {})) for row in runs), strict=True)
    parts = []
    for name, column in zip(("ilc accuracy", "ilc F1", "voc accuracy", "voc F1"), columns,
                            strict=True):
        xs = [x for x in column if x is not None]
        if len(xs) < 2:
            return []
        scale, unit = (100.0, "%") if "accuracy" in name else (1.0, "")
        parts.append(f"{name} {scale * statistics.mean(xs):.{1 if unit else 2}f}{unit} ± "
                     f"{scale * statistics.stdev(xs):.{1 if unit else 2}f}")
    return ["", f"Chance alone: `{base}` and its {len(runs) - 1} seed rows (the same recipe; the "
            "seed moves the head's start and the order, and the split unless `--split-seed` holds "
            "it) give, in Keras, "
            f"{'; '.join(parts)} "
            f"(mean ± standard deviation of {len(runs)} runs). Differences between rows smaller "
            "than about two standard deviations are not evidence; seed rows are never shipped."]


def reruns(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The `--only` runs recorded in a results file (`reruns`; older files have one `rerun`)."""
    return list(r.get("reruns") or ([r["rerun"]] if r.get("rerun") else []))


def _tau_choice(choice: dict[str, Any] | None) -> list[str]:
    """How the rows' `--logit-adjust` was chosen on held-in faces, with the whole grid."""
    if not choice:
        return []
    runs = ", ".join(f"`{x}`" for x in choice["runs"])
    grid = choice["grid"]
    return ["", f"Logit adjustment: TAU = {choice['chosen']:g}, chosen on held-in faces only: the "
            f"val and test faces of {runs} (each run's own, never trained on by it; "
            f"{fmt(choice['faces'])} faces, {fmt(choice['weak_faces'])} mask_weared_incorrect), "
            f"pooled; rule: {choice['rule']}. The held-in grid:", "",
            *table(["TAU", *(f"{g['tau']:g}" for g in grid)],
                   [["accuracy", *(f"{100 * g['accuracy']:.1f}" for g in grid)],
                    ["F1", *(f"{g['f1']:.3f}" for g in grid)],
                    *_flip_grid(choice)]), *_flip_choice(choice)]


def _flip_grid(choice: dict[str, Any]) -> list[list[str]]:
    """The held-in grid with each face's mirror averaged in (`--flip`), when it was measured."""
    grid = choice.get("grid_flip")
    if not grid:
        return []
    chosen = f" (TAU {choice['chosen_flip']:g} chosen)"
    return [[f"accuracy, mirror too{chosen}", *(f"{100 * g['accuracy']:.1f}" for g in grid)],
            [f"F1, mirror too{chosen}", *(f"{g['f1']:.3f}" for g in grid)]]


def _best_held_in(choice: dict[str, Any]) -> dict[bool, dict[str, float]]:
    """The chosen TAU's held-in grid point, without (False) and with (True) the mirror."""
    return {flip: next(g for g in choice["grid_flip" if flip else "grid"]
                       if g["tau"] == choice["chosen_flip" if flip else "chosen"])
            for flip in (False, True)}


def flip_wins(choice: dict[str, Any]) -> bool:
    """Whether reading the mirror too (`--flip`) has the better held-in accuracy + F1: the rule
    that lets a `--flip` row ship, fixed before its held-out numbers existed."""
    if not choice.get("grid_flip"):
        return False
    best = _best_held_in(choice)
    return sum(best[True][k] for k in ("accuracy", "f1")) > sum(
        best[False][k] for k in ("accuracy", "f1"))


def _flip_choice(choice: dict[str, Any]) -> list[str]:
    """The held-in decision on `--flip`, in words."""
    if not choice.get("grid_flip"):
        return []
    best, wins = _best_held_in(choice), flip_wins(choice)
    return ["", "Mirror (`--flip`), decided on the same held-in faces: its best accuracy + F1 is "
            f"{100 * best[True]['accuracy']:.1f} % / {best[True]['f1']:.3f} (TAU "
            f"{choice['chosen_flip']:g}) against {100 * best[False]['accuracy']:.1f} % / "
            f"{best[False]['f1']:.3f} (TAU {choice['chosen']:g}) without, so `--flip` rows "
            + ("may ship." if wins else "do not ship.")]


def _combined_text(rows: list[dict[str, Any]]) -> str:
    """Which rows train nothing (built by `trainer ensemble` from other rows' runs)."""
    combined = [row for row in rows if row.get("options", {}).get("members")]
    if not combined:
        return ""
    names = ", ".join(f"`{row['name']}`" for row in combined)
    members = "`, `".join(dict.fromkeys(m for row in combined for m in row["options"]["members"]))
    return (f" {names} train nothing: `trainer ensemble` builds each from the runs of the rows "
            f"it names (`{members}`); their train time is their members' sum.")


def render_threeclass(r: dict[str, Any]) -> list[str]:
    """RESULTS.md's 3-class section from `threeclass.json` (`python -m benchmarks.threeclass`)."""
    lines = ["## 3-class: incorrectly worn masks (ablation and the shipped model)", "",
             f"From `{r.get('command', 'python -m benchmarks.threeclass')}` (started "
             f"{r.get('started', '?')}{_rerun(r)}). Every row trains with both held-out photo "
             "lists excluded and is measured (Keras) on the faces >= 16 px of the held-out ilc-dev "
             f"photos ({fmt(r.get('holdout', {}).get('ilc-dev held-out'))} faces) and of "
             f"face-mask-voc's test photos ({fmt(r.get('holdout', {}).get('face-mask-voc test'))}"
             " faces). F1 = mask_weared_incorrect F1; each row changes one thing against its "
             f"base row.{_combined_text(r.get('rows', []))}", ""]
    rows = [[f"`{row['name']}`", row["change"], f"`{row.get('base') or '-'}`",
             fmt(row.get("train_faces")), *_threeclass_cells(row.get("keras", {})),
             f"{fmt(row.get('train_seconds'), 0)} s"] for row in r.get("rows", [])]
    lines += table(["row", "change", "base", "train faces", "ilc acc", "ilc F1", "voc acc",
                    "voc F1", "train time"], rows)
    lines += seed_spread(r.get("rows", []))
    lines += _tau_choice(r.get("tau_choice"))
    shipped = r.get("shipped")
    if not shipped:
        return lines
    speed = (f", {fmt(shipped['ms_per_face'], 1)} ms per face with LiteRT, batch of 1"
             if shipped.get("ms_per_face") is not None else "")
    lines += ["", f"Shipped: row `{shipped['row']}` as `{shipped['model']}` "
              f"({fmt(shipped['size_bytes'] / 1e6)} MB{speed}), int8 vs Keras:", ""]
    head = ["model", "set", "accuracy", *(f"{c} P / R / F1" for c in
                                         ("with_mask", "without_mask", THREECLASS_WEAK))]
    body = []
    for kind in ("keras", "int8"):
        for name, m in shipped[kind].items():
            per = m["per_class"]
            body.append([kind, name, pct(m["accuracy"]), *(
                f"{fmt(per[c]['precision'])} / {fmt(per[c]['recall'])} / {fmt(per[c]['f1'])}"
                if c in per else "-" for c in ("with_mask", "without_mask", THREECLASS_WEAK))])
    lines += table(head, body)
    int8 = shipped["int8"].get("ilc-dev held-out", {})
    f1 = int8.get("per_class", {}).get(THREECLASS_WEAK, {}).get("f1", 0.0)
    met = f1 >= 0.75 and int8.get("accuracy", 0.0) >= 0.92
    lines += ["", f"Target (int8, held-out ilc-dev: mask_weared_incorrect F1 >= 0.75 and accuracy "
              f">= 92 %): **{'met' if met else 'not met'}** (F1 {fmt(f1)}, accuracy "
              f"{pct(int8.get('accuracy'))}). int8 conversion gate: "
              f"{shipped.get('gate', 'passed')}."]
    commands = " ".join(f"`{c}`," for c in shipped["command"].split(" && "))
    lines += ["", f"Reproduce: {commands} then `{shipped['convert_command']}`."]
    return lines
