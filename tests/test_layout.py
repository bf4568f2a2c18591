"""The house rules, checked on the code itself: layers, import cycles, module and function size.

Layers (DESIGN.md): `core` is pure and imports nothing else of trayagent; the foundation (`errors`,
`paths`, `config`, `config_schema`, `logs`, `lock`, `db`) imports only core and itself; `slskd`,
`desktop` and `sync` build on those (sync may also use slskd); the application layer on top may
import anything.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trayagent"
FOUNDATION = {"errors", "paths", "config", "config_schema", "logs", "lock", "db"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# The simulator's scenario data is data, not logic.
SIZE_EXEMPT = {"trayagent.slskd.simulator.scenarios"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`: they name types and run nothing."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return found


def _imports(name: str, path: Path, *, types: bool = True) -> set[str]:
    """Every trayagent module `name` imports, at module level or inside a function.

    With types=False the imports under `if TYPE_CHECKING:` are left out: they are not run.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    skip = set() if types else _type_only(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and target != "trayagent":
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
RUNTIME = {name: _imports(name, path, types=False) for name, path in MODULES.items()}


def _layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in {"core", "slskd", "desktop", "sync"}:
        return parts[1]
    if len(parts) > 1 and parts[1] in FOUNDATION:
        return "foundation"
    return "app"


ALLOWED = {
    "core": {"core"},
    "foundation": {"core", "foundation"},
    "slskd": {"core", "foundation", "slskd"},
    "desktop": {"core", "foundation", "desktop"},
    "sync": {"core", "foundation", "slskd", "sync"},
    "app": {"core", "foundation", "slskd", "desktop", "sync", "app"},
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_from_the_layers_below(name: str) -> None:
    layer = _layer(name)
    wrong = sorted(t for t in GRAPH[name] if _layer(t) not in ALLOWED[layer])
    assert not wrong, f"{name} ({layer}) imports {wrong}"


def test_no_import_cycle() -> None:
    """No two modules need each other to load (imports inside functions count; type-only ones do not)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in RUNTIME[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(RUNTIME):
        if name not in index:
            visit(name)
    # a package's __init__ importing its own modules is not a cycle of design
    cycles = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_and_functions_are_small(name: str) -> None:
    if name in SIZE_EXEMPT:
        return
    text = MODULES[name].read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: {long}"


def test_the_checks_see_the_package() -> None:
    """Guards the checks above against passing on an empty or misread tree."""
    assert {"trayagent.core.tracker", "trayagent.agent", "trayagent.sync.engine"} <= set(MODULES)
    assert "trayagent.core.model" in GRAPH["trayagent.core.tracker"]
