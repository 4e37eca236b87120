"""Shared test fixtures and paths: where the real data, weights and detectors live (../shared).

The helpers only tests use (stand-ins, receivers, builders, the reliability case list) are in
tests/support/, imported as `support.<module>`: pytest puts this folder on sys.path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.core.console import quiet_tensorflow_logs

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKEDGE_SHARED", ROOT.parent / "shared"))
DATA_2C = SHARED / "datasets" / "face-mask-2c"
DATA_VOC = SHARED / "datasets" / "face-mask-voc"
BACKBONE = SHARED / "weights" / "mobilenet_v2_1.0_no_top.weights.h5"
DETECTORS = SHARED / "detectors"

quiet_tensorflow_logs()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set MASKEDGE_SHARED")
    return SHARED


