"""Markdown building blocks of the benchmark reports: number cells, tables, paths and images.

`fmt` and `pct` format one cell, `table` joins formatted cells into a Markdown table, `short`
makes a path relative to the repository and `image` links a plot. RESULTS.md (benchmarks/report.py
and every stage's `render`), the tracking report and the 3-class section all build on these, and
they import nothing of the benchmarks but the repository's location.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.config import REPO


def fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    """A number for a table cell: fixed digits, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}{unit}"
    return f"{value}{unit}"


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage cell ('-' for missing)."""
    return "-" if value is None else f"{100.0 * value:.{digits}f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (cells already formatted as strings)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def short(path: Any) -> str:
    """A path as the reader can use it: relative to the repository when inside it."""
    text = str(path)
    prefix = str(REPO) + os.sep
    return text[len(prefix):] if text.startswith(prefix) else text


def image(path: Path, report_path: Path, alt: str) -> str:
    """A Markdown image of `path`, relative to the report that shows it."""
    rel = os.path.relpath(path, report_path.parent)
    return f"![{alt}]({Path(rel).as_posix()})"
