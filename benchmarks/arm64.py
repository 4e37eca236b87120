"""Proof on ARM: the shipped models give the same outputs on aarch64 as on x86.

    python -m benchmarks.arm64            # writes benchmarks/results/arm64.json, exit 0 = agree
    python -m benchmarks.arm64 --photos 2 --out /tmp/arm64 --json

An aarch64 CPython 3.11 (Debian's arm64 packages, unpacked with `apt-get download` + `dpkg -x`)
runs under qemu-user (`qemu-aarch64-static -L SYSROOT`, called directly: no binfmt) with the
aarch64 wheels of the `edge` extra (ai-edge-litert, numpy, opencv-python-headless at the versions
installed here, fetched by `pip download --platform ..._aarch64` and unzipped onto its PYTHONPATH).
`benchmarks/arm64_worker.py` runs the shipped YuNet detectors on a few face-mask-ilc-dev photos
and the shipped int8 classifiers on the faces cropped from them, once with this interpreter and
once under emulation, on the same inputs. The exit status is 0 only when every output agrees:
int8 tensors within one quantization step (the output tensor's scale), float tensors within
`FLOAT_ATOL` + `FLOAT_RTOL` x |x86 value|, and the same faces decoded (boxes within `BOX_ATOL` px).

The tools are cached under $MASKEDGE_ARM64_CACHE, else maskedge's cache folder + /arm64 (about
250 MB); preparing them the first time needs root (apt-get) and the package registries. The
time under emulation is no speed figure: RESULTS.md sets the MACs-based Raspberry Pi 4 estimate
beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from benchmarks.config import (
    FULL_OUT,
    REPO,
    JsonOption,
    SharedOption,
    default_shared,
    show_result,
    write_result,
)
from benchmarks.tables import fmt, short, table
from edge.core.console import EXIT_FAILED, cli_app, say, user_errors
from edge.core.fileio import cache_root

PROG = "python -m benchmarks.arm64"
RESULT_NAME = "arm64.json"
WORKER = Path(__file__).with_name("arm64_worker.py")
CACHE_ENV = "MASKEDGE_ARM64_CACHE"
DETECTORS = ("yunet_masked.tflite", "yunet.tflite")  # shipped default, then stock YuNet
CLASSIFIERS = ("face_mask_2c_int8.tflite", "face_mask_3c_int8.tflite")
PHOTOS = "datasets/face-mask-ilc-dev/images"
#: Float tolerance: |arm64 - x86| <= FLOAT_ATOL + FLOAT_RTOL * |x86| for every float output.
FLOAT_ATOL = 1e-4
FLOAT_RTOL = 1e-4
#: Decoded face boxes and landmarks (frame pixels) may differ by this much.
BOX_ATOL = 0.05
MAX_CROPS = 24
#: The emulated CPUs, the Raspberry Pis' own: Cortex-A72 (Pi 4, ARMv8.0-A: NEON, no dot product)
#: and Cortex-A76 (Pi 5, ARMv8.2-A: dot product), so LiteRT picks the kernels it picks on the
#: boards. qemu's default ("max") CPU also advertises SVE, which no Pi has; under it the int8
#: classifiers' outputs were wrong (240 quantization steps off, the same output for every face of
#: a batch), and right with `max,sve=off`: an SVE path of the emulator or of the kernels, not one
#: a Pi runs.
QEMU_CPUS = {"cortex-a72": "Raspberry Pi 4", "cortex-a76": "Raspberry Pi 5"}
#: The aarch64 CPython: Debian's own packages (Python 3.11 is bookworm's), run from a sysroot.
SYSROOT_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libexpat1",
    "zlib1g", "libffi8", "libssl3", "libstdc++6", "libgcc-s1", "libbz2-1.0", "liblzma5",
    "libsqlite3-0", "libuuid1", "libcrypt1", "libncursesw6", "libtinfo6")
WHEELS = ("ai-edge-litert", "numpy", "opencv-python-headless")
#: manylinux tags an aarch64 Debian bookworm (glibc 2.36) accepts.
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{v}_aarch64" for v in range(17, 37)))


class ToolError(RuntimeError):
    """qemu, the aarch64 sysroot or the wheels could not be prepared here."""


def default_cache() -> Path:
    return Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else cache_root() / "arm64"


def _run(cmd: list[str], cwd: Path | None = None, what: str = "",
         env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    except OSError as exc:
        raise ToolError(f"{what or cmd[0]}: {exc}") from None
    if done.returncode:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["failed"]
        raise ToolError(f"{what or ' '.join(cmd[:3])} failed: {tail[0][:200]}")
    return done.stdout


def _apt_download(packages: list[str], folder: Path) -> list[Path]:
    """`apt-get download` of `packages` into `folder`; with root, adds the arm64 architecture
    and refreshes the lists once when a package cannot be found."""
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise ToolError("apt-get and dpkg are needed to fetch Debian packages (not found)")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _run(["apt-get", "download", "-q", *packages], folder, "apt-get download")
    except ToolError:
        if os.geteuid() != 0:
            raise
        if "arm64" not in _run(["dpkg", "--print-foreign-architectures"]).split():
            _run(["dpkg", "--add-architecture", "arm64"], what="dpkg --add-architecture arm64")
        _run(["apt-get", "update", "-q"], what="apt-get update")
        _run(["apt-get", "download", "-q", *packages], folder, "apt-get download")
    return sorted(folder.glob("*.deb"))


def _unpack_debs(debs: list[Path], target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        _run(["dpkg", "-x", str(deb), str(tmp)], what=f"dpkg -x {deb.name}")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def prepare_qemu(cache: Path) -> Path:
    """qemu-aarch64-static: on PATH, else Debian's qemu-user-static unpacked into the cache."""
    found = shutil.which("qemu-aarch64-static")
    if found:
        return Path(found)
    binary = cache / "qemu" / "usr" / "bin" / "qemu-aarch64-static"
    if not binary.is_file():
        debs = _apt_download(["qemu-user-static"], cache / "debs-qemu")
        _unpack_debs(debs, cache / "qemu")
        shutil.rmtree(cache / "debs-qemu", ignore_errors=True)
    return binary


def prepare_sysroot(cache: Path) -> Path:
    """An aarch64 root holding Debian's python3.11 and the libraries it and the wheels load."""
    root = cache / "sysroot"
    if not (root / "usr" / "bin" / "python3.11").is_file():
        debs = _apt_download([f"{p}:arm64" for p in SYSROOT_PACKAGES], cache / "debs-arm64")
        _unpack_debs(debs, root)
        shutil.rmtree(cache / "debs-arm64", ignore_errors=True)
    return root


def wheel_pins() -> list[str]:
    """The edge extra's binary wheels at the versions this interpreter has."""
    pins = []
    for name in WHEELS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise ToolError(f"{name} is not installed here (pip install -e '.[edge]')") from None
    return pins


def prepare_site(cache: Path) -> Path:
    """The aarch64 wheels (and their pure-Python dependencies) unzipped into one folder."""
    pins = wheel_pins()
    site = cache / ("site-" + "-".join(p.split("==")[1] for p in pins))
    if (site / ".complete").is_file():
        return site
    wheels = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache))
    try:
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
              "--only-binary=:all:", "--python-version", "3.11", *platforms, "-d", str(wheels),
              *pins], what="pip download of the aarch64 wheels")
        shutil.rmtree(site, ignore_errors=True)
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    (site / ".complete").write_text("\n".join(pins) + "\n")
    return site


def prepare_tools(cache: Path) -> dict[str, Path]:
    """qemu, the sysroot and the wheels, prepared once into `cache`; ToolError when impossible."""
    cache.mkdir(parents=True, exist_ok=True)
    tools = {"qemu": prepare_qemu(cache), "sysroot": prepare_sysroot(cache),
             "site": prepare_site(cache)}
    _run([*emulated_python(tools, next(iter(QEMU_CPUS))), "-c",
          "import numpy, cv2, ai_edge_litert.interpreter"],
         what="the emulated Python importing numpy, cv2 and ai_edge_litert",
         env=emulated_env(tools))
    return tools


def emulated_env(tools: dict[str, Path]) -> dict[str, str]:
    """The emulated Python's whole environment: the wheels and the checkout on its path."""
    return {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": f"{tools['site']}:{REPO}", "LC_ALL": "C.UTF-8"}


def emulated_python(tools: dict[str, Path], cpu: str) -> list[str]:
    root = tools["sysroot"]
    return [str(tools["qemu"]), "-cpu", cpu, "-L", str(root),
            str(root / "usr" / "bin" / "python3.11")]


def pick_photos(folder: Path, count: int) -> list[Path]:
    """`count` photos spread evenly over the sorted folder (the same ones on every run)."""
    files = sorted(folder.glob("*.jpg"))
    if len(files) < count:
        raise ValueError(f"{folder} holds {len(files)} .jpg photos, fewer than --photos {count}")
    return files[:: max(1, len(files) // count)][:count]


def make_inputs(photos: list[Path], models: Path, target: Path) -> dict[str, int]:
    """The detector's inputs (each photo scaled and padded as the device does) and the face crops
    at each classifier's input size, found by the shipped detector, saved to `target` (.npz)."""
    import cv2

    from edge.core.imageops import crop_face, resize_to_input
    from edge.core.tflite_metadata import read_contract
    from edge.detection.detectors import YuNetTFLiteDetector

    seen: list[np.ndarray] = []

    class Recording(YuNetTFLiteDetector):
        def _detect_bgr(self, bgr: np.ndarray) -> Any:
            seen.append(bgr)
            return super()._detect_bgr(bgr)

    detector = Recording(models / DETECTORS[0], threads=1, runtime="litert")
    faces = []
    for photo in photos:
        rgb = cv2.cvtColor(cv2.imread(str(photo), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        faces += [crop_face(rgb, face.box) for face in detector.detect(rgb)]
    if not faces:
        raise ValueError(f"the detector finds no face in {', '.join(p.name for p in photos)}")
    arrays = {f"det_{i}": bgr for i, bgr in enumerate(seen)}
    for name in CLASSIFIERS:
        size = read_contract(models / name).input_size
        arrays[f"crops_{Path(name).stem}"] = np.stack(
            [resize_to_input(face, size) for face in faces[:MAX_CROPS]])
    np.savez(target, **arrays)
    return {"photos": len(photos), "crops": min(len(faces), MAX_CROPS)}


def run_worker(python: list[str], env: dict[str, str], inputs: Path, out: Path,
               models: list[Path]) -> tuple[dict[str, np.ndarray], float]:
    """The worker's outputs under `python` and its wall time in seconds."""
    start = time.perf_counter()
    _run([*python, str(WORKER), str(inputs), str(out), *map(str, models)],
         what=f"{Path(python[0]).name} {WORKER.name}", env=env)
    seconds = time.perf_counter() - start
    with np.load(out) as data:
        return {k: data[k] for k in data.files}, seconds


def _float_row(stem: str, x86: dict[str, np.ndarray], arm: dict[str, np.ndarray]) -> dict:
    """Max differences of a YuNet's raw outputs and of its decoded faces."""
    raw = [k for k in x86 if k.startswith(f"{stem}/") and not k.endswith("/faces")]
    worst, excess, values = 0.0, -np.inf, 0
    for key in raw:
        a, b = arm[key].astype(np.float64), x86[key].astype(np.float64)
        values += b.size
        if a.shape != b.shape:
            worst = excess = np.inf
            continue
        diff = np.abs(a - b)
        worst = max(worst, float(diff.max(initial=0.0)))
        excess = max(excess, float((diff - FLOAT_ATOL - FLOAT_RTOL * np.abs(b)).max(initial=-1)))
    faces = [k for k in x86 if k.startswith(f"{stem}/") and k.endswith("/faces")]
    same_count = all(arm[k].shape == x86[k].shape for k in faces)
    box = max((float(np.abs(arm[k] - x86[k])[:, :14].max(initial=0.0)) for k in faces
               if arm[k].shape == x86[k].shape), default=0.0)
    n_faces = sum(len(x86[k]) for k in faces)
    return {"model": f"{stem}.tflite", "kind": "float32", "tensors": len(raw), "values": values,
            "max_abs_diff": worst, "tolerance": f"{FLOAT_ATOL:g} + {FLOAT_RTOL:g} x |x86|",
            "faces": n_faces, "same_faces": same_count, "max_box_diff_px": box,
            "agree": excess <= 0 and same_count and box <= BOX_ATOL}


def _int8_row(stem: str, x86: dict[str, np.ndarray], arm: dict[str, np.ndarray]) -> dict:
    """Max difference of a classifier's quantized output, in quantization steps."""
    a, b = arm[f"{stem}/raw"].astype(np.int64), x86[f"{stem}/raw"].astype(np.int64)
    scale = float(x86[f"{stem}/quantization"][0])
    steps = int(np.abs(a - b).max(initial=0)) if a.shape == b.shape else None
    return {"model": f"{stem}.tflite", "kind": str(x86[f"{stem}/raw"].dtype), "tensors": 1,
            "values": int(b.size), "crops": int(b.shape[0]), "max_steps": steps,
            "scale": scale, "max_abs_diff": None if steps is None else steps * scale,
            "same_argmax": a.shape == b.shape and bool((a.argmax(1) == b.argmax(1)).all()),
            "tolerance": "1 quantization step", "agree": steps is not None and steps <= 1}


def compare(x86: dict[str, np.ndarray], arm: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per model; a key missing on one side makes its model disagree."""
    if set(x86) - {"info"} != set(arm) - {"info"}:
        missing = sorted(set(x86) ^ set(arm))
        raise ToolError(f"the two runs wrote different outputs: {', '.join(missing[:4])}")
    rows = [_float_row(Path(d).stem, x86, arm) for d in DETECTORS]
    return rows + [_int8_row(Path(c).stem, x86, arm) for c in CLASSIFIERS]


def pi_estimate(results: Path = FULL_OUT) -> dict[str, Any] | None:
    """The MACs-based Raspberry Pi 4 estimate of the input size sweep (`sizes.json`), if any."""
    try:
        result = json.loads((results / "sizes.json").read_text())["result"]
    except (OSError, ValueError, KeyError):
        return None
    rec = result.get("recommended") or {}
    if rec.get("pi_ms_per_face_estimate") is None:
        return None
    return {"ms_per_face": rec["pi_ms_per_face_estimate"], "size": rec.get("size"),
            "pi_core_int8_gmacs": rec.get("pi_core_int8_gmacs"),
            "here_core_int8_gmacs": rec.get("here_core_int8_gmacs"),
            "assumption": result.get("pi_cpu_assumption")}


def measure(shared: Path, photos: int, cache: Path, models: Path) -> dict[str, Any]:
    """Prepare the tools, run the worker on x86 and under qemu, compare."""
    started, start = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
    say("preparing qemu-aarch64, the aarch64 Python and the aarch64 wheels (cached) ...")
    tools = prepare_tools(cache)
    prep_s = time.perf_counter() - start
    files = [models / name for name in (*DETECTORS, *CLASSIFIERS)]
    with tempfile.TemporaryDirectory(prefix="maskedge-arm64-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        counts = make_inputs(pick_photos(shared / PHOTOS, photos), models, inputs)
        say(f"x86: {counts['photos']} photos, {counts['crops']} face crops ...")
        x86, x86_s = run_worker([sys.executable], {**os.environ, "PYTHONNOUSERSITE": "1"},
                                inputs, Path(tmp) / "x86.npz", files)
        arms = {}
        for cpu, board in QEMU_CPUS.items():
            say(f"aarch64 {cpu} ({board}) under qemu-user (slow: emulation) ...")
            arms[cpu] = run_worker(emulated_python(tools, cpu), emulated_env(tools), inputs,
                                   Path(tmp) / f"arm-{cpu}.npz", files)
    rows = [{**row, "cpu": cpu, "board": QEMU_CPUS[cpu]}
            for cpu, (arm, _) in arms.items() for row in compare(x86, arm)]
    arm, arm_s = arms[next(iter(QEMU_CPUS))]
    return {"started": started, "seconds": time.perf_counter() - start, "prepare_s": prep_s,
            **counts, "rows": rows, "agree": all(r["agree"] for r in rows),
            "x86": {**json.loads(str(x86["info"])), "wall_s": x86_s},
            "arm64": {**json.loads(str(arm["info"])), "wall_s": arm_s,
                      "emulator": "qemu-aarch64-static (user mode)"},
            "float_atol": FLOAT_ATOL, "float_rtol": FLOAT_RTOL, "box_atol_px": BOX_ATOL,
            "pi4_estimate": pi_estimate()}


def _row_cells(row: dict[str, Any]) -> list[str]:
    if row["kind"] == "float32":
        diff = f"{row['max_abs_diff']:.2e}"
        faces = (f"{row['faces']} faces, {'same' if row['same_faces'] else 'DIFFERENT'}; boxes "
                 f"within {row['max_box_diff_px']:.1e} px")
    else:
        diff = (f"{row['max_steps']} step{'s' if row['max_steps'] != 1 else ''} "
                f"(scale {row['scale']:.4g})" if row["max_steps"] is not None else "shape differs")
        faces = (f"{row['crops']} crops, argmax "
                 f"{'identical' if row['same_argmax'] else 'DIFFERENT'}")
    return [f"{row.get('cpu', '?')} ({row.get('board', '?')})", f"`{row['model']}`", row["kind"],
            str(row["values"]), diff, row["tolerance"], faces,
            "yes" if row["agree"] else "**NO**"]


def render_arm64(r: dict[str, Any]) -> list[str]:
    """RESULTS.md's ARM section from `arm64.json`."""
    arm, x86 = r.get("arm64", {}), r.get("x86", {})
    ver = arm.get("versions", {})
    lines = ["## ARM64: the same outputs on aarch64 (emulated) as on x86", "",
             f"From `{r.get('command', PROG)}` (started {r.get('started', '?')}, "
             f"{fmt(r.get('seconds'), 0)} s). An aarch64 CPython {ver.get('python', '?')} "
             "(Debian's arm64 packages) under qemu-user, with the aarch64 wheels of the `edge` "
             f"extra (ai-edge-litert {ver.get('ai-edge-litert', '?')}, numpy "
             f"{ver.get('numpy', '?')}, opencv-python-headless "
             f"{ver.get('opencv-python-headless', '?')}), ran `benchmarks/arm64_worker.py` (the "
             "device code: `YuNetLite`, `MaskClassifier`, LiteRT, 1 thread) on the same inputs "
             f"as this x86 machine: {r.get('photos', '?')} face-mask-ilc-dev photos scaled and "
             f"padded as the device does, and the {r.get('crops', '?')} faces the shipped "
             "detector crops from them. Raw output tensors compared (int8: quantized values; "
             "float: |arm64 - x86| against the tolerance), and the decoded faces.", ""]
    lines += table(["emulated CPU", "model", "output", "values", "max difference", "tolerance",
                    "decoded", "agree"], [_row_cells(row) for row in r.get("rows", [])])
    verdict = "all outputs agree" if r.get("agree") else "**some outputs disagree**"
    lines += ["", f"Result: {verdict} (exit {0 if r.get('agree') else EXIT_FAILED}). The "
              f"models' time under emulation, {fmt(sum(arm.get('invoke_s', {}).values()), 1)} s "
              f"(the worker {fmt(arm.get('wall_s'), 1)} s with start-up) against "
              f"{fmt(sum(x86.get('invoke_s', {}).values()), 2)} s natively, is **not a speed "
              "figure**: qemu translates every instruction."]
    pi = r.get("pi4_estimate")
    if pi:
        lines += ["", f"The speed figure for a Pi 4 is the MACs-based estimate of the input size "
                  f"sweep: about {fmt(pi['ms_per_face'], 0)} ms per face for the "
                  f"{pi.get('size', '?')} px 2-class int8 model on one Cortex-A72 core (nominal "
                  f"int8 peak {fmt(pi.get('pi_core_int8_gmacs'), 0)} GMAC/s against "
                  f"{fmt(pi.get('here_core_int8_gmacs'), 0)} here, at the same share of peak; "
                  "an extrapolation, not a measurement)."]
    return lines


app = cli_app(no_args_is_help=False,
              help="Run the shipped detector and classifiers on aarch64 (qemu-user) and on x86 "
                   f"and compare their outputs; writes benchmarks/results/{RESULT_NAME}.")


@app.command()
def main(
    photos: Annotated[int, typer.Option(
        min=1, max=50, help="face-mask-ilc-dev photos to run (spread over the folder).")] = 3,
    json_out: JsonOption = False,
    out: Annotated[Path | None, typer.Option(
        help=f"Folder for {RESULT_NAME} (default: {short(FULL_OUT)}).", show_default=False)
    ] = None,
    cache: Annotated[Path | None, typer.Option(
        help=f"Where qemu, the aarch64 Python and wheels are kept (default: ${CACHE_ENV}, else "
        "maskedge's cache folder + /arm64).", show_default=False)] = None,
    shared: SharedOption = None,
) -> None:
    """Exit 0 only when every output agrees: int8 within one quantization step, float within
    1e-4 + 1e-4 x |x86|, the same decoded faces. Exit 1 when some disagree, 2 when the tools
    cannot be prepared."""
    from edge.core.assets import project_models_dir

    with user_errors(PROG, (ToolError, ValueError, OSError), json_out=json_out):
        shared = shared or default_shared()
        if not (shared / PHOTOS).is_dir():
            raise ValueError(f"photos not found: {shared / PHOTOS} (pass --shared or set "
                             "MASKEDGE_SHARED)")
        result = measure(shared, photos, cache or default_cache(), project_models_dir())
        result["command"] = PROG + (f" --photos {photos}" if photos != 3 else "")
        target = write_result(result, out or FULL_OUT, RESULT_NAME)
    show_result(result, json_out, render_arm64(result))
    say(f"results: {target} ({result['seconds']:.0f} s)")
    if not result["agree"]:
        raise typer.Exit(EXIT_FAILED)


if __name__ == "__main__":
    app()
