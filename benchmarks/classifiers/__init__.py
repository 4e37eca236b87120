"""The shipped classifiers side by side, `python -m benchmarks.classifiers`: size, MACs, ms per
face, Raspberry Pi 4 estimate, held-out accuracy and pipeline FPS of each row of one table
(bench.py), rendered into RESULTS.md by `bench.render_classifiers`.
"""
