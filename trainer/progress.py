"""Progress bars on stderr (rich), or nothing when quiet: stdout stays clean for --json."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[int], None]


@contextlib.contextmanager
def task(description: str, total: int, enabled: bool = True) -> Iterator[Advance]:
    """Context giving an `advance(n)` function that moves a progress bar on stderr."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    console = Console(file=sys.stderr)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task_id, n)


def say(message: str, enabled: bool = True) -> None:
    """One status line on stderr."""
    if enabled:
        print(message, file=sys.stderr, flush=True)
