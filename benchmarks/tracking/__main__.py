"""`python -m benchmarks.tracking`."""

from benchmarks.tracking.bench import app

app()
