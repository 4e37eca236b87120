"""The half of `python -m benchmarks.arm64` that runs on each architecture.

    python benchmarks/arm64_worker.py INPUTS.npz OUT.npz MODEL [MODEL ...]

Run once by the x86 venv and once by an aarch64 CPython under qemu-user, both on the same
INPUTS.npz (made by `benchmarks.arm64`): every YuNet `.tflite` MODEL on each `det_*` image (its
twelve raw output tensors and the decoded faces), every classifier MODEL on the `crops_<stem>`
batch (its raw, still quantized, output tensor and that tensor's quantization). It imports only
the device code (`edge`, numpy, the LiteRT interpreter): no TensorFlow, no Typer, no OpenCV call.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for `edge`

from edge.core.runtime import BatchRunner
from edge.detection.yunet import YuNetLite
from edge.inference.classifier import ClassifierOptions, MaskClassifier

#: One interpreter thread on both sides: the comparison is of arithmetic, not of speed.
THREADS = 1


def run_detector(model: Path, images: list[np.ndarray], out: dict[str, np.ndarray]) -> float:
    """YuNet's raw outputs and decoded faces for each image into `out`; seconds spent."""
    lite = YuNetLite(model, threads=THREADS, runtime="litert")
    start = time.perf_counter()
    for i, bgr in enumerate(images):
        faces = lite.detect_bgr(bgr)
        for name, index in lite.outputs.items():
            out[f"{model.stem}/{i}/{name}"] = np.array(lite.interpreter.get_tensor(index))
        out[f"{model.stem}/{i}/faces"] = np.concatenate(
            [faces.boxes, faces.landmarks, faces.scores[:, None]], 1).astype(np.float32)
    return time.perf_counter() - start


def run_classifier(model: Path, crops: np.ndarray, out: dict[str, np.ndarray]) -> float:
    """The classifier's raw output tensor for the batch `crops`, and its quantization."""
    classifier = MaskClassifier(ClassifierOptions(model, threads=THREADS, runtime="litert"))
    runner = BatchRunner(classifier.interpreter)
    start = time.perf_counter()
    out[f"{model.stem}/raw"] = np.array(runner(classifier.to_input(crops)))
    seconds = time.perf_counter() - start
    scale, zero = runner.output_detail["quantization"]
    out[f"{model.stem}/quantization"] = np.array([scale, zero], np.float64)
    return seconds


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("ai-edge-litert", "numpy", "opencv-python-headless"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    inputs = np.load(argv[0])
    images = [inputs[k] for k in sorted((k for k in inputs.files if k.startswith("det_")),
                                        key=lambda k: int(k[4:]))]
    out: dict[str, np.ndarray] = {}
    seconds = {}
    start = time.perf_counter()
    for name in argv[2:]:
        model = Path(name)
        if f"crops_{model.stem}" in inputs.files:
            seconds[model.stem] = run_classifier(model, inputs[f"crops_{model.stem}"], out)
        else:
            seconds[model.stem] = run_detector(model, images, out)
    info = {"versions": versions(), "invoke_s": seconds,
            "total_s": time.perf_counter() - start}
    out["info"] = np.array(json.dumps(info))
    np.savez_compressed(argv[1], **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
