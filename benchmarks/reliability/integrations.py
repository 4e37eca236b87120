"""Section `integrations`: what tracking, MQTT, snapshots and the dashboard cost per frame.

The section `endtoend`'s 640x480 video of face-mask-voc photos (1-4 faces each) goes through a
whole `edge run` (`edge.runner.Runner`, shipped detector and int8 classifier) once per row, each
row in a fresh process of its own (`python -m benchmarks.reliability.integrations SPEC`), adding one
output at a time:

1. `Pipeline.process` alone on the decoded frames: no loop, no tracking (the floor);
2. the `edge run` loop with no outputs: capture thread, tracking (always on: it cannot be turned
   off, its cost is the `track` column), drawing only when an output needs it;
3. + alerts and stats (`--alert-after 2 --stats-every 1`), which every following row keeps;
4. + MQTT to a local mosquitto (started here; the row is skipped when it is not installed);
5. + snapshots of every alert (two JPEGs each);
6. + the dashboard with one viewer reading `/stream.mjpg` on another thread;
7. all of them, plus a webhook (a receiver in the parent process) and JSON lines.

The full profile runs every row `ROUNDS` times on the first `FRAMES` frames, the rows interleaved
(every other round backwards) so that a change in the machine's load spreads over all rows, and
reports medians with each round's values; quick runs each row once on the short video.

FPS is taken after the first frames (warm-up), from the time each frame reached the outputs, and
so is the CPU time per frame of the whole process (every thread: capture, loop, MQTT, webhook,
snapshot writer, dashboard); on a shared machine CPU time moves far less with the load than FPS
does. The per-stage milliseconds are the run summary's means over every frame (`timings_ms`).
`output` is the time spent in the sinks and alert hooks within the frame loop; the work they hand
to their own threads (MQTT, webhook, snapshot files, JPEG encoding for viewers) shows in the CPU
time and as lower FPS instead.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.config import REPO
from benchmarks.context import SectionContext
from benchmarks.reliability.tools import Broker, find_mosquitto
from benchmarks.stages.endtoend import WARMUP_FRAMES, make_test_video
from benchmarks.tables import fmt, short, table

NAME = "integrations"
ALERT_AFTER = 2
ROUNDS = 3  # full profile: every row this many times, interleaved; medians reported
FRAMES = 300  # full profile: frames per row and round (quick: the whole short video)
STATS_EVERY = 1.0
STAGES = ("capture", "wait", "detect", "classify", "track", "draw", "output")
BARE, LOOP = "pipeline alone (Pipeline.process, no loop, no tracking)", "edge run loop + tracking"

#: (row label, outputs); every row after the loop one also raises alerts and stats.
ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (BARE, ("bare",)),
    (LOOP, ()),
    ("+ alerts, stats", ("alerts",)),
    ("+ MQTT (local mosquitto)", ("alerts", "mqtt")),
    ("+ snapshots (every alert)", ("alerts", "snapshots")),
    ("+ dashboard, 1 viewer", ("alerts", "dashboard")),
    ("all: MQTT, webhook, snapshots, dashboard + viewer, JSON lines",
     ("alerts", "mqtt", "webhook", "snapshots", "dashboard", "json")),
)


# ----------------------------------------------------------------------------- parent side


@contextlib.contextmanager
def local_broker(folder: Path) -> Iterator[str | None]:
    """A mosquitto on a free loopback port for the run: its URL, or None when not installed."""
    exe = find_mosquitto()
    if exe is None:
        yield None
        return
    broker = Broker(exe, folder)
    try:
        with contextlib.suppress(RuntimeError):  # exited, or not listening after 10 s
            broker.start()
        running = broker.proc is not None and broker.proc.poll() is None
        yield f"{broker.url}/maskedge-bench" if running else None
    finally:
        broker.stop()


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[int]]]:
    """An HTTP server on loopback answering every POST with 204: (its URL, [POSTs received])."""
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            count[0] += 1
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", count
    finally:
        server.shutdown()
        server.server_close()


def run_row(spec: dict[str, Any], timeout_s: float = 900.0) -> dict[str, Any]:
    """`python -m benchmarks.reliability.integrations SPEC` in a fresh process: its JSON line or
    an error."""
    from edge.core.console import (
        TF_LOG_LEVEL,  # here: the measured child imports no more than it did
    )

    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL=TF_LOG_LEVEL)
    try:
        command = [sys.executable, "-m", "benchmarks.reliability.integrations", json.dumps(spec)]
        done = subprocess.run(command,
                              capture_output=True, text=True, timeout=timeout_s, cwd=REPO,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timed out after {timeout_s:.0f} s"}
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "error", "error": f"child exited {done.returncode}: {tail[:300]}"}


def combine(label: str, features: tuple[str, ...], rounds: list[dict[str, Any]]
            ) -> dict[str, Any]:
    """One table row from a row's rounds: medians of FPS and stage times, the last round's
    counters, every round's FPS."""
    ok = [r for r in rounds if r.get("status") == "ok"]
    row: dict[str, Any] = {"row": label, "features": list(features)}
    if not ok:
        return {**row, **(rounds[-1] if rounds else {"status": "error", "error": "not run"})}
    stages = {k: statistics.median(r["stages_ms"].get(k, 0.0) for r in ok)
              for k in ok[-1]["stages_ms"]}
    return {**row, **ok[-1], "fps": statistics.median(r["fps"] for r in ok),
            "cpu_ms": statistics.median(r["cpu_ms"] for r in ok),
            "fps_rounds": [round(r["fps"], 2) for r in ok],
            "cpu_ms_rounds": [round(r["cpu_ms"], 2) for r in ok], "stages_ms": stages,
            "failed_rounds": len(rounds) - len(ok)}


def run(ctx: SectionContext) -> dict[str, Any]:
    cfg = ctx.cfg
    video = make_test_video(ctx)
    rounds, frames = (1, video["frames"]) if cfg.quick else (ROUNDS, min(FRAMES, video["frames"]))
    common = {"video": video["path"], "threads": max(cfg.threads), "warmup": WARMUP_FRAMES,
              "frames": frames}
    measured: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in ROWS}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-integrations-") as tmp, \
            local_broker(Path(tmp)) as mqtt_url, webhook_receiver() as (hook_url, posts):
        for n in range(rounds):  # rows interleaved, every other round backwards: load drifts
            for label, features in (ROWS if n % 2 == 0 else ROWS[::-1]):
                if "mqtt" in features and mqtt_url is None:
                    measured[label].append({"status": "unavailable", "error": "mosquitto is "
                                            "not installed (apt-get install mosquitto)"})
                    continue
                ctx.log(f"  round {n + 1}/{rounds}: {label}")
                work = Path(tmp) / f"round{n}-{ROWS.index((label, features))}"
                work.mkdir()
                before = posts[0]
                result = run_row({**common, "outputs": list(features), "work": str(work),
                                  "mqtt": mqtt_url, "webhook": hook_url})
                if "webhook" in features:
                    result["webhook_received"] = posts[0] - before
                measured[label].append(result)
                log_row(ctx, result)
    return {"video": video, "frames_per_row": frames, "rounds": rounds,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "logical_cpus": os.cpu_count(),
            "threads": common["threads"], "warmup_frames": WARMUP_FRAMES,
            "alert_after": ALERT_AFTER, "stats_every_s": STATS_EVERY,
            "rows": [combine(label, features, measured[label]) for label, features in ROWS],
            "notes": ["Tracking cannot be turned off in `edge run` (RunOptions.tracking only "
                      "tunes it); the first row is the pipeline without the loop, the `track` "
                      "column is tracking's own cost."]}


def log_row(ctx: SectionContext, result: dict[str, Any]) -> None:
    if result.get("status") != "ok":
        ctx.log(f"    {result.get('status')}: {result.get('error')}")
        return
    stages = result["stages_ms"]
    ctx.log(f"    {result['fps']:.1f} FPS, {result['cpu_ms']:.1f} CPU ms/frame, track "
            f"{stages.get('track', 0):.2f} ms, output {stages.get('output', 0):.2f} ms, "
            f"{result['alerts']} alerts")


# ----------------------------------------------------------------------------- child side


class FrameClock:
    """A sink recording when each frame reached the outputs, in wall-clock time and in this
    process's CPU time (all its threads)."""

    needs_image = False

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def write(self, record: dict[str, Any], annotated: Any) -> None:
        self.times.append((time.perf_counter(), time.process_time()))

    def event(self, event: dict[str, Any]) -> None:
        pass

    def close(self, ok: bool = True) -> None:
        pass


class Viewer(threading.Thread):
    """One dashboard viewer: reads `/stream.mjpg` until stopped, counting JPEG parts."""

    def __init__(self, url: str) -> None:
        super().__init__(name="viewer", daemon=True)
        self.url, self.parts, self.stop = url + "stream.mjpg", 0, threading.Event()

    def run(self) -> None:
        from edge.sinks.dashboard import BOUNDARY

        marker = f"--{BOUNDARY}".encode()
        with contextlib.suppress(OSError), urllib.request.urlopen(self.url, timeout=10) as resp:
            tail = b""
            while not self.stop.is_set():
                chunk = resp.read1(65536)
                if not chunk:
                    return
                self.parts += (tail + chunk).count(marker)
                tail = chunk[-len(marker):]


def measure_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """Pipeline.process on every frame (decoding not timed), as the floor of the other rows."""
    import cv2

    from benchmarks.stats import summarize
    from edge.inference.pipeline import Pipeline, PipelineOptions

    pipeline = Pipeline(PipelineOptions(threads=spec["threads"]))
    cap = cv2.VideoCapture(spec["video"])
    times: list[float] = []
    cpu: list[float] = []
    stages: dict[str, list[float]] = {"detect": [], "classify": []}
    while len(times) < spec["frames"]:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        start, used = time.perf_counter(), time.process_time()
        result = pipeline.process(rgb)
        times.append((time.perf_counter() - start) * 1000.0)
        cpu.append((time.process_time() - used) * 1000.0)
        for key in stages:
            stages[key].append(result.timings_ms.get(key, 0.0))
    cap.release()
    warm = spec["warmup"]
    frame_ms = summarize(times[warm:])
    return {"status": "ok", "frames": len(times), "fps": 1000.0 / frame_ms["mean_ms"],
            "cpu_ms": sum(cpu[warm:]) / max(len(cpu) - warm, 1),
            "frame_ms": frame_ms, "alerts": 0,
            "stages_ms": {k: sum(v) / max(len(v), 1) for k, v in stages.items()}}


def row_options(spec: dict[str, Any], clock: FrameClock) -> Any:
    """The `RunOptions` of a row: the video, and the outputs the spec names."""
    from edge.runner import RunOptions

    wanted, work = set(spec["outputs"]), Path(spec["work"])
    alerts = "alerts" in wanted
    return RunOptions(
        source=spec["video"], threads=spec["threads"], quiet=True, max_frames=spec["frames"],
        alert_after=ALERT_AFTER if alerts else None, stats_every=STATS_EVERY if alerts else 0.0,
        mqtt=spec["mqtt"] if "mqtt" in wanted else None, device_name="bench",
        webhook=spec["webhook"] if "webhook" in wanted else None,
        snapshots=work / "snapshots" if "snapshots" in wanted else None,
        serve="127.0.0.1:0" if "dashboard" in wanted else None,
        json_out=str(work / "events.jsonl") if "json" in wanted else None,
        extra_sinks=(lambda _context: clock,))


def measure_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One whole `edge run` with the row's outputs; FPS and stage times after the warm-up."""
    from benchmarks.stats import summarize
    from edge.runner import Runner
    from edge.sinks.dashboard import DashboardServer

    clock = FrameClock()
    runner = Runner(row_options(spec, clock), notice=lambda line: None).open()
    viewers = [Viewer(s.url) for s in runner.sinks if isinstance(s, DashboardServer)]
    for viewer in viewers:
        viewer.start()
    time.sleep(0.2 if viewers else 0.0)  # let the viewer connect before the first frame
    summary = runner.run()
    for viewer in viewers:
        viewer.stop.set()
        viewer.join(timeout=5)
    times = [wall for wall, _ in clock.times[spec["warmup"]:]]
    cpu = [used for _, used in clock.times[spec["warmup"]:]]
    if len(times) < 2:
        return {"status": "error", "error": f"only {len(clock.times)} frames"}
    return {"status": "ok", "frames": summary.frames,
            "fps": (len(times) - 1) / (times[-1] - times[0]),
            "cpu_ms": 1000.0 * (cpu[-1] - cpu[0]) / (len(cpu) - 1),
            "frame_ms": summarize([1000.0 * (b - a) for a, b in itertools.pairwise(times)]),
            "stages_ms": {k: summary.timings_ms.get(k, 0.0) for k in STAGES},
            "alerts": summary.alerts, "run_fps": summary.fps,
            "viewer_frames": viewers[0].parts if viewers else None,
            "outputs": summary.outputs, "stopped_by": summary.stopped_by}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    try:
        result = measure_bare(spec) if "bare" in spec["outputs"] else measure_run(spec)
    except Exception as exc:  # a row that fails is reported, not a crash
        result = {"status": "error", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    print(json.dumps(result, default=str), flush=True)


def _did(row: dict[str, Any]) -> str:
    """What a row's outputs did, from their counters (MQTT, webhook, snapshots, viewer)."""
    outputs = row.get("outputs") or {}
    done = []
    if "mqtt" in outputs:
        done.append(f"MQTT published {outputs['mqtt'].get('published')}, dropped "
                    f"{outputs['mqtt'].get('dropped')}")
    if "webhook" in outputs:
        done.append(f"webhook sent {outputs['webhook'].get('sent')}")
    if "snapshots" in outputs:
        done.append(f"snapshots of {outputs['snapshots'].get('written')} alerts")
    if row.get("viewer_frames") is not None:
        done.append(f"viewer got {row['viewer_frames']} frames")
    return "; ".join(done) or "-"


def _spread(values: list[float] | None) -> str:
    """' (min-max)' of a row's rounds, when it ran more than once."""
    return f" ({fmt(min(values), 1)}-{fmt(max(values), 1)})" if values and len(values) > 1 else ""


def render(r: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """RESULTS.md's integrations section from this section's result `r`."""
    video = r.get("video") or {}
    lines = [f"`{short(video.get('path'))}` ({video.get('size', '640x480')}), the first "
             f"{r.get('frames_per_row', '?')} frames, shipped detector and int8 classifier, "
             f"{r.get('threads')} thread(s); each row is a whole `edge run` in a fresh process "
             "(the first: `Pipeline.process` alone), rows interleaved over "
             f"{r.get('rounds', 1)} round(s), medians shown (FPS of every round in brackets). "
             f"FPS after {r.get('warmup_frames')} warm-up frames; stage columns are ms per frame, "
             "the run summary's `timings_ms`. From the third row on, alerts "
             f"(`--alert-after {r.get('alert_after')}`) and stats (every "
             f"{fmt(r.get('stats_every_s'), 0)} s) are on. CPU ms: CPU time of the whole "
             "process (all threads) per frame, steadier than FPS on a busy machine; "
             "`+CPU ms`: over the loop row's, the cost of what the row adds; differences "
             "smaller than a row's round-to-round spread are noise."]
    load = r.get("load_average")
    if load:
        lines[-1] += (f" Load average (1 min) {fmt(load[0], 1)} at the start and "
                      f"{fmt(load[1], 1)} at the end, on {r.get('logical_cpus', '?')} logical "
                      "CPUs.")
    lines.append("")
    rows = r.get("rows") or []
    loop = next((x for x in rows if x.get("features") == [] and x.get("status") == "ok"), None)
    base_ms = loop.get("cpu_ms") if loop else None
    cells = []
    for row in rows:
        if row.get("status") != "ok":
            cells.append([row.get("row"), f"**{row.get('status')}**: {row.get('error')}",
                          *[""] * 10])
            continue
        ms, stages, cpu = 1000.0 / row["fps"], row.get("stages_ms") or {}, row.get("cpu_ms")
        extra = ("-" if base_ms is None or cpu is None or not row.get("features")
                 or "bare" in row["features"] else f"{cpu - base_ms:+.1f}")
        spread = ", ".join(fmt(f, 1) for f in row.get("fps_rounds", []))
        cells.append([row["row"], fmt(row["fps"], 1) + (f" ({spread})" if spread else ""),
                      fmt(ms, 1), fmt(cpu, 1) + _spread(row.get("cpu_ms_rounds")), extra,
                      *(fmt(stages.get(k), 2 if k in ("track", "draw", "output") else 1)
                        for k in ("detect", "classify", "track", "draw", "output")),
                      fmt(row.get("alerts")), _did(row)])
    lines += table(["row", "FPS", "ms / frame", "CPU ms / frame", "+CPU ms", "detect",
                    "classify", "track", "draw", "output", "alerts", "outputs did"], cells)
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
