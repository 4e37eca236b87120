"""`trainer` CLI errors: one line on stderr, exit code 2, no traceback, no run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BACKBONE, DATA_2C, ROOT
from typer.testing import CliRunner

from trainer.cli import app

runner = CliRunner()


def copy_photos(dst: Path, label: str, n: int) -> None:
    (dst / label).mkdir(parents=True, exist_ok=True)
    for p in sorted((DATA_2C / label).glob("*.jpg"))[:n]:
        (dst / label / p.name).write_bytes(p.read_bytes())


def one_error_line(result) -> str:
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("trainer: error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture()
def two_classes(tmp_path: Path) -> Path:
    copy_photos(tmp_path / "data", "with_mask", 3)
    copy_photos(tmp_path / "data", "without_mask", 3)
    return tmp_path / "data"


def test_one_class_is_exit_2(tmp_path: Path) -> None:
    copy_photos(tmp_path / "data", "with_mask", 3)
    out = tmp_path / "run"
    result = runner.invoke(app, ["fit", str(tmp_path / "data"), "--out", str(out),
                                 "--weights", str(BACKBONE)])
    assert "two classes" in one_error_line(result)
    assert not out.exists() and os.listdir(tmp_path) == ["data"]


def test_classes_whose_files_are_all_bad_count_as_missing(tmp_path: Path) -> None:
    copy_photos(tmp_path / "data", "with_mask", 3)
    (tmp_path / "data" / "without_mask").mkdir()
    (tmp_path / "data" / "without_mask" / "a.jpg").write_bytes(b"")
    (tmp_path / "data" / "without_mask" / "b.jpg").write_text("text")
    out = tmp_path / "run"
    result = runner.invoke(app, ["fit", str(tmp_path / "data"), "--out", str(out),
                                 "--weights", str(BACKBONE), "--input-size", "96", "--quiet"])
    assert "two classes" in one_error_line(result)
    assert sorted(os.listdir(tmp_path)) == ["data"]  # no run folder, no partial folder


@pytest.mark.parametrize("layout", ["empty", "missing", "only_text"])
def test_no_images_is_exit_2(tmp_path: Path, layout: str) -> None:
    data = tmp_path / "data"
    if layout != "missing":
        data.mkdir()
    if layout == "only_text":
        (data / "with_mask").mkdir()
        (data / "without_mask").mkdir()
    result = runner.invoke(app, ["fit", str(data), "--out", str(tmp_path / "run"),
                                 "--weights", "none"])
    line = one_error_line(result)
    assert "no images" in line or "not found" in line
    assert not (tmp_path / "run").exists()


def test_unknown_weights_is_exit_2(two_classes: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["fit", str(two_classes), "--out", str(tmp_path / "run"),
                                 "--weights", str(tmp_path / "nope.h5")])
    assert "weights file not found" in one_error_line(result)
    assert not (tmp_path / "run").exists()


def test_damaged_weights_file_is_exit_2(two_classes: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5 at all")
    result = runner.invoke(app, ["fit", str(two_classes), "--out", str(tmp_path / "run"),
                                 "--weights", str(bad), "--input-size", "96",
                                 "--min-per-class", "3"])  # 3 photos a class: enough here
    assert "weights" in one_error_line(result)
    assert not (tmp_path / "run").exists()


def test_non_empty_out_is_kept(two_classes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    result = runner.invoke(app, ["fit", str(two_classes), "--out", str(out), "--weights", "none"])
    assert "not empty" in one_error_line(result)
    assert (out / "precious.txt").read_text() == "mine"


def test_bad_options_are_exit_2(two_classes: Path, tmp_path: Path) -> None:
    for args in (["--alpha", "0.6"], ["--input-size", "16"], ["--test-fraction", "0.9",
                                                              "--val-fraction", "0.2"]):
        result = runner.invoke(app, ["fit", str(two_classes), "--out", str(tmp_path / "r"),
                                     "--weights", "none", *args])
        one_error_line(result)


def test_evaluate_errors_are_exit_2(two_classes: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tmp_path / "missing.h5"), "--data",
                                 str(two_classes)])
    assert "not found" in one_error_line(result)
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"\x89HDF\r\n")
    result = runner.invoke(app, ["evaluate", str(fake), "--data", str(two_classes)])
    one_error_line(result)


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("trainer")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "trainer.cli"]
    proc = subprocess.run([*cmd, "fit", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"),
                           "--weights", "none"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("trainer: error: data not found")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_imagenet_weights_unreachable_is_one_line(tmp_path: Path) -> None:
    """No network (an unreachable proxy) and no cached weights: one line naming --weights PATH,
    exit 2, no traceback and no run folder."""
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "trainer.cli", "fit", str(DATA_2C), "--out",
                           str(out), "--limit-per-class", "12", "--epochs", "1", "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
                          check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(
        "trainer: error: could not download the ImageNet")
    assert "--weights PATH" in lines[0] and "Traceback" not in done.stderr
    assert not out.exists()


def test_fit_defaults_are_fit_config_defaults() -> None:
    """`trainer fit`'s options are FitConfig's fields, under the same names and with the same
    defaults (defined once, in trainer/config.py)."""
    import dataclasses

    from typer.main import get_command

    from trainer.cli import NOT_OPTIONS, _fit_config
    from trainer.config import FitConfig

    params = {p.name: p for p in get_command(app).commands["fit"].params}  # type: ignore[attr-defined]
    fields = {f.name for f in dataclasses.fields(FitConfig)} - set(NOT_OPTIONS)
    assert fields <= set(params), fields - set(params)
    defaults = FitConfig(data=Path("d"), out=Path("o"))
    for name in fields:
        p = params[name]
        assert (p.default or [] if p.multiple else p.default) == getattr(defaults, name), name
    given = {name: params[name].default for name in params} | {"data": [Path("d")],
                                                                "out": Path("o")}
    assert _fit_config(given) == defaults
    two = _fit_config(given | {"data": [Path("a"), Path("b")], "label_map": ["x=y"]})
    assert two.data == [Path("a"), Path("b")] and two.label_map == ["x=y"]


# -- data that cannot make a model (refused before TensorFlow loads) ---------------------------

class Accepted(BaseException):
    """Raised where `trainer fit` would import TensorFlow: the data passed every check."""


@pytest.fixture()
def cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.cli

    def accepted() -> None:
        raise Accepted

    monkeypatch.setattr(trainer.cli, "_import_tensorflow_quietly", accepted)


def scratch_folder(root: Path) -> Path:
    """A scratch folder as a new user points `trainer fit` at: its sub-folders are tools and
    notes (code and text, one stray photo) and one folder of 12 photos."""
    for name, files in (("tools", 40), ("notes", 10)):
        (root / name).mkdir(parents=True)
        for i in range(files):
            (root / name / f"file{i}.py").write_text("print('not a photo')\n")
    copy_photos(root, "with_mask", 12)
    stray = sorted((DATA_2C / "without_mask").glob("*.jpg"))[0]
    (root / "tools" / stray.name).write_bytes(stray.read_bytes())
    return root


def fit_args(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["fit", str(data), "--out", str(tmp_path / "run"), "--weights", "none", "--quiet",
            *extra]


def test_a_folder_of_mostly_other_files_is_refused(tmp_path: Path, cut_short: None) -> None:
    data = scratch_folder(tmp_path / "scratch")
    line = one_error_line(runner.invoke(app, fit_args(data, tmp_path)))
    assert "50 of the 63 files" in line and "are not images" in line
    assert "--allow-skipped" in line and "other 13" in line
    line = one_error_line(runner.invoke(app, fit_args(data, tmp_path, "--allow-skipped")))
    assert "too few images" in line and "tools 1" in line and "--min-per-class" in line
    assert "at least 10" in line
    with pytest.raises(Accepted):  # CliRunner lets a BaseException through
        runner.invoke(app, fit_args(data, tmp_path, "--allow-skipped", "--min-per-class", "1"))
    assert not (tmp_path / "run").exists()


def test_a_class_under_min_per_class_is_refused(two_classes: Path, tmp_path: Path,
                                                cut_short: None) -> None:
    line = one_error_line(runner.invoke(app, fit_args(two_classes, tmp_path)))
    assert "with_mask 3, without_mask 3" in line and "2 classes, 6 images found" in line
    assert "at least 10" in line and "--min-per-class N" in line
    line = one_error_line(runner.invoke(app, fit_args(two_classes, tmp_path,
                                                      "--min-per-class", "4")))
    assert "at least 4" in line
    with pytest.raises(Accepted):
        runner.invoke(app, fit_args(two_classes, tmp_path, "--min-per-class", "3"))
    assert "--min-per-class must be >= 1" in one_error_line(
        runner.invoke(app, fit_args(two_classes, tmp_path, "--min-per-class", "0")))


def test_a_label_map_that_leaves_too_few_classes_is_refused(two_classes: Path,
                                                            tmp_path: Path) -> None:
    line = one_error_line(runner.invoke(app, fit_args(
        two_classes, tmp_path, "--label-map", "with_mask=", "--label-map", "without_mask=")))
    assert "--label-map leaves no class" in line and "with_mask, without_mask" in line
    line = one_error_line(runner.invoke(app, fit_args(two_classes, tmp_path, "--label-map",
                                                      "with_mask=")))
    assert "two classes" in line and "after --label-map" in line


def test_what_decoded_is_checked_again(tmp_path: Path) -> None:
    """`trainer.fit.run` checks the decoded samples the same way; there --limit-per-class N, when
    lower, is the minimum (the user asked for N a class)."""
    from trainer.config import FitConfig, check_usable
    from trainer.data.datasets import Sample, Skipped, Usable
    from trainer.errors import UserError

    labels = ("a", "b")
    kept = [Sample(f"a/{i}.jpg", "a") for i in range(4)] + [Sample("b/0.jpg", "b")] * 4
    config = FitConfig(data=tmp_path, out=tmp_path / "run", limit_per_class=4)
    check_usable(Usable.decoded(labels, kept, 8, []), tmp_path, config, decoded=True)
    with pytest.raises(UserError, match=r"b 3, a 4 .*decoded.*at least 10"):
        check_usable(Usable.decoded(labels, kept[:7], 8, []), tmp_path,
                     FitConfig(data=tmp_path, out=tmp_path / "run"), decoded=True)
    bad = [Skipped(f"a/{i}.jpg", "corrupt image") for i in range(9)]
    with pytest.raises(UserError, match="9 of the 17 samples could not be decoded"):
        check_usable(Usable.decoded(labels, kept, 17, bad), tmp_path, config, decoded=True)
