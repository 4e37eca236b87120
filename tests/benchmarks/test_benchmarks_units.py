"""Fast unit tests of the benchmark harness's pure pieces: statistics, MAC counting, CPU peaks,
target checks, recommendation, roofline rows, report rendering, plots and CLI input errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.machine import macs_per_cycle, nominal_peak, parse_cpuinfo
from benchmarks.report import render_report
from benchmarks.stages.roofline import roofline_rows
from benchmarks.stages.sizes import recommend
from benchmarks.stats import percentile, summarize
from benchmarks.tables import table
from benchmarks.targets import check_targets
from benchmarks.worker import time_calls

ROOT = Path(__file__).resolve().parents[2]

AMD_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.132
flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC
cpu MHz\t\t: 2596.132
flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16
"""

INTEL_AVX2 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
cpu MHz\t\t: 3200.000
flags\t\t: fpu sse4_2 avx avx2 fma
"""

PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41

processor\t: 1
Features\t: fp asimd evtstrm crc32 cpuid

processor\t: 2
Features\t: fp asimd evtstrm crc32 cpuid

processor\t: 3
Features\t: fp asimd evtstrm crc32 cpuid

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def test_percentiles_and_summary() -> None:
    times = list(range(1, 101))  # 1..100 ms
    assert percentile(times, 50) == pytest.approx(50.5)
    assert percentile(times, 99) == pytest.approx(99.01)
    assert np.isnan(percentile([], 50))
    s = summarize([2.0, 2.0, 4.0], items_per_call=1)
    assert s["p50_ms"] == 2.0 and s["runs"] == 3
    assert s["items_per_s"] == pytest.approx(500.0)
    assert s["mean_ms"] == pytest.approx(8 / 3)
    with pytest.raises(ValueError):
        summarize([])


def test_time_calls_counts_warmup_and_runs() -> None:
    calls: list[int] = []
    first, times = time_calls(calls.append, warmup=3, runs=5)
    assert calls == [0, 1, 2, 0, 1, 2, 3, 4]
    assert len(times) == 5 and first >= 0 and all(t >= 0 for t in times)


def test_parse_cpuinfo_x86_and_arm() -> None:
    amd = parse_cpuinfo(AMD_ZEN4)
    assert (amd.logical_cpus, amd.family, amd.vendor) == (2, 25, "AuthenticAMD")
    assert amd.mhz == pytest.approx(2596.132)
    assert "avx512_vnni" in amd.simd_flags() and "fpu" not in amd.simd_flags()
    pi = parse_cpuinfo(PI4)
    assert pi.logical_cpus == 4 and pi.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert pi.mhz is None and "asimd" in pi.flags


def test_nominal_peaks_state_their_assumption() -> None:
    amd = macs_per_cycle(parse_cpuinfo(AMD_ZEN4))
    assert (amd["fp32"], amd["int8"]) == (16, 64)  # Zen 4 runs AVX-512 on 256-bit pipes
    assert "Zen 4" in amd["fp32_assumption"]
    intel = nominal_peak(parse_cpuinfo(INTEL_AVX2), cores=1)
    assert intel["fp32_gmacs"] == pytest.approx(3.2 * 16)
    assert intel["int8_gmacs"] == pytest.approx(3.2 * 64)
    two = nominal_peak(parse_cpuinfo(AMD_ZEN4))
    assert two["cores"] == 2 and two["fp32_gmacs"] == pytest.approx(2 * 2.596132 * 16)
    assert macs_per_cycle(parse_cpuinfo(PI4))["int8"] == 16


def test_mac_count_matches_a_hand_count() -> None:
    keras = pytest.importorskip("keras")
    from benchmarks.stages.macs import count_macs

    inner = keras.Sequential([keras.Input((8, 8, 4)),
                              keras.layers.DepthwiseConv2D(3, padding="same"),
                              keras.layers.Conv2D(2, 1)], name="inner")
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    y = keras.layers.BatchNormalization()(y)
    y = inner(y)
    y = keras.layers.Conv2D(6, 3, strides=2, padding="valid")(y)
    y = keras.layers.Flatten()(y)
    y = keras.layers.Dense(5)(y)
    counted = count_macs(keras.Model(x, y))
    conv1 = 8 * 8 * 4 * (3 * 3 * 3)
    depthwise = 8 * 8 * 4 * (3 * 3)
    pointwise = 8 * 8 * 2 * 4
    strided = 3 * 3 * 6 * (3 * 3 * 2)  # (8 - 3) // 2 + 1 = 3 output rows and columns
    dense = (3 * 3 * 6) * 5
    assert counted["by_layer_type"] == {"Conv2D": conv1 + pointwise + strided,
                                        "DepthwiseConv2D": depthwise, "Dense": dense}
    assert counted["macs"] == conv1 + depthwise + pointwise + strided + dense


def _latency_rows(keras_ms: float, int8_ms: float) -> list[dict]:
    return [{"variant": "keras_predict", "label": "Keras predict", "threads": t, "status": "ok",
             "p50_ms": keras_ms, "p90_ms": keras_ms, "p99_ms": keras_ms, "items_per_s": 1.0}
            for t in (1, 2)] + [
            {"variant": "int8", "label": "TFLite int8", "threads": t, "status": "ok",
             "p50_ms": int8_ms, "p90_ms": int8_ms, "p99_ms": int8_ms, "items_per_s": 1.0}
            for t in (1, 2)]


def test_targets_pass_miss_and_lower_bound() -> None:
    results = {
        "latency": {"threads": [1, 2], "rows": _latency_rows(70.0, 4.0),
                    "wrapper_overhead": [{"threads": 1, "overhead_p50": 0.04},
                                         {"threads": 2, "overhead_p50": 0.12}]},
        "endtoend": {"pipeline": {"fps": 45.0}, "reference_loop": {"fps": 5.0}},
        "training": {"speedup": 6.0, "speedup_is_lower_bound": True},
    }
    checks = {c.name: c for c in check_targets(results)}
    speed = checks["int8 (LiteRT, project wrapper) vs Keras predict per image, 1 thread(s)"]
    assert speed.measured == pytest.approx(17.5) and speed.status == "PASS"
    over = [c for c in checks.values() if "overhead" in c.name]
    assert [c.status for c in over] == ["PASS", "MISS"]
    assert "over the limit by 2.0 points" in over[1].margin
    fps = checks["camera pipeline FPS (detect + classify, 640x480, 1-4 faces)"]
    assert fps.status == "MISS" and "short by 15.0 FPS" in fps.margin and "75%" in fps.margin
    ratio = checks["camera pipeline FPS vs the reference loop (Keras predict per face)"]
    assert ratio.measured == pytest.approx(9.0) and ratio.status == "PASS"
    train = checks["training to the same test accuracy vs the reference recipe"]
    assert train.status == "MISS (lower bound)" and "may be higher" in train.margin
    assert all(c.status == "not measured" for c in check_targets({}))


def test_recommend_picks_smallest_size_within_half_a_point() -> None:
    rows = [{"size": 96, "int8_accuracy": 0.974, "macs": 55e6, "int8_p50_ms": {"1": 0.6}},
            {"size": 128, "int8_accuracy": 0.976, "macs": 98e6, "int8_p50_ms": {"1": 1.1}},
            {"size": 224, "int8_accuracy": 0.980, "macs": 300e6, "int8_p50_ms": {"1": 4.0}}]
    rec = recommend(rows, here_core_gmacs=166.0, pi_core_gmacs=24.0)
    assert rec["size"] == 128 and rec["best_size"] == 224
    assert rec["pi_ms_per_face_estimate"] == pytest.approx(1.1 * 166 / 24)
    assert "within 0.5 point" in rec["reason"] and "extrapolation" in rec["reason"]
    assert recommend([], 1.0, 1.0) is None


def test_roofline_rows_use_the_matching_peak() -> None:
    peaks = {1: {"fp32_gmacs": 40.0, "int8_gmacs": 160.0},
             2: {"fp32_gmacs": 80.0, "int8_gmacs": 320.0}}
    unavailable = {"variant": "all@tflite_runtime", "threads": 1, "status": "unavailable"}
    rows = roofline_rows([*_latency_rows(100.0, 2.0), unavailable], 300_000_000, peaks)
    assert len(rows) == 4
    int8_2t = next(r for r in rows if r["variant"] == "int8" and r["threads"] == 2)
    assert int8_2t["achieved_gmacs"] == pytest.approx(150.0)
    assert int8_2t["fraction_of_peak"] == pytest.approx(150.0 / 320.0)
    keras_1t = next(r for r in rows if r["variant"] == "keras_predict" and r["threads"] == 1)
    assert keras_1t["precision"] == "fp32" and keras_1t["achieved_gmacs"] == pytest.approx(3.0)


def _sections() -> dict:
    env = {"run_id": "R1", "status": "ok", "seconds": 3.0, "started": "2026-01-01T00:00:00+00:00"}
    return {
        "latency": {**env, "result": {
            "threads": [1, 2], "input_size": 224, "images": {"n": 4, "size": 224},
            "rows": [*_latency_rows(70.0, 4.0),
                     {"variant": "all@tflite_runtime", "label": "TFLite (tflite_runtime)",
                      "threads": 1, "status": "unavailable", "error": "not installed here"}],
            "wrapper_overhead": [{"threads": 1, "overhead_p50": 0.05, "overhead_mean": 0.04,
                                  "wrapper_p50_ms": 4.2, "bare_p50_ms": 4.0}]}},
        "training": {**env, "run_id": "R0", "result": {
            "cached": {"test_accuracy": 0.97, "wall_s": 80.0, "epochs": 20},
            "reference": {"epochs": [{"epoch": 1, "test_accuracy": 0.9, "elapsed_s": 70.0}],
                          "reached": False},
            "speedup": 0.875, "speedup_is_lower_bound": True}},
        "sizes": {**env, "status": "error", "error": "RuntimeError: boom"},
    }


def test_report_renders_tables_targets_and_staleness(tmp_path: Path) -> None:
    machine = {"cpu": {"model": "AMD EPYC", "vendor": "AuthenticAMD", "family": 25,
                       "logical_cpus": 2, "mhz": 2596.1, "flags": ["avx2", "avx512_vnni"]},
               "platform": "Linux", "versions": {"python": "3.11.9", "tensorflow": "2.21.0"}}
    run = {"run_id": "R1", "command": "python -m benchmarks.run", "quick": False,
           "finished": "2026-01-01T00:30:00+00:00"}
    text = render_report(_sections(), machine, run, tmp_path / "RESULTS.md")
    assert text.startswith("# maskedge benchmarks")
    assert "`python -m benchmarks.run`" in text and "2026-01-01T00:30:00+00:00" in text
    assert "| CPU | AMD EPYC (AuthenticAMD, family 25) |" in text
    assert "| tensorflow | 2.21.0 |" in text
    assert "17.5x" in text and "**PASS**" in text and "**MISS (lower bound)**" in text
    assert "**unavailable**: not installed here" in text
    assert "**Failed:** RuntimeError: boom" in text
    assert "training come from an earlier run" in text
    assert "_Not run: `python -m benchmarks.run --only endtoend`._" in text
    assert ">= 0.9x" in text  # lower-bound speed-up shown as such
    assert table(["a", "b"], [[1, 2]]) == ["| a | b |", "| --- | --- |", "| 1 | 2 |"]


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from benchmarks.plots import make_plots

    results = {
        "latency": {"rows": _latency_rows(70.0, 4.0)},
        "accuracy": {"rows": [{"variant": "keras", "accuracy": 0.97},
                              {"variant": "int8", "accuracy": 0.96}]},
        "sizes": {"rows": [{"size": 96, "int8_p50_ms": {"1": 0.7}, "int8_accuracy": 0.94},
                           {"size": 224, "int8_p50_ms": {"1": 4.0}, "int8_accuracy": 0.97}]},
        "endtoend": {"pipeline": {"fps": 70.0, "stages_ms": {"detect": 8.0, "classify": 6.0}},
                     "reference_loop": {"fps": 6.0,
                                        "stages_ms": {"detect": 8.0, "classify": 150.0}}},
        "training": {"cached": {"wall_s": 80.0, "test_accuracy": 0.97},
                     "reference": {"epochs": [{"elapsed_s": 70.0, "test_accuracy": 0.9}]}},
    }
    made = make_plots(results, tmp_path)
    assert set(made) == {"latency_accuracy", "pipeline_stages", "training_curves"}
    for path in made.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert make_plots({}, tmp_path / "none") == {}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)


def test_cli_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    bad = _cli("--only", "nonsense", "--out", str(tmp_path))
    from benchmarks.run import SECTIONS

    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"benchmarks: error: unknown section nonsense; choose from {', '.join(SECTIONS)}"]
    clobber = _cli("--quick", "--out", str(ROOT / "benchmarks" / "results"))
    assert clobber.returncode == 2 and "must not write over the full report" in clobber.stderr
    missing = _cli("--quick", "--out", str(tmp_path), "--shared", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert "Traceback" not in bad.stderr + clobber.stderr + missing.stderr
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- tflite_runtime side


def test_side_python_none_option_and_quick_mode_never_download(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    from benchmarks.config import make_config
    from benchmarks.stages import latency

    def no_download(venv: Path, log: object) -> str:
        raise AssertionError("must not create a venv here")

    monkeypatch.setattr(latency, "create_venv", no_download)
    missing = tmp_path / "venv"
    off = make_config(True, tmp_path, tflite_runtime_python="none")
    assert off.tflite_runtime_python == "none"
    assert latency.side_python(off, print, missing) == (
        None, "disabled (--tflite-runtime-python none)")
    assert latency.side_python(make_config(False, tmp_path, tflite_runtime_python="None"),
                               print, missing)[0] is None
    quick = make_config(True, tmp_path)
    assert latency.side_python(quick, print, missing) == (None, latency.NO_INTERPRETER)
    given = make_config(True, tmp_path, tflite_runtime_python=sys.executable)
    assert latency.side_python(given, print, missing) == (Path(sys.executable), None)
    python = missing / "bin" / "python"  # an existing venv is used, in quick mode too
    python.parent.mkdir(parents=True)
    python.touch()
    assert latency.side_python(quick, print, missing) == (python, None)
    assert not (tmp_path / "RESULTS.md").exists()


def test_full_mode_creates_the_venv_and_a_failure_is_one_line(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from benchmarks.config import make_config
    from benchmarks.stages import latency

    calls = []

    def offline(venv: Path, log: object) -> str:
        calls.append(venv)
        return "could not create venv: pip install failed: ERROR: No matching distribution"

    monkeypatch.setattr(latency, "create_venv", offline)
    full = make_config(False, tmp_path)
    info, reason = latency.tflite_runtime_side(full, print, tmp_path / "venv")
    assert calls == [tmp_path / "venv"] and info is None
    assert reason.startswith("could not create venv") and "\n" not in reason
    broken = make_config(True, tmp_path, tflite_runtime_python=str(tmp_path / "no-python"))
    info, reason = latency.tflite_runtime_side(broken, print, tmp_path / "venv")
    assert info is None and "cannot run tflite_runtime (cannot start" in reason


def test_failed_venv_creation_leaves_nothing_behind(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.stages import latency

    venv, logged = tmp_path / "venv", []
    (venv / "bin").mkdir(parents=True)
    monkeypatch.setattr(latency.sys, "executable", "/bin/false")  # 'python -m venv' fails
    reason = latency.create_venv(venv, logged.append)
    assert reason is not None and "venv failed: exit 1" in reason and "\n" not in reason
    assert not venv.exists() and len(logged) == 1


def _model_and_images(tmp_path: Path) -> tuple[Path, Path]:
    from edge.core.tflite_metadata import read_contract

    model = ROOT / "models" / "face_mask_2c_int8.tflite"
    h, w = read_contract(model).input_size
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (3, h, w, 3), dtype=np.uint8))
    return model, images


def test_worker_runs_under_a_given_interpreter(tmp_path: Path) -> None:
    from benchmarks.context import run_child

    model, images = _model_and_images(tmp_path)
    spec = {"kind": "tflite", "model": str(model), "threads": 1, "runtime": "litert",
            "images": str(images), "warmup": 1, "runs": 3}
    row = run_child(spec, timeout_s=120.0, python=sys.executable)  # stands in for the side venv
    assert row["status"] == "ok", row
    assert row["runtime"] == "litert" and row["runs"] == 3 and row["p50_ms"] > 0
    info = run_child({"kind": "runtime_info", "runtime": "litert"}, python=sys.executable)
    assert info["status"] == "ok" and info["numpy"] == np.__version__
    gone = run_child(spec, python=tmp_path / "no-python")
    assert gone["status"] == "error" and gone["error"].startswith("cannot start")


def test_worker_reports_a_model_that_does_not_load(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import edge.inference.classifier
    from benchmarks import worker
    from edge.core.runtime import RuntimeUnavailable

    def too_new(path: object, threads: object, runtime: str) -> None:
        raise RuntimeUnavailable(f"no TFLite runtime could load {path}: {runtime}: Didn't find "
                                 "op for builtin opcode 'FULLY_CONNECTED' version '12'. An older "
                                 "version of this builtin might be supported. Are you using an")

    monkeypatch.setattr(edge.inference.classifier, "load_interpreter", too_new)
    model, images = _model_and_images(tmp_path)
    worker.main([json.dumps({"kind": "tflite", "model": str(model), "threads": 1,
                             "runtime": "litert", "images": str(images), "warmup": 1,
                             "runs": 1})])
    row = json.loads(capsys.readouterr().out)
    assert row == {"status": "unavailable", "does_not_load": True, "runtime": "litert",
                   "error": "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. "
                            "An older version of this builtin might be supported."}
    sections = _sections()
    sections["latency"]["result"]["rows"].append(
        {"variant": "dynamic@tflite_runtime", "label": "TFLite dynamic-range (tflite_runtime)",
         "threads": 1, **row, "runtime": "tflite_runtime 2.14.0"})
    sections["latency"]["result"]["tflite_runtime_python"] = {
        "python": str(ROOT / "benchmarks" / "work" / "tflite-runtime-venv" / "bin" / "python"),
        "runtime": "tflite_runtime 2.14.0", "numpy": "1.26.4", "python_version": "3.11.7"}
    text = render_report(sections, {}, {"run_id": "R1"}, tmp_path / "RESULTS.md")
    assert ("| TFLite dynamic-range (tflite_runtime) | tflite_runtime 2.14.0 | 1 | **does not "
            "load**: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older "
            "version of this builtin might be supported. |") in text
    assert "`benchmarks/work/tflite-runtime-venv/bin/python` (tflite_runtime 2.14.0" in text


def test_worker_tflite_path_needs_only_numpy_and_a_runtime(tmp_path: Path) -> None:
    """The side venv has numpy and tflite_runtime alone: no OpenCV, Typer or TensorFlow."""
    import json
    import os

    blocked = tmp_path / "blocked"
    for name in ("cv2", "typer", "tensorflow", "keras", "matplotlib"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    model, images = _model_and_images(tmp_path)
    spec = {"kind": "tflite", "model": str(model), "threads": 1, "runtime": "litert",
            "images": str(images), "warmup": 1, "runs": 2}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)])}
    for kind in ("tflite", "runtime_info"):
        done = subprocess.run([sys.executable, "-m", "benchmarks.worker",
                               json.dumps({**spec, "kind": kind})], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=120, check=False)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        assert row["status"] == "ok", (kind, row, done.stderr[-500:])


def test_training_speedup_is_time_to_the_highest_accuracy_both_reached() -> None:
    from benchmarks.stages.training import compare

    cached = [{"epoch": 1, "test_accuracy": 0.97, "elapsed_s": 60.0},
              {"epoch": 2, "test_accuracy": 0.99, "elapsed_s": 61.0},
              {"epoch": 3, "test_accuracy": 0.995, "elapsed_s": 62.0}]
    reference = [{"epoch": 1, "test_accuracy": 0.93, "elapsed_s": 85.0},
                 {"epoch": 2, "test_accuracy": 0.98, "elapsed_s": 140.0},
                 {"epoch": 3, "test_accuracy": 0.99, "elapsed_s": 600.0}]
    out = compare(cached, 70.0, 0.995, reference)
    assert out["common_accuracy"] == 0.99
    assert out["at_common"]["cached_s"] == 61.0 and out["at_common"]["reference_s"] == 600.0
    assert out["speedup"] == pytest.approx(600.0 / 61.0)
    ladder = {row["accuracy"]: row for row in out["ladder"]}
    assert set(ladder) == {0.95, 0.97, 0.98, 0.99, 0.995}
    assert ladder[0.95]["speedup"] == pytest.approx(140.0 / 60.0)  # fixed costs dominate early
    assert ladder[0.995]["reference_s"] is None and ladder[0.995]["speedup"] is None
    assert out["at_final"]["speedup_lower_bound"] == pytest.approx(600.0 / 62.0)
    # without a per-epoch record the whole cached run stands for its final accuracy
    whole = compare([], 70.0, 0.995, reference)
    assert whole["at_common"]["cached_s"] == 70.0 and whole["speedup"] == pytest.approx(600 / 70)


def test_integrations_rows_render_with_cost_over_the_loop(tmp_path: Path) -> None:
    from benchmarks.reliability.integrations import combine
    from benchmarks.reliability.integrations import render as render_integrations

    def measured(fps: float, cpu: float) -> dict:
        return {"status": "ok", "fps": fps, "cpu_ms": cpu, "alerts": 3,
                "stages_ms": {"detect": 20.0, "track": 0.3, "output": 0.2}, "outputs": {}}

    loop = combine("loop", (), [measured(30.0, 50.0), measured(20.0, 52.0), measured(25.0, 51.0)])
    assert loop["fps"] == 25.0 and loop["cpu_ms"] == 51.0 and loop["fps_rounds"] == [30, 20, 25]
    mqtt = combine("+ MQTT", ("alerts", "mqtt"), [
        {**measured(24.0, 53.5), "outputs": {"mqtt": {"published": 12, "dropped": 0}}}])
    missing = combine("+ MQTT", ("mqtt",), [{"status": "unavailable", "error": "no mosquitto"}])
    lines = render_integrations({"rows": [loop, mqtt, missing], "rounds": 3}, {})
    text = "\n".join(lines)
    assert "| loop | 25.0 (30.0, 20.0, 25.0) | 40.0 | 51.0 (50.0-52.0) | - |" in text
    assert "| + MQTT | 24.0 (24.0) | 41.7 | 53.5 | +2.5 |" in text
    assert "MQTT published 12, dropped 0" in text and "**unavailable**: no mosquitto" in text
