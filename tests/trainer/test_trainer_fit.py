"""End-to-end `trainer fit` / `trainer evaluate` on small real subsets (slow: real training)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import BACKBONE, DATA_2C, DATA_VOC
from PIL import Image
from support.builders import make_messy_folder
from typer.testing import CliRunner

from trainer.cli import app
from trainer.data.split import load_split, read_manifest
from trainer.errors import UserError
from trainer.fit.artifacts import load_keras_model, read_keras_contract
from trainer.fit.evaluate import evaluate
from trainer.fit.run import FitConfig, fit

pytestmark = pytest.mark.slow
SIZE = 96
RUN_FILES = {"split.json", "model.h5", "model.keras", "metadata.json", "config.json",
             "history.csv", "report.txt", "metrics.json", "confusion_matrix.png", "curves.png",
             "tensorboard", "skipped.txt", "summary.json"}


def small_config(data: Path, out: Path, cache: Path, **kw) -> FitConfig:
    base = {"weights": str(BACKBONE), "input_size": SIZE, "epochs": 4, "patience": 2,
            "cache_dir": cache, "val_fraction": 0.2, "test_fraction": 0.25}
    return FitConfig(data=data, out=out, **{**base, **kw})


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory: pytest.TempPathFactory):
    """A real 2-class subset (35 per class) with every kind of bad file mixed in."""
    tmp = tmp_path_factory.mktemp("fit")
    data = tmp / "data"
    face = Image.open(next((DATA_2C / "with_mask").glob("*.jpg"))).convert("RGB")
    make_messy_folder(data, face.resize((160, 200)))
    for label in ("with_mask", "without_mask"):
        for p in sorted((DATA_2C / label).glob("*.jpg"))[100:130]:
            shutil.copy(p, data / label / p.name)
    seen = EpochsSeen()
    result = fit(small_config(data, tmp / "run", tmp / "cache"), progress=False, callbacks=[seen])
    result.summary["epochs_seen_by_callback"] = seen.epochs
    return tmp, data, result


class EpochsSeen(keras.callbacks.Callback):
    """A caller's callback: fit must hand it every phase-1 epoch of the head."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        assert self.model.input_shape[-1] == 1280  # the head, on pooled backbone features
        self.epochs.append(epoch + 1)


def test_run_folder_is_complete(messy_run) -> None:
    _, _, result = messy_run
    run = result.run_dir
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert not list(run.parent.glob(".run.partial-*"))
    skipped = (run / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 3 and all("\t" in line for line in skipped)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped"] == 3 and summary["labels"] == ["with_mask", "without_mask"]
    assert summary["grouping"]["merged_groups"] >= 0
    assert summary["imbalance"]["class_weights"]["with_mask"] > 0
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert rows and {"phase", "epoch", "loss", "val_loss", "accuracy"} <= set(rows[0])
    assert result.summary["epochs_seen_by_callback"] == [int(r["epoch"]) for r in rows]
    report = (run / "report.txt").read_text()
    assert "precision" in report and "accuracy:" in report and "confusion matrix" in report
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == {"with_mask", "without_mask"}
    assert result.test_accuracy >= 0.75  # 96 px, 4 epochs, ~50 training images


def test_model_files_carry_the_contract_and_reproduce_the_head(messy_run) -> None:
    _, _, result = messy_run
    run = result.run_dir
    for name in ("model.h5", "model.keras"):
        contract = read_keras_contract(run / name)
        assert contract == result.contract
    c = result.contract
    assert c.labels == ("with_mask", "without_mask") and c.output == "sigmoid"
    assert c.input_size == (SIZE, SIZE)
    assert c.source["split_manifest"] == "split.json"
    assert c.source["data_fingerprint"] == read_manifest(run / "split.json").info[
        "data_fingerprint"]
    assert c.metrics["test_accuracy"] == pytest.approx(result.test_accuracy, abs=1e-6)
    assert json.loads((run / "metadata.json").read_text())["labels"] == list(c.labels)
    # the head trained on cached features IS the saved model's head
    assert result.summary["consistency"]["max_abs_diff_full_vs_head"] < 1e-4
    model, _ = load_keras_model(run / "model.h5")
    images, labels = load_split(run / "split.json", "test", c.input_size)
    probs = c.probabilities(model.predict(images.astype(np.float32), verbose=0))
    assert float((probs.argmax(1) == labels).mean()) == pytest.approx(result.test_accuracy)


def test_evaluate_reproduces_the_test_report(messy_run, tmp_path: Path) -> None:
    _, _, result = messy_run
    run = result.run_dir
    ev = evaluate(run / "model.keras", run / "split.json", split="test", out=tmp_path / "ev",
                  progress=False)
    assert ev.accuracy == pytest.approx(result.test_accuracy)
    assert {p.name for p in (tmp_path / "ev").iterdir()} >= {
        "report.txt", "metrics.json", "confusion_matrix.png", "summary.json"}
    # data of another origin: VOC faces with a subset of the labels
    voc = tmp_path / "voc"
    (voc / "images").mkdir(parents=True)
    (voc / "annotations").mkdir()
    for xml in sorted((DATA_VOC / "annotations").glob("*.xml"))[:30]:
        text = xml.read_text()
        if "mask_weared_incorrect" in text:
            continue
        shutil.copy(xml, voc / "annotations" / xml.name)
        stem = xml.stem
        shutil.copy(DATA_VOC / "images" / f"{stem}.png" if (DATA_VOC / "images" / f"{stem}.png")
                    .exists() else DATA_VOC / "images" / f"{stem}.jpg", voc / "images")
    other = evaluate(run / "model.h5", voc, min_face=20, progress=False)
    assert other.summary["n"] > 5 and 0 <= other.accuracy <= 1
    with pytest.raises(UserError, match="not among the model's labels"):
        evaluate(run / "model.h5", DATA_VOC, progress=False)
    dropped = evaluate(run / "model.h5", DATA_VOC, min_face=60, drop_unknown_labels=True,
                       progress=False)
    assert set(dropped.report["per_class"]) == {"with_mask", "without_mask"}
    assert dropped.summary["skipped"] > 0 and dropped.summary["n"] > 20


def test_same_seed_same_run_from_cache(messy_run) -> None:
    tmp, data, result = messy_run
    again = fit(small_config(data, tmp / "again", tmp / "cache"), progress=False)
    assert again.summary["phase1"]["feature_cache_misses"] == 0
    # one converted backbone, keyed by weights and size only (other data reuses it)
    assert len(list((tmp / "cache").glob("*.tflite"))) == 1
    assert read_manifest(tmp / "again" / "split.json").rows == read_manifest(
        result.run_dir / "split.json").rows
    assert again.test_accuracy == pytest.approx(result.test_accuracy)


def test_arrays_through_the_cli_with_json(tmp_path: Path) -> None:
    photos = ([(p, 0) for p in sorted((DATA_2C / "with_mask").glob("*.jpg"))[200:230]]
              + [(p, 1) for p in sorted((DATA_2C / "without_mask").glob("*.jpg"))[200:230]])
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((80, 80)))
                       for p, _ in photos])
    data = tmp_path / "arrays"
    data.mkdir()
    np.save(data / "dataset.npy", images)
    np.save(data / "labels.npy", np.array([y for _, y in photos]))
    result = CliRunner().invoke(app, [
        "fit", str(data), "--out", str(tmp_path / "run"), "--weights", str(BACKBONE),
        "--input-size", str(SIZE), "--epochs", "3", "--cache-dir", str(tmp_path / "cache"),
        "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["labels"] == ["0", "1"] and summary["format"] == "arrays"
    rows = read_manifest(tmp_path / "run" / "split.json").rows
    assert all(r["path"] == "dataset.npy" and isinstance(r["index"], int) for r in rows)
    test_images, _ = load_split(tmp_path / "run" / "split.json", "test", (SIZE, SIZE))
    assert len(test_images) == summary["counts"]["test"]["0"] + summary["counts"]["test"]["1"]


def test_voc_three_classes_softmax(tmp_path: Path) -> None:
    result = fit(small_config(DATA_VOC, tmp_path / "run", tmp_path / "cache", min_face=24,
                              limit_per_class=30, epochs=3), progress=False)
    c = result.contract
    assert c.labels == ("mask_weared_incorrect", "with_mask", "without_mask")
    assert c.output == "softmax" and c.source["format"] == "voc"
    assert set(c.metrics["per_class"]) == set(c.labels)
    photos: dict[str, set[str]] = {}
    for r in read_manifest(tmp_path / "run" / "split.json").rows:
        photos.setdefault(r["path"], set()).add(r["split"])
    assert all(len(s) == 1 for s in photos.values())


def test_reference_recipe_and_fine_tuning(tmp_path: Path) -> None:
    result = fit(small_config(DATA_2C, tmp_path / "run", tmp_path / "cache", limit_per_class=25,
                              feature_cache=False, epochs=1, fine_tune_layers=10,
                              fine_tune_epochs=1), progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert [r["phase"] for r in rows] == ["head", "fine_tune"]
    assert result.summary["phase1"]["path"].startswith("images")
    assert result.summary["fine_tune"]["layers_with_trainable_weights"] > 0
    assert not list((tmp_path / "cache").glob("*.npy"))  # the image path caches nothing
    model, contract = load_keras_model(result.model_h5)
    assert contract.source["fine_tune_layers"] == 10
    import keras

    tuned = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    original = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), include_top=False,
                                              weights=str(BACKBONE))
    # the top conv layer learned; BatchNorm statistics and weights stayed frozen
    assert not np.allclose(tuned.get_layer("Conv_1").get_weights()[0],
                           original.get_layer("Conv_1").get_weights()[0])
    for a, b in zip(tuned.get_layer("Conv_1_bn").get_weights(),
                    original.get_layer("Conv_1_bn").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # a layer below the unfrozen top did not change
    np.testing.assert_array_equal(tuned.get_layer("block_1_expand").get_weights()[0],
                                  original.get_layer("block_1_expand").get_weights()[0])


def test_mild_augmentation_label_smoothing_and_cosine_fine_tune(tmp_path: Path) -> None:
    """The 3-class recipe's options: mild views (cached apart from reference ones), smoothed
    cross-entropy in both phases, phase 2 on a cosine to 0; all recorded in the model file."""
    config = small_config(DATA_VOC, tmp_path / "run", tmp_path / "cache", min_face=24,
                          limit_per_class=20, epochs=2, augment="mild", label_smoothing=0.1,
                          fine_tune_layers=20, fine_tune_epochs=2, fine_tune_learning_rate=1e-4)
    result = fit(config, progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert {r["phase"] for r in rows} >= {"head", "fine_tune"}
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    _, contract = load_keras_model(result.model_keras)
    assert contract.source["augment"] == "mild" and contract.source["label_smoothing"] == 0.1
    mild_views = set((tmp_path / "cache").glob("*.npy"))
    fit(small_config(DATA_VOC, tmp_path / "run2", tmp_path / "cache", min_face=24,
                     limit_per_class=20, epochs=2), progress=False)
    # the reference run computed its own augmented view, not the mild one
    assert len(set((tmp_path / "cache").glob("*.npy")) - mild_views) == 1


def test_backbone_converts_fast_and_matches_keras(tmp_path: Path) -> None:
    from edge.core.contract import ModelContract
    from edge.core.runtime import BatchRunner, load_interpreter
    from trainer.fit.features import _frozen_function, features_tflite
    from trainer.fit.model import build_classifier

    clf = build_classifier(ModelContract.for_labels(("a", "b"), SIZE), str(BACKBONE))
    assert _frozen_function(clf.features) is not None  # the ~2 s path, not the SavedModel one
    path = features_tflite(clf.features, tmp_path / "backbone.tflite")
    assert features_tflite(clf.features, path) == path  # cached: not converted again
    photos = sorted((DATA_2C / "with_mask").glob("*.jpg"))[:4]
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE)))
                       for p in photos]).astype(np.float32)
    run = BatchRunner(load_interpreter(path, threads=1, runtime="litert").interpreter)
    expected = clf.features.predict(images, verbose=0)
    assert np.abs(run(images) - expected).max() < 1e-3


def test_nose_band_model_trains_converts_to_int8_and_runs_on_the_edge(tmp_path: Path) -> None:
    """`--nose-band`: one input, the whole face at half size and the band at full size through
    the same backbone; it saves, reloads in safe mode, converts to int8 and runs under LiteRT."""
    from converters.cli import app as convert_app
    from edge.inference.classifier import ClassifierOptions, MaskClassifier
    from trainer.fit.model import band_rows_cols

    assert band_rows_cols(320, 320) == ((96, 64), (48, 48))  # a 160 x 224 band of 320 px
    result = fit(small_config(DATA_VOC, tmp_path / "run", tmp_path / "cache", input_size=128,
                              nose_band=True, min_face=24, limit_per_class=20, epochs=2),
                 progress=False)
    assert result.contract.input_size == (128, 128)
    assert "nose-and-mouth band" in (tmp_path / "run" / "report.txt").read_text()
    for path in (result.model_h5, tmp_path / "run" / "model.keras"):
        model, _ = load_keras_model(path)
        assert model.get_layer("face_and_band").output.shape[-1] == 2 * 1280
        assert model.get_layer("nose_band").output.shape[1:3] == (64, 90)
    tflite = tmp_path / "band_int8.tflite"
    out = CliRunner().invoke(convert_app, [str(result.model_h5), "-q", "int8", "--samples", "40",
                                           "--out", str(tflite), "--no-progress", "--force"])
    assert out.exit_code == 0, out.output
    clf = MaskClassifier(ClassifierOptions(tflite))
    assert clf.labels == result.contract.labels and clf.input_size == (128, 128)
    images, _ = load_split(tmp_path / "run" / "split.json", "test", (128, 128))
    keras_top = model.predict(images[:16].astype(np.float32), verbose=0).argmax(1)
    assert (clf.predict(images[:16]).argmax(1) == keras_top).mean() >= 0.75


def test_augment_policies_move_the_face_as_documented() -> None:
    """'mild' shifts a face by at most a few pixels of 96 (the nose band stays on the nose);
    'reference' moves it much further. Both flip some images."""
    from trainer.data.augment import build_augmenter

    img = np.zeros((64, SIZE, SIZE, 3), np.float32)
    img[:, 40:56, 40:56] = 255.0  # a bright square at the centre

    def centre_shift(policy: str) -> float:
        out = np.asarray(build_augmenter(3, policy)(img, training=True)).mean(-1)
        ys, xs = np.mgrid[:SIZE, :SIZE]
        w = out / out.sum((1, 2), keepdims=True)
        cy, cx = (w * ys).sum((1, 2)), (w * xs).sum((1, 2))
        return float(np.max(np.hypot(cy - 47.5, cx - 47.5)))

    assert centre_shift("mild") < 0.1 * SIZE < centre_shift("reference")
    with pytest.raises(ValueError, match="unknown augmentation"):
        build_augmenter(0, "wild")


def test_cosine_phase_and_smoothed_loss() -> None:
    import tensorflow as tf

    from edge.core.contract import ModelContract
    from trainer.fit.training import Schedule, SparseSmoothedCrossentropy, learning_rate

    ds = tf.data.Dataset.range(100).batch(10)
    lr = learning_rate(Schedule(1e-4, epochs=5, batch_size=10, patience=0, cosine=True), ds)
    assert float(lr(0)) == pytest.approx(1e-4) and float(lr(50)) == pytest.approx(0, abs=1e-9)
    assert learning_rate(Schedule(1e-4, epochs=5, batch_size=10, patience=0), ds) == 1e-4
    pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    got = float(SparseSmoothedCrossentropy(0.1, 3)(np.array([0, 2]), pred))
    soft = np.array([[0.1 / 3 + 0.9, 0.1 / 3, 0.1 / 3], [0.1 / 3, 0.1 / 3, 0.1 / 3 + 0.9]])
    assert got == pytest.approx(float(-(soft * np.log(pred)).sum(1).mean()), rel=1e-5)
    assert ModelContract.for_labels(("a", "b", "c"), 96).num_classes == 3
