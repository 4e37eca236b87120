"""Issue 31.4: the shipped models give the same outputs on aarch64 (qemu-user, the Pis' CPUs)
as on x86; `python -m benchmarks.arm64` exits 0 only when they do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED

from benchmarks import arm64


def _outputs(raw: list[int]) -> dict[str, np.ndarray]:
    return {"m/raw": np.array(raw, np.uint8).reshape(-1, 3),
            "m/quantization": np.array([1 / 256, 0.0])}


def test_int8_outputs_agree_within_one_quantization_step_only() -> None:
    x86 = _outputs([10, 200, 46, 3, 4, 249])
    assert arm64._int8_row("m", x86, _outputs([11, 199, 46, 3, 5, 248]))["agree"]
    off = arm64._int8_row("m", x86, _outputs([12, 200, 46, 3, 4, 249]))
    assert not off["agree"] and off["max_steps"] == 2
    flipped = arm64._int8_row("m", x86, _outputs([200, 10, 46, 3, 4, 249]))
    assert not flipped["agree"] and not flipped["same_argmax"]


def test_the_emulated_cpus_are_the_pis_own() -> None:
    """qemu's default CPU ('max') has SVE, which no Pi has and under which the int8 kernels gave
    wrong answers: the comparison runs on the Pi 4's and the Pi 5's cores."""
    assert set(arm64.QEMU_CPUS) == {"cortex-a72", "cortex-a76"}
    tools = {"qemu": Path("/q"), "sysroot": Path("/s")}
    assert arm64.emulated_python(tools, "cortex-a72")[:3] == ["/q", "-cpu", "cortex-a72"]


def _can_prepare() -> str | None:
    cache = Path(os.environ.get(arm64.CACHE_ENV, arm64.default_cache()))
    if (cache / "sysroot").is_dir() and (cache / "qemu").is_dir():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "the aarch64 tools are not cached and cannot be fetched here (needs root, apt-get)"
    return None


@pytest.mark.slow
def test_shipped_models_agree_on_aarch64(tmp_path: Path) -> None:
    reason = _can_prepare()
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.arm64", "--photos", "1", "--out", str(tmp_path),
         "--shared", str(SHARED)], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads((tmp_path / "arm64.json").read_text())
    assert found["agree"]
    models = {row["model"] for row in found["rows"]}
    assert {"yunet_masked.tflite", "face_mask_2c_int8.tflite"} <= models
    assert {row["cpu"] for row in found["rows"]} == set(arm64.QEMU_CPUS)
    assert found["arm64"]["versions"]["machine"] == "aarch64"
