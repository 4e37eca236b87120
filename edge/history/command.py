"""`edge history --db PATH`: people, compliance and alerts per hour or day (registered in
edge/cli.py). The table goes to stdout; `--csv FILE` also writes the buckets as CSV (`--csv -`:
CSV on stdout instead of the table), `--json` prints the report as JSON instead. A missing file,
a file that is no SQLite database or a bad time is one error line and exit 2."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from edge.core.console import fail, user_errors

PROG = "edge"
BY = ("hour", "day")  # edge.history.query.BY (not imported here: `edge --help` stays light)
DEFAULT_BUCKETS = {"hour": 24, "day": 7}  # what --since defaults to: the last 24 h or 7 days


def _write_csv(target: Path, text: str) -> None:
    from edge.core.fileio import write_text_atomic

    if target.is_dir():
        raise fail(PROG, f"cannot write --csv {target}: it is a folder")
    try:
        write_text_atomic(target, text)
    except OSError as exc:
        raise fail(PROG, f"cannot write --csv {target}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {target}", err=True)


def history(
    db: Annotated[Path, typer.Option(
        "--db", metavar="PATH", show_default=False,
        help="The history database (`edge run --history PATH` writes it).")],
    since: Annotated[str | None, typer.Option(
        metavar="WHEN", show_default=False,
        help="From: an ISO time (2024-05-01T08:00, local time unless it has an offset) or a "
             "time ago (-24h, -90m, -7d). Default: the last 24 hours by hour, 7 days by day, "
             "the current one included.")] = None,
    until: Annotated[str | None, typer.Option(
        metavar="WHEN", show_default=False, help="Until (same forms as --since). Default: "
                                                 "now.")] = None,
    by: Annotated[str, typer.Option(metavar="hour|day", help="One row per local hour or "
                                                             "day.")] = "hour",
    csv_out: Annotated[str | None, typer.Option(
        "--csv", metavar="FILE|-", show_default=False,
        help="Also write the rows as CSV to FILE ('-': CSV on stdout instead of the "
             "table).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the report as JSON instead of the table.")] = False,
) -> None:
    """People (person tracks counted), compliance (share masked) and alerts per hour or day,
    from the history `edge run --history` keeps."""
    if by not in BY:
        raise fail(PROG, f"--by must be one of {', '.join(BY)}, not {by!r}")
    if csv_out == "-" and json_out:
        raise fail(PROG, "--csv - and --json both print to stdout: choose one")
    import json

    from edge.history.query import format_table, parse_when, read_report, to_csv, window
    from edge.history.store import HistoryError

    with user_errors(PROG, (HistoryError,)):
        now = time.time()
        start = (parse_when(since, "--since", now) if since is not None
                 else window(by, DEFAULT_BUCKETS[by], now)[0])
        end = parse_when(until, "--until", now) if until is not None else now
        report = read_report(db, start, end, by)
    if csv_out == "-":
        typer.echo(to_csv(report), nl=False)
        return
    if csv_out is not None:
        _write_csv(Path(csv_out), to_csv(report))
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(format_table(report))
