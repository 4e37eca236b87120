"""Find a TFLite interpreter: LiteRT first, then tflite_runtime, then TensorFlow's tf.lite.

The device installs only `ai-edge-litert`; older boards may have `tflite_runtime`; a workstation
always has TensorFlow. TensorFlow is reached through importlib only as a last resort, so importing
this module never imports TensorFlow. XNNPACK is the default CPU delegate in all three; the
runtimes' one-line notice about creating it is kept off the terminal (other messages pass through).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: (runtime name, module holding `Interpreter`), in order of preference.
RUNTIMES: tuple[tuple[str, str], ...] = (
    ("litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


class RuntimeUnavailable(RuntimeError):
    """No TFLite interpreter could be imported or none could load the model."""


@dataclass(frozen=True)
class LoadedInterpreter:
    interpreter: Any
    runtime: str  # one of the RUNTIMES names


def interpreter_class(runtime: str) -> Any:
    """The `Interpreter` class of one named runtime (ImportError when not installed)."""
    module = dict(RUNTIMES)[runtime]
    if runtime == "tensorflow":
        return importlib.import_module("tensorflow").lite.Interpreter
    return importlib.import_module(module).Interpreter


#: Native stderr lines dropped while an interpreter is created.
NOTICES = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _without_notices() -> Iterator[None]:
    """Capture native stderr (fd 2) in the block; re-print what is not a known notice."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (embedded interpreter)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() not in NOTICES]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def available_runtimes() -> list[str]:
    """The runtimes whose package is installed, found without importing them (so listing
    never loads TensorFlow)."""
    names = []
    for name, module in RUNTIMES:
        try:
            found = importlib.util.find_spec(module.split(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            names.append(name)
    return names


def _check_tflite_file(path: Path) -> None:
    """RuntimeUnavailable naming `path` unless it exists and starts like a TFLite flatbuffer
    (every runtime wants the TFL3 identifier; a wrong file is then one line, not each runtime's
    complaint)."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise RuntimeUnavailable(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if head[4:8] != b"TFL3":
        raise RuntimeUnavailable(f"{path} is not a TFLite model file (no TFL3 identifier)")


def load_interpreter(model_path: str | Path, threads: int | None = None,
                     runtime: str = "auto") -> LoadedInterpreter:
    """Load `model_path` with the first runtime that can (or the one named), tensors allocated."""
    names = [name for name, _ in RUNTIMES] if runtime == "auto" else [runtime]
    if threads is not None and threads < 1:
        raise RuntimeUnavailable(f"threads must be at least 1, not {threads}")
    if runtime != "auto" and runtime not in dict(RUNTIMES):
        raise RuntimeUnavailable(f"unknown runtime {runtime!r}; choose from "
                                 f"{', '.join(n for n, _ in RUNTIMES)} or auto")
    _check_tflite_file(Path(model_path))
    failures = []
    for name in names:
        try:
            cls = interpreter_class(name)
        except Exception as exc:
            failures.append(f"{name}: not installed ({type(exc).__name__})")
            continue
        try:
            with _without_notices():
                interpreter = cls(model_path=str(model_path), num_threads=threads)
                interpreter.allocate_tensors()
        except Exception as exc:  # e.g. tflite_runtime cannot run newer op versions
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.append(f"{name}: {first[:160]}")
            continue
        return LoadedInterpreter(interpreter, name)
    raise RuntimeUnavailable(f"no TFLite runtime could load {model_path}: " + "; ".join(failures))


class BatchRunner:
    """Invoke a single-input, single-output interpreter on batches of any size.

    The input tensor is resized (and tensors re-allocated) only when the batch size changes, so a
    steady stream of equal batches pays for planning once.
    """

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        inp = interpreter.get_input_details()[0]
        self.input_detail = inp
        self.output_detail = interpreter.get_output_details()[0]
        self._shape = [int(v) for v in inp["shape"]]

    def __call__(self, batch: Any) -> Any:
        """The output tensor (a copy) for an input batch already in the input's dtype."""
        if len(batch) != self._shape[0]:
            self._shape[0] = len(batch)
            self.interpreter.resize_tensor_input(self.input_detail["index"], self._shape)
            self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(self.input_detail["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_detail["index"])
