"""Bad input (issue 13): data that changes or loops, odd names, huge folders, decompression bombs,
and model files that must not be loaded (Python code in a Keras file, an absurd `.tflite`, a
`.tflite` whose metadata lies about its tensors).

Every refusal is one clear line and a non-zero exit, never a traceback; the trainer skips bad
images with a reason (`skipped.txt`), `edge run` counts them and says why once.
"""

from __future__ import annotations

import ast
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKBONE, DATA_2C, DATA_VOC, ROOT
from typer.testing import CliRunner, Result

from edge.cli import app as edge_app
from edge.core.imagesize import MAX_IMAGE_PIXELS, header_size, too_large
from edge.core.tflite_metadata import MAX_MODEL_BYTES, read_contract
from edge.runner import Runner, RunOptions
from edge.video.sources import ImageFolderSource
from trainer.data.datasets import discover
from trainer.data.pixels import load_pixels

MODEL = ROOT / "models" / "face_mask_2c_int8.tflite"
UNMASKED = DATA_VOC / "images" / "maksssksksss0.jpg"
ODD_NAMES = ["photo one.jpg", "fötö \u2013 ü ✓.jpg", "写真 3.jpg", "  leading space.jpg"]
RSS_LIMIT_MB = 1500


def real_photos(label: str, n: int) -> list[Path]:
    return sorted((DATA_2C / label).glob("*.jpg"))[:n]


def two_class_folder(root: Path, per_class: int, names: list[str] | None = None) -> Path:
    """A folders-format data set of real photos (copied), optionally renamed to `names`."""
    for label in ("with_mask", "without_mask"):
        (root / label).mkdir(parents=True)
        for i, photo in enumerate(real_photos(label, per_class)):
            name = names[i % len(names)].replace(".jpg", f" {i}.jpg") if names else photo.name
            (root / label / name).write_bytes(photo.read_bytes())
    return root


def one_error_line(result: Result, prefix: str = "edge: error: ") -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [x for x in result.stderr.splitlines() if x.strip()]  # stdout: status lines
    assert len(lines) == 1 and lines[0].startswith(prefix), result.output
    assert "Traceback" not in result.output
    return lines[0]


# Runs the command from a small Python process and reports the command's own peak RSS: a child
# spawned straight from pytest would inherit pytest's high-water mark (Linux keeps it across exec).
RSS_PROBE = """
import json, os, subprocess, sys
out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "w") as fo, open(err, "w") as fe:
    child = subprocess.Popen(cmd, stdout=fo, stderr=fe)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "rss_kb": usage.ru_maxrss}))
"""


def measured(args: list[str], timeout: float = 300.0) -> tuple[int, str, str, float]:
    """Run a child; (exit code, stdout, stderr, its own peak RSS in MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        probe = subprocess.run([sys.executable, "-c", RSS_PROBE, str(out), str(err), *args],
                               capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=True)
        result = json.loads(probe.stdout)
        return result["code"], out.read_text(), err.read_text(), result["rss_kb"] / 1024


def edge_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge", "run", *args]


# ---------------------------------------------------------------------------------------------
# Data that changes during a run, symlink loops, odd names, a 10,000-file folder


def test_files_deleted_after_discovery_are_counted_skips(tmp_path: Path) -> None:
    root = two_class_folder(tmp_path / "data", 6)
    dataset = discover(root)
    gone = [root / s.path for s in dataset.samples[:3]]
    for path in gone:
        path.unlink()
    loaded = load_pixels(dataset.root, dataset.format, dataset.samples, (64, 64))
    assert len(loaded.samples) == 9 and len(loaded.skipped) == 3
    assert all(s.reason.startswith("unreadable: No such file") for s in loaded.skipped)


def test_images_deleted_during_an_edge_run_are_counted(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        (folder / f"f{i}.jpg").symlink_to(UNMASKED)
    notices: list[str] = []
    runner = Runner(RunOptions(source=str(folder), detector="none", quiet=True),
                    notice=notices.append).open()  # the folder is listed here
    for i in (2, 5, 7):
        (folder / f"f{i}.jpg").unlink()
    summary = runner.run()
    assert summary.stopped_by == "end of stream" and summary.error is None
    assert summary.frames == 5 and summary.unreadable == 3
    assert notices == ["skipped an unreadable frame: f2.jpg is gone (deleted during the run) "
                       "(more are only counted)"]


def symlink_loops(folder: Path) -> None:
    """A link to its own parent (a directory cycle), a link to itself, and a two-link loop."""
    (folder / "cycle").symlink_to("..", target_is_directory=True)
    (folder / "self.jpg").symlink_to("self.jpg")
    (folder / "a.jpg").symlink_to("b.jpg")
    (folder / "b.jpg").symlink_to("a.jpg")


def test_symlink_loops_in_the_data_folder_neither_hang_nor_crash(tmp_path: Path) -> None:
    root = two_class_folder(tmp_path / "data", 4)
    symlink_loops(root / "with_mask")
    (root / "without_mask" / "up").symlink_to(root, target_is_directory=True)
    start = time.perf_counter()
    dataset = discover(root)
    assert time.perf_counter() - start < 5
    assert dataset.counts() == {"with_mask": 4, "without_mask": 4}  # only the real files
    loaded = load_pixels(dataset.root, dataset.format, dataset.samples, (64, 64))
    assert len(loaded.samples) == 8 and not loaded.skipped

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "real.jpg").symlink_to(UNMASKED)
    symlink_loops(photos)
    events = tmp_path / "events.jsonl"
    result = CliRunner().invoke(edge_app, ["run", "--source", str(photos), "--detector", "none",
                                           "--json", str(events), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert [x["source"] for x in lines] == ["real.jpg"]


def test_names_with_spaces_and_non_ascii_through_edge_run(tmp_path: Path) -> None:
    photos = tmp_path / "fötos mit Leer zeichen ✓"
    photos.mkdir()
    for name in ODD_NAMES:
        (photos / name).write_bytes(UNMASKED.read_bytes())
    events = tmp_path / "évents 1.jsonl"
    result = CliRunner().invoke(edge_app, ["run", "--source", str(photos), "--detector", "none",
                                           "--json", str(events), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in events.read_text(encoding="utf-8").splitlines()]
    assert [x["source"] for x in lines] == sorted(ODD_NAMES)
    assert all(x["faces"] for x in lines) and "unreadable 0" in result.output


@pytest.mark.slow
def test_names_with_spaces_and_non_ascii_and_deleted_files_through_trainer_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trainer fit` end to end on a data folder whose path and file names have spaces and
    non-ASCII characters; two files disappear between discovery and decoding (a folder changing
    during the run): they are counted skips, listed in skipped.txt, and the run completes."""
    import trainer.data.pixels
    from trainer.cli import app as trainer_app

    root = two_class_folder(tmp_path / "dáta sét ✓", 14, ODD_NAMES)
    victims = sorted((root / "with_mask").iterdir())[:2]
    real_decode = trainer.data.pixels.decode_image

    def decode(path: str | Path, min_side: int | None = None) -> object:
        if Path(path) in victims:
            Path(path).unlink(missing_ok=True)  # deleted after discovery, before decoding
        return real_decode(path, min_side)

    monkeypatch.setattr(trainer.data.pixels, "decode_image", decode)
    out = tmp_path / "rün 1"
    result = CliRunner().invoke(trainer_app, [
        "fit", str(root), "--out", str(out), "--weights", str(BACKBONE), "--input-size", "96",
        "--epochs", "2", "--cache-dir", str(tmp_path / "cache"), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 2 and summary["skipped_by_reason"] == {"unreadable": 2}
    skipped = (out / "skipped.txt").read_text(encoding="utf-8")
    assert all(v.name in skipped for v in victims)
    split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    names = {r["path"] for r in split["rows"]}  # class/file, relative to the data root
    assert len(names) == 26 and any("✓" in n for n in names) and any("写真" in n for n in names)
    assert all((root / n).is_file() for n in names)
    assert read_keras_contract_labels(out) == ["with_mask", "without_mask"]


def read_keras_contract_labels(run: Path) -> list[str]:
    from trainer.fit.artifacts import read_keras_contract

    return list(read_keras_contract(run / "model.keras").labels)


def test_ten_thousand_file_class_folder_is_discovered_fast(tmp_path: Path) -> None:
    root = tmp_path / "data"
    big, small = root / "with_mask", root / "without_mask"
    big.mkdir(parents=True)
    small.mkdir()
    seed = real_photos("with_mask", 1)[0]
    (big / "0.jpg").write_bytes(seed.read_bytes())
    for i in range(1, 10_000):
        os.link(big / "0.jpg", big / f"{i}.jpg")  # 10,000 names, one small file
    for photo in real_photos("without_mask", 10):
        (small / photo.name).write_bytes(photo.read_bytes())
    start = time.perf_counter()
    dataset = discover(root)
    trainer_seconds = time.perf_counter() - start
    assert dataset.counts() == {"with_mask": 10_000, "without_mask": 10}
    start = time.perf_counter()
    source = ImageFolderSource(big)
    source.open()
    edge_seconds = time.perf_counter() - start
    assert source.read().shape[2] == 3
    print(f"discovery of 10,010 files: trainer {trainer_seconds:.2f} s, "
          f"edge folder source {edge_seconds:.2f} s")
    assert trainer_seconds < 10 and edge_seconds < 10


# ---------------------------------------------------------------------------------------------
# A decompression bomb: 20,000 x 20,000 pixels


def png_bomb(path: Path, side: int = 20_000) -> Path:
    """A real, valid 1-bit PNG of side x side black pixels: ~50 KB on disk, 1.2 GB as BGR."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                       1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A real small JPEG whose frame header claims width x height."""
    data = bytearray(UNMASKED.read_bytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    struct.pack_into(">HH", data, i + 5, height, width)
    path.write_bytes(bytes(data))
    return path


def test_bomb_headers_are_read_without_decoding(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    fake = jpeg_claiming(tmp_path / "fake.jpg", 20_000, 20_000)
    assert bomb.stat().st_size < 200_000
    assert header_size(bomb) == (20_000, 20_000) == header_size(fake)
    assert MAX_IMAGE_PIXELS < 20_000 * 20_000
    assert "20,000 x 20,000 pixels (400 megapixels)" in (too_large(bomb) or "")
    assert too_large(UNMASKED) is None


TRAINER_BOMB = """
import json, sys
from pathlib import Path
from trainer.data.datasets import discover
from trainer.data.pixels import load_pixels
dataset = discover(sys.argv[1])
loaded = load_pixels(dataset.root, dataset.format, dataset.samples, (96, 96))
print(json.dumps({"used": len(loaded.samples),
                  "skipped": {Path(s.path).name: s.reason for s in loaded.skipped}}))
"""


def test_decompression_bomb_is_skipped_by_the_trainer_with_a_reason(tmp_path: Path) -> None:
    root = two_class_folder(tmp_path / "data", 3)
    png_bomb(root / "with_mask" / "bomb.png")
    png_bomb(root / "with_mask" / "144 MP.png", 12_000)  # over the limit, under twice it
    jpeg_claiming(root / "without_mask" / "fake.jpg", 20_000, 20_000)
    code, out, err, rss = measured([sys.executable, "-c", TRAINER_BOMB, str(root)])
    assert code == 0, err
    result = json.loads(out)
    assert result["used"] == 6
    assert result["skipped"] == dict.fromkeys(["bomb.png", "144 MP.png", "fake.jpg"],
                                              "image too large (decompression bomb guard)")
    print(f"trainer decoding a folder with three bombs: peak RSS {rss:.0f} MB")
    assert rss < RSS_LIMIT_MB


def test_decompression_bomb_is_refused_by_edge_run(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    code, out, err, rss = measured(edge_cmd("--source", str(bomb), "--detector", "none"))
    assert code == 2, (out, err)
    assert err.strip().splitlines() == [
        "edge: error: bomb.png is 20,000 x 20,000 pixels (400 megapixels), over the 120 "
        "megapixel limit: not decoded"]
    print(f"edge run --source bomb.png: peak RSS {rss:.0f} MB")
    assert rss < RSS_LIMIT_MB

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").symlink_to(UNMASKED)
    (folder / "b bomb.png").symlink_to(bomb)
    jpeg_claiming(folder / "c.jpg", 20_000, 20_000)
    code, out, err, rss = measured(edge_cmd("--source", str(folder), "--detector", "none",
                                            "--json-summary", "--quiet"))
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["frames"] == 1 and summary["unreadable"] == 2
    assert err.strip().splitlines() == [
        "skipped an unreadable frame: b bomb.png is 20,000 x 20,000 pixels (400 megapixels), "
        "over the 120 megapixel limit: not decoded (more are only counted)"]
    print(f"edge run --source DIR with two bombs: peak RSS {rss:.0f} MB")
    assert rss < RSS_LIMIT_MB


# ---------------------------------------------------------------------------------------------
# Model files


KERAS_LOADERS = ("load_model",)


def keras_load_calls() -> list[tuple[str, int, ast.Call]]:
    """Every call of `<something keras>.load_model(...)` in the project's packages."""
    found = []
    for package in ("trainer", "converters", "edge", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in KERAS_LOADERS
                        and "keras" in ast.unparse(node.func.value)):
                    found.append((str(path.relative_to(ROOT)), node.lineno, node))
    return found


def test_every_keras_model_load_is_in_safe_mode() -> None:
    calls = keras_load_calls()
    assert [(p, n) for p, n, _ in calls]
    assert all(p == "trainer/fit/artifacts.py" for p, _, _ in calls)
    for path, line, call in calls:
        safe = [k for k in call.keywords if k.arg == "safe_mode"]
        assert safe and isinstance(safe[0].value, ast.Constant) and safe[0].value.value is True, \
            f"{path}:{line} loads a Keras model without safe_mode=True"
    for package in ("trainer", "converters", "edge", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "enable_unsafe_deserialization" not in text, path
            assert "safe_mode=False" not in text, path


@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """model.h5 and model.keras holding a Lambda layer whose Python code leaves a marker file
    when it runs, with a maskedge contract and a real split manifest beside them."""
    import keras

    from edge.core.contract import ModelContract
    from trainer.data.split import make_manifest, write_manifest
    from trainer.fit.artifacts import save_keras_model

    root = tmp_path_factory.mktemp("lambda")
    dataset = discover(DATA_2C)
    samples = [s for label in dataset.labels
               for s in [x for x in dataset.samples if x.label == label][:6]]
    write_manifest(make_manifest(dataset.root, dataset.format, dataset.labels, samples,
                                 np.arange(len(samples)), seed=0, fractions=(0.25, 0.25)),
                   root / "split.json")
    marker = root / "code-ran"
    where = str(marker)  # the lambda's closure is saved with it (a string serialises)
    pixels = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: (open(where, "w").close(), t * 1.0)[1])(pixels)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    contract = ModelContract.for_labels(dataset.labels, 32,
                                        source={"split_manifest": "split.json"})
    save_keras_model(keras.Model(pixels, out), contract, root)
    marker.unlink(missing_ok=True)  # building the model ran it; loading must not
    return root / "model.h5", root / "model.keras"


def test_keras_file_with_python_code_is_refused_everywhere(lambda_models: tuple[Path, Path]
                                                           ) -> None:
    from converters.cli import app as convert_app
    from trainer.cli import app as trainer_app
    from trainer.fit.artifacts import ModelFileError, load_keras_model

    h5, keras_file = lambda_models
    for path in (h5, keras_file):
        with pytest.raises(ModelFileError, match="refused: it holds Python code"):
            load_keras_model(path)
    line = one_error_line(CliRunner().invoke(convert_app, [
        str(h5), "-q", "none", "--no-progress"]), prefix="convert: error: ")
    assert "refused: it holds Python code (a Lambda layer)" in line
    line = one_error_line(CliRunner().invoke(trainer_app, [
        "evaluate", str(keras_file), "--data", str(h5.parent / "split.json"), "--quiet"]),
        prefix="trainer: error: ")
    assert "Keras safe mode" in line
    assert not (h5.parent / "code-ran").exists()
    assert not list(h5.parent.glob("*.tflite"))


def test_oversized_tflite_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big model.tflite"
    big.write_bytes(MODEL.read_bytes())  # a real model at the start of a sparse 250 MB file
    os.truncate(big, 250 * 2**20)
    assert big.stat().st_blocks * 512 < 10 * 2**20 and MAX_MODEL_BYTES == 200 * 2**20
    want = f"{big} is 250 MB, over the 200 MB limit for a model file: refused"
    code, out, err, rss = measured(edge_cmd("--model", str(big), "--source", str(UNMASKED),
                                            "--detector", "none"))
    assert code == 2 and err.strip().splitlines() == [f"edge: error: {want}"], (out, err)
    print(f"edge run --model <250 MB sparse file>: peak RSS {rss:.0f} MB")
    assert rss < 200  # the file was not read (a normal run of the real model: ~90 MB)
    from converters.cli import app as convert_app

    line = one_error_line(CliRunner().invoke(convert_app, ["inspect", str(big)]),
                          "convert: error: ")
    assert line == f"convert: error: {want}"


@pytest.fixture(scope="module")
def lying_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped 2-class model (128x128 input, one sigmoid unit) with its metadata rewritten
    by converters.embed: input size 96, or three labels (softmax)."""
    from converters.embed import embed_contract

    root = tmp_path_factory.mktemp("lying")
    contract = read_contract(MODEL)
    lies = {"size": contract.with_(input_size=(96, 96)),
            "labels": contract.with_(labels=("a", "b", "c"), output="softmax")}
    paths = {}
    for name, lie in lies.items():
        paths[name] = root / f"lying {name}.tflite"
        paths[name].write_bytes(embed_contract(MODEL.read_bytes(), lie))
    return paths


@pytest.mark.parametrize(("lie", "says"), [
    ("size", "input tensor [128, 128, 3] does not match its metadata (input size 96x96, RGB)"),
    ("labels", "output tensor [1] does not match its metadata (3 softmax unit(s) for "
               "['a', 'b', 'c'])"),
])
def test_tflite_whose_metadata_does_not_match_its_tensors_is_refused(
        lying_models: dict[str, Path], lie: str, says: str) -> None:
    from converters.cli import app as convert_app

    path = lying_models[lie]
    assert read_contract(path) is not None  # the metadata itself reads fine
    line = one_error_line(CliRunner().invoke(edge_app, [
        "run", "--model", str(path), "--source", str(UNMASKED), "--detector", "none"]))
    assert line == f"edge: error: {path}: {says}: refused"
    line = one_error_line(CliRunner().invoke(convert_app, ["inspect", str(path)]),
                          "convert: error: ")
    assert line == f"convert: error: {path}: {says}: refused"


def test_reliability_cases_name_tests_that_exist() -> None:
    """tests/support/reliability_cases.py (the case list RELIABILITY.md shows) names real tests."""
    from support.reliability_cases import CASES

    assert len(CASES) >= 20
    for case in CASES:
        assert set(case) == {"area", "case", "test", "expected"}
        path, _, name = case["test"].partition("::")
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name.split("[")[0] in functions, case["test"]
