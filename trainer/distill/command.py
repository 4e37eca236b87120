"""The `trainer distill` command line (registered in trainer/cli.py).

Kept free of TensorFlow at import time: the checks that a user can fail (teacher file and labels,
data folders, lists, weights, the run folder) run first and end as one `trainer: error:` line with
exit 2; the heavy modules load after them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edge.core.console import cli_app, require_extra, user_errors
from edge.core.contract import ContractError
from trainer.errors import ModelFileError, UserError, WeightsError

PROG = "trainer"
KNOWN_ERRORS = (UserError, WeightsError, ModelFileError, ContractError)
#: A Typer app of its own, so the command can be run and tested alone; trainer/cli.py registers
#: the same function on `trainer`'s app.
distill_app = cli_app(help="Distil the shipped 3-class ensemble into one small student.")


def default_teacher() -> Path:
    """The shipped 3-class ensemble."""
    from edge.core.assets import ENSEMBLE_MODEL_NAME, project_models_dir

    return project_models_dir() / ENSEMBLE_MODEL_NAME


def check_folder(path: Path | None, what: str) -> None:
    """UserError unless `path` is a folder or can become one (no regular file in the way)."""
    if path is None:
        return
    path = path.expanduser()
    for place in (path, *path.parents):
        if place.exists():
            if not place.is_dir():
                raise UserError(f"{what} {path}: {place} is a file, not a folder")
            return


def check_inputs(data: list[Path], closeups: list[Path], teacher: Path,
                 exclude_lists: list[Path], weights: str) -> None:
    """UserError (one line) for what a user can get wrong, before any heavy work."""
    from edge.core.voc import is_voc
    from trainer.config import name_lists
    from trainer.distill.run import teacher_labels

    if not data:
        raise UserError("DATA is required: one or more VOC folders (images/ + annotations/)")
    for root in data:
        if not root.is_dir() or not is_voc(root):
            raise UserError(f"{root} is not a VOC folder (needs images/ and annotations/)")
    for root in closeups:
        if not root.is_dir():
            raise UserError(f"close-up folder not found: {root}")
    labels = teacher_labels(teacher)
    if len(labels) < 3:
        raise UserError(f"the teacher {teacher.name} has labels {list(labels)}: distillation "
                        "needs the 3-class teacher (mask_weared_incorrect, with_mask, "
                        "without_mask)")
    name_lists(exclude_lists)
    if weights not in ("imagenet", "none") and not Path(weights).expanduser().is_file():
        raise UserError(f"weights file not found: {weights} (use imagenet | none | PATH)")


@distill_app.command("distill")
def distill(
    data: Annotated[list[Path] | None, typer.Argument(
        metavar="DATA", help="VOC folders (images/ + annotations/) with labelled faces.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run folder (the same command again continues it).")] = None,
    teacher: Annotated[Path | None, typer.Option(
        help="Teacher .tflite (default: the shipped models/face_mask_3c_int8.tflite).")] = None,
    closeups: Annotated[list[Path] | None, typer.Option(
        "--closeups", help="Class folders of close-up faces used unlabelled (repeatable).")
    ] = None,
    exclude_lists: Annotated[list[Path] | None, typer.Option(
        "--exclude-list", help="File of photo names never used (held-out; repeatable).")] = None,
    weights: Annotated[str, typer.Option(
        help="imagenet | none | PATH to no-top MobileNetV2 weights.")] = "imagenet",
    input_size: Annotated[int, typer.Option(min=32, help="Student input size (px).")] = 128,
    nose_band: Annotated[bool, typer.Option(
        "--nose-band/--no-nose-band", help="Student also reads the nose-and-mouth band.")
    ] = False,
    views: Annotated[int, typer.Option(
        min=1, help="Views per face the student trains on (view 0: the device's; the first "
        "VIEWS of --store-views).")] = 6,
    mix: Annotated[bool, typer.Option(
        "--mix/--no-mix", help="Also train on the stored mixup views.")] = True,
    store_views: Annotated[int, typer.Option(
        min=1, help="Views rendered per face and read by the teacher once (the cache; "
        "python -m trainer.distill.compare uses 6).")] = 6,
    store_mix: Annotated[int, typer.Option(
        min=0, help="Mixup views rendered per face (the cache; compare uses 1).")] = 1,
    ce_weight: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Weight of the labels' cross-entropy (0: teacher only).")] = 0.0,
    head_epochs: Annotated[int, typer.Option(min=1, help="Phase-1 epochs.")] = 30,
    head_activation: Annotated[str, typer.Option(
        help="relu | relu6: the head's hidden activation (relu6 is bounded, as int8 needs).")
    ] = "relu",
    fine_tune_layers: Annotated[int, typer.Option(
        min=0, help="Phase 2: top backbone layers trained (0: none).")] = 0,
    fine_tune_epochs: Annotated[int, typer.Option(min=0, help="Phase-2 epochs.")] = 0,
    fine_tune_learning_rate: Annotated[float, typer.Option(
        min=1e-7, help="Phase-2 Adam learning rate (cosine to 0).")] = 1e-4,
    folds: Annotated[int, typer.Option(min=2, help="Folds of held-in photos.")] = 5,
    cv: Annotated[bool, typer.Option(
        "--cv/--no-cv", help="Cross-validate the setting first (metrics.json, report.txt).")
    ] = False,
    cv_only: Annotated[bool, typer.Option("--cv-only", help="Only cross-validate.")] = False,
    cv_fine_tune_epochs: Annotated[int, typer.Option(
        min=0, help="Phase-2 epochs per fold in cross-validation.")] = 0,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Cache of faces, views, teacher outputs and features.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of views, folds and training.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace another run in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Distil the 3-class teacher into one MobileNetV2 student on the faces the device sees
    (annotated and detector-framed), with k-fold cross-validation on held-in photos."""
    require_extra(PROG)
    with user_errors(PROG, KNOWN_ERRORS):
        if out is None:
            raise UserError("--out is required")
        teacher = teacher or default_teacher()
        check_folder(out, "--out")
        check_folder(cache_dir, "--cache-dir")
        check_inputs(list(data or ()), list(closeups or ()), teacher, list(exclude_lists or ()),
                     weights)
        if head_activation not in ("relu", "relu6"):
            raise UserError(f"--head-activation {head_activation}: choose relu or relu6")
        if views > store_views:
            raise UserError(f"--views {views} is more than --store-views {store_views}")
        from trainer.distill.run import DistillConfig
        from trainer.distill.run import distill as run_distill
        from trainer.distill.train import Setting
        from trainer.distill.views import ViewSpec

        setting = Setting(input_size=input_size, nose_band=nose_band, views=views,
                          mix=mix, ce_weight=ce_weight, head_epochs=head_epochs,
                          head_activation=head_activation,
                          ft_layers=fine_tune_layers, ft_epochs=fine_tune_epochs,
                          ft_lr=fine_tune_learning_rate, seed=seed)
        config = DistillConfig(
            data=tuple(data or ()), out=out, teacher=teacher, weights=weights,
            closeups=tuple(closeups or ()), exclude_lists=tuple(exclude_lists or ()),
            setting=setting, views=ViewSpec(views=store_views, mix=store_mix, seed=seed),
            folds=folds, cv=cv, cv_only=cv_only, cv_ft_epochs=cv_fine_tune_epochs,
            cache_dir=cache_dir, overwrite=overwrite)
        result = run_distill(config, progress=not quiet)
    cv_summary = (result.cv or {}).get("summary", {}).get("detector/student")
    typer.echo(f"run folder {result.out}"
               + (f"; cross-validated detector-framed accuracy "
                  f"{json.dumps(cv_summary['accuracy'])}" if cv_summary else ""))
