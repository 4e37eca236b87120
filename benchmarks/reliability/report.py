"""benchmarks/RELIABILITY.md from the reliability results (benchmarks/reliability/bench.py).

`load_cases` reads the fault and bad-input case list of tests/support/reliability_cases.py
(dicts with `area`, `case`, `test` and `expected` or `result`) when that module exists;
`run_tests` runs those tests and the CLI bad-value table with pytest (JUnit XML) so the report
shows what happened, not what was meant to; `render` writes the Markdown.
"""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.config import REPO

CASES_FILE = REPO / "tests" / "support" / "reliability_cases.py"
CASES_NAME = CASES_FILE.relative_to(REPO).as_posix()
CLI_TEST = "tests/test_cli_bad_values.py"
FAULT_TESTS = ("tests/reliability/test_reliability_faults.py",
               "tests/reliability/test_reliability_input.py")
PLACEHOLDER = (f"**Placeholder:** {CASES_NAME} (the fault and bad-input case list) "
               "does not exist yet. `python -m benchmarks.reliability --render-only` fills this "
               "section from it once it does (and a full run also runs its tests).")


# --- cases and tests ----------------------------------------------------------------------------

def load_cases(path: Path = CASES_FILE) -> list[dict[str, Any]] | None:
    """The case list of tests/support/reliability_cases.py (`CASES`, else the first list of
    dicts with a `case` key), or None when the module does not exist or holds no such list."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("reliability_cases", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # it may import conftest like the tests do
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    candidates = [getattr(module, "CASES", None), *vars(module).values()]
    for value in candidates:
        if (isinstance(value, (list, tuple)) and value
                and all(isinstance(c, dict) and "case" in c for c in value)):
            return [dict(c) for c in value]
    return None


def _test_files(cases: list[dict[str, Any]] | None) -> list[str]:
    """The CLI table, and with a case list, the files its cases name (and the fault tests)."""
    files = {CLI_TEST, *(f for f in FAULT_TESTS if cases and (REPO / f).is_file())}
    for case in cases or ():
        file = str(case.get("test", "")).split("::")[0]
        if file.endswith(".py"):
            files.add(file if file.startswith("tests/") else f"tests/{Path(file).name}")
    return sorted(f for f in files if (REPO / f).is_file())


def run_tests(junit: Path, log: Any = print, timeout: float = 3600.0) -> dict[str, Any]:
    """Run the CLI table and the fault/bad-input tests; outcome and seconds per test."""
    files = _test_files(load_cases())
    junit.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           f"--junitxml={junit}", *files]
    log(f"tests: {' '.join(files)}")
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)
    seconds = round(time.monotonic() - t0, 1)
    tests = parse_junit(junit) if junit.is_file() else {}
    tail = (done.stdout or "").strip().splitlines()[-1:] or [""]
    log(f"tests: {tail[0]} ({seconds} s)")
    return {"files": files, "returncode": done.returncode, "seconds": seconds,
            "summary": tail[0], "tests": tests}


def parse_junit(path: Path) -> dict[str, dict[str, Any]]:
    """{'tests/file.py::name': {'outcome', 'seconds'}} from a JUnit XML report."""
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")[-1]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
        results[f"tests/{module}.py::{case.get('name')}"] = {
            "outcome": outcome, "seconds": round(float(case.get("time") or 0), 2)}
    return results


def case_outcome(case: dict[str, Any], tests: dict[str, dict[str, Any]] | None) -> str:
    """passed / failed / skipped from the tests that ran for a case, else 'not run'."""
    wanted = str(case.get("test", ""))
    file, _, name = wanted.rpartition("::") if "::" in wanted else ("", "", wanted)
    found = [r for node, r in (tests or {}).items()
             if (not file or node.split("::")[0].endswith(Path(file).name))
             and (node.split("::")[1] == name or node.split("::")[1].split("[")[0] == name)]
    if not found:
        return "not run"
    outcomes = {r["outcome"] for r in found}
    return "failed" if "failed" in outcomes else ("skipped" if outcomes == {"skipped"}
                                                   else "passed")


# --- Markdown ------------------------------------------------------------------------------------

def _f(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} %"


def _mb(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f} MiB"


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def render(result: dict[str, Any], cases: list[dict[str, Any]] | None) -> str:
    soak, load = result["soak"], result["load"]
    minutes = soak["options"]["minutes"]
    lines = [
        "# Reliability: load, soak, faults, bad inputs",
        "",
        "Regenerated by `python -m benchmarks.reliability` (`--only load|soak|tests` re-runs one "
        f"part). Measured on {result['cpus']} cores (machine load averages in each section; "
        f"this run's processes at niceness {result.get('nice', '?')}): {_measured(result)}. "
        "Raw figures: `benchmarks/results/reliability.json`. The "
        "pipeline is the default one (YuNet + int8 classifier, 640x480 video of face-mask-voc "
        "photos, each held 4 frames, looped).",
        "",
    ]
    if minutes < 30:
        lines += [f"**This is the {minutes:g}-minute variant of the soak** (the full soak is 30 "
                  "minutes: `python -m benchmarks.reliability`; CI runs a 2-minute one, "
                  "tests/reliability/test_reliability_soak.py).", ""]
    lines += _summary(result, cases)
    lines += _load_section(load)
    lines += _soak_section(soak)
    lines += _cases_section(cases, result.get("tests"))
    lines += _cli_section(result.get("tests"))
    lines += _lost_section(soak)
    return "\n".join(lines) + "\n"


def _measured(result: dict[str, Any]) -> str:
    """Which command measured each part, and when."""
    said = []
    for part in ("load", "soak", "tests"):
        m = (result.get(part) or {}).get("measured") if isinstance(result.get(part), dict) \
            else None
        if m:
            said.append(f"{part} by `{m['command']}` ({m['started'][:16].replace('T', ' ')} to "
                        f"{m['finished'][11:16]} UTC)")
    return "; ".join(said) or f"`{result.get('command')}`"


def _summary(result: dict[str, Any], cases: list[dict[str, Any]] | None) -> list[str]:
    soak, load = result["soak"]["analysis"], result["load"]["analysis"]
    stop, out = result["soak"]["stop"], result["soak"]["outputs"]
    tests = result.get("tests")
    cli = _cli_counts(tests)
    rows = [
        ("load: 20 stream viewers + 5 slow readers",
         _mark(load["fps_ok"] and load["threads_bounded"] and load["threads_cleaned"]),
         f"{_f(load['fps_with'])} FPS with, {_f(load['fps_without'])} without "
         f"({_pct(load['ratio'] - 1 if load['ratio'] else None)}), CPU per frame "
         f"{_pct(load['cpu_ratio'] - 1)}; threads "
         f"{load['threads_baseline']} -> {load['threads_peak']} -> {load['threads_after']}; "
         f"viewer beyond the cap: {', '.join(map(str, load['beyond_cap']))}"),
        (f"soak: {result['soak']['options']['minutes']:g} min, every output on",
         _mark(soak["passed"]),
         f"RSS {_mb(soak['rss_first_kb'])} -> {_mb(soak['rss_last_kb'])} "
         f"({_pct(soak['rss_growth'])}); FPS {_f(soak['first']['fps'])} -> "
         f"{_f(soak['last']['fps'])} ({soak['fps_verdict']})"),
        ("SIGTERM", _mark(stop["returncode"] == 0 and bool(stop["summary"])
                          and not stop["tracebacks"]),
         f"exit {stop['returncode']} after {stop['seconds_to_exit']} s, summary printed, "
         f"{stop['tracebacks']} tracebacks"),
        ("data lost", "none" if not out["lost"] else "SOME", "; ".join(out["lost"]) or
         "every frame and alert in the JSON lines, every alert on MQTT and in snapshots"),
        *_case_rows(cases, tests),
        ("CLI bad values (3 CLIs, every option)",
         f"{cli['passed']}/{cli['total']} rejected" if cli["total"] else "not run here",
         f"{cli['options']} options; exit 2, one error line, no traceback" if cli["total"]
         else f"`pytest {CLI_TEST}`"),
    ]
    return ["## Summary", "", "| case | result | figures |", "| --- | --- | --- |",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows), ""]


def _case_rows(cases: list[dict[str, Any]] | None,
               tests: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """One summary row per area of tests/support/reliability_cases.py (faults, bad input, ...)."""
    if not cases:
        return [(f"faults and bad inputs ({CASES_NAME})", "placeholder",
                 "the case list does not exist yet")]
    areas: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        outcome = case_outcome(case, tests["tests"]) if tests else "not run"
        areas[str(case.get("area", ""))].append(outcome)
    return [(f"{area} ({CASES_NAME})",
             f"{runs.count('passed')}/{len(runs)} passed" if tests else "not run here",
             ", ".join(f"{runs.count(k)} {k}" for k in ("failed", "skipped", "not run")
                       if runs.count(k)) or "every case's test passed")
            for area, runs in areas.items()]


def _load_section(load: dict[str, Any]) -> list[str]:
    o, a = load["options"], load["analysis"]
    lines = [
        "## Load: the live page under 20 viewers and 5 slow readers",
        "",
        f"One `edge run` (the same `Runner`, `--loop --json FILE --alert-after 3 --stats-every "
        f"10`) whose dashboard admits {o['cap']} stream viewers (`edge run --serve` admits 10: "
        "the soak checks that cap). Phases of "
        f"{o['phase_seconds']:g} s alternate: no viewers, then {o['viewers']} MJPEG viewers "
        f"(read by one selector thread here) and {o['slow']} clients that ask for the stream "
        f"and never read; {o['rounds']} rounds after {o['warmup']:g} s of warm-up. FPS is "
        "frames processed over the phase (from `/api/state`), CPU is the child's user + system "
        "time (/proc/PID/stat), threads from /proc/PID/status.",
        "",
        "| phase | FPS | child CPU (cores) | CPU ms / frame | threads (peak) | stream viewers "
        "admitted | viewer beyond the cap | threads after leaving | machine load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in load["phases"]:
        loaded = p["kind"] == "viewers"
        lines.append(
            f"| {'viewers' if loaded else 'none'} | {_f(p['fps'])} | {_f(p['cpu'], 2)} | "
            f"{_f(1e3 * p['cpu'] / p['fps'] if p['fps'] else None)} | {p['threads_peak']} | "
            f"{p['statuses'].get('200', 0) if loaded else '-'} | "
            f"{p['beyond_cap'] if loaded else '-'} | "
            f"{p['after']['threads'] if loaded else '-'}"
            f"{' in ' + _f(p['after']['seconds'], 1) + ' s' if loaded else ''} | "
            f"{_f(p['load'], 1)} |")
    lines += [
        "",
        f"- FPS with viewers {_f(a['fps_with'])}, without {_f(a['fps_without'])}: "
        f"{_pct(a['ratio'] - 1 if a['ratio'] else None)} (target within "
        f"{100 * o['fps_tolerance']:.0f} %: **{_mark(a['fps_ok'])}**). The child's CPU per "
        f"frame (its serving threads included) {_f(a['cpu_ms_per_frame']['with'])} ms with, "
        f"{_f(a['cpu_ms_per_frame']['without'])} ms without ({_pct(a['cpu_ratio'] - 1)}; "
        f"within {100 * o['fps_tolerance']:.0f} %: {_mark(a['fps_cpu_ok'])}): what the viewers "
        "cost the device. The other jobs on these 2 cores move wall FPS from phase to phase "
        "(compare the rounds), CPU per frame less so, but not nothing; the pipeline is "
        "CPU-bound, so on a quiet machine the viewers' CPU comes out of its FPS.",
        f"- Every viewer kept getting frames: slowest {_f(a['viewer_fps_min'])} frames/s, "
        f"median {_f(a['viewer_fps_median'])}. The slow readers were dropped "
        f"{_f(_plus(a['slow_dropped_after_s'], o['settle']), 0)} s after they connected (the "
        "socket buffers fill first, then the dashboard's 10 s send timeout ends them).",
        f"- Threads: {a['threads_baseline']} before any viewer, at most {a['threads_peak']} "
        f"under load (bounded by the cap: **{_mark(a['threads_bounded'])}**), "
        f"{a['threads_after']} after the viewers left (back to the baseline: "
        f"**{_mark(a['threads_cleaned'])}**). Viewer {o['cap'] + 1} got HTTP "
        f"{', '.join(map(str, a['beyond_cap']))}.",
        "",
    ]
    return lines


def _soak_section(soak: dict[str, Any]) -> list[str]:
    o, a, cap = soak["options"], soak["analysis"], soak["cap"]
    summary = soak["stop"]["summary"] or {}
    lines = [
        f"## Soak: {o['minutes']:g} minutes with every output",
        "",
        "`edge run --source VIDEO --loop --json FILE --mqtt mqtt://127.0.0.1:PORT "
        f"--snapshots DIR --snapshots-keep {o['snapshots_keep']} --serve 127.0.0.1:0 "
        f"--alert-after {o['alert_after']} --stats-every {o['stats_every']:g} --json-summary` "
        "with a mosquitto on a free loopback port and a subscriber counting what arrives, one "
        "MJPEG viewer connected throughout and `/api/state` polled at every sample; sampled "
        f"every {o['sample_every']:g} s, stopped with SIGTERM.",
        "",
        f"- Frames: {summary.get('frames')} processed in {_f(summary.get('seconds'), 0)} s "
        f"({_f(summary.get('fps'))} FPS; dropped {summary.get('dropped')}), "
        f"{summary.get('alerts')} alerts.",
        f"- Memory after the {o['warmup']:g} s warm-up: median RSS of the first third of the "
        f"samples {_mb(a['rss_first_kb'])}, of the last third {_mb(a['rss_last_kb'])}: "
        f"{_pct(a['rss_growth'])} (allowed +{100 * o['rss_tolerance']:.0f} %: "
        f"**{_mark(a['memory_ok'])}**); robust slope (Theil-Sen) "
        f"{_f(a['rss_slope_mb_per_hour'], 2)} MiB/hour; peak {_mb(a['rss_peak_kb'])}. "
        + _steps_text(a),
        f"- FPS: median of the first {a['windows_averaged']} windows of {o['sample_every']:g} "
        f"s after warm-up {_f(a['first']['fps'], 2)}, of the last {a['windows_averaged']} "
        f"{_f(a['last']['fps'], 2)} ({_pct(_ratio(a, 'fps'))}); frames per CPU second "
        f"{_f(a['first']['frames_per_cpu_s'], 2)} -> {_f(a['last']['frames_per_cpu_s'], 2)} "
        f"({_pct(_ratio(a, 'frames_per_cpu_s'))}). Tolerance: a decay of at most "
        f"{100 * o['fps_tolerance']:.0f} % in wall FPS, or, because the 2 cores are shared "
        "with training jobs whose load moves wall FPS, in frames per CPU second of the child: "
        f"**{a['fps_verdict']}**. Machine load average {_f(a['first']['load'])} -> "
        f"{_f(a['last']['load'])}.",
        f"- Threads {' -> '.join(map(str, a['threads'])) or '-'} (first and last sample after "
        f"warm-up). `edge run --serve` admitted {cap['admitted']} stream viewers; the next got "
        f"HTTP {cap['beyond_cap']}.",
        f"- SIGTERM: exit {soak['stop']['returncode']} after {soak['stop']['seconds_to_exit']} s "
        f"(viewers still connected), stopped by `{summary.get('stopped_by')}`, summary printed, "
        f"{soak['stop']['tracebacks']} tracebacks on stderr.",
        "",
    ]
    return lines + _samples_table(soak)


def _steps_text(a: dict[str, Any]) -> str:
    steps = a.get("steps") or []
    between = a.get("slope_between_steps_kb_per_hour")
    if not steps:
        return f"No jump above 256 KiB between two samples; {_f(between, 0)} KiB/hour."
    jumps = ", ".join(f"+{s['kb'] / 1024:.1f} MiB at {s['t']:.0f} s" for s in steps)
    return (f"It grew in {len(steps)} step{'s' if len(steps) > 1 else ''} ({jumps}) and by "
            f"{_f(between, 0)} KiB/hour between them: the shape of the allocator taking "
            "another block, not of a leak per frame or per alert (that would grow smoothly "
            "with the frame rate, which rose and fell during the run); a longer soak would "
            "show whether the steps stop.")


def _plus(value: float | None, extra: float) -> float | None:
    return None if value is None else float(value + extra)


def _ratio(a: dict[str, Any], key: str) -> float | None:
    ratio = a["ratio"].get(key)
    return ratio - 1 if ratio is not None else None


def _samples_table(soak: dict[str, Any]) -> list[str]:
    samples = soak["samples"]
    every = max(1, round(60 / soak["options"]["sample_every"]))
    picked = [s for i, s in enumerate(samples) if (i + 1) % every == 0 or i == 0]
    lines = ["| t (s) | frames | FPS (last minute) | RSS | threads | machine load |",
             "| --- | --- | --- | --- | --- | --- |"]
    previous = None
    for s in picked:
        fps = ((s["frames"] - previous["frames"]) / (s["t"] - previous["t"])
               if previous and s["frames"] is not None and previous["frames"] is not None
               else None)
        lines.append(f"| {s['t']:.0f} | {s['frames']} | {_f(fps)} | {_mb(s['rss_kb'])} | "
                     f"{s['threads']} | {_f(s['load'])} |")
        previous = s
    return [*lines, ""]


def _cases_section(cases: list[dict[str, Any]] | None,
                   tests: dict[str, Any] | None) -> list[str]:
    lines = ["## Faults survived and bad inputs tried", ""]
    if not cases:
        return [*lines, PLACEHOLDER, ""]
    ran = tests is not None
    lines += [("Each case's test was run by this command (" + tests["summary"] + ")."
               if ran else "The tests were not run by this command (`--no-tests`)."), "",
              "| area | case | what happens | test | outcome |",
              "| --- | --- | --- | --- | --- |"]
    for case in cases:
        outcome = case_outcome(case, tests["tests"]) if ran else "not run"
        lines.append(f"| {case.get('area', '')} | {case.get('case', '')} | "
                     f"{case.get('expected') or case.get('result', '')} | "
                     f"`{case.get('test', '')}` | "
                     f"{outcome if outcome != 'failed' else '**FAILED**'} |")
    return [*lines, ""]


def _cli_counts(tests: dict[str, Any] | None) -> dict[str, Any]:
    per_command: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"options": set(), "values": 0, "passed": 0})
    for node, outcome in ((tests or {}).get("tests") or {}).items():
        match = re.match(r".*test_cli_bad_values\.py::test_bad_value_is_one_error_line"
                         r"\[(\S+) (\S+) (\S+) ", node)
        if not match:
            continue
        row = per_command[f"{match.group(1)} {match.group(2)}"]
        row["options"].add(match.group(3))
        row["values"] += 1
        row["passed"] += outcome["outcome"] == "passed"
    return {"per_command": per_command,
            "options": sum(len(r["options"]) for r in per_command.values()),
            "total": sum(r["values"] for r in per_command.values()),
            "passed": sum(r["passed"] for r in per_command.values())}


def _cli_section(tests: dict[str, Any] | None) -> list[str]:
    counts = _cli_counts(tests)
    lines = ["## CLI bad values", "",
             f"`{CLI_TEST}` enumerates every option and argument of `edge`, `trainer` and "
             "`convert` from their click commands and gives each wrongly typed or out-of-range "
             "values (not a number, below the minimum, above the maximum, NaN, unknown choice, "
             "missing input file, output under a regular file, malformed text); each must exit "
             "2 with one error message naming the option or the value, and no traceback.", ""]
    if not counts["total"]:
        return [*lines, f"Not run by this command: `pytest {CLI_TEST}`.", ""]
    lines += ["| command | options and arguments | bad values | rejected |",
              "| --- | --- | --- | --- |"]
    for command, row in sorted(counts["per_command"].items()):
        lines.append(f"| `{command}` | {len(row['options'])} | {row['values']} | "
                     f"{row['passed']} |")
    return [*lines, ""]


def _lost_section(soak: dict[str, Any]) -> list[str]:
    out = soak["outputs"]
    events, mqtt, snaps = out["events"] or {}, out["mqtt_received"], out["snapshots"]
    sink = out["mqtt_sink"]
    return [
        "## Data lost", "",
        f"**{'None' if not out['lost'] else 'Some: ' + '; '.join(out['lost'])}.** After "
        f"SIGTERM the soak's JSON-lines file held {events.get('frames')} frame lines (the "
        f"summary: {out['summary_frames']}), {events.get('alerts')} alerts and "
        f"{events.get('stats')} stats events, {events.get('bad_lines')} unreadable lines and "
        f"{events.get('gaps')} gaps in the frame numbers. The MQTT subscriber received "
        f"{mqtt['alerts']} of {out['alerts']} alerts (the sink: published {sink.get('published')}"
        f", dropped {sink.get('dropped')}, unsent {sink.get('unsent')}; status "
        f"{' -> '.join(mqtt['status'])}). Snapshots: {snaps.get('written')} written, "
        f"{snaps.get('failed')} failed, {snaps.get('deleted')} deleted by "
        f"`--snapshots-keep`; {out['snapshot_files']} files on disk (at most "
        f"{out['snapshot_files_max']}).",
        "",
    ]
