"""Issue 13's load and soak, the CI variants of `python -m benchmarks.reliability`.

- A 2-minute soak of `edge run` on a looping 640x480 video with every output on (MQTT to a
  mosquitto on a free loopback port, snapshots with --snapshots-keep, the dashboard with a viewer,
  alerts, stats, JSON lines to a file), stopped with SIGTERM: no memory growth after warm-up, no
  FPS decay, a clean exit with its summary, nothing lost.
- The live page under 20 stream viewers and 5 readers that never read, against the same run with
  no viewers: every viewer served, the thread count bounded and back to its baseline once the
  viewers leave, HTTP 503 beyond the viewer cap, FPS not far from the run without viewers.

FPS is guarded here with `CI_FPS_FLOOR` (at most 30 % lower), not the benchmark's 10 %: on 2
cores shared with other jobs, phases of one run vary by up to 25 %. The 10 % verdicts are in
benchmarks/RELIABILITY.md.

About 3.5 minutes together; marked slow (CI runs them, `-m "not slow"` skips them). The full
30-minute soak and the longer load run are `python -m benchmarks.reliability`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED

from benchmarks.reliability.bench import WORK, LoadOptions, SoakOptions, load, make_video, soak
from benchmarks.reliability.tools import find_mosquitto

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
CI_FPS_FLOOR = 0.7  # the benchmark's target is 0.9; phases on 2 shared cores vary by +-25 %


@pytest.fixture(scope="module")
def video() -> Path:
    return make_video(WORK, SHARED)  # cached under benchmarks/work/ (git-ignored)


def test_two_minute_soak_with_every_output(video: Path, tmp_path: Path) -> None:
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is in the dev extra")
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    result = soak(video, tmp_path, SoakOptions(minutes=2.0))
    a, stop, out = result["analysis"], result["stop"], result["outputs"]
    print(f"RSS {a['rss_first_kb']} -> {a['rss_last_kb']} kB ({a['rss_growth']:+.2%}); FPS "
          f"{a['first']['fps']:.2f} -> {a['last']['fps']:.2f}, frames per CPU second "
          f"{a['first']['frames_per_cpu_s']:.2f} -> {a['last']['frames_per_cpu_s']:.2f}; "
          f"threads {a['threads']}; exit {stop['returncode']} in {stop['seconds_to_exit']} s")
    assert stop["returncode"] == 0 and not stop["tracebacks"], stop["stderr_tail"]
    assert stop["summary"]["stopped_by"] == "signal SIGTERM"
    assert stop["seconds_to_exit"] < 15
    assert not out["lost"], out["lost"]
    assert out["alerts"] > 0 and out["events"]["stats"] >= 10
    assert out["snapshot_files"] <= out["snapshot_files_max"]
    assert result["cap"] == {"cap": 10, "admitted": 10, "beyond_cap": 503}
    assert all(s["state_ok"] for s in result["samples"])
    assert result["samples"][-1]["viewer_frames"] > 0
    assert a["memory_ok"], f"RSS grew {a['rss_growth']:+.2%} after warm-up"
    # benchmarks/RELIABILITY.md holds the 10 % target; here a guard against a real decay that
    # the other jobs on a shared 2-core machine cannot fake (they move FPS by up to 25 %).
    assert a["ratio"]["fps"] >= CI_FPS_FLOOR or a["ratio"]["frames_per_cpu_s"] >= CI_FPS_FLOOR, (
        a["first"], a["last"])


def test_live_page_under_20_viewers_and_5_slow_readers(video: Path, tmp_path: Path) -> None:
    opts = LoadOptions(warmup=10.0, phase_seconds=15.0, rounds=2)
    result = load(video, tmp_path, opts)
    a = result["analysis"]
    print(f"FPS {a['fps_with']:.1f} with viewers, {a['fps_without']:.1f} without; CPU ms/frame "
          f"{a['cpu_ms_per_frame']}; threads {a['threads_baseline']} -> {a['threads_peak']} -> "
          f"{a['threads_after']}; slowest viewer {a['viewer_fps_min']:.1f} frames/s")
    assert result["stop"]["returncode"] == 0 and not result["stop"]["tracebacks"]
    assert a["admitted"] == opts.viewers and a["beyond_cap"] == [503]
    assert a["threads_bounded"] and a["threads_cleaned"], a
    assert a["viewer_fps_min"] > 1.0
    # 20 viewers cost 5-21 % CPU per frame here (RELIABILITY.md); CI guards against a viewer
    # that slows the frame loop, not against the shared machine's noise.
    assert a["ratio"] >= CI_FPS_FLOOR or a["cpu_ratio"] <= 2 - CI_FPS_FLOOR, (
        a["fps_with"], a["fps_without"], a["cpu_ratio"])
