"""`convert`: Keras model -> checked TFLite files for the device, and `convert inspect`.

    convert MODEL [--quantize none|float16|dynamic|int8 | --all] [--out PATH | --out-dir DIR]
    convert inspect FILE [--json]

`convert MODEL ...` is short for `convert export MODEL ...`. Heavy imports (TensorFlow, the trainer)
happen inside the export command, so `convert --help` and `convert inspect` stay fast and
`inspect` never imports TensorFlow. Errors are one line on stderr, `convert: error: ...`: exit 2
for bad input, 1 for a variant that fails the accuracy gate or an unexpected error (its traceback
with MASKEDGE_DEBUG=1), 130 for Ctrl-C (edge/core/console.py). Without the `train` extra (the
device's `maskedge[edge]` install) `convert export` says which extra to install (exit 2); `inspect`
runs.
"""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from converters.defaults import DEFAULT_MAX_DROP, DEFAULT_SAMPLES, DEFAULT_SEED
from converters.errors import ConvertError
from edge.core.console import CLI_SETTINGS, EXIT_FAILED, cli_app, fail, require_extra, user_errors
from trainer.errors import UserError

PROG = "convert"
#: Subcommands; anything else in first position is a model path for `export`.
SUBCOMMANDS = ("export", "inspect")
HELP_FLAGS = tuple(CLI_SETTINGS["context_settings"]["help_option_names"])


class DefaultToExport(TyperGroup):
    """A command group where `convert MODEL ...` means `convert export MODEL ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in HELP_FLAGS:
            args = ["export", *args]
        return super().parse_args(ctx, args)


app = cli_app(
    cls=DefaultToExport,
    name="convert",
    help="Convert a trainer model (.h5/.keras) to TFLite files for the device, each checked "
         "against the original on the model's test split.\n\n"
         "convert MODEL [OPTIONS] is short for convert export MODEL [OPTIONS].",
)


class Quantize(StrEnum):
    none = "none"
    float16 = "float16"
    dynamic = "dynamic"
    int8 = "int8"


class IOType(StrEnum):
    uint8 = "uint8"
    int8 = "int8"
    float32 = "float32"


def _precheck(model: Path, out: Path | None, out_dir: Path | None, split: Path | None,
              representative: Path | None, seed: int, max_drop: float) -> None:
    """Paths and numbers checked before TensorFlow loads (ConvertError: one line)."""
    if not model.expanduser().exists():
        raise ConvertError(f"model file not found: {model}")
    for option, path, folder in (("--split", split, False),
                                 ("--representative", representative, True)):
        path = path.expanduser() if path is not None else None
        if path is not None and not path.exists():
            what = "split manifest" if option == "--split" else f"{option} folder"
            raise ConvertError(f"{what} not found: {path}")
        if path is not None and not (path.is_dir() if folder else path.is_file()):
            raise ConvertError(f"{option} {path} is not a {'folder' if folder else 'file'}")
    if out_dir is not None and out_dir.expanduser().exists() and not out_dir.expanduser().is_dir():
        raise ConvertError(f"--out-dir {out_dir}: cannot write there (not a folder)")
    if out is not None and not out.expanduser().is_dir():
        ancestor = out.expanduser().parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if out.suffix != ".tflite":
            raise ConvertError(f"--out {out}: must end in .tflite")
        if not ancestor.is_dir():
            raise ConvertError(f"--out {out}: cannot write there ({ancestor} is not a folder)")
    if seed < 0:
        raise ConvertError("--seed must be >= 0")
    if not math.isfinite(max_drop):  # a negative drop demands a gain (the tests' forced refusal)
        raise ConvertError(f"--max-drop must be a finite number of points, not {max_drop}")


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(
        metavar="MODEL", help="Trainer model file, model.h5 or model.keras (or its run folder).",
        show_default=False)],
    quantize: Annotated[Quantize, typer.Option(
        "--quantize", "-q", help="none = float32, float16, dynamic (int8 weights), int8 (full "
        "integer, calibrated).")] = Quantize.int8,
    all_variants: Annotated[bool, typer.Option("--all", help="Write all four variants.")
                            ] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output .tflite for one variant (default: beside MODEL, "
        "<stem>_<variant>.tflite).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", help="Folder for the files (default: MODEL's folder).")] = None,
    split: Annotated[Path | None, typer.Option(
        "--split", help="Split manifest with the test split (and calibration images) (default: "
        "the model's own split.json).")] = None,
    representative: Annotated[Path | None, typer.Option(
        "--representative",
        help="int8: calibrate on images in this folder (flat or one folder per class) instead "
             "of a stratified sample of the training split. Never test images.")] = None,
    samples: Annotated[int, typer.Option(
        "--samples", min=1, help="int8: number of calibration images.")] = DEFAULT_SAMPLES,
    seed: Annotated[int, typer.Option(
        "--seed", help="int8: seed of the calibration sample.")] = DEFAULT_SEED,
    io: Annotated[IOType | None, typer.Option(
        "--io", help="int8 only: input/output tensor type. uint8 (default) takes camera pixels "
        "as they are.")] = None,
    bias_correction: Annotated[bool, typer.Option(
        "--bias-correction/--no-bias-correction", help="int8: correct each layer's bias for the "
        "mean error of rounding its weights to int8.")] = True,
    max_drop: Annotated[float, typer.Option(
        "--max-drop", metavar="POINTS",
        help="Fail a variant (int8 above all, but every variant is checked) whose test accuracy "
             "is more than POINTS below the Keras model's: exit 1, no file written.")
    ] = DEFAULT_MAX_DROP,
    force: Annotated[bool, typer.Option(
        "--force", help="Write a variant that fails --max-drop anyway (still exit 1).")] = False,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="Interpreter threads for the check.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the results as JSON on stdout (status on stderr).")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")
                           ] = False,
) -> None:
    """Convert MODEL to TFLite; write each file only if it still answers like the Keras model.

    Each variant is run with LiteRT on the model's held-out test split and compared with the
    Keras model (accuracy, top-1 agreement, largest probability difference); the contract and the
    measured metrics go inside the file. Example: convert runs/2c-224/model.h5 --all
    """
    require_extra(PROG)
    with user_errors(PROG, (ConvertError, UserError), interrupted="interrupted; no file written",
                     unexpected=True):
        from converters.export import ConvertRequest, convert_model
        from converters.formats import DEFAULT_INT8_IO, FORMATS, format_for
        from converters.report import device_command, format_summary

        formats = list(FORMATS) if all_variants else [format_for(quantize.value)]
        has_int8 = any(f.quantization == "int8" for f in formats)
        if io is not None and not has_int8:
            raise ConvertError("--io applies to int8 only (float variants take float32 pixels)")
        if representative is not None and not has_int8:
            raise ConvertError("--representative applies to int8 only (nothing else calibrates)")
        if out is not None and out_dir is not None:
            raise ConvertError("use --out (one file) or --out-dir (a folder), not both")
        _precheck(model, out, out_dir, split, representative, seed, max_drop)
        request = ConvertRequest(
            model=model, formats=formats, out=out, out_dir=out_dir, split=split,
            representative=representative, samples=samples, seed=seed,
            io=io.value if io is not None else DEFAULT_INT8_IO, max_drop=max_drop,
            bias_correction=bias_correction, force=force, threads=threads,
            show_progress=not no_progress)

        def say(line: str) -> None:
            typer.echo(line, err=as_json)

        outcome = convert_model(request, say)

    if as_json:
        typer.echo(json.dumps({**outcome.to_dict(), "device_command": device_command(outcome)},
                              indent=2))
    else:
        typer.echo(format_summary(outcome))
    failed = [r for r in outcome.results if not r.passed]
    if failed:
        names = ", ".join(f"{r.format.variant} {r.check.drop_text()}" for r in failed)
        kept = "kept anyway (--force)" if force else "not written"
        raise fail(PROG, f"accuracy gate: {names} (--max-drop {max_drop:.2f}); {kept}",
                   EXIT_FAILED)


@app.command("inspect")
def inspect_command(
    file: Annotated[Path, typer.Argument(
        metavar="FILE", help="A .tflite file written by convert.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """Print the contract inside a .tflite file, its tensors and size (no TensorFlow needed)."""
    from converters.describe import describe, format_description

    with user_errors(PROG, (ConvertError,), unexpected=True):
        info = describe(file)
    typer.echo(json.dumps(info, indent=2) if as_json else format_description(info))


def main() -> None:  # pragma: no cover - `python -m converters.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
