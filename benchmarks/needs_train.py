"""Imported first by the benchmark commands that train, convert or plot (`python -m
benchmarks.run`, `benchmarks.stages.threeclass`, `benchmarks.stages.detector_finetune`): in an
install without the `train` extra (the device's `maskedge[edge]`) the process ends here, before
TensorFlow or matplotlib would fail with a traceback, with one line naming the extra to install and
exit 2.

Nothing else imports it: `benchmarks.worker` runs under side interpreters that have neither
TensorFlow nor typer.
"""

from __future__ import annotations

import sys

from edge.core.console import EXIT_USAGE, missing_extra

PROG = "benchmarks"

if (_message := missing_extra("train")) is not None:
    print(f"{PROG}: error: {_message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)
