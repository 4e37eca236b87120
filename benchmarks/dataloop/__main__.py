"""`python -m benchmarks.dataloop`: see benchmarks/dataloop/__init__.py."""

from benchmarks.dataloop.cli import app

app(prog_name="python -m benchmarks.dataloop")
