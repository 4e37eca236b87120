"""Stratified, seeded, group-aware train/val/test split, and the manifest that records it.

Samples come in groups (near-duplicates, faces of one photo: `trainer.data.dedup`); a group never
spans two splits. Groups are placed one at a time, those holding the rarest classes first, each into
the split that most lacks (relative to its target) the classes it contains, so every class is split
in about the requested fractions. The same samples, groups and seed always give the same split.

The manifest (`split.json` in a run folder) lists every usable sample with its label, split and
group, so evaluation, conversion checks and benchmarks use exactly the training run's test images:
`load_split` decodes them the way training did.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.console import Advance
from edge.core.fileio import write_text_atomic
from trainer.data.datasets import Sample, Source
from trainer.errors import UserError

SPLITS = ("train", "val", "test")
MANIFEST_SCHEMA = "maskedge-split/1"


@dataclass
class SplitManifest:
    """A data set's split: where the data is, its labels in index order, one row per sample."""

    root: Path
    format: str
    labels: tuple[str, ...]
    seed: int
    rows: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)  # fractions, grouping stats, fingerprint
    sources: tuple[Source, ...] = ()  # several sources: rows carry "source" (an index here)

    def all_sources(self) -> tuple[Source, ...]:
        """The data sources (one for a single-source manifest: root and format)."""
        return self.sources or (Source(self.root, self.format, self.root.name),)

    def source_name(self, row: dict[str, Any]) -> str:
        return self.all_sources()[row.get("source") or 0].name

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {label: count}}."""
        c = Counter((r["split"], r["label"]) for r in self.rows)
        return {s: {label: c.get((s, label), 0) for label in self.labels} for s in SPLITS}

    def samples(self, split: str = "all") -> list[Sample]:
        return [row_to_sample(r) for r in self.rows_of(split)]

    def rows_of(self, split: str) -> list[dict[str, Any]]:
        if split != "all" and split not in SPLITS:
            raise UserError(f"unknown split {split!r}: use train, val, test or all")
        return [r for r in self.rows if split == "all" or r["split"] == split]

    def to_json(self) -> str:
        extra = {"sources": [s.to_json() for s in self.sources]} if self.sources else {}
        return json.dumps({"schema": MANIFEST_SCHEMA, "root": str(self.root), "format": self.format,
                           **extra, "labels": list(self.labels), "seed": self.seed,
                           "info": self.info, "counts": self.counts(), "rows": self.rows},
                          indent=1)


def row_to_sample(row: dict[str, Any]) -> Sample:
    box = tuple(float(v) for v in row["box"]) if row.get("box") is not None else None
    return Sample(path=row["path"], label=row["label"], box=box, index=row.get("index"),
                  origin=row.get("source"))


def sample_to_row(sample: Sample, split: str, group: int) -> dict[str, Any]:
    row: dict[str, Any] = {"path": sample.path, "label": sample.label, "split": split,
                           "group": int(group)}
    if sample.box is not None:
        row["box"] = [round(float(v), 2) for v in sample.box]
    if sample.index is not None:
        row["index"] = int(sample.index)
    if sample.origin is not None:
        row["source"] = int(sample.origin)
    return row


def assign_splits(labels: list[str], groups: np.ndarray, seed: int, val_fraction: float,
                  test_fraction: float) -> list[str]:
    """Split name per sample; every group in one split, classes stratified, seeded."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(f"val and test fractions must be >= 0 and sum below 1, got "
                        f"{val_fraction} and {test_fraction}")
    groups = np.asarray(groups)
    classes = sorted(set(labels))
    cls_index = {c: i for i, c in enumerate(classes)}
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    per_group = np.zeros((n_groups, len(classes)))
    for g, label in zip(groups.tolist(), labels, strict=True):
        per_group[g, cls_index[label]] += 1
    totals = per_group.sum(axis=0)
    fractions = np.array([1 - val_fraction - test_fraction, val_fraction, test_fraction])
    targets = fractions[:, None] * totals[None, :]  # (split, class)
    current = np.zeros_like(targets)

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    rarity = np.array([totals[per_group[g] > 0].min() for g in range(n_groups)])
    order = order[np.argsort(rarity[order], kind="stable")]  # rarest classes first
    assigned = np.zeros(n_groups, dtype=np.int64)
    for g in order:
        present = per_group[g] > 0
        need = ((targets - current)[:, present] / np.maximum(targets[:, present], 1e-9)).sum(1)
        need[fractions == 0] = -np.inf
        split = int(np.argmax(need))  # ties -> train (index 0)
        assigned[g] = split
        current[split] += per_group[g]
    # Every class must have training data: move the smallest group of a missing class to train.
    for c in range(len(classes)):
        if current[0, c] == 0 and totals[c] > 0:
            holders = [g for g in range(n_groups) if per_group[g, c] > 0]
            g = min(holders, key=lambda k: (per_group[k].sum(), k))
            current[assigned[g]] -= per_group[g]
            assigned[g] = 0
            current[0] += per_group[g]
    return [SPLITS[assigned[g]] for g in groups.tolist()]


def redraw_val(manifest: SplitManifest, seed: int) -> SplitManifest:
    """`manifest` with its test rows kept and train/val drawn again with `seed`, groups whole
    (bagging: runs that share a test split but each hold out, so train on, different faces)."""
    rest = [r for r in manifest.rows if r["split"] != "test"]
    if rest:
        _, groups = np.unique([r["group"] for r in rest], return_inverse=True)
        share = manifest.info["val_fraction"] / (1.0 - manifest.info["test_fraction"])
        redrawn = assign_splits([r["label"] for r in rest], groups, seed, share, 0.0)
        for row, split in zip(rest, redrawn, strict=True):
            row["split"] = split
    manifest.info["val_seed"] = seed
    return manifest


def make_manifest(root: Path, fmt: str, labels: tuple[str, ...], samples: list[Sample],
                  groups: np.ndarray, seed: int, fractions: tuple[float, float],
                  info: dict[str, Any] | None = None) -> SplitManifest:
    """Split `samples` (`fractions`: validation and test shares) and record it (a multi-source
    set then sets `sources`)."""
    val_fraction, test_fraction = fractions
    splits = assign_splits([s.label for s in samples], groups, seed, val_fraction, test_fraction)
    rows = [sample_to_row(s, sp, g) for s, sp, g in zip(samples, splits, groups, strict=True)]
    meta = {"val_fraction": val_fraction, "test_fraction": test_fraction, **(info or {})}
    return SplitManifest(root=Path(root).resolve(), format=fmt, labels=tuple(labels), seed=seed,
                         rows=rows, info=meta)


def write_manifest(manifest: SplitManifest, path: str | Path) -> Path:
    path = Path(path)
    write_text_atomic(path, manifest.to_json())
    return path


def read_manifest(path: str | Path) -> SplitManifest:
    """Read a split.json (UserError with one line if it is not one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"split manifest not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable split manifest: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        raise UserError(f"{path} is not a maskedge split manifest")
    sources = tuple(Source(Path(s["root"]), s["format"], s["name"])
                    for s in data.get("sources") or ())
    return SplitManifest(root=Path(data["root"]), format=data["format"],
                         labels=tuple(data["labels"]), seed=int(data["seed"]), rows=data["rows"],
                         info=data.get("info", {}), sources=sources)


def _limit(rows: list[dict[str, Any]], limit_per_class: int | None,
           seed: int) -> list[dict[str, Any]]:
    if limit_per_class is None:
        return rows
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    labels = sorted({r["label"] for r in rows})
    for label in labels:
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        if len(idx) > limit_per_class:
            idx = sorted(rng.choice(idx, size=limit_per_class, replace=False).tolist())
        picked += idx
    return [rows[i] for i in sorted(picked)]


def load_split(manifest: str | Path | SplitManifest, split: str, size: tuple[int, int],
               limit_per_class: int | None = None, seed: int = 0,
               advance: Advance | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and label indices of one split ("train", "val", "test" or "all").

    Returns uint8 images (N, h, w, 3), decoded, cropped and resized exactly as training saw them
    (no augmentation), and int64 label indices (N,) in the manifest's label order.
    `limit_per_class` picks at most that many rows per class (seeded), for quick checks.
    """
    from trainer.data.pixels import load_from_sources  # numpy/PIL/OpenCV only; keep import light

    if not isinstance(manifest, SplitManifest):
        manifest = read_manifest(manifest)
    size = (int(size[0]), int(size[1]))
    rows = _limit(manifest.rows_of(split), limit_per_class, seed)
    samples = [row_to_sample(r) for r in rows]
    loaded = load_from_sources(manifest.all_sources(), samples, size, advance=advance)
    if loaded.skipped:
        first = loaded.skipped[0]
        raise UserError(f"{len(loaded.skipped)} images of the split can no longer be read "
                        f"(data changed since the split was made?), e.g. {first.path}: "
                        f"{first.reason}")
    index = {label: i for i, label in enumerate(manifest.labels)}
    labels = np.array([index[s.label] for s in loaded.samples], dtype=np.int64)
    return loaded.images, labels
