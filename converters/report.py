"""What `convert` prints: a line per export as it happens, a table of every variant at the end,
then the command that runs the best file on the device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only (converters/export.py, the driver, imports this module)
    from converters.check import CheckResult
    from converters.formats import Format
    from edge.core.contract import ModelContract


@dataclass
class VariantResult:
    """One variant's conversion, check and fate."""

    format: Format
    target: Path
    io: str
    convert_seconds: float
    check_seconds: float
    size_bytes: int
    check: CheckResult
    passed: bool
    written: bool
    tensors: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.format.variant, "quantization": self.format.quantization,
                "description": self.format.description, "io": self.io,
                "path": str(self.target) if self.written else None, "target": str(self.target),
                "written": self.written, "passed": self.passed, "size_bytes": self.size_bytes,
                "convert_seconds": round(self.convert_seconds, 2),
                "check_seconds": round(self.check_seconds, 2), **self.check.to_dict(),
                "tensors": self.tensors}


@dataclass
class ConvertOutcome:
    """Everything one `convert` run did."""

    model: Path
    contract: ModelContract
    keras_sha256: str
    manifest: Path
    test_samples: int
    keras_accuracy: float
    max_drop: float
    calibration: dict[str, Any] | None
    export_seconds: float
    results: list[VariantResult]

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"model": str(self.model), "keras_sha256": self.keras_sha256,
                "labels": list(self.contract.labels), "input_size": list(self.contract.input_size),
                "split_manifest": str(self.manifest), "test_samples": self.test_samples,
                "keras_accuracy": self.keras_accuracy, "max_drop_points": self.max_drop,
                "calibration": self.calibration, "export_seconds": round(self.export_seconds, 2),
                "ok": self.ok, "variants": [r.to_dict() for r in self.results]}


#: How the edge runtime runs a model on a camera (edge/cli.py).
DEVICE_COMMAND = "edge run --camera 0 --model {path}"


def human_size(size: float) -> str:
    """Bytes for people: 2.8 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def variant_line(fmt: Format, check: CheckResult, seconds: float, size: int, target: Path,
                 passed: bool, written: bool, max_drop: float) -> str:
    """What one export did, how long it took, its size, how it checked, and where it went."""
    head = (f"{fmt.variant:<10} converted in {seconds:.1f} s, {human_size(size)}; test accuracy "
            f"{check.accuracy:.2%} ({check.delta_points:+.2f} pts vs Keras), top-1 agreement "
            f"{check.top1_agreement:.2%}, max prob diff {check.max_prob_diff:.2e}")
    if passed:
        return f"{head}\n{'':<10} -> {target}"
    verdict = f"FAILED: {check.drop_text()} (--max-drop {max_drop:.2f})"
    tail = f"kept anyway (--force) -> {target}" if written else "no file written"
    return f"{head}\n{'':<10} {verdict}; {tail}"


def device_command(outcome: ConvertOutcome) -> str | None:
    """The command that runs the best written file on the device (int8 first), if any."""
    written = [r for r in outcome.results if r.written]
    if not written:
        return None
    order = {"int8": 0, "dynamic": 1, "float16": 2, "none": 3}
    best = min(written, key=lambda r: (not r.passed, order.get(r.format.quantization, 9)))
    return DEVICE_COMMAND.format(path=_quote(best.target))


def _quote(path: Path) -> str:
    text = str(path)
    return f"'{text}'" if any(c in text for c in " \"'$&;|") else text


def _row(r: VariantResult) -> list[str]:
    verdicts = {(True, True): "ok", (False, True): "FAILED, kept (--force)",
                (False, False): "FAILED, not written"}
    result = verdicts[(r.passed, r.written)]
    return [r.format.variant, r.io, human_size(r.size_bytes), f"{r.convert_seconds:.1f} s",
            f"{r.check.accuracy:.2%}", f"{r.check.delta_points:+.2f}",
            f"{r.check.top1_agreement:.2%}", f"{r.check.max_prob_diff:.1e}", result,
            str(r.target) if r.written else "-"]


def format_summary(outcome: ConvertOutcome) -> str:
    """Table of every variant against the Keras model, and the command for the device."""
    header = ["variant", "io", "size", "convert", "accuracy", "Δ pts", "top-1 agree",
              "max |Δp|", "result", "file"]
    rows = [header] + [_row(r) for r in outcome.results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["", f"Keras accuracy {outcome.keras_accuracy:.2%} on {outcome.test_samples} test "
             f"images; gate: lose at most {outcome.max_drop:.2f} points (--max-drop)", ""]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    command = device_command(outcome)
    if command:
        lines += ["", "run it on the device:", f"  {command}"]
    return "\n".join(lines)
