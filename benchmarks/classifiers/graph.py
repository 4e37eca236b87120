"""MACs of one call of a .tflite file, counted from its graph with LiteRT (no TensorFlow)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COUNTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def op_macs(kind: str, weights: Sequence[int], output: Sequence[int]) -> int:
    """Multiply-accumulates of one op from its weight and output tensor shapes (0 if not
    counted). Weights: CONV_2D (out_c, kh, kw, in_c), DEPTHWISE_CONV_2D (1, kh, kw, out_c),
    FULLY_CONNECTED (units, in features); the output's leading dimensions are positions."""
    positions = math.prod(max(int(d), 1) for d in output[:-1])
    if kind == "CONV_2D":
        _, kh, kw, in_c = (int(d) for d in weights)
        return positions * int(output[-1]) * kh * kw * in_c
    if kind == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = (int(d) for d in weights)
        return positions * int(output[-1]) * kh * kw
    if kind == "FULLY_CONNECTED":
        units, features = (int(d) for d in weights)
        return positions * units * features
    return 0


def tflite_macs(path: Path) -> dict[str, Any]:
    """MACs of one call (batch of one) of a .tflite file, by op type, and every op's count."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))  # not allocated: no delegate nodes
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in interpreter.get_tensor_details()}
    by_op: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    for op in interpreter._get_ops_details():
        kind = op["op_name"]
        ops[kind] += 1
        if kind in COUNTED:
            by_op[kind] += op_macs(kind, shapes[int(op["inputs"][1])],
                                   shapes[int(op["outputs"][0])])
    return {"macs": sum(by_op.values()), "by_op": dict(by_op), "ops": dict(sorted(ops.items()))}

