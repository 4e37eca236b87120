"""`edge label DIR [--serve HOST:PORT] [--set FILE=LABEL ...]` (registered in edge/cli.py).

Without `--set` it serves the labelling page (edge/collect/server.py) until Ctrl-C; with
`--set` it labels those faces and exits, for scripts (and serves the page afterwards only when
`--serve` is given too). Every `--set` is checked before any crop moves, so a bad one moves
none. A folder without a manifest, a FILE the manifest does not name, a LABEL that is not one of
its model's classes, or a bad address is one error line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge.core.console import fail

if TYPE_CHECKING:
    from edge.collect.server import LabelServer

PROG = "edge"
DEFAULT_SERVE = "127.0.0.1:8765"
SERVE_AUTH_ENV = "MASKEDGE_SERVE_AUTH"  # edge.sinks.dashboard.SERVE_AUTH_ENV


def _folder(folder: Path) -> Path:
    from edge.collect.manifest import MANIFEST

    if not folder.is_dir():
        raise fail(PROG, f"DIR {folder} is not a folder (`edge run --collect DIR` makes one)")
    if not (folder / MANIFEST).is_file():
        raise fail(PROG, f"no {MANIFEST} in {folder}: not a folder `edge run --collect` wrote")
    return folder


def _pairs(folder: Path, texts: list[str]) -> list[tuple[str, str]]:
    """The --set FILE=LABEL pairs, each checked against the manifest."""
    from edge.collect import manifest
    from edge.collect.manifest import ManifestError

    pairs: list[tuple[str, str]] = []
    try:
        entries = manifest.read_entries(folder)
    except ManifestError as exc:
        raise fail(PROG, str(exc)) from None
    for text in texts:
        file, equals, label = text.partition("=")
        if not equals or not file or not label:
            raise fail(PROG, f"--set wants FILE=LABEL, e.g. faces/NAME.jpg=with_mask, not "
                             f"{text!r}")
        if file in (f for f, _ in pairs):
            raise fail(PROG, f"--set {file} is given twice")
        try:
            manifest.check_label(manifest.find(entries, file), label)
        except ManifestError as exc:
            raise fail(PROG, f"--set {text}: {exc}") from None
        pairs.append((file, label))
    return pairs


def _apply(folder: Path, pairs: list[tuple[str, str]]) -> None:
    from edge.collect import manifest
    from edge.collect.manifest import ManifestError

    for file, label in pairs:
        try:
            entry = manifest.set_label(folder, file, label)
        except (ManifestError, OSError) as exc:
            raise fail(PROG, f"--set {file}={label}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        typer.echo(f"{file} -> {entry['labelled_file']}")


def _server(folder: Path, serve: str, serve_auth: str | None, insecure: bool) -> LabelServer:
    """The page's server, or one error line for a bad address or credentials."""
    from edge.collect.manifest import ManifestError
    from edge.collect.server import LabelServer
    from edge.sinks.dashboard import parse_serve_auth
    from edge.sinks.outputs import parse_address

    try:
        host, port = parse_address(serve)
    except ValueError as exc:
        raise fail(PROG, f"--serve: {exc}") from None
    try:
        auth = parse_serve_auth(serve_auth) if serve_auth else None
        return LabelServer(folder, host, port, auth=auth, insecure=insecure)
    except (ValueError, ManifestError) as exc:  # credentials, exposure, a port in use
        raise fail(PROG, str(exc)) from None


def label(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="The folder `edge run --collect DIR` filled.", show_default=False)],
    serve: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", show_default=False,
        help=f"Serve the labelling page here (default {DEFAULT_SERVE}; PORT alone binds "
             "127.0.0.1; beyond loopback it needs --serve-auth).")] = None,
    serve_auth: Annotated[str | None, typer.Option(
        envvar=SERVE_AUTH_ENV, show_envvar=True, metavar="USER:PASSWORD|token:TOKEN",
        show_default=False, help="Credentials for the page (HTTP Basic, or a bearer token), "
                                 "as for `edge run --serve`.")] = None,
    serve_insecure: Annotated[bool, typer.Option(
        "--serve-insecure", help="Serve beyond loopback without authentication.")] = False,
    set_labels: Annotated[list[str] | None, typer.Option(
        "--set", metavar="FILE=LABEL", show_default=False,
        help="Label one face without the page and exit (repeatable; FILE as the manifest's "
             "\"file\" names it, LABEL one of its model's classes).")] = None,
) -> None:
    """Label the faces `edge run --collect` kept: a page shows each crop beside its frame, keys
    1/2/3 pick the class (s skips, u undoes); each label moves the crop into DIR/labelled/<class>/,
    the folder-per-class layout `trainer fit` reads."""
    _folder(folder)
    server = None
    if serve is not None or not set_labels:
        server = _server(folder, serve or DEFAULT_SERVE, serve_auth, serve_insecure)
    try:
        _apply(folder, _pairs(folder, set_labels or []))
        if set_labels and serve is None:
            return
        assert server is not None
        typer.echo(f"labelling {folder} at {server.url} (Ctrl-C stops)", err=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            typer.echo("stopped", err=True)
    finally:
        if server is not None:
            server.close()
