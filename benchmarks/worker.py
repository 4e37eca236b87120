"""Child process that measures one thing and prints one JSON line.

Each variant runs in a process of its own, so its load time and peak resident memory are its own
(a LiteRT process never imports TensorFlow) and one variant's threads or caches cannot slow
another. Usage (called through `benchmarks.context.run_child`):

    python -m benchmarks.worker '{"kind": "tflite", "model": "...", "threads": 1, ...}'

kinds: `keras_predict` (model.predict per image), `keras_function` (the model inside a compiled
tf.function), `tflite` (edge.inference.classifier.MaskClassifier.predict), `runtime_info` (which
TFLite runtime, numpy and Python this interpreter has: the probe of a side venv), `wrapper_overhead`
(the wrapper against a bare set_tensor/invoke/get_tensor on the same file, timed in alternating
blocks), `pipeline_video` (edge.inference.pipeline.Pipeline on every frame of a video) and
`reference_video` (the same detector, then Keras `predict` on each face crop: the reference
projects' camera loop). Video frames are decoded outside the timed part (a camera hands frames over
ready).

The `tflite` and `runtime_info` kinds also run under a side interpreter that has only numpy and
tflite_runtime (`run_child(..., python=...)`), so this module imports nothing else at module level.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import summarize


def peak_rss_mib() -> float:
    """Peak resident memory of this process image so far, in MiB.

    /proc/self/status VmHWM is the high-water mark of this program only; getrusage's ru_maxrss is
    the fallback, but on Linux it survives exec and so would report the parent's memory at fork.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_calls(call: Callable[[int], Any], warmup: int, runs: int) -> tuple[float, list[float]]:
    """Time `call(i)` `runs` times after `warmup` untimed calls; (first call ms, times in ms)."""
    t0 = time.perf_counter_ns()
    call(0)
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for i in range(1, warmup):
        call(i)
    times = []
    for i in range(runs):
        t0 = time.perf_counter_ns()
        call(i)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return first_ms, times


def _keras(spec: dict[str, Any], images: np.ndarray) -> dict[str, Any]:
    t0 = time.perf_counter()
    import tensorflow as tf

    threads = int(spec["threads"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from trainer.fit.artifacts import load_keras_model

    import_s = time.perf_counter() - t0
    rss_import = peak_rss_mib()
    t0 = time.perf_counter()
    model, _ = load_keras_model(spec["model"])
    load_s = time.perf_counter() - t0
    batches = [images[i : i + 1].astype(np.float32) for i in range(len(images))]
    if spec["kind"] == "keras_predict":
        def call(i: int) -> Any:
            return model.predict(batches[i % len(batches)], verbose=0)
    else:
        infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        tensors = [tf.constant(b) for b in batches]

        def call(i: int) -> Any:
            return infer(tensors[i % len(tensors)]).numpy()
    first_ms, times = time_calls(call, int(spec["warmup"]), int(spec["runs"]))
    return {"import_s": import_s, "load_s": load_s, "first_call_ms": first_ms,
            "rss_after_import_mib": rss_import, "runtime": f"tensorflow {tf.__version__}",
            **summarize(times)}


class DoesNotLoad(Exception):
    """The runtime imports, but cannot load this model file (e.g. op versions newer than it)."""

    def __init__(self, reason: str, runtime: str) -> None:
        super().__init__(reason)
        self.runtime = runtime


def runtime_label(name: str) -> str:
    """How a row names its TFLite runtime: `litert` as ever; tflite_runtime with its version,
    since it runs in a side venv the report's version table does not describe."""
    if name != "tflite_runtime":
        return name
    import tflite_runtime

    return f"tflite_runtime {tflite_runtime.__version__}"


def _runtime_info(spec: dict[str, Any], images: np.ndarray | None) -> dict[str, Any]:
    import edge.inference.classifier  # noqa: F401  (the `tflite` kind's imports work here)
    from edge.core.runtime import interpreter_class

    interpreter_class(spec["runtime"])
    return {"runtime": runtime_label(spec["runtime"]), "numpy": np.__version__,
            "python": sys.version.split()[0], "executable": sys.executable}


def _tflite(spec: dict[str, Any], images: np.ndarray) -> dict[str, Any]:
    from edge.core.runtime import RuntimeUnavailable, interpreter_class
    from edge.inference.classifier import ClassifierOptions, MaskClassifier

    runtime = spec.get("runtime", "litert")
    rss_import = peak_rss_mib()
    t0 = time.perf_counter()
    try:
        clf = MaskClassifier(ClassifierOptions(model=Path(spec["model"]),
                                               threads=int(spec["threads"]), runtime=runtime))
    except RuntimeUnavailable as exc:
        try:
            interpreter_class(runtime)
        except Exception:  # not installed: reported as unavailable, as before
            raise exc from None
        reason = str(exc).partition(f": {runtime}: ")[2] or str(exc)
        if ". " in reason:  # whole sentences only (the runtime's message is cut at 160 chars)
            reason = reason[: reason.rindex(". ") + 1]
        raise DoesNotLoad(reason, runtime_label(runtime)) from exc
    load_s = time.perf_counter() - t0
    batches = [images[i : i + 1] for i in range(len(images))]
    first_ms, times = time_calls(lambda i: clf.predict(batches[i % len(batches)]),
                                 int(spec["warmup"]), int(spec["runs"]))
    return {"load_s": load_s, "first_call_ms": first_ms, "rss_after_import_mib": rss_import,
            "runtime": runtime_label(clf.runtime), "input_dtype": str(clf.input_dtype),
            **summarize(times)}


def _wrapper_overhead(spec: dict[str, Any], images: np.ndarray) -> dict[str, Any]:
    from edge.inference.classifier import ClassifierOptions, MaskClassifier

    threads, runtime = int(spec["threads"]), spec.get("runtime", "litert")
    clf = MaskClassifier(ClassifierOptions(model=Path(spec["model"]), threads=threads,
                                           runtime=runtime))
    # The bare calls use the wrapper's own interpreter: same tensors, same thread pool, so the
    # difference is only the wrapper's work (input quantization, output dequantization,
    # probabilities). A second interpreter's idle pool threads could otherwise steal cycles.
    bare = clf.interpreter
    inp, out = bare.get_input_details()[0], bare.get_output_details()[0]
    ready = [clf.to_input(images[i : i + 1]) for i in range(len(images))]
    batches = [images[i : i + 1] for i in range(len(images))]

    def wrapped(i: int) -> Any:
        return clf.predict(batches[i % len(batches)])

    def bare_call(i: int) -> Any:
        bare.set_tensor(inp["index"], ready[i % len(ready)])
        bare.invoke()
        return bare.get_tensor(out["index"])

    warmup, runs = int(spec["warmup"]), int(spec["runs"])
    blocks = max(1, int(spec.get("blocks", 10)))
    per_block = max(1, runs // blocks)
    time_calls(wrapped, warmup, 0)
    time_calls(bare_call, warmup, 0)
    wrapper_times: list[float] = []
    bare_times: list[float] = []
    for b in range(blocks):  # alternate which goes first, so drift hits both alike
        order = [(wrapped, wrapper_times), (bare_call, bare_times)]
        for call, sink in order if b % 2 == 0 else order[::-1]:
            sink.extend(time_calls(call, 1, per_block)[1])
    w, r = summarize(wrapper_times), summarize(bare_times)
    return {"runtime": clf.runtime, "wrapper": w, "bare": r,
            "overhead_p50": w["p50_ms"] / r["p50_ms"] - 1.0,
            "overhead_mean": w["mean_ms"] / r["mean_ms"] - 1.0}


def _video_frames(path: str, limit: int) -> Any:
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        count = 0
        while count < limit:
            ok, bgr = cap.read()
            if not ok:
                return
            count += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def _detector(spec: dict[str, Any]) -> Any:
    from edge.detection.detectors import DetectorOptions, create_detector

    model, width = spec.get("detector_model"), spec.get("detect_width")
    return create_detector(DetectorOptions(name=spec["detector"],
                                           model=Path(model) if model else None,
                                           threads=int(spec["threads"]), runtime="litert",
                                           input_width=None if width is None else int(width),
                                           calibrate=bool(spec.get("calibrate_boxes", True))))


def _loop(process: Callable[[np.ndarray], tuple[int, dict[str, float]]],
          spec: dict[str, Any]) -> dict[str, Any]:
    """Run `process` on the video's frames: warm-up frames first, then timed frames."""
    warmup, frames = int(spec.get("warmup", 5)), int(spec["frames"])
    stage_ms: dict[str, list[float]] = {}
    frame_ms, faces = [], []
    wall_start = time.perf_counter()
    for i, rgb in enumerate(_video_frames(spec["video"], warmup + frames)):
        t0 = time.perf_counter_ns()
        n, stages = process(rgb)
        elapsed = (time.perf_counter_ns() - t0) / 1e6
        if i < warmup:
            wall_start = time.perf_counter()
            continue
        frame_ms.append(elapsed)
        faces.append(n)
        for key, value in stages.items():
            stage_ms.setdefault(key, []).append(value)
    wall = time.perf_counter() - wall_start
    if not frame_ms:
        raise ValueError(f"no frames could be read from {spec['video']}")
    total_s = sum(frame_ms) / 1000.0
    return {"frames": len(frame_ms), "fps": len(frame_ms) / total_s,
            "fps_with_decode": len(frame_ms) / wall if wall > 0 else None,
            "frame_ms": summarize(frame_ms),
            "stages_ms": {k: float(np.mean(v)) for k, v in stage_ms.items()},
            "faces_per_frame": float(np.mean(faces)),
            "per_frame_ms": [round(v, 4) for v in frame_ms], "per_frame_faces": faces,
            "faces_histogram": {str(k): int(v) for k, v in
                                zip(*np.unique(faces, return_counts=True), strict=True)}}


def _pipeline_video(spec: dict[str, Any], images: np.ndarray | None) -> dict[str, Any]:
    from edge.inference.classifier import ClassifierOptions, MaskClassifier
    from edge.inference.pipeline import Pipeline, PipelineOptions

    threads = int(spec["threads"])
    classifier = MaskClassifier(ClassifierOptions(model=Path(spec["model"]), threads=threads,
                                                  runtime="litert"))
    every = int(spec.get("classify_every", 1))  # 1: every face on every frame, as v0.1 did
    pipeline = Pipeline.from_parts(_detector(spec), classifier, PipelineOptions(
        model=Path(spec["model"]), detector=spec["detector"], threads=threads,
        detect_width=spec.get("detect_width"), classify_every=every,
        detect_every=int(spec.get("detect_every", 1))))
    video = every > 1 or pipeline.options.detect_every > 1
    seen: list[list[tuple[list[float], str]]] = []  # per frame: (box, label) of each face

    def process(rgb: np.ndarray) -> tuple[int, dict[str, float]]:
        result = pipeline.process(rgb, video=video)
        seen.append([([round(v, 1) for v in f.box], f.label) for f in result.faces])
        return len(result.faces), dict(result.timings_ms)

    loop = _loop(process, spec)
    faces = {"per_frame_detections": seen[-loop["frames"]:]} if spec.get("record") else {}
    return {"runtime": classifier.runtime, **loop, **faces}


def _reference_video(spec: dict[str, Any], images: np.ndarray | None) -> dict[str, Any]:
    import tensorflow as tf

    threads = int(spec["threads"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from edge.core.imageops import FACE_MARGIN, crop_face, resize_to_input
    from trainer.fit.artifacts import load_keras_model

    model, contract = load_keras_model(spec["model"])
    detector = _detector(spec)

    def process(rgb: np.ndarray) -> tuple[int, dict[str, float]]:
        t0 = time.perf_counter()
        faces = detector.detect(rgb)
        t1 = time.perf_counter()
        for face in faces:  # one predict call per face, as the reference projects do
            crop = resize_to_input(crop_face(rgb, face.box, FACE_MARGIN), contract.input_size)
            model.predict(crop[None].astype(np.float32), verbose=0)
        t2 = time.perf_counter()
        return len(faces), {"detect": (t1 - t0) * 1000.0, "classify": (t2 - t1) * 1000.0}

    return {"runtime": f"tensorflow {tf.__version__}", **_loop(process, spec)}


KINDS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "keras_predict": _keras,
    "keras_function": _keras,
    "tflite": _tflite,
    "runtime_info": _runtime_info,
    "wrapper_overhead": _wrapper_overhead,
    "pipeline_video": _pipeline_video,
    "reference_video": _reference_video,
}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in this process and return its measurements."""
    images = np.load(spec["images"]) if spec.get("images") else None
    result = KINDS[spec["kind"]](spec, images)
    result["peak_rss_mib"] = peak_rss_mib()
    result["status"] = "ok"
    return result


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    spec = json.loads(argv[0])
    try:
        result = run(spec)
    except DoesNotLoad as exc:  # the runtime is there, this file is too new for it
        result = {"status": "unavailable", "does_not_load": True, "error": str(exc)[:300],
                  "runtime": exc.runtime}
    except Exception as exc:  # reported as the row's status, never a silent gap
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result = {"status": "error", "error": f"{type(exc).__name__}: {first[:300]}"}
        if type(exc).__name__ == "RuntimeUnavailable":
            result["status"] = "unavailable"
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
