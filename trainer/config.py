"""`trainer fit`'s options and the checks that need neither TensorFlow nor pixels.

`preflight` validates the options, the output folder, the --weights value and the data layout
(formats, at least two classes) in well under a second, so the CLI can refuse bad input with one
line before TensorFlow is even imported.

It also refuses data that cannot make a model (`check_usable`): more than `MAX_SKIPPED_SHARE` of
the class-folder files are not images (DATA is probably the wrong folder; `--allow-skipped`
trains anyway), fewer than two classes, or a class under `--min-per-class` images (default
`DEFAULT_MIN_PER_CLASS`). Before decoding, a file counts as an image when it starts like one;
`trainer.fit.run` checks again on what actually decoded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.core.labelmap import LabelMap, LabelMapError
from edge.core.voc import DatasetError, read_name_list
from trainer.data.datasets import (
    DEFAULT_MIN_FACE,
    Dataset,
    Usable,
    discover_many,
    require_two_classes,
    usable_images,
)
from trainer.errors import UserError

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
STREAM_MODES = ("auto", "on", "off")
AUGMENT_POLICIES = ("reference", "mild")  # trainer.data.augment builds them
#: The fewest images a class may have (`--min-per-class`): below it, a class has a test image or
#: two and the run's accuracy says nothing.
DEFAULT_MIN_PER_CLASS = 10
#: The largest share of the class-folder files that may be skipped as not images, unless
#: `--allow-skipped`: more looks like the wrong folder (a scratch folder, a project's tree).
MAX_SKIPPED_SHARE = 0.5


@dataclass
class FitConfig:
    """Everything `trainer fit` can be told: its options are these fields, under the same names
    and with these defaults (except DATA, --out and --resume, which trainer/cli.py handles)."""

    data: Path | list[Path]  # one data source, or several (any formats, mixed)
    out: Path
    weights: str = "imagenet"
    input_size: int = 224
    alpha: float = 1.0
    nose_band: bool = False  # also read the nose-and-mouth band at full size (trainer.fit.model)
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-4
    patience: int = 5
    seed: int = 0
    split_seed: int | None = None  # None: --seed; members of an ensemble share one split
    val_seed: int | None = None  # redraw train/val with it, keeping the test split (bagging)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    feature_cache: bool = True
    augment_views: int = 1
    augment: str = "reference"  # augmentation policy: reference | mild (trainer.data.augment)
    label_smoothing: float = 0.0  # cross-entropy label smoothing, every phase
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 5
    fine_tune_learning_rate: float = 1e-5
    logit_adjust: float = 0.0  # after training: tau of the prior shift (trainer.fit.model)
    min_face: int = DEFAULT_MIN_FACE
    min_per_class: int = DEFAULT_MIN_PER_CLASS  # refuse a class with fewer usable images
    allow_skipped: bool = False  # train even when most class-folder files are not images
    limit_per_class: int | None = None
    mixed_precision: bool = False
    class_weighting: bool = True
    cache_dir: Path | None = None  # None: default_cache_dir(); feature cache on disk
    overwrite: bool = False
    label_map: list[str] = field(default_factory=list)  # FROM=TO / FROM= for every source
    exclude_lists: list[Path] = field(default_factory=list)  # files of image names never used
    source_weights: list[str] = field(default_factory=list)  # NAME=W: weight a source's samples
    # Scaling (issue 11): tf.distribute strategy, streaming with feature shards, resume.
    strategy: str = "auto"  # auto | one-device | mirrored | multi-worker (TF_CONFIG)
    scale_batch: bool = False  # --batch-size per replica, learning rate x replicas
    stream: str = "auto"  # on | off | auto (stream when decoded pixels would exceed 2 GiB)
    stream_chunk: int = 256  # samples decoded at a time = rows per feature shard
    resume: Path | None = None  # the killed run's partial folder (set by --resume)

    @property
    def data_seed(self) -> int:
        """The seed of the split and of --limit-per-class: --split-seed, else --seed."""
        return self.seed if self.split_seed is None else self.split_seed

    def view_key(self) -> dict[str, str]:
        """What augmented views' cache keys add for the policy (nothing for 'reference', so the
        keys of earlier runs stay valid)."""
        return {} if self.augment == "reference" else {"augment": self.augment}

    def roots(self) -> list[Path]:
        """The data sources, in the order given."""
        return [Path(d) for d in self.data] if isinstance(self.data, (list, tuple)) \
            else [Path(self.data)]

    def validate(self) -> None:
        checks = [
            (self.input_size >= 32, f"--input-size must be >= 32, got {self.input_size}"),
            (not self.nose_band or self.input_size >= 64,
             f"--nose-band needs --input-size >= 64, got {self.input_size}"),
            (self.alpha in ALPHAS, f"--alpha must be one of {ALPHAS}, got {self.alpha}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.learning_rate > 0, "--learning-rate must be > 0"),
            (self.augment_views >= 0, "--augment-views must be >= 0"),
            (self.augment in AUGMENT_POLICIES,
             f"--augment must be one of {', '.join(AUGMENT_POLICIES)}, got {self.augment!r}"),
            (0.0 <= self.label_smoothing < 1.0, "--label-smoothing must be in [0, 1)"),
            (self.fine_tune_layers >= 0, "--fine-tune-layers must be >= 0"),
            (self.fine_tune_epochs >= 1, "--fine-tune-epochs must be >= 1"),
            (self.min_face >= 1, "--min-face must be >= 1"),
            (self.min_per_class >= 1, "--min-per-class must be >= 1"),
            (self.patience >= 0, "--patience must be >= 0 (0: off)"),
            (self.seed >= 0, "--seed must be >= 0"),
            (self.split_seed is None or self.split_seed >= 0, "--split-seed must be >= 0"),
            (self.val_seed is None or self.val_seed >= 0, "--val-seed must be >= 0"),
            (self.val_seed is None or self.val_fraction > 0, "--val-seed needs --val-fraction > 0"),
            (0.0 <= self.logit_adjust <= 1.0, "--logit-adjust must be in [0, 1]"),
            (self.logit_adjust == 0.0 or self.class_weighting,
             "--logit-adjust undoes part of the class weighting: it needs --class-weights"),
            (self.fine_tune_learning_rate > 0, "--fine-tune-learning-rate must be > 0"),
            (self.cache_dir is None or not Path(self.cache_dir).exists()
             or Path(self.cache_dir).is_dir(), f"--cache-dir {self.cache_dir} is not a folder"),
            (self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}"),
            (self.stream in STREAM_MODES, f"--stream must be one of {', '.join(STREAM_MODES)}"),
            (self.stream_chunk >= 1, "--stream-chunk must be >= 1"),
            (self.limit_per_class is None or self.limit_per_class >= 2,
             "--limit-per-class must be >= 2"),
            (0 < self.val_fraction + self.test_fraction < 1 and self.val_fraction >= 0
             and self.test_fraction > 0, "--val-fraction + --test-fraction must lie in (0, 1) "
             "with a non-empty test set"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)


@dataclass(frozen=True)
class EnsembleConfig:
    """What `trainer ensemble` was asked for (its options' defaults; trainer/ensemble.py)."""

    runs: list[Path]
    out: Path
    logit_adjust: float = 0.0
    overwrite: bool = False
    flip: bool = False  # also read each face mirrored and average both (test-time augmentation)


@dataclass(frozen=True)
class DetectorFitConfig:
    """One `trainer fit-detector` run (its options' defaults; trainer/detector.py)."""

    onnx: Path  # YuNet 2023mar ONNX (the starting weights)
    out: Path  # the .tflite to write
    epochs: int = 4
    batch: int = 4
    learning_rate: float = 5e-5
    seed: int = 0
    scale_jitter: tuple[float, float] = (0.55, 1.0)


def out_dir_ready(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} is not empty; choose another folder or pass --overwrite")



def check_weights(weights: str) -> None:
    """The same rule as trainer.fit.model.resolve_weights, without importing Keras."""
    if weights == "imagenet" or weights.lower() == "none":
        return
    if not Path(weights).expanduser().is_file():
        raise UserError(f"weights file not found: {weights} "
                        f"(use imagenet | none | PATH to a no-top MobileNetV2 weights file)")


def parse_label_map(entries: list[str] | None) -> LabelMap:
    """`--label-map` entries -> LabelMap (UserError with one line if one is malformed)."""
    try:
        return LabelMap.parse(entries)
    except LabelMapError as exc:
        raise UserError(str(exc)) from None


def name_list(path: Path | None) -> set[str] | None:
    """The image file names listed in `path` (None: no list); UserError if unreadable/empty."""
    if path is None:
        return None
    try:
        names = read_name_list(path)
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    if not names:
        raise UserError(f"photo list {path} names no files")
    return names


def name_lists(paths: list[Path] | None) -> set[str] | None:
    """The union of the names in several photo lists (None: no list given)."""
    if not paths:
        return None
    return set().union(*(name_list(p) or set() for p in paths))


def check_output_file(path: Path, option: str) -> None:
    """UserError unless `path` can be created: its nearest existing ancestor is a folder."""
    ancestor = Path(path).expanduser().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot write {option} {path}: {ancestor} is not a folder")


def check_evaluate(model: Path, data: Path, split: str, out: Path | None,
                   min_face: int) -> None:
    """`trainer evaluate`'s paths and options, checked before TensorFlow loads."""
    if not Path(model).expanduser().is_file():
        raise UserError(f"model file not found: {model}")
    if not Path(data).expanduser().exists():
        raise UserError(f"--data {data} not found")
    if split not in ("all", "train", "val", "test"):
        raise UserError(f"--split must be all, train, val or test, not {split!r}")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if min_face < 1:
        raise UserError("--min-face must be >= 1")


#: What a `trainer fit` run folder holds that `trainer ensemble` reads.
RUN_FILES = ("model.h5", "split.json", "summary.json")


def check_ensemble(runs: list[Path], out: Path, logit_adjust: float, overwrite: bool) -> None:
    """`trainer ensemble`'s paths and options, checked before TensorFlow loads."""
    if not runs:
        raise UserError("give at least one run folder")
    for run in runs:
        missing = [name for name in RUN_FILES if not (Path(run).expanduser() / name).is_file()]
        if missing:
            raise UserError(f"{run} is not a finished `trainer fit` run folder (no "
                            f"{', '.join(missing)})")
    if len({Path(r).expanduser().resolve() for r in runs}) != len(runs):
        raise UserError("a run folder is given twice")
    if not 0.0 <= logit_adjust <= 1.0:
        raise UserError("--logit-adjust must be in [0, 1]")
    out_dir_ready(Path(out).expanduser(), overwrite)


def preflight(config: FitConfig) -> Dataset:
    """Validate everything that can be checked cheaply; return the discovered data set."""
    config.validate()
    out_dir_ready(Path(config.out).expanduser(), config.overwrite)
    check_weights(config.weights)
    dataset = discover_many(config.roots(), config.min_face, parse_label_map(config.label_map),
                            exclude=name_lists(config.exclude_lists))
    _two_classes([s.label for s in dataset.samples], dataset.root, config)
    _check_source_weights(config.source_weights, [s.name for s in dataset.all_sources()])
    if config.strategy == "multi-worker":
        tf_config()
    check_usable(usable_images(dataset), dataset.root, config)
    return dataset


def check_usable(usable: Usable, where: Path, config: FitConfig, decoded: bool = False) -> None:
    """UserError (one line) for data that cannot make a model: mostly files that are not images
    (unless --allow-skipped), fewer than two classes, a class under --min-per-class images.
    `decoded`: the counts are of decoded samples, after --limit-per-class (whose N, if lower,
    is then the minimum)."""
    skipped = len(usable.not_images)
    if skipped > MAX_SKIPPED_SHARE * usable.files and not config.allow_skipped:
        what = ("samples could not be decoded" if decoded
                else f"files in the class folders of {where} are not images")
        raise UserError(f"{skipped:,} of the {usable.files:,} {what} (e.g. "
                        f"{usable.not_images[0]}): is it the right folder? --allow-skipped "
                        f"trains on the other {usable.files - skipped:,} anyway")
    present = [label for label, n in usable.counts.items() if n > 0]
    _two_classes(present, where, config)
    least = config.min_per_class
    if decoded and config.limit_per_class is not None:
        least = min(least, config.limit_per_class)
    few = sorted(((n, label) for label, n in usable.counts.items() if 0 < n < least))
    if few:
        listed = ", ".join(f"{label} {n}" for n, label in few)
        raise UserError(f"too few images in {where}: {listed} ({len(present)} classes, "
                        f"{sum(usable.counts.values()):,} images "
                        f"{'decoded' if decoded else 'found'}); every class needs at least "
                        f"{least}: --min-per-class N lowers that, --label-map NAME= leaves a "
                        f"class out")


def _two_classes(present: list[str], where: Path, config: FitConfig) -> None:
    """`require_two_classes`, saying so when the label map is what left too few."""
    try:
        require_two_classes(present, where)
    except UserError as exc:
        raise UserError(f"{exc} after --label-map" if config.label_map else str(exc)) from None


def tf_config() -> dict[str, Any]:
    """The parsed TF_CONFIG cluster description (UserError if missing or malformed)."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise UserError("--strategy multi-worker needs TF_CONFIG (the cluster description), "
                        "e.g. '{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
                        "\"task\": {\"type\": \"worker\", \"index\": 0}}'")
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        kind, index = config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError):
        raise UserError("TF_CONFIG is not a cluster description (cluster.worker: list of "
                        "host:port, task.type and task.index)") from None
    if kind not in ("worker", "chief") or not isinstance(workers, list):
        raise UserError(f"TF_CONFIG task type {kind!r}: only 'worker' and 'chief' are supported")
    return {**config, "task": {"type": kind, "index": index}}


def _check_source_weights(entries: list[str], names: list[str]) -> None:
    for entry in entries:
        name, sep, value = entry.partition("=")
        try:
            ok = bool(sep) and float(value) >= 0
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"--source-weight takes NAME=WEIGHT (WEIGHT >= 0), got {entry!r}")
        if name not in names:
            raise UserError(f"--source-weight {entry!r}: no source named {name!r} "
                            f"(sources: {', '.join(names)})")
