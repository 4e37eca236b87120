"""`python -m benchmarks.reliability`: load and soak `edge run`, then write RELIABILITY.md.

    python -m benchmarks.reliability               # 30-min soak + load: benchmarks/RELIABILITY.md
    python -m benchmarks.reliability --minutes 5   # a shorter soak (the report says how long)
    python -m benchmarks.reliability --quick       # CI: 2-min soak, short load, work/quick/
    python -m benchmarks.reliability --only load   # one part again, the others from the JSON
    python -m benchmarks.reliability --render-only # the report again from reliability.json

Soak (`soak`): `edge run` on a looping 640x480 video of face-mask-voc photos, with every output
on at once: MQTT to a mosquitto on a free loopback port (watched by a subscriber), `--snapshots`
with `--snapshots-keep`, `--serve 127.0.0.1:0` with one MJPEG viewer connected and `/api/state`
polled, `--alert-after`, `--stats-every` and `--json` to a file. Every `sample_every` seconds:
frames processed, FPS over the window, the child's resident memory (VmRSS), threads and CPU
seconds (/proc/PID), the machine's load. Then it is stopped with SIGTERM and everything it wrote is
checked against its summary (`check_outputs`: nothing lost). `analyse_soak` gives the verdicts.

Load (`load`): the same pipeline with the live page under 20 MJPEG viewers and 5 readers that
never read, against the same run with no viewers, in alternating phases of one process (FPS with
and without, threads at the baseline, at the peak and after the viewers left, the status the
viewer beyond the cap gets).

Faults and bad inputs: the case list of tests/support/reliability_cases.py (when it exists) and
the CLI bad-value table (tests/test_cli_bad_values.py), run with pytest so the report shows their
result.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.config import REPO, default_shared
from benchmarks.reliability import report as report_module
from benchmarks.reliability.tools import (
    Broker,
    EdgeChild,
    MqttWatcher,
    StreamViewers,
    api_state,
    find_mosquitto,
    loadavg,
    read_proc,
    slow_readers,
    stream_status,
)

FULL_JSON = REPO / "benchmarks" / "results" / "reliability.json"
FULL_REPORT = REPO / "benchmarks" / "RELIABILITY.md"
QUICK_DIR = REPO / "benchmarks" / "work" / "quick"
WORK = REPO / "benchmarks" / "work" / "reliability"
DEVICE = "soak"  # the MQTT device name of the soak run
Log = Callable[[str], None]


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 30.0
    sample_every: float = 10.0  # seconds between samples
    warmup: float = 60.0  # seconds before samples count towards the verdicts
    snapshots_keep: int = 50
    alert_after: int = 3
    stats_every: float = 10.0
    rss_tolerance: float = 0.05  # growth allowed after warm-up
    fps_tolerance: float = 0.10  # decay allowed, last windows against the first after warm-up
    windows: int = 3  # FPS windows (of sample_every) averaged at each end


@dataclass(frozen=True)
class LoadOptions:
    viewers: int = 20
    slow: int = 5
    cap: int = 25  # the dashboard's viewer cap in the load run (edge run --serve: 10)
    warmup: float = 20.0
    phase_seconds: float = 40.0
    rounds: int = 3  # no viewers / viewers, alternating
    settle: float = 3.0  # seconds after connecting before the phase is timed
    fps_tolerance: float = 0.10


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else None


def theil_sen(points: list[tuple[float, float]]) -> float | None:
    """The median slope over all pairs of points (robust to a few outliers)."""
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points)
              for x2, y2 in points[i + 1:] if x2 != x1]
    return statistics.median(slopes) if slopes else None


# --- inputs -------------------------------------------------------------------------------------

def make_video(work: Path, shared: Path, photos: int = 100, hold: int = 4) -> Path:
    """A 640x480 video of face-mask-voc photos with 1-4 faces, each held `hold` frames (once)."""
    target = work / f"voc_{photos}x{hold}_640x480.avi"
    if target.is_file() and target.stat().st_size > 0:
        return target
    from edge.core.voc import load_voc
    from edge.video.videomaker import make_video as write_video

    work.mkdir(parents=True, exist_ok=True)
    items = [item.path for item in load_voc(shared / "datasets" / "face-mask-voc")
             if 1 <= len(item.annotations) <= 4 and item.path.is_file()][:photos]
    write_video(items, target, size=(640, 480), fps=15.0, hold=hold)
    return target


def edge_run_command(video: Path, folder: Path, mqtt_url: str, opts: SoakOptions) -> list[str]:
    """The soak's `edge run`: every output at once, the summary as JSON on stdout."""
    return [sys.executable, "-m", "edge", "run", "--source", str(video), "--loop",
            "--json", str(folder / "events.jsonl"), "--mqtt", mqtt_url, "--device-name", DEVICE,
            "--snapshots", str(folder / "snapshots"), "--snapshots-keep", str(opts.snapshots_keep),
            "--serve", "127.0.0.1:0", "--alert-after", str(opts.alert_after),
            "--stats-every", str(opts.stats_every), "--json-summary", "--quiet"]


# --- soak ---------------------------------------------------------------------------------------

def _sample(child: EdgeChild, port: int, viewers: StreamViewers) -> dict[str, Any]:
    state = api_state(port)
    proc = read_proc(child.pid)
    frame = state.get("frame") if state else None
    return {"t": round(time.monotonic() - child.started, 1),
            "frames": frame + 1 if isinstance(frame, int) else None,
            "rss_kb": proc.rss_kb if proc else None, "threads": proc.threads if proc else None,
            "cpu_s": round(proc.cpu_s, 2) if proc else None, "load": loadavg(),
            "viewer_frames": viewers.frames()[0], "state_ok": state is not None,
            "alerts": state.get("alerts_total") if state else None}


def sample_loop(child: EdgeChild, port: int, viewers: StreamViewers, seconds: float,
                every: float, log: Log) -> list[dict[str, Any]]:
    """Sample the child every `every` seconds until `seconds` after its start."""
    samples: list[dict[str, Any]] = []
    next_at = child.started + every
    end = child.started + seconds
    while next_at <= end + 0.01:
        time.sleep(max(0.0, next_at - time.monotonic()))
        if child.proc.poll() is not None:
            raise RuntimeError(f"edge run exited early (code {child.proc.returncode}): "
                               + " | ".join(list(child.stderr)[-5:]))
        samples.append(_sample(child, port, viewers))
        s = samples[-1]
        if len(samples) % max(1, round(60 / every)) == 0:
            log(f"soak t={s['t']:.0f}s frames {s['frames']} RSS {s['rss_kb']} kB "
                f"threads {s['threads']} load {s['load']:.1f}")
        next_at += every
    return samples


def probe_cap(port: int, connected: int, cap: int) -> dict[str, Any]:
    """Fill the dashboard's viewer slots (`connected` are taken) and ask for one more."""
    extra = StreamViewers(port, cap - connected)
    try:
        statuses = extra.wait_statuses()
        beyond = stream_status(port)
    finally:
        extra.close()
    return {"cap": cap, "admitted": connected + statuses.count(200), "beyond_cap": beyond}


def soak(video: Path, folder: Path, opts: SoakOptions, log: Log = _log) -> dict[str, Any]:
    """Run the soak (module docstring); the samples, the stop and the output checks."""
    exe = find_mosquitto()
    if exe is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "snapshots", ignore_errors=True)  # a previous run's
    (folder / "events.jsonl").unlink(missing_ok=True)
    broker = Broker(exe, folder / "broker").start()
    watcher = MqttWatcher(broker.port, f"maskedge/{DEVICE}")
    child = EdgeChild(edge_run_command(video, folder, broker.url, opts), cwd=folder)
    try:
        port = child.wait_serving()
        viewers = StreamViewers(port, 1)
        log(f"soak: edge run pid {child.pid} serving on {port}, {opts.minutes:g} min")
        samples = sample_loop(child, port, viewers, opts.minutes * 60, opts.sample_every, log)
        cap = probe_cap(port, 1, 10)  # edge run --serve admits 10 stream viewers
        stop = child.stop()
        viewers.close()
        time.sleep(2.0)  # QoS 1 messages still on their way to the watcher
        outputs = check_outputs(folder, stop, watcher.snapshot(), opts)
    finally:
        child.kill()
        watcher.close()
        broker.stop()
    return {"options": asdict(opts), "video": str(video), "samples": samples, "cap": cap,
            "stop": stop, "outputs": outputs, "analysis": analyse_soak(samples, opts)}


def _read_events(path: Path) -> dict[str, Any]:
    frames, kinds, bad, gaps, last = 0, Counter(), 0, 0, None
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if "event" in record:
                kinds[record["event"]] += 1
                continue
            frames += 1
            gaps += last is not None and record.get("frame") != last + 1
            last = record.get("frame")
    return {"frames": frames, "alerts": kinds["alert"], "stats": kinds["stats"],
            "bad_lines": bad, "gaps": gaps}


def check_outputs(folder: Path, stop: dict[str, Any], mqtt: dict[str, Any],
                  opts: SoakOptions) -> dict[str, Any]:
    """What the run wrote against its summary: JSON lines, MQTT, snapshots (data lost?)."""
    summary = stop.get("summary") or {}
    events_file = folder / "events.jsonl"
    events = _read_events(events_file) if events_file.is_file() else None
    outputs = summary.get("outputs") or {}
    mqtt_out = next((v for k, v in outputs.items() if "mqtt" in k.lower()), {})
    snap_out = next((v for k, v in outputs.items() if "snapshot" in k.lower()), {})
    files = len(list((folder / "snapshots").glob("*"))) if (folder / "snapshots").is_dir() else 0
    alerts = summary.get("alerts")
    lost = []
    if events is None:
        lost.append("the JSON-lines file was not written")
    else:
        if events["frames"] != summary.get("frames"):
            lost.append(f"JSON frame lines {events['frames']} != summary {summary.get('frames')}")
        if events["alerts"] != alerts:
            lost.append(f"JSON alerts {events['alerts']} != summary {alerts}")
        if events["bad_lines"] or events["gaps"]:
            lost.append(f"{events['bad_lines']} bad JSON lines, {events['gaps']} frame gaps")
    if mqtt["alerts"] != alerts:
        lost.append(f"MQTT alerts received {mqtt['alerts']} != summary {alerts}")
    if snap_out.get("written") != alerts or snap_out.get("failed"):
        lost.append(f"snapshots written {snap_out.get('written')}, failed "
                    f"{snap_out.get('failed')}, for {alerts} alerts")
    return {"events": events, "summary_frames": summary.get("frames"), "alerts": alerts,
            "mqtt_received": mqtt, "mqtt_sink": mqtt_out, "snapshots": snap_out,
            "snapshot_files": files, "snapshot_files_max": 2 * opts.snapshots_keep,
            "lost": lost}


def _windows(samples: list[dict[str, Any]]) -> list[dict[str, float]]:
    windows = []
    for a, b in itertools.pairwise(samples):
        if None in (a["frames"], b["frames"], a["cpu_s"], b["cpu_s"]):
            continue
        dt, dcpu, df = b["t"] - a["t"], b["cpu_s"] - a["cpu_s"], b["frames"] - a["frames"]
        windows.append({"t": b["t"], "fps": df / dt if dt > 0 else math.nan,
                        "frames_per_cpu_s": df / dcpu if dcpu > 0 else math.nan,
                        "cpu": dcpu / dt if dt > 0 else math.nan, "load": b["load"]})
    return windows


def rss_steps(post: list[dict[str, Any]], threshold_kb: int = 256) -> dict[str, Any]:
    """Jumps of RSS between two samples above `threshold_kb` (the allocator taking a new block
    looks like this), and the robust slope of what is left once they are taken out."""
    steps, adjusted, offset = [], [], 0
    for a, b in itertools.pairwise(post):
        delta = b["rss_kb"] - a["rss_kb"]
        if delta > threshold_kb:
            steps.append({"t": b["t"], "kb": delta})
            offset += delta
        adjusted.append((b["t"], b["rss_kb"] - offset))
    slope = theil_sen(adjusted)
    return {"steps": steps, "slope_between_steps_kb_per_hour":
            slope * 3600 if slope is not None else None}


def analyse_soak(samples: list[dict[str, Any]], opts: SoakOptions) -> dict[str, Any]:
    """Memory growth and FPS decay after warm-up, with the verdicts (module docstring)."""
    post = [s for s in samples if s["t"] >= opts.warmup and s["rss_kb"]]
    third = max(1, len(post) // 3)
    rss_first = median([s["rss_kb"] for s in post[:third]])
    rss_last = median([s["rss_kb"] for s in post[-third:]])
    growth = (rss_last - rss_first) / rss_first if rss_first and rss_last else None
    slope = theil_sen([(s["t"], s["rss_kb"]) for s in post])
    windows = _windows(post)
    k = max(1, min(opts.windows, len(windows) // 2))
    first = {key: median([w[key] for w in windows[:k]]) for key in ("fps", "frames_per_cpu_s",
                                                                      "load", "cpu")}
    last = {key: median([w[key] for w in windows[-k:]]) for key in first}
    ratio = {key: last[key] / first[key] if first[key] and last[key] is not None else None
             for key in ("fps", "frames_per_cpu_s")}
    fps_ok = ratio["fps"] is not None and ratio["fps"] >= 1 - opts.fps_tolerance
    cpu_ok = (ratio["frames_per_cpu_s"] is not None
              and ratio["frames_per_cpu_s"] >= 1 - opts.fps_tolerance)
    memory_ok = growth is not None and growth <= opts.rss_tolerance
    return {
        "post_warmup_samples": len(post), "rss_first_kb": rss_first, "rss_last_kb": rss_last,
        "rss_growth": growth, "rss_slope_mb_per_hour": slope * 3600 / 1024 if slope else slope,
        "rss_peak_kb": max((s["rss_kb"] for s in samples if s["rss_kb"]), default=None),
        **rss_steps(post),
        "threads": [s["threads"] for s in post[:1] + post[-1:]], "windows_averaged": k,
        "first": first, "last": last, "ratio": ratio, "memory_ok": memory_ok,
        "fps_ok": fps_ok, "fps_cpu_ok": cpu_ok, "fps_verdict": _fps_verdict(fps_ok, cpu_ok),
        "passed": memory_ok and (fps_ok or cpu_ok),
    }


def _fps_verdict(fps_ok: bool, cpu_ok: bool) -> str:
    if fps_ok:
        return "held"
    if cpu_ok:
        return "held per CPU second (wall FPS fell with the machine's load)"
    return "decayed"


# --- load ---------------------------------------------------------------------------------------

def load_child(args: list[str]) -> None:
    """The load run (a child process): `edge run --source VIDEO --loop --json JSON
    --alert-after 3 --stats-every 10` assembled by the same `Runner`, whose dashboard admits
    CAP stream viewers instead of `--serve`'s 10."""
    video, json_out, cap = args[0], args[1], int(args[2])
    from edge.runner import RunContext, Runner, RunOptions
    from edge.sinks.dashboard import DashboardServer
    from edge.sinks.outputs import Sink

    def dashboard(context: RunContext) -> Sink:
        server = DashboardServer("127.0.0.1", 0, source=context.source, max_viewers=cap)
        context.notice(f"serving {server.url}")
        return server

    runner = Runner(RunOptions(source=video, loop=True, json_out=json_out, alert_after=3,
                               stats_every=10.0, quiet=True, json_summary=True,
                               extra_sinks=(dashboard,)))
    summary = runner.run()
    runner.report(summary)


def _measure(child: EdgeChild, port: int, seconds: float,
             viewers: StreamViewers | None) -> dict[str, Any]:
    """FPS, CPU, threads (peak) and stream viewers (as the page counts them) over one phase."""
    state0, proc0, t0 = api_state(port), read_proc(child.pid), time.monotonic()
    frames0 = viewers.frames() if viewers else []
    peak, seen, loads = proc0.threads if proc0 else 0, [], []
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        proc = read_proc(child.pid)
        peak = max(peak, proc.threads if proc else 0)
        loads.append(loadavg())
        state = api_state(port, timeout=2.0)
        seen.append((round(time.monotonic() - t0), state.get("viewers") if state else None))
    state1, proc1, dt = api_state(port), read_proc(child.pid), time.monotonic() - t0
    if not (state0 and state1 and proc0 and proc1):
        raise RuntimeError("the load run stopped answering")
    frames = state1["frame"] - state0["frame"]
    got = [b - a for a, b in zip(frames0, viewers.frames(), strict=True)] if viewers else []
    return {"seconds": round(dt, 1), "frames": frames, "fps": frames / dt,
            "cpu": (proc1.cpu_s - proc0.cpu_s) / dt, "threads_peak": peak,
            "load": median(loads), "viewers_seen": seen,
            "viewer_fps": [g / dt for g in got]}


def _wait_threads(pid: int, baseline: int, timeout: float) -> dict[str, Any]:
    t0 = time.monotonic()
    proc = read_proc(pid)
    while proc and proc.threads > baseline and time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        proc = read_proc(pid)
    return {"threads": proc.threads if proc else None,
            "seconds": round(time.monotonic() - t0, 2)}


def _wait_viewers(port: int, count: int, timeout: float) -> None:
    """Until the dashboard counts `count` stream viewers (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api_state(port, timeout=2.0)
        if state and state.get("viewers", 0) >= count:
            return
        time.sleep(0.1)


def _loaded_phase(child: EdgeChild, port: int, opts: LoadOptions,
                  baseline: int) -> dict[str, Any]:
    viewers = StreamViewers(port, opts.viewers)
    slow = slow_readers(port, opts.slow)
    try:
        statuses = viewers.wait_statuses()
        _wait_viewers(port, opts.viewers + opts.slow, 10.0)  # the slow ones hold slots too
        beyond = stream_status(port)  # one viewer beyond the cap
        time.sleep(opts.settle)
        phase = _measure(child, port, opts.phase_seconds, viewers)
    finally:
        viewers.close()
        for sock in slow:
            sock.close()
    phase.update(kind="viewers", statuses=dict(Counter(str(s) for s in statuses)),
                 beyond_cap=beyond, after=_wait_threads(child.pid, baseline, 30.0))
    return phase


def load(video: Path, folder: Path, opts: LoadOptions, log: Log = _log) -> dict[str, Any]:
    """Alternate phases without and with viewers in one run (module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from benchmarks.reliability.bench import load_child; "
            "load_child(sys.argv[1:])")
    child = EdgeChild([sys.executable, "-c", code, str(video), str(folder / "events.jsonl"),
                       str(opts.cap)], cwd=REPO)
    phases: list[dict[str, Any]] = []
    try:
        port = child.wait_serving()
        time.sleep(opts.warmup)
        proc = read_proc(child.pid)
        baseline = proc.threads if proc else 0
        log(f"load: pid {child.pid}, {baseline} threads before any viewer")
        for round_ in range(opts.rounds):
            phases.append({**_measure(child, port, opts.phase_seconds, None), "kind": "none"})
            phases.append(_loaded_phase(child, port, opts, baseline))
            log(f"load round {round_ + 1}: {phases[-2]['fps']:.1f} FPS without viewers, "
                f"{phases[-1]['fps']:.1f} with; threads peak {phases[-1]['threads_peak']}, "
                f"after {phases[-1]['after']['threads']}")
        stop = child.stop()
    finally:
        child.kill()
    return {"options": asdict(opts), "baseline_threads": baseline, "phases": phases,
            "stop": stop, "analysis": analyse_load(phases, baseline, opts)}


def analyse_load(phases: list[dict[str, Any]], baseline: int,
                 opts: LoadOptions) -> dict[str, Any]:
    quiet = [p for p in phases if p["kind"] == "none"]
    loaded = [p for p in phases if p["kind"] == "viewers"]
    fps_without = statistics.mean(p["fps"] for p in quiet)
    fps_with = statistics.mean(p["fps"] for p in loaded)
    ratio = fps_with / fps_without if fps_without else None
    per_frame = {kind: statistics.mean(1e3 * p["cpu"] / p["fps"] for p in group if p["fps"])
                 for kind, group in (("without", quiet), ("with", loaded))}
    cpu_ratio = per_frame["with"] / per_frame["without"]
    admitted = min(p["statuses"].get("200", 0) for p in loaded)
    after = max(p["after"]["threads"] or 0 for p in loaded)
    peak = max(p["threads_peak"] for p in loaded)
    viewer_fps = [f for p in loaded for f in p["viewer_fps"]]
    return {
        "fps_without": fps_without, "fps_with": fps_with, "ratio": ratio,
        "fps_ok": ratio is not None and ratio >= 1 - opts.fps_tolerance,
        "cpu_ms_per_frame": per_frame, "cpu_ratio": cpu_ratio,
        "fps_cpu_ok": cpu_ratio <= 1 + opts.fps_tolerance,
        "admitted": admitted, "beyond_cap": sorted({p["beyond_cap"] for p in loaded},
                                                   key=str),
        "threads_baseline": baseline, "threads_peak": peak, "threads_after": after,
        "threads_bounded": peak <= baseline + opts.cap + 4,
        "threads_cleaned": after <= baseline,
        "viewer_fps_min": min(viewer_fps) if viewer_fps else None,
        "viewer_fps_median": median(viewer_fps),
        "slow_dropped_after_s": _slow_drop(loaded, opts.viewers),
    }


def _slow_drop(loaded: list[dict[str, Any]], viewers: int) -> float | None:
    """Seconds into a phase until the page counted only the real viewers (slow ones dropped)."""
    times = [next((t for t, n in p["viewers_seen"] if n is not None and n <= viewers), None)
             for p in loaded]
    times = [t for t in times if t is not None]
    return max(times) if times else None


# --- everything ---------------------------------------------------------------------------------

PARTS = ("load", "soak", "tests")


def run_all(quick: bool, minutes: float | None, parts: tuple[str, ...],
            previous: dict[str, Any] | None, log: Log = _log) -> dict[str, Any]:
    """Run the `parts` (load, soak, tests); the others come from `previous` (the last JSON).
    Each part records the command and time it was measured by."""
    work = WORK / ("quick" if quick else "full")
    video = make_video(WORK, default_shared())
    length = minutes or (2.0 if quick else 30.0)
    soak_opts = SoakOptions(minutes=length, warmup=min(60.0, 30.0 * length))  # half, at most
    load_opts = (LoadOptions(warmup=10.0, phase_seconds=15.0, rounds=2) if quick
                 else LoadOptions())
    command = " ".join(["python -m benchmarks.reliability", *sys.argv[1:]])
    result: dict[str, Any] = {**(previous or {}), "quick": quick, "cpus": os.cpu_count(),
                              "command": command, "nice": os.nice(0)}
    runs: dict[str, Callable[[], Any]] = {
        "load": lambda: load(video, work / "load", load_opts, log),
        "soak": lambda: soak(video, work / "soak", soak_opts, log),
        "tests": lambda: report_module.run_tests(work / "junit.xml", log)}
    for part in PARTS:
        if part not in parts:
            continue
        started = datetime.now(UTC).isoformat(timespec="seconds")
        log(f"{part}: start")
        result[part] = runs[part]()
        if isinstance(result[part], dict):
            result[part]["measured"] = {"command": command, "started": started,
                                        "finished": datetime.now(UTC).isoformat(
                                            timespec="seconds")}
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    from benchmarks.reliability.report import render
    from edge.core.fileio import write_text_atomic

    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-minute soak, short load "
                        "(CI), written under benchmarks/work/quick/")
    parser.add_argument("--minutes", type=float, default=None, help="soak length "
                        "(default 30, quick 2)")
    parser.add_argument("--render-only", action="store_true", help="re-render the report "
                        "from the JSON (the case list is read again)")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part "
                        "(repeatable); the others are kept from the last JSON")
    parser.add_argument("--no-tests", action="store_true", help="do not run the fault, "
                        "bad-input and CLI tests (their section says so)")
    args = parser.parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        parser.error("--minutes must be positive")
    out_json = QUICK_DIR / "reliability.json" if args.quick else FULL_JSON
    report = QUICK_DIR / "RELIABILITY.md" if args.quick else FULL_REPORT
    if args.render_only:  # the verdicts again from the samples, with today's analysis
        result = json.loads(out_json.read_text())
        soak_opts = SoakOptions(**result["soak"]["options"])
        result["soak"]["analysis"] = analyse_soak(result["soak"]["samples"], soak_opts)
    else:
        parts = tuple(args.only or [p for p in PARTS if p != "tests" or not args.no_tests])
        previous = json.loads(out_json.read_text()) if args.only and out_json.is_file() else None
        if args.only and previous is None and set(parts) != set(PARTS):
            parser.error(f"--only needs an earlier {out_json} for the other parts")
        result = run_all(args.quick, args.minutes, parts, previous)
        if args.no_tests and not args.only:
            result["tests"] = None
        write_text_atomic(out_json, json.dumps(result, indent=1, default=str) + "\n")
    write_text_atomic(report, render(result, report_module.load_cases()))
    _log(f"wrote {report}" + ("" if args.render_only else f" and {out_json}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
