"""Keep TensorFlow's noise off the terminal, and turn its errors into one line.

TensorFlow prints at the C++ level (oneDNN notices, MLIR diagnostics) and at the Python level
(Keras' "Saved artifact at ..." listing every captured tensor). `quiet_output` sends both file
descriptors 1 and 2, and Python's sys.stdout/sys.stderr, to a scratch file while a block runs, so
`--json` output stays clean; the captured text is kept for error messages. `one_line_error` digs the
meaningful sentence out of a converter exception that may be hundreds of lines of MLIR.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from edge.core.console import quiet_tensorflow_logs

quiet_tensorflow_logs()  # TensorFlow's C++ log level, the one of every CLI (edge/core/console.py)


@dataclass
class Captured:
    """What was printed inside a `quiet_output` block (filled in when the block ends)."""

    text: str = ""


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def quiet_output() -> Iterator[Captured]:
    """Silence everything printed to stdout/stderr (Python and native) inside the block."""
    captured = Captured()
    python_sink = io.StringIO()
    _flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no real descriptors (embedded interpreter): Python level only
            pass
        try:
            with contextlib.redirect_stdout(python_sink), contextlib.redirect_stderr(python_sink):
                yield captured
        finally:
            _flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            native = sink.read().decode("utf-8", "replace")
            captured.text = python_sink.getvalue() + native


_SELECT_OPS = re.compile(r"TF Select ops:\s*(.+)")
_CUSTOM_OPS = re.compile(r"Custom ops:\s*(.+)")
_ERROR = re.compile(r"error:\s*(.+)")


def one_line_error(exc: BaseException, captured: str = "") -> str:
    """The most useful single line of a (TensorFlow) exception and the text it printed."""
    text = f"{exc}\n{captured}"
    for pattern, what in ((_SELECT_OPS, "TensorFlow ops that TFLite built-ins do not have"),
                          (_CUSTOM_OPS, "custom ops that TFLite does not have")):
        found = pattern.search(text)
        if found:
            return f"the model uses {what}: {found.group(1).strip()[:160]}"
    for line in str(exc).splitlines():
        found = _ERROR.search(line)
        if found:
            message = found.group(1)
            if message.startswith("loc(") and "): " in message:
                message = message.rsplit("): ", 1)[1]
            return message.strip()[:200]
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:200]
    return type(exc).__name__
