"""How much each benchmark does: the full profile (the committed report) and the quick one (CI).

One `BenchConfig` is built by the CLI and handed to every section, so iteration counts, input sizes
and data paths are decided in one place and written into every result file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

REPO = Path(__file__).resolve().parents[1]
#: Where the full run writes its JSON and plots, and its report (committed).
FULL_OUT = REPO / "benchmarks" / "results"
FULL_REPORT = REPO / "benchmarks" / "RESULTS.md"
#: Quick mode writes under the git-ignored work folder so CI never touches the committed report.
QUICK_OUT = REPO / "benchmarks" / "work" / "quick"
#: Scratch of the full run (models, test video): git-ignored, unlike the results beside it.
FULL_WORK = REPO / "benchmarks" / "work" / "full"
#: Side venv with tflite_runtime 2.14 and numpy<2 (it cannot share the main venv's numpy 2), shared
#: by full and quick runs; the full run creates it when missing.
TFLITE_RUNTIME_VENV = REPO / "benchmarks" / "work" / "tflite-runtime-venv"


def default_shared() -> Path:
    """../shared beside the checkout, or $MASKEDGE_SHARED."""
    return Path(os.environ.get("MASKEDGE_SHARED", REPO.parent / "shared"))


@dataclass(frozen=True)
class Iterations:
    """Warm-up and timed single-image calls per latency row."""

    tflite_warmup: int
    tflite_runs: int
    keras_predict_warmup: int
    keras_predict_runs: int
    keras_function_warmup: int
    keras_function_runs: int


@dataclass(frozen=True)
class BenchConfig:
    """Everything the sections need to know (see module docstring)."""

    quick: bool
    out: Path  # JSON per section + PNG plots
    report: Path  # RESULTS.md
    shared: Path
    main_size: int  # input size of the model the latency/accuracy/end-to-end sections use
    sweep_sizes: tuple[int, ...]
    epochs: int | None  # None: the trainer's default
    limit_per_class: int | None  # None: every image
    threads: tuple[int, ...]
    iterations: Iterations
    latency_images: int  # distinct test images cycled through in latency loops
    voc_photos: int | None  # None: every photo
    video_frames: int
    reference_frames: int  # frames through the slow reference loop
    reference_max_epochs: int  # cap on the reference training recipe
    reference_budget_s: float | None  # ... and on its wall time (None: what the run has left)
    run_budget_s: float  # the whole run should finish within this
    reuse_models: bool = False
    #: Python with tflite_runtime for its latency rows: None picks the side venv (see
    #: `benchmarks.stages.latency.side_python`), "none" disables those rows.
    tflite_runtime_python: str | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        """Scratch space: run folders, converted models, the test video, image arrays."""
        if self.out.resolve() == FULL_OUT.resolve():
            return FULL_WORK  # never inside the committed results folder
        return self.out / "work"

    @property
    def data_2c(self) -> Path:
        return self.shared / "datasets" / "face-mask-2c"

    @property
    def data_voc(self) -> Path:
        return self.shared / "datasets" / "face-mask-voc"

    @property
    def backbone(self) -> Path:
        return self.shared / "weights" / "mobilenet_v2_1.0_no_top.weights.h5"

    @property
    def detectors(self) -> Path:
        return self.shared / "detectors"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("out", "report", "shared"):
            data[key] = str(data[key])
        return data


#: Enough calls for a stable p99 (>= 150 per row); fewer would leave the reference training
#: recipe, which runs last, too little of the run budget to reach its final accuracy.
FULL_ITERATIONS = Iterations(tflite_warmup=50, tflite_runs=600, keras_predict_warmup=10,
                             keras_predict_runs=150, keras_function_warmup=20,
                             keras_function_runs=300)
QUICK_ITERATIONS = Iterations(tflite_warmup=10, tflite_runs=100, keras_predict_warmup=3,
                              keras_predict_runs=20, keras_function_warmup=3,
                              keras_function_runs=30)

#: The whole full run must stay under 30 minutes here. The reference training recipe (~57 s per
#: epoch at 224 px, ~14 epochs to its final ~99.0 %) runs last and gets what is left of this
#: budget; the speed-up is taken at the highest test accuracy both paths reached.
FULL_RUN_BUDGET_S = 29.5 * 60.0
QUICK_RUN_BUDGET_S = 4 * 60.0
QUICK_REFERENCE_BUDGET_S = 60.0


def make_config(quick: bool, out: Path | None = None, report: Path | None = None,
                shared: Path | None = None, reuse_models: bool = False,
                reference_budget_s: float | None = None,
                tflite_runtime_python: str | None = None) -> BenchConfig:
    """The full or quick profile, with optional output/report/data/time-cap/interpreter
    overrides."""
    out = Path(out) if out else (QUICK_OUT if quick else FULL_OUT)
    if report is None:
        report = out / "RESULTS.md" if quick or out != FULL_OUT else FULL_REPORT
    common: dict[str, Any] = dict(quick=quick, out=out, report=Path(report),
                                  shared=Path(shared) if shared else default_shared(),
                                  threads=(1, 2), reuse_models=reuse_models,
                                  tflite_runtime_python=tflite_runtime_python)
    if reference_budget_s is None and quick:
        reference_budget_s = QUICK_REFERENCE_BUDGET_S
    common["reference_budget_s"] = reference_budget_s
    common["run_budget_s"] = QUICK_RUN_BUDGET_S if quick else FULL_RUN_BUDGET_S
    if quick:
        return BenchConfig(**common, main_size=96, sweep_sizes=(96, 128), epochs=3,
                           limit_per_class=60, iterations=QUICK_ITERATIONS, latency_images=16,
                           voc_photos=24, video_frames=48, reference_frames=8,
                           reference_max_epochs=2)
    return BenchConfig(**common, main_size=224, sweep_sizes=(96, 128, 160, 224), epochs=None,
                       limit_per_class=None, iterations=FULL_ITERATIONS, latency_images=64,
                       voc_photos=None, video_frames=600, reference_frames=120,
                       reference_max_epochs=20)


def write_result(result: dict[str, Any], folder: Path, name: str) -> Path:
    """`folder/name` written atomically as indented JSON (a benchmark's results file)."""
    from edge.core.fileio import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    write_text_atomic(target, json.dumps(result, indent=1, default=str) + "\n")
    return target


def show_result(result: dict[str, Any], json_out: bool, lines: list[str]) -> None:
    """A benchmark command's output: the results as JSON (`--json`), else its Markdown."""
    print(json.dumps(result, indent=1, default=str) if json_out else "\n".join(lines))


# The options every benchmark command shares, declared once.
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print the results as JSON on stdout (instead of the Markdown).")]
SharedOption = Annotated[Path | None, typer.Option(
    help="The shared data folder (default: $MASKEDGE_SHARED, else ../shared).",
    show_default=False)]
