"""The code stays readable: no function outside tests is longer than 60 lines of body, and only
CLI commands (Typer `@app.command`) take more than 8 parameters (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "trainer", "converters", "benchmarks")
MAX_BODY_LINES = 60
MAX_PARAMETERS = 8


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "work" in path.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node))
    return found


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body[1:] if (isinstance(node.body[0], ast.Expr)
                             and isinstance(node.body[0].value, ast.Constant)
                             and len(node.body) > 1) else node.body  # docstring not counted
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def _is_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
               and d.func.attr in ("command", "callback") for d in node.decorator_list)


def test_no_function_body_is_longer_than_60_lines() -> None:
    long = [f"{name}: {_body_lines(node)} lines" for name, node in _functions()
            if _body_lines(node) > MAX_BODY_LINES]
    assert not long, long


def test_only_cli_commands_take_more_than_8_parameters() -> None:
    many = []
    for name, node in _functions():
        args = node.args
        count = len([a for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)
                     if a.arg not in ("self", "cls")])
        if count > MAX_PARAMETERS and not _is_command(node):
            many.append(f"{name}: {count} parameters")
    assert not many, many
