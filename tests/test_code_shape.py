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


# --- the house (issue 30): folders, file sizes, no import cycles, every package shipped ----------

MAX_MODULES_PER_FOLDER = 15
MAX_FILE_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the four packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere: at the top, in functions, under TYPE_CHECKING."""
    out = set()
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    # A package's __init__ importing nothing, `import a.b.c` also names `a` and `a.b`: only the
    # modules named in the import statements count, which is what a cycle is made of.
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_anywhere() -> None:
    cycles = _cycles(_graph())
    assert not cycles, cycles


def test_shared_core_imports_nothing_else_of_maskedge() -> None:
    """edge/core is what every stage shares: it may import only itself."""
    graph = _graph()
    outside = {name: sorted(t for t in targets if not t.startswith("edge.core"))
               for name, targets in graph.items() if name.startswith("edge.core")}
    assert not {k: v for k, v in outside.items() if v}


def test_the_device_code_never_imports_the_stages_above_it() -> None:
    graph = _graph()
    upward = {name: sorted(t for t in targets if t.split(".")[0] != "edge")
              for name, targets in graph.items() if name.split(".")[0] == "edge"}
    assert not {k: v for k, v in upward.items() if v}


def test_no_folder_holds_more_than_15_modules() -> None:
    crowded = {}
    for package in PACKAGES:
        folders = [ROOT / package, *(p.parent for p in (ROOT / package).rglob("*/__init__.py"))]
        for folder in folders:
            count = len([p for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")])
            if count > MAX_MODULES_PER_FOLDER:
                crowded[str(folder.relative_to(ROOT))] = count
    assert not crowded, crowded


def test_no_file_is_longer_than_600_lines() -> None:
    long = {str(path.relative_to(ROOT)): n for path in _modules().values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, long


def test_every_package_is_in_the_wheel() -> None:
    """pyproject.toml lists packages one by one: a new subpackage left out would be missing from
    the wheel a device installs."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    packages = {".".join(p.parent.relative_to(ROOT).parts) for package in PACKAGES
                for p in (ROOT / package).rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)
