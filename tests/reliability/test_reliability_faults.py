"""Faults (issue 13): processes killed mid-write, a camera or stream that goes away, a full disk.

- `trainer fit` and `convert` are SIGKILLed at chosen moments (by polling the run's hidden
  folder, or by a wrapper that kills its own process from inside a write: the same signal, at an
  exact point): no half-written model is ever presented as done, the previous `.tflite` survives
  byte for byte, and a damaged feature cache file is detected and computed again.
- `edge run` on a camera that fails for a while and comes back, and on an HTTP MJPEG stream that
  stalls (a loopback server that accepts and then says nothing): the run says so, reopens, and
  ends with a clear message in bounded time.
- `edge run` writing its video, JSON lines and snapshots onto a small, full tmpfs: the run goes
  on and ends normally, one warning line per output, a counter in the summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BACKBONE, DATA_2C, DATA_VOC, ROOT
from support.builders import make_tiny_run
from support.cameras import ScriptedCapture

from edge.runner import Runner, RunOptions
from edge.sinks.outputs import VIDEO_DISK_RESERVE
from edge.video.sources import OpenCVSource

UNMASKED = DATA_VOC / "images" / "maksssksksss0.jpg"  # two people without masks
TRAINER_ARGS = ["--weights", str(BACKBONE), "--input-size", "96", "--limit-per-class", "16",
                "--augment-views", "1", "--quiet"]


@dataclass
class Done:
    """A finished child process: exit code, output, wall seconds."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_child(args: list[str], tmp: Path, timeout: float = 300.0) -> Done:
    """Run `args` from the project folder (killed, and the test failed, after `timeout`)."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=False)
    return Done(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)


def killed_by_sigkill(done: Done) -> bool:
    return done.returncode == -signal.SIGKILL


# A wrapper around a console script that SIGKILLs its own process at one exact point of a write:
# "replace NAME" as the finished temporary file is about to be renamed onto NAME; "half NAME" with
# half of NAME's bytes written to its temporary file; "save N" in the N-th np.save (half written).
KILL_WRAPPER = r"""
import os, pathlib, signal, sys
how, name, entry = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = [entry, *sys.argv[4:]]

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

if how == "replace":
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if pathlib.Path(dst).name == name:
            die()
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace
elif how == "half":
    real_write = pathlib.Path.write_bytes
    def write_bytes(self, data):
        if ".tmp-" in self.name and pathlib.Path(name).stem in self.name:
            with open(self, "wb") as f:
                f.write(bytes(data)[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            die()
        return real_write(self, data)
    pathlib.Path.write_bytes = write_bytes
elif how == "save":
    import numpy as np
    real_save, calls = np.save, [0]
    def save(file, arr, *args, **kwargs):
        calls[0] += 1
        if calls[0] == int(name):
            real_save(file, arr, *args, **kwargs)
            os.truncate(file, os.path.getsize(file) // 2)
            die()
        return real_save(file, arr, *args, **kwargs)
    np.save = save
if entry == "trainer":
    from trainer.cli import app
else:
    from converters.cli import app
app()
"""


def killed_at(how: str, name: str, entry: str, args: list[str], tmp: Path) -> Done:
    return run_child([sys.executable, "-c", KILL_WRAPPER, how, name, entry, *args], tmp)


# ---------------------------------------------------------------------------------------------
# Training killed


def cache_files_are_sound(cache: Path) -> list[str]:
    """Every visible cache file is sealed and matches its seal (the temp files are hidden)."""
    from trainer.fit.features import verified

    entries = [p for p in cache.iterdir() if not p.name.startswith(".")
               and p.suffix in (".npy", ".tflite")]
    return [p.name for p in entries if not verified(p)]


def partial_folders(parent: Path, out: Path) -> list[Path]:
    return sorted(parent.glob(f".{out.name}.partial-*"))


@pytest.mark.slow
def test_feature_cache_write_killed_mid_save_leaves_no_usable_half_file(tmp_path: Path) -> None:
    """SIGKILL in the middle of writing a cache array: the half file stays a hidden temporary
    file; the entry is a miss (recomputed), the earlier entry is still sound."""
    cache = tmp_path / "cache"
    code = ("import numpy as np; from trainer.fit.features import FeatureCache; "
            f"c = FeatureCache({str(cache)!r}); c.put('first', np.ones((40, 8), np.float32)); "
            "c.put('second', np.ones((40, 8), np.float32))")
    wrapper = KILL_WRAPPER.split("if entry ==")[0] + "exec(sys.argv[1])\n"
    done = run_child([sys.executable, "-c", wrapper, "save", "2", "python", code], tmp_path,
                     timeout=120)
    assert killed_by_sigkill(done), done.stderr
    from trainer.fit.features import FeatureCache

    reopened = FeatureCache(cache)
    assert reopened.get("second", 40) is None  # never half an array
    assert reopened.get("first", 40) is not None and not cache_files_are_sound(cache)
    visible = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert visible == ["first.npy", "first.npy.sha256"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "unsealed"])
def test_damaged_feature_cache_file_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    from trainer.fit.features import FeatureCache, verified

    cache = FeatureCache(tmp_path)
    features = np.random.default_rng(0).random((50, 64)).astype(np.float32)
    cache.put("k", features)
    path = tmp_path / "k.npy"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped":  # same size, a few bytes changed: np.load alone would accept it
        path.write_bytes(data[:1000] + bytes(b ^ 0xFF for b in data[1000:1010]) + data[1010:])
    else:
        (tmp_path / "k.npy.sha256").unlink()
    assert cache.get("k", 50) is None  # detected: a miss, never an error, never wrong numbers
    cache.put("k", features)  # what a run does on a miss
    assert verified(path)
    np.testing.assert_array_equal(cache.get("k", 50), features)


@pytest.mark.slow
def test_training_killed_mid_epoch_and_mid_write_then_a_clean_run(tmp_path: Path) -> None:
    """`trainer fit` SIGKILLed mid-epoch, then while writing model.keras (with a cache file
    damaged in between): no run folder either time, only a hidden `.partial-` folder without a
    finished model; the cache stays sound and the damaged entry is rebuilt (the second run also
    adds the augmented view); a third run finishes and reuses both entries."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    base = ["fit", str(DATA_2C), "--out", str(out), "--cache-dir", str(cache), *TRAINER_ARGS]
    proc = subprocess.Popen([sys.executable, "-m", "trainer.cli", *base, "--epochs", "400",
                             "--patience", "0"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:  # wait for epochs to run
        events = [p for w in partial_folders(tmp_path, out)
                  for p in (w / "tensorboard").rglob("events.out.*")]
        if any(p.stat().st_size > 200 for p in events):
            time.sleep(1.0)
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not out.exists()
    (work,) = partial_folders(tmp_path, out)
    assert not (work / "model.h5").exists() and not (work / "summary.json").exists()
    assert not cache_files_are_sound(cache)
    npy = sorted(cache.glob("*.npy"))
    # killed in the first stage (the head on clean features): those are finished and sealed,
    # the augmented view comes later
    assert len(npy) == 1
    npy[0].write_bytes(npy[0].read_bytes()[:300])  # damage the entry

    done = killed_at("replace", "model.keras", "trainer", [*base, "--epochs", "2"], tmp_path)
    assert killed_by_sigkill(done), done.stderr[-2000:]
    assert not out.exists() and len(partial_folders(tmp_path, out)) == 2
    assert not cache_files_are_sound(cache)  # the damaged entry was computed again, sealed
    assert len(list(cache.glob("*.npy"))) == 2  # and the augmented view added

    done = run_child([sys.executable, "-m", "trainer.cli", *base, "--epochs", "2", "--json"],
                     tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["phase1"]["feature_cache_hits"] == 2  # both entries sound, reused
    assert {"model.h5", "model.keras", "summary.json", "split.json"} <= {
        p.name for p in out.iterdir()}


# ---------------------------------------------------------------------------------------------
# Conversion killed


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-conv-layer maskedge model.h5 (untrained) on a real split of 24 images."""
    return make_tiny_run(tmp_path_factory.mktemp("tiny-model")) / "model.h5"


@pytest.mark.parametrize("how", ["half", pytest.param("replace", marks=pytest.mark.slow)])
def test_conversion_killed_mid_write_keeps_the_previous_tflite(tiny_model: Path, tmp_path: Path,
                                                               how: str) -> None:
    """SIGKILL with half the new file written, or just before the rename: the previous `.tflite`
    at the target is intact (same SHA-256) and nothing partial carries the target's name."""
    from edge.core.fileio import sha256_file
    from edge.core.tflite_metadata import read_contract

    target = tmp_path / "model.tflite"
    previous = ROOT / "models" / "face_mask_2c_int8.tflite"
    target.write_bytes(previous.read_bytes())
    before = sha256_file(target)
    done = killed_at(how, target.name, "convert",
                     [str(tiny_model), "-q", "none", "--out", str(target), "--no-progress",
                      "--max-drop", "100"], tmp_path)
    assert killed_by_sigkill(done), done.stderr[-2000:]
    assert sha256_file(target) == before and read_contract(target).input_size == (128, 128)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")]
    assert all(".tmp-" in name for name in leftovers)  # hidden temporaries, never the target
    assert [p.name for p in tmp_path.glob("[!.]*.tflite")] == ["model.tflite"]


# ---------------------------------------------------------------------------------------------
# Camera lost and restored, stream stalled


class FakeCameraRunner(Runner):
    """`edge run --camera 0` with the camera replaced by a scripted capture."""

    capture: ScriptedCapture

    def build_source(self) -> OpenCVSource:
        return OpenCVSource(0, live=True, description="camera 0", capture_factory=self.capture)


def camera_run(script: list[int | str], tmp_path: Path, **options: object) -> tuple:
    frame = cv2.resize(cv2.imread(str(UNMASKED)), (320, 240))
    notices: list[str] = []
    runner = FakeCameraRunner(RunOptions(camera=0, detector="none", quiet=True,
                                         json_out=str(tmp_path / "events.jsonl"), **options),
                              notice=notices.append)
    runner.capture = ScriptedCapture(script, frame, delay=0.002)
    start = time.perf_counter()
    summary = runner.run()
    return summary, notices, time.perf_counter() - start, runner.capture


def test_camera_lost_and_restored_mid_run(tmp_path: Path) -> None:
    summary, notices, seconds, capture = camera_run([20, "fail", "fail", 10_000], tmp_path,
                                                    max_frames=60)
    assert summary.stopped_by == "max frames" and summary.frames == 60 and summary.error is None
    assert summary.reconnects == 1 and capture.opens == 4 and seconds < 30
    assert any("camera 0 stopped delivering frames; reopening it" in n for n in notices)
    assert any("camera 0 is back: reopened" in n for n in notices)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 60 and all(json.loads(x)["faces"] for x in lines)


def test_camera_lost_for_good_ends_with_a_clear_message_in_bounded_time(tmp_path: Path) -> None:
    summary, notices, seconds, _ = camera_run([8, "fail"], tmp_path, reconnect_attempts=2)
    assert any("reopening it (up to 2 attempts)" in n for n in notices)
    assert summary.stopped_by == "source lost" and summary.frames >= 1 and seconds < 15
    assert summary.error == ("camera 0 stopped delivering frames; could not reopen it after 2 "
                             "attempts")
    assert (tmp_path / "events.jsonl").is_file()  # the run's outputs are finished, not lost


class MjpegServer:
    """A loopback HTTP MJPEG server following a script per connection: ("frames", n) sends n
    frames then stalls (the connection stays open, silent); "silent" accepts and says nothing."""

    def __init__(self, script: list[tuple[str, int] | str]) -> None:
        self.script, self.connections = script, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/stream.mjpg"
        self._open: list[socket.socket] = []
        self._jpeg = cv2.imencode(".jpg", cv2.resize(cv2.imread(str(UNMASKED)), (320, 240)))[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            plan = self.script[min(self.connections, len(self.script) - 1)]
            self.connections += 1
            self._open.append(conn)
            if plan != "silent":
                threading.Thread(target=self._stream, args=(conn, plan[1]), daemon=True).start()

    def _stream(self, conn: socket.socket, frames: int) -> None:
        with contextlib.suppress(OSError):
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; "
                         b"boundary=frame\r\n\r\n")
            data = self._jpeg.tobytes()
            for _ in range(frames):
                conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                             % len(data) + data + b"\r\n")
                time.sleep(0.02)

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()


def test_stream_that_never_answers_is_a_clear_error_in_bounded_time(tmp_path: Path) -> None:
    """`edge run --source http://...` on a server that accepts and then says nothing: one error
    line and exit 2 after the stream timeout (edge.video.sources.STREAM_TIMEOUT), not a hang."""
    from edge.video.sources import STREAM_TIMEOUT

    server = MjpegServer(["silent"])
    try:
        done = run_child([sys.executable, "-m", "edge", "run", "--source", server.url,
                          "--detector", "none", "--quiet"], tmp_path, timeout=120)
    finally:
        server.close()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"edge: error: cannot open stream {server.url}"]
    assert STREAM_TIMEOUT <= done.seconds < STREAM_TIMEOUT + 30


@pytest.mark.parametrize("comes_back", [False, True])
def test_stream_that_stalls_mid_run_is_noticed(tmp_path: Path, comes_back: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream that stops sending (the connection stays open): noticed after the read timeout,
    reopened; it either comes back (the run goes on) or the run ends with a clear message."""
    import edge.video.sources

    monkeypatch.setattr(edge.video.sources, "STREAM_TIMEOUT", 1.0)
    script: list[tuple[str, int] | str] = [("frames", 8), "silent"]
    if comes_back:
        script.append(("frames", 10_000))
    server = MjpegServer(script)
    notices: list[str] = []
    start = time.perf_counter()
    try:
        runner = Runner(RunOptions(source=server.url, detector="none", quiet=True,
                                   reconnect_attempts=2, max_frames=30 if comes_back else None),
                        notice=notices.append)
        summary = runner.run()
    finally:
        server.close()
    seconds = time.perf_counter() - start
    assert seconds < 30
    assert any("stopped delivering frames; reopening it (up to 2 attempts)" in n for n in notices)
    if comes_back:
        assert summary.stopped_by == "max frames" and summary.error is None
        assert summary.reconnects == 1 and any("is back: reopened" in n for n in notices)
    else:
        assert summary.stopped_by == "source lost" and 1 <= summary.frames <= 8
        assert "could not reopen it after 2 attempts" in (summary.error or "")


# ---------------------------------------------------------------------------------------------
# Disk full


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (skips without root or mount support)."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill `disk` with a file, leaving about `leave` bytes free."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with (disk / "filler").open("wb") as f:
        f.write(b"\0" * max(0, free - leave))


def unmasked_frames(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"frame{i:03d}.jpg").symlink_to(UNMASKED)
    return folder


def edge_run(args: list[str], tmp: Path) -> tuple[Done, dict]:
    done = run_child([sys.executable, "-m", "edge", "run", *args, "--json-summary"], tmp,
                     timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def test_disk_full_while_saving_video_json_lines_and_snapshots(tmp_path: Path) -> None:
    frames = 30
    photos = unmasked_frames(tmp_path / "photos", frames)
    with small_disk(tmp_path / "disk", "64k") as disk:
        fill(disk, leave=4096)
        events, video = disk / "events.jsonl", disk / "out.mp4"
        done, summary = edge_run(["--source", str(photos), "--save", str(video), "--json",
                                  str(events), "--snapshots", str(disk / "shots"),
                                  "--alert-after", "2"], tmp_path)
        assert summary["stopped_by"] == "end of stream" and summary["frames"] == frames
        outputs = summary["outputs"]
        json_out, video_out, shots = outputs["json"], outputs["video"], outputs["snapshots"]
        lines = events.read_text().splitlines()  # what fitted, whole lines only
        assert len(lines) == json_out["lines"] and all(json.loads(x) for x in lines)
        assert json_out["lost"] >= 1 and "No space left" in json_out["error"]
        assert json_out["lines"] + json_out["lost"] == frames + summary["alerts"]
        assert video_out["frames"] == 0 and video_out["lost"] == frames
        assert not video.exists()  # nothing recorded: no file
        assert summary["alerts"] >= 1 and shots["failed"] >= 1 and shots["written"] == 0
        warnings = [x for x in done.stderr.splitlines() if "space" in x or "disk full" in x]
        assert len(warnings) == 3, done.stderr  # one line per output
        assert not [p.name for p in disk.rglob("*") if ".tmp-" in p.name]


def test_video_on_a_filling_disk_is_finished_early_and_plays(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((DATA_VOC / "images").glob("*.jpg"))[:40]:
        (photos / p.name).symlink_to(p)
    with small_disk(tmp_path / "disk", f"{VIDEO_DISK_RESERVE // 1024 + 384}k") as disk:
        video = disk / "out.mp4"
        done, summary = edge_run(["--source", str(photos), "--save", str(video),
                                  "--detector", "none", "--quiet"], tmp_path)
        assert summary["stopped_by"] == "end of stream" and summary["frames"] == 40
        video_out = summary["outputs"]["video"]
        assert 1 <= video_out["frames"] < 40 and video_out["lost"] == 40 - video_out["frames"]
        assert "disk full" in video_out["error"]
        cap = cv2.VideoCapture(str(video))
        played = 0
        while cap.read()[0]:
            played += 1
        cap.release()
        assert played == video_out["frames"]  # finished properly: every recorded frame plays
        assert len([x for x in done.stderr.splitlines() if "disk full" in x]) == 1
