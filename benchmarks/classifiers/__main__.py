"""`python -m benchmarks.classifiers`."""

from benchmarks.classifiers.bench import app

app()
