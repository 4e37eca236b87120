"""`convert inspect FILE`: what a `.tflite` file says about itself, without TensorFlow.

Reads the embedded contract (`edge.core.tflite_metadata`), the input and output tensors (dtype,
shape, quantization) through whichever TFLite runtime the edge package finds, and the file size.
Only edge modules are imported here, so inspecting works on the device and starts fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConvertError
from converters.quiet import quiet_output
from edge.core.contract import ContractError
from edge.core.runtime import RuntimeUnavailable, load_interpreter
from edge.core.tflite_metadata import read_contract
from edge.inference.classifier import check_tensors


def describe(path: str | Path) -> dict[str, Any]:
    """Contract, tensors and size of a maskedge `.tflite` file (ConvertError if it is not one)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConvertError(f"file not found: {path}")
    try:
        contract = read_contract(path)
    except ContractError as exc:
        message = str(exc)
        raise ConvertError(message if str(path) in message else f"{path}: {message}") from None
    try:
        with quiet_output():  # LiteRT announces its XNNPACK delegate on stderr
            loaded = load_interpreter(path)
    except RuntimeUnavailable as exc:
        raise ConvertError(str(exc)) from None
    try:
        check_tensors(contract, loaded.interpreter.get_input_details()[0],
                      loaded.interpreter.get_output_details()[0], path)
    except ContractError as exc:
        raise ConvertError(str(exc)) from None
    tensors = {}
    for name, details in (("inputs", loaded.interpreter.get_input_details()),
                          ("outputs", loaded.interpreter.get_output_details())):
        tensors[name] = [{"name": d["name"], **tensor_summary(d)} for d in details]
    return {"path": str(path), "size_bytes": path.stat().st_size, "runtime": loaded.runtime,
            **tensors, "contract": json.loads(contract.to_json())}


def tensor_summary(detail: dict[str, Any]) -> dict[str, Any]:
    """dtype, shape, scale and zero point of one interpreter tensor detail, JSON-ready."""
    scale, zero = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name, "shape": [int(v) for v in detail["shape"]],
            "scale": float(scale), "zero_point": int(zero)}


def format_description(info: dict[str, Any]) -> str:
    """The description as text for people."""
    c = info["contract"]
    h, w = c["input_size"]
    lines = [
        f"file          {info['path']} ({info['size_bytes']:,} bytes)",
        f"labels        {', '.join(c['labels'])} (class order)",
        f"input         {h}x{w}, {c['input_format']}",
        f"output        {c['output']}",
        f"quantization  {c['quantization']}",
        f"architecture  {c['architecture']}",
        f"preprocessing {c['preprocessing']}",
    ]
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            quant = (f", scale {t['scale']:.6g}, zero point {t['zero_point']}"
                     if t["scale"] else "")
            lines.append(f"{kind[:-1]:<13} {t['name']}: {t['dtype']} {t['shape']}{quant}")
    lines.append(f"runtime       {info['runtime']}")
    for key in sorted(c.get("source", {})):
        lines.append(f"source        {key}: {_short(c['source'][key])}")
    for key in sorted(c.get("metrics", {})):
        lines.append(f"metric        {key}: {_short(c['metrics'][key])}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 100 else text[:97] + "..."
    return str(value)
