"""`trainer ensemble` and the logit adjustment (issue 9): real 3-class runs on face-mask-voc that
share a split, their mean in one model file, its int8 conversion and the edge runtime on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import BACKBONE, DATA_VOC
from typer.testing import CliRunner

from trainer.cli import app
from trainer.data.split import load_split
from trainer.ensemble import EnsembleConfig, ensemble
from trainer.fit.artifacts import load_keras_model
from trainer.fit.model import prior_shift, shift_output
from trainer.fit.run import FitConfig, fit

SIZE = 96
runner = CliRunner()


def _config(out: Path, cache: Path, **kw: object) -> FitConfig:
    return FitConfig(data=DATA_VOC, out=out, weights=str(BACKBONE), input_size=SIZE, epochs=2,
                     min_face=24, limit_per_class=20, cache_dir=cache, val_fraction=0.2,
                     test_fraction=0.3, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three real runs: seed 0; seed 1 on seed 0's test split with its own validation faces
    (--val-seed 1, bagging); seed 0 with --logit-adjust 0.5."""
    root = tmp_path_factory.mktemp("ensemble")
    cache = root / "cache"
    out = {"a": root / "a", "b": root / "b", "adjusted": root / "adjusted"}
    fit(_config(out["a"], cache), progress=False)
    fit(_config(out["b"], cache, seed=1, split_seed=0, val_seed=1), progress=False)
    fit(_config(out["adjusted"], cache, logit_adjust=0.5), progress=False)
    return out


def test_prior_shift_moves_logits_of_softmax_and_sigmoid_outputs() -> None:
    offsets = prior_shift({"a": 0.5, "b": 2.0, "c": 1.0}, ("a", "b", "c"), 1.0)
    np.testing.assert_allclose(offsets, [np.log(2), -np.log(2), 0.0])
    np.testing.assert_allclose(prior_shift({"a": 0.5, "b": 2.0}, ("a", "b"), 0.0), [0, 0])
    for units, labels in ((3, ("a", "b", "c")), (1, ("a", "b"))):
        x = keras.Input((4,))
        logits = keras.layers.Dense(units, name="head_output")(x)
        model = keras.Model(x, logits)
        data = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        before = model.predict_on_batch(data)
        shift = prior_shift({"a": 0.5, "b": 2.0, "c": 1.0}, labels, 0.3)
        shift_output(model, shift)
        expected = shift if units == 3 else [shift[1] - shift[0]]
        np.testing.assert_allclose(model.predict_on_batch(data) - before,
                                   np.broadcast_to(expected, before.shape), atol=1e-5)


@pytest.mark.slow
def test_members_share_a_split_and_the_ensemble_is_their_mean(runs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    rows_a = json.loads((runs["a"] / "split.json").read_text())["rows"]
    rows_b = json.loads((runs["b"] / "split.json").read_text())["rows"]
    # --split-seed 0: seed 1 keeps seed 0's test faces; --val-seed 1: it validates on others
    assert [r["split"] == "test" for r in rows_a] == [r["split"] == "test" for r in rows_b]
    assert [r["split"] for r in rows_a] != [r["split"] for r in rows_b]
    result = runner.invoke(app, ["ensemble", str(runs["a"]), str(runs["b"]), "--out",
                                 str(tmp_path / "ens"), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    out = tmp_path / "ens"
    assert {"model.h5", "model.keras", "metadata.json", "split.json", "report.txt",
            "summary.json"} <= {p.name for p in out.iterdir()}
    merged = [r["split"] for r in json.loads((out / "split.json").read_text())["rows"]]
    assert merged == ["test" if a["split"] == "test" else "val" if a["split"] == b["split"] == "val"
                      else "train" for a, b in zip(rows_a, rows_b, strict=True)]
    images, _ = load_split(out / "split.json", "test", (SIZE, SIZE))
    x = images.astype(np.float32)
    members = [load_keras_model(runs[k] / "model.h5")[0].predict_on_batch(x) for k in "ab"]
    for name in ("model.h5", "model.keras"):  # both formats load in safe mode
        model, contract = load_keras_model(out / name)
        np.testing.assert_allclose(model.predict_on_batch(x), np.mean(members, 0), atol=1e-5)
    assert contract.architecture.startswith("MobileNetV2 x2")
    assert [m["seed"] for m in contract.source["ensemble"]] == [0, 1]
    assert [m.get("val_seed") for m in contract.source["ensemble"]] == [None, 1]
    assert "val_seed" not in contract.source
    assert contract.metrics["n_test"] == len(images) == sum(
        v["support"] for v in summary["per_class"].values())


@pytest.mark.slow
def test_logit_adjust_in_fit_and_in_ensemble_is_the_same_shift(runs: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """`fit --logit-adjust` records the offsets of its class weights; `ensemble --logit-adjust`
    of one unadjusted run adds the same kind of offsets to that run's logits."""
    summary = json.loads((runs["adjusted"] / "summary.json").read_text())
    labels = summary["labels"]
    expected = prior_shift(summary["imbalance"]["class_weights"], labels, 0.5)
    np.testing.assert_allclose([summary["logit_adjust"]["offsets"][k] for k in labels],
                               expected, atol=1e-6)
    _, contract = load_keras_model(runs["adjusted"] / "model.h5")
    assert contract.source["logit_adjust"]["tau"] == 0.5
    assert "--logit-adjust 0.5" in (runs["adjusted"] / "report.txt").read_text()

    built = ensemble(EnsembleConfig([runs["a"]], tmp_path / "one", 0.5), progress=False)
    plain, _ = load_keras_model(runs["a"] / "model.h5")
    shifted, contract = load_keras_model(built.out / "model.h5")
    images, _ = load_split(runs["a"] / "split.json", "test", (SIZE, SIZE))
    x = images.astype(np.float32)
    a_summary = json.loads((runs["a"] / "summary.json").read_text())
    offsets = prior_shift(a_summary["imbalance"]["class_weights"], labels, 0.5)
    logits = np.log(plain.predict_on_batch(x)) + offsets
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(shifted.predict_on_batch(x), want / want.sum(1, keepdims=True),
                               atol=1e-4)
    assert contract.source["logit_adjust"] == {"tau": 0.5}
    # an adjusted run is not adjusted twice
    again = runner.invoke(app, ["ensemble", str(runs["adjusted"]), "--logit-adjust", "0.5",
                                "--out", str(tmp_path / "twice")])
    assert again.exit_code == 2 and "already" in again.output
    assert not (tmp_path / "twice").exists()


@pytest.mark.slow
def test_runs_of_other_splits_are_refused_in_one_line(runs: dict[str, Path],
                                                      tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(runs["b"], other)
    split = json.loads((other / "split.json").read_text())
    split["rows"][0]["split"] = "test" if split["rows"][0]["split"] != "test" else "train"
    (other / "split.json").write_text(json.dumps(split))
    result = runner.invoke(app, ["ensemble", str(runs["a"]), str(other), "--out",
                                 str(tmp_path / "ens")])
    assert result.exit_code == 2
    assert "different test splits" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ens").exists() and not list(tmp_path.glob(".ens*"))


@pytest.mark.slow
def test_flip_averages_each_member_on_the_face_and_its_mirror(runs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """--flip: the file holds the mirror (a registered layer, loaded in safe mode) and its output
    is the mean over members and both views; the contract says so."""
    result = runner.invoke(app, ["ensemble", str(runs["a"]), str(runs["b"]), "--flip", "--out",
                                 str(tmp_path / "ens"), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["flip"] is True
    images, _ = load_split(runs["a"] / "split.json", "test", (SIZE, SIZE))
    x = images.astype(np.float32)
    members = [load_keras_model(runs[k] / "model.h5")[0] for k in "ab"]
    want = np.mean([m.predict_on_batch(v) for m in members for v in (x, x[:, :, ::-1])], 0)
    for name in ("model.h5", "model.keras"):
        model, contract = load_keras_model(tmp_path / "ens" / name)
        np.testing.assert_allclose(model.predict_on_batch(x), want, atol=1e-5)
    assert contract.source["flip"] is True
    assert contract.architecture.endswith("probabilities on the face and its mirror)")
    assert "--flip): True" in (tmp_path / "ens" / "report.txt").read_text()


@pytest.mark.slow
def test_ensemble_converts_to_int8_and_runs_on_the_edge(runs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """The ensemble is one model file: `convert` calibrates and checks it on the shared split,
    and the edge classifier (no TensorFlow) reads its three classes; the mirror of `--flip` is
    one op LiteRT runs on the uint8 pixels."""
    from converters.cli import app as convert_app
    from edge.inference.classifier import ClassifierOptions, MaskClassifier

    ensemble(EnsembleConfig([runs["a"], runs["b"]], tmp_path / "ens", flip=True), progress=False)
    out = tmp_path / "ens_int8.tflite"
    result = runner.invoke(convert_app, [str(tmp_path / "ens" / "model.h5"), "-q", "int8",
                                         "--samples", "20", "--out", str(out), "--json",
                                         "--no-progress", "--max-drop", "100"])  # 18 faces
    assert result.exit_code == 0, result.output
    clf = MaskClassifier(ClassifierOptions(out))
    assert set(clf.labels) == {"with_mask", "without_mask", "mask_weared_incorrect"}
    images, _ = load_split(tmp_path / "ens" / "split.json", "test", clf.input_size)
    probs = clf.predict(images)
    assert probs.shape == (len(images), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=0.02)
    keras_model, _ = load_keras_model(tmp_path / "ens" / "model.h5")
    agree = probs.argmax(1) == keras_model.predict_on_batch(images.astype(np.float32)).argmax(1)
    assert agree.mean() >= 0.8, agree
