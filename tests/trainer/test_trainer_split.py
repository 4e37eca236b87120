"""The split guarantee: near-duplicates and faces of one photo never straddle splits;
classes are stratified; the same seed gives the same split; the manifest round-trips."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_2C, DATA_VOC
from PIL import Image

from trainer.data.datasets import discover
from trainer.data.dedup import group_samples
from trainer.data.pixels import load_pixels
from trainer.data.split import (
    assign_splits,
    load_split,
    make_manifest,
    read_manifest,
    redraw_val,
    write_manifest,
)

SIZE = (64, 64)


def near_duplicate_folder(root: Path, per_class: int = 30) -> list[tuple[str, str]]:
    """Real photos of two classes, and for some a re-encoded, a resized and a mirrored twin."""
    twins: list[tuple[str, str]] = []
    for label in ("with_mask", "without_mask"):
        (root / label).mkdir(parents=True)
        photos = sorted(p for p in (DATA_2C / label).iterdir()
                        if p.suffix == ".jpg" and "copy" not in p.name
                        and not p.name.startswith(("aug", "0_")))
        for k, src in enumerate(photos[:per_class]):
            img = Image.open(src).convert("RGB")
            img.save(root / label / f"{k:03d}.png")
            if k % 5 == 0:
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=55)
                (root / label / f"{k:03d}_reencoded.jpg").write_bytes(buf.getvalue())
                twins.append((f"{label}/{k:03d}.png", f"{label}/{k:03d}_reencoded.jpg"))
            if k % 5 == 1:
                w, h = img.size
                img.resize((max(40, w * 2 // 3), max(40, h * 2 // 3))).save(
                    root / label / f"{k:03d}_small.jpg", quality=90)
                twins.append((f"{label}/{k:03d}.png", f"{label}/{k:03d}_small.jpg"))
            if k % 5 == 2:
                img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
                    root / label / f"{k:03d}_mirror.jpg", quality=92)
                twins.append((f"{label}/{k:03d}.png", f"{label}/{k:03d}_mirror.jpg"))
    return twins


@pytest.fixture(scope="module")
def twin_data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("twins")
    twins = near_duplicate_folder(root)
    dataset = discover(root)
    loaded = load_pixels(root, dataset.format, dataset.samples, SIZE)
    grouping = group_samples(loaded.thumbs, [s.source for s in loaded.samples])
    return root, dataset, loaded, grouping, twins


def test_near_duplicates_are_grouped(twin_data) -> None:
    _, _, loaded, grouping, twins = twin_data
    group_of = {s.path: g for s, g in zip(loaded.samples, grouping.groups, strict=True)}
    for a, b in twins:
        assert group_of[a] == group_of[b], (a, b)
    # the twins add no groups: as many groups as there are distinct originals
    originals = [i for i, s in enumerate(loaded.samples) if Path(s.path).stem.isdigit()]
    alone = group_samples(loaded.thumbs[originals], [loaded.samples[i].source for i in originals])
    assert grouping.groups.max() == alone.groups.max()
    assert alone.groups.max() + 1 >= len(originals) - 2  # the data set's own duplicates are rare


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_near_duplicates_land_in_one_split(twin_data, seed: int) -> None:
    root, dataset, loaded, grouping, twins = twin_data
    manifest = make_manifest(root, dataset.format, dataset.labels, loaded.samples,
                             grouping.groups, seed, (0.2, 0.2))
    split_of = {r["path"]: r["split"] for r in manifest.rows}
    for a, b in twins:
        assert split_of[a] == split_of[b]
    by_group: dict[int, set[str]] = {}
    for r in manifest.rows:
        by_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_group.values())


def test_split_is_stratified_and_seeded() -> None:
    rng = np.random.default_rng(5)
    labels = ["a"] * 700 + ["b"] * 250 + ["c"] * 50
    groups = np.arange(1000)
    groups[rng.choice(1000, 200, replace=False)] = rng.integers(0, 1000, 200)  # some pairs
    _, groups = np.unique(groups, return_inverse=True)
    splits = assign_splits(labels, groups, seed=7, val_fraction=0.15, test_fraction=0.15)
    counts = Counter(zip(labels, splits, strict=True))
    for label, total in (("a", 700), ("b", 250), ("c", 50)):
        for split, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(counts[(label, split)] - frac * total) <= max(3, 0.03 * total), \
                (label, split, counts)
    assert splits == assign_splits(labels, groups, seed=7, val_fraction=0.15, test_fraction=0.15)
    assert splits != assign_splits(labels, groups, seed=8, val_fraction=0.15, test_fraction=0.15)


def test_val_seed_keeps_the_test_split_and_draws_val_again(twin_data) -> None:
    """Bagging: runs with one --split-seed and other --val-seed share every test row, hold out
    other faces for validation, keep groups whole and the class shares about as asked."""
    root, dataset, loaded, grouping, twins = twin_data
    args = (root, dataset.format, dataset.labels, loaded.samples, grouping.groups, 0, (0.2, 0.2))
    base = make_manifest(*args)
    bags = [redraw_val(make_manifest(*args), v) for v in (1, 2)]
    test = [r["path"] for r in base.rows if r["split"] == "test"]
    vals = []
    for bag in bags:
        assert [r["path"] for r in bag.rows if r["split"] == "test"] == test
        assert bag.info["val_seed"] in (1, 2)
        split_of = {r["path"]: r["split"] for r in bag.rows}
        assert all(split_of[a] == split_of[b] for a, b in twins)
        counts = Counter((r["label"], r["split"]) for r in bag.rows)
        for label in dataset.labels:
            total = sum(n for (lab, _), n in counts.items() if lab == label)
            assert abs(counts[(label, "val")] - 0.2 * total) <= max(3, 0.05 * total), counts
        vals.append({r["path"] for r in bag.rows if r["split"] == "val"})
    assert vals[0] != vals[1]


def test_every_class_keeps_training_data() -> None:
    labels = ["a"] * 20 + ["b"]
    splits = assign_splits(labels, np.arange(21), seed=0, val_fraction=0.3, test_fraction=0.3)
    assert splits[-1] == "train"


def test_voc_faces_of_one_photo_share_a_split() -> None:
    dataset = discover(DATA_VOC, min_face=24)
    photos = sorted({s.path for s in dataset.samples})[:60]
    samples = [s for s in dataset.samples if s.path in photos]
    loaded = load_pixels(DATA_VOC, "voc", samples, SIZE)
    grouping = group_samples(loaded.thumbs, [s.source for s in loaded.samples])
    manifest = make_manifest(DATA_VOC, "voc", dataset.labels, loaded.samples, grouping.groups,
                             0, (0.2, 0.2))
    splits_per_photo: dict[str, set[str]] = {}
    for r in manifest.rows:
        splits_per_photo.setdefault(r["path"], set()).add(r["split"])
        assert len(r["box"]) == 4
    assert all(len(s) == 1 for s in splits_per_photo.values())
    assert any(len([r for r in manifest.rows if r["path"] == p]) > 1 for p in photos)


def test_manifest_round_trip_and_load_split(twin_data, tmp_path: Path) -> None:
    root, dataset, loaded, grouping, _ = twin_data
    manifest = make_manifest(root, dataset.format, dataset.labels, loaded.samples,
                             grouping.groups, 3, (0.2, 0.2))
    path = write_manifest(manifest, tmp_path / "split.json")
    again = read_manifest(path)
    assert again.rows == manifest.rows and again.labels == manifest.labels
    assert again.root == Path(root).resolve() and again.seed == 3
    images, labels = load_split(path, "test", SIZE)
    test_rows = [r for r in manifest.rows if r["split"] == "test"]
    assert images.shape == (len(test_rows), *SIZE, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert labels.tolist() == [manifest.labels.index(r["label"]) for r in test_rows]
    # exactly the pixels training saw
    position = {s.path: i for i, s in enumerate(loaded.samples)}
    assert np.array_equal(images, loaded.images[[position[r["path"]] for r in test_rows]])
    all_images, _ = load_split(again, "all", SIZE)
    assert len(all_images) == len(manifest.rows)
    _, few_labels = load_split(again, "train", SIZE, limit_per_class=3)
    assert sorted(Counter(few_labels.tolist()).values()) == [3, 3]
