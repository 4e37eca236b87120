"""What a section gets: the configuration, the model store, a logger and earlier results.

Also the one way sections start a measuring child process (`run_child`), so every timed number
comes from a process that does only that measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.config import REPO, BenchConfig
from benchmarks.store import ModelStore
from edge.core.console import TF_LOG_LEVEL


@dataclass
class SectionContext:
    cfg: BenchConfig
    store: ModelStore
    log: Callable[[str], None]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier section results
    started: float = field(default_factory=time.perf_counter)  # when the run began

    def run_elapsed_s(self) -> float:
        return time.perf_counter() - self.started


def run_child(spec: dict[str, Any], timeout_s: float = 1200.0,
              python: str | Path | None = None) -> dict[str, Any]:
    """Run `benchmarks.worker` on one spec in a fresh process; its JSON result, or an error row.

    `python` runs the child under another interpreter (a side venv), with only the repository on
    its PYTHONPATH so it imports `benchmarks.worker` and `edge` but none of this venv's packages.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=TF_LOG_LEVEL, PYTHONUNBUFFERED="1")
    if python is not None:
        env["PYTHONPATH"] = str(REPO)
    try:
        done = subprocess.run([str(python or sys.executable), "-m", "benchmarks.worker",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout_s, cwd=REPO, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timed out after {timeout_s:.0f} s"}
    except OSError as exc:  # the side interpreter is missing or not executable
        return {"status": "error", "error": f"cannot start {python}: {exc.strerror or exc}"}
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "error", "error": f"child exited {done.returncode}: {tail[:300]}"}
