"""`trainer distill`: a tiny distillation end to end (real teacher, real detector, 32 px student),
the teacher's outputs reused on a rerun, folds that keep photos and near-duplicates together, and
bad input as one error line with exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKBONE, DATA_2C, ROOT, SHARED
from typer.testing import CliRunner

from trainer.distill.command import distill_app

ILC = SHARED / "datasets" / "face-mask-ilc-dev"
HELD_OUT = ROOT / "benchmarks" / "holdout" / "face-mask-ilc-dev-test.txt"
TEACHER = ROOT / "models" / "face_mask_3c_int8.tflite"
TWO_CLASS = ROOT / "models" / "face_mask_2c_int8.tflite"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6 held-in ilc-dev photos (one of them twice, under another name: a near-duplicate) and
    4 face-mask-2c close-ups, as symlinks."""
    root = tmp_path_factory.mktemp("distill")
    held_out = set(HELD_OUT.read_text().split())
    names = [p for p in sorted((ILC / "annotations").glob("*.xml"))
             if f"{p.stem}.jpg" not in held_out][:6]
    voc = root / "face-mask-ilc-dev"
    for xml in names:
        _link(xml, voc / "annotations" / xml.name)
        _link(ILC / "images" / f"{xml.stem}.jpg", voc / "images" / f"{xml.stem}.jpg")
    text = re.sub(r"<filename>[^<]*</filename>", "<filename>copy.jpg</filename>",
                  names[0].read_text())
    (voc / "annotations" / "copy.xml").write_text(text)
    _link(ILC / "images" / f"{names[0].stem}.jpg", voc / "images" / "copy.jpg")
    close = root / "face-mask-2c"
    for label in ("with_mask", "without_mask"):
        for path in sorted((DATA_2C / label).glob("*.jpg"))[:2]:
            _link(path, close / label / path.name)
    return {"root": root, "voc": voc, "closeups": close}


def _args(tiny: dict[str, Path], out: str, *extra: str) -> list[str]:
    return [str(tiny["voc"]), "--out", str(tiny["root"] / out), "--closeups",
            str(tiny["closeups"]), "--weights", str(BACKBONE), "--input-size", "32",
            "--views", "1", "--no-mix", "--store-views", "1", "--store-mix", "0",
            "--head-epochs", "1", "--folds", "2",
            "--cache-dir", str(tiny["root"] / "cache"), "-q", *extra]


def test_tiny_distillation_writes_a_model_and_reuses_the_teacher_cache(
        tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.core.tflite_metadata import read_contract
    from trainer.data.split import read_manifest
    from trainer.fit.artifacts import read_keras_contract

    result = CliRunner().invoke(distill_app, _args(tiny, "run", "--cv"))
    assert result.exit_code == 0, result.output
    run = tiny["root"] / "run"
    contract = read_keras_contract(run / "model.h5")
    assert contract.labels == read_contract(TEACHER).labels
    assert contract.input_size == (32, 32) and contract.output == "softmax"
    assert contract.source["split_manifest"] == "split.json"
    manifest = read_manifest(run / "split.json")
    assert manifest.labels == contract.labels
    assert manifest.rows_of("train") and manifest.rows_of("test")
    for name in ("metrics.json", "report.txt", "MODEL_CARD.md", "cv.json"):
        assert (run / name).is_file(), name
    card = (run / "MODEL_CARD.md").read_text()
    assert "no licence stated" in card and "MIT" in card

    def no_teacher(*args: object, **kwargs: object) -> None:
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr("trainer.distill.views._predict", no_teacher)
    again = CliRunner().invoke(distill_app, _args(tiny, "run2"))
    assert again.exit_code == 0, again.output
    assert (tiny["root"] / "run2" / "model.h5").is_file()


def test_folds_never_split_a_photo_or_a_near_duplicate_group(tiny: dict[str, Path]) -> None:
    from trainer.distill.faces import FaceSpec, load_table

    table = load_table(FaceSpec(voc=(tiny["voc"].resolve(),),
                                closeups=(tiny["closeups"].resolve(),), folds=2),
                       tiny["root"] / "cache", progress=False)
    fold_of: dict[object, set[int]] = {}
    for row in table.rows:
        fold_of.setdefault(("photo", row["src"], row["path"]), set()).add(row["fold"])
        fold_of.setdefault(("group", row["group"]), set()).add(row["fold"])
    assert all(len(f) == 1 for f in fold_of.values())
    first = next(r for r in table.rows if r["path"] == "images/copy.jpg")
    twin = [r for r in table.rows if r["group"] == first["group"] and r["path"] != first["path"]]
    assert twin, "the copied photo should share its original's group"
    assert {r["kind"] for r in table.rows} == {"annotation", "detector", "closeup"}


def test_group_folds_keeps_groups_whole_and_spreads_classes() -> None:
    from trainer.distill.faces import group_folds

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), rng.integers(1, 6, 200))
    labels = rng.choice([-1, 0, 1, 2], len(groups), p=[0.3, 0.5, 0.15, 0.05])
    folds = group_folds(labels, groups, 5, seed=0)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    rare = np.bincount(folds[labels == 2], minlength=5)
    assert rare.min() >= 1


@pytest.mark.parametrize(("teacher", "message"), [
    ("missing.tflite", "teacher model not found"),
    (str(TWO_CLASS), "needs the 3-class teacher"),
])
def test_bad_teacher_is_one_error_line(tiny: dict[str, Path], teacher: str,
                                       message: str) -> None:
    result = CliRunner().invoke(distill_app, [*_args(tiny, "bad"), "--teacher", teacher])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainer: error:") and message in lines[0]


def test_a_bounded_head_for_int8_and_settings_keep_their_cache_keys() -> None:
    """relu6 bounds the head's hidden layer: an unbounded one grew a few units to thousands
    (the student's head_dense reached 2,286 with most units at 0), which one int8 scale per
    tensor cannot hold. A setting at the old default keeps the dictionary (and cache key) it
    had before the field existed."""
    from edge.core.contract import ModelContract
    from trainer.distill.train import Setting
    from trainer.fit.model import build_classifier

    assert "head_activation" not in Setting().to_dict()
    assert Setting(head_activation="relu6").to_dict()["head_activation"] == "relu6"
    clf = build_classifier(ModelContract.for_labels(("a", "b", "c"), (32, 32)), "none",
                           head_activation="relu6")
    dense = clf.model.get_layer("head_dense")
    assert dense.activation.__name__ == "relu6"
    assert float(dense.activation(np.array([100.0], np.float32))[0]) == 6.0
