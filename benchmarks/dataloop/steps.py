"""The steps of one round, each a command a user would type, run as a child process.

    video    benchmarks/dataloop/clip.py          -> WORK/collect.mp4, WORK/truth.jsonl
    collect  edge run --source VIDEO --model SHIPPED --collect WORK/collected --collect-max N
    label    edge label WORK/collected --set FILE=LABEL ...   (the labels: annotator.py)
    fit      trainer fit BASE [WORK/collected/labelled] ...   -> WORK/before, WORK/after
    convert  convert RUN/model.h5 --quantize int8             -> RUN/model_int8.tflite
    evaluate edge evaluate ILC --only-list HELD-OUT --model M -> WORK/evaluate/NAME.json

Resumable: a step whose output exists is skipped (its time and command come from `state.json`,
written after every step), so a rerun after an interruption continues where it stopped; an
interrupted collect (no `.done` marker) or fit (no model.h5) is started again from scratch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.config import REPO
from edge.core.fileio import write_text_atomic

SHIPPED = REPO / "models" / "face_mask_2c_int8.tflite"
BASE_DATA = Path("datasets") / "face-mask-2c"
WEIGHTS = Path("weights") / "mobilenet_v2_1.0_no_top.weights.h5"
INPUT_SIZE = 128  # the shipped model's (models/MODEL_CARD.md)
DONE = ".done"


class StepError(RuntimeError):
    """A child command that failed: its command line and the last lines it printed."""


@dataclass(frozen=True)
class Plan:
    """How much one round does. Full: every held-in photo, the shipped model's own recipe."""

    quick: bool
    work: Path
    out: Path
    shared: Path
    photos: int | None = None  # held-in photos in the video (None: all)
    hold: int = 12  # frames per photo
    collect_max: int = 200
    epochs: int | None = None  # None: trainer fit's default, as the shipped model was trained
    limit_per_class: int | None = None
    eval_limit: int | None = None  # held-out photos scored (None: every one)
    max_drop: float | None = None  # convert's gate (None: its default, 1 point)

    @property
    def collected(self) -> Path:
        return self.work / "collected"

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def quick_plan(work: Path, out: Path, shared: Path) -> Plan:
    """A smoke run for tests: a few photos, a tiny budget, 1 epoch on 30 base images a class."""
    return Plan(True, work, out, shared, photos=10, hold=6, collect_max=10, epochs=1,
                limit_per_class=30, eval_limit=4, max_drop=100.0)


def tool(name: str) -> str:
    """The console script `name` of this venv (beside this Python), else the one on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.is_file() else (shutil.which(name) or name)


def shown(argv: list[str]) -> str:
    """A command line as a user would type it: the tool's name, paths relative to the repo."""
    def one(arg: str) -> str:
        path = Path(arg)
        if path.is_absolute() and path.is_relative_to(REPO.parent):
            return os.path.relpath(path, REPO)
        return arg
    return shlex.join([Path(argv[0]).name, *(one(a) for a in argv[1:])])


@dataclass
class State:
    """What each finished step did (`state.json` in the work folder)."""

    path: Path
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, work: Path) -> State:
        path = work / "state.json"
        try:
            return cls(path, json.loads(path.read_text())["steps"])
        except (OSError, ValueError, KeyError):
            return cls(path)

    def record(self, name: str, **info: Any) -> None:
        self.steps[name] = info
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps({"steps": self.steps}, indent=1) + "\n")


def run(argv: list[str], log: Path, stdout: Path | None = None) -> float:
    """Run one command (stderr appended to `log`, stdout to `stdout` or the log); its seconds.
    StepError when it exits non-zero."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(open(log, "a", encoding="utf-8"))
        err.write(f"\n$ {shown(argv)}\n")
        err.flush()
        out = stack.enter_context(open(stdout, "w", encoding="utf-8")) if stdout else err
        code = subprocess.run(argv, stdout=out, stderr=err, cwd=REPO, env=env,
                              check=False).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise StepError(f"`{shown(argv)}` exited {code}: {' | '.join(tail)[:400]}")
    return seconds


def collect_argv(plan: Plan, video: Path) -> list[str]:
    return [tool("edge"), "run", "--source", str(video), "--model", str(SHIPPED),
            "--collect", str(plan.collected), "--collect-max", str(plan.collect_max),
            "--quiet", "--json-summary"]


def label_argv(plan: Plan, pairs: list[tuple[str, str]]) -> list[str]:
    return [tool("edge"), "label", str(plan.collected),
            *(x for file, label in pairs for x in ("--set", f"{file}={label}"))]


def fit_argv(plan: Plan, name: str) -> list[str]:
    """The shipped model's recipe (models/MODEL_CARD.md, "Reproduce"); `after` adds the labelled
    faces as a second source. Nothing else differs."""
    data = [str(plan.shared / BASE_DATA)]
    if name == "after":
        data.append(str(plan.collected / "labelled"))
    argv = [tool("trainer"), "fit", *data, "--weights", str(plan.shared / WEIGHTS),
            "--input-size", str(INPUT_SIZE), "--out", str(plan.work / name), "--overwrite",
            "--cache-dir", str(plan.work / "feature-cache"), "--quiet", "--json"]
    if plan.epochs is not None:
        argv += ["--epochs", str(plan.epochs)]
    if plan.limit_per_class is not None:
        argv += ["--limit-per-class", str(plan.limit_per_class)]
    return argv


def convert_argv(plan: Plan, name: str) -> list[str]:
    run_dir = plan.work / name
    argv = [tool("convert"), str(run_dir / "model.h5"), "--quantize", "int8",
            "--out", str(run_dir / "model_int8.tflite"), "--json", "--no-progress"]
    if plan.max_drop is not None:
        argv += ["--max-drop", str(plan.max_drop)]
    return argv


def evaluate_argv(plan: Plan, model: Path, target: Path, held_out: Path) -> list[str]:
    argv = [tool("edge"), "evaluate", str(plan.shared / "datasets" / "face-mask-ilc-dev"),
            "--model", str(model), "--only-list", str(held_out), "--json", str(target)]
    if plan.eval_limit is not None:
        argv += ["--limit", str(plan.eval_limit)]
    return argv
