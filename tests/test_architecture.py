"""Architecture guards: the import graph among splatrefine's modules has no circles.

The graph is read from the source with `ast` (nothing is imported): one node per module, one edge
per import of another splatrefine module, at module level or inside a function (a lazy import is
still a dependency). Imports under `if TYPE_CHECKING:` are type hints only and do not count.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = {"core": "splatrefine", "registry": "splatrefine.registry", "plugins": "splatrefine.plugins"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (source file, is a package)."""
    found = {}
    for folder, pkg in CODE_DIRS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base)
            if "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            found[".".join([pkg, *parts])] = (path, is_pkg)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping `if TYPE_CHECKING:` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_pkg) in modules.items():
        package = name if is_pkg else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for alias in node.names:  # `from pkg import submodule` depends on the submodule
                    sub = f"{mod}.{alias.name}"
                    targets.append(sub if sub in modules else mod)
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module attribute
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "splatrefine.types" in graph["splatrefine.poses"] or "splatrefine.poses" in graph["splatrefine.types"]
    assert "splatrefine.plugins.dual_gs.representation" in graph


def test_no_import_circles_among_splatrefine_modules():
    assert find_cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", ["splatrefine.poses", "splatrefine.types", "splatrefine.plugins.dual_gs.plugin",
                                    "splatrefine.plugins.dual_gs.representation",
                                    "splatrefine.plugins.dual_gs.reliability"])
def test_formerly_circular_modules_import_on_their_own(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_omp_wait_policy_is_set_in_one_place_before_torch():
    """`import splatrefine` sets OMP_WAIT_POLICY=PASSIVE (a user's value wins), without torch."""
    code = "import os, sys, splatrefine; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["PASSIVE", "False"], result.stderr
    result = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                            capture_output=True, text=True)
    assert result.stdout.split() == ["ACTIVE", "False"], result.stderr
    setters = [str(path.relative_to(ROOT)) for path, _ in _modules().values()
               if "OMP_WAIT_POLICY" in path.read_text()]
    assert setters == ["core/__init__.py"]


def test_one_cli_error_handler():
    """'Error: ...' + exit 2 for a SplatrefineError is written once (commands/user_errors.py)."""
    handlers = [str(path.relative_to(ROOT)) for path, _ in _modules().values()
                if 'click.echo(f"Error: {exc}"' in path.read_text()]
    assert handlers == ["core/commands/user_errors.py"]
