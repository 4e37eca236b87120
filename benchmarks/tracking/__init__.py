"""The tracking benchmark, `python -m benchmarks.tracking`: synthetic clips with ground truth
(clips.py, clip_scenes.py, clip_player.py), the run (bench.py), py-motmetrics and the
project's own metrics (metrics.py), and its part of RESULTS.md (report.py).
"""
