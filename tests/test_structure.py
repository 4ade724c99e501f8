"""The shape of the code: no import cycles among the product's modules (imports inside functions
count: they only hide a cycle until the function runs) and no product module over 400 lines.

The import graph is read with ``ast`` from the sources, so nothing is imported to check it.
Imports under ``if TYPE_CHECKING:`` do not run and are left out.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The product: the library, the dashboard package and the top-level `app.py`.
# Tests and benchmarks are not product.
PRODUCT = ("ood_core", "ood_dashboard", "app.py")
MAX_LINES = 400


@dataclass(frozen=True)
class Module:
    name: str  # dotted: "ood_core.sources.folder", "app"
    path: Path
    is_package: bool  # an __init__.py


@dataclass(frozen=True)
class Edge:
    target: str
    line: int


def product_modules(root: Path = ROOT, product: tuple[str, ...] = PRODUCT) -> dict[str, Module]:
    """Every .py file of the product under ``root``, by dotted module name."""
    modules = {}
    for top in product:
        base = root / top
        files = [base] if base.suffix == ".py" and base.is_file() else sorted(base.rglob("*.py")) if base.is_dir() else []
        for path in files:
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """The Import / ImportFrom nodes that run (top level and inside functions), not under
    ``if TYPE_CHECKING:`` (its ``else:`` branch does run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module an ``from X import ...`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    if node.level - 1 > len(package):
        raise ValueError(f"{module.path}:{node.lineno}: relative import goes above the top-level package")
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """Module name -> {imported product module: first line that imports it}. ``from P import x``
    is an import of the module ``P.x`` when that is a module, else of ``P``; ``import a.b.c`` is an
    import of the deepest product module it names."""
    graph: dict[str, dict[str, int]] = {}
    for module in modules.values():
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(module.path.read_text(), str(module.path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve_from(module, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module: its package
                    target = target.rpartition(".")[0]
                if target and target != module.name:
                    edges[target] = min(edges.get(target, node.lineno), node.lineno)
        graph[module.name] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle (a list of modules, first repeated last) per strongly connected group of
    modules that import each other, found with Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit on long chains
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_shortest_cycle(graph, group) for group in sorted(groups)]


def _shortest_cycle(graph: dict[str, dict[str, int]], group: list[str]) -> list[str]:
    """The shortest cycle through the group's first module, by breadth-first search inside the group."""
    start, members = group[0], set(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if child in members and child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {group}")  # cannot happen for a strongly connected group


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Module],
                   root: Path = ROOT) -> str:
    """``a (ood_core/a.py:12) -> b (ood_core/b.py:3) -> a``: each step with the line that imports the next."""
    steps = [f"{a} ({modules[a].path.relative_to(root)}:{graph[a][b]} imports {b})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(steps)


def test_no_import_cycles():
    modules = product_modules()
    graph = import_graph(modules)
    cycles = [describe_cycle(cycle, graph, modules) for cycle in import_cycles(graph)]
    assert not cycles, f"{len(cycles)} import cycle(s) (imports inside functions count):\n  " + "\n  ".join(cycles)


def test_no_product_module_over_400_lines():
    long = {str(m.path.relative_to(ROOT)): n for m in product_modules().values()
            if (n := len(m.path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): " + ", ".join(
        f"{path} ({n} lines)" for path, n in sorted(long.items(), key=lambda item: -item[1]))


# The checker itself, on small trees with every kind of import.

@pytest.fixture
def tree(tmp_path):
    def write(files: dict[str, str]) -> dict[str, Module]:
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        return product_modules(tmp_path, ("pkg", "app.py"))
    return write


def test_relative_imports_resolve_to_the_module_they_name(tree):
    modules = tree({
        "pkg/__init__.py": "from . import sub\nfrom .a import f\n",
        "pkg/a.py": "from .sub import deep\nfrom . import b\nimport pkg.sub.deep as d\n",
        "pkg/b.py": "from .sub.deep import CONSTANT\nimport os\nfrom pkg import a\n",
        "pkg/sub/__init__.py": "from .. import b\nfrom . import deep\n",
        "pkg/sub/deep.py": "from ..a import f\nCONSTANT = 1\n",
        "app.py": "import pkg.sub\nfrom pkg.a import f\n",
    })
    graph = import_graph(modules)
    assert graph["pkg"] == {"pkg.sub": 1, "pkg.a": 2}
    assert graph["pkg.a"] == {"pkg.sub.deep": 1, "pkg.b": 2}  # `from .sub import deep`: the module deep
    assert graph["pkg.b"] == {"pkg.sub.deep": 1, "pkg.a": 3}
    assert graph["pkg.sub"] == {"pkg.b": 1, "pkg.sub.deep": 2}  # `from .. import b` from a package __init__
    assert graph["pkg.sub.deep"] == {"pkg.a": 1}
    assert graph["app"] == {"pkg.sub": 1, "pkg.a": 2}


def test_a_cycle_hidden_in_a_function_is_found_and_named(tree):
    modules = tree({
        "pkg/__init__.py": "",
        "pkg/cli.py": "from .review import run\n",
        "pkg/review.py": "def run():\n    from .cli import bars\n    return bars\n",
        "pkg/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .y import Y\n",
        "pkg/y.py": "from .x import X\n",
    })
    graph = import_graph(modules)
    assert import_cycles(graph) == [["pkg.cli", "pkg.review", "pkg.cli"]]  # x <-> y only for the type checker
    assert describe_cycle(["pkg.cli", "pkg.review", "pkg.cli"], graph, modules, modules["pkg"].path.parents[1]) == (
        "pkg.cli (pkg/cli.py:1 imports pkg.review) -> pkg.review (pkg/review.py:2 imports pkg.cli)")


def test_the_shortest_cycle_of_a_tangle_is_reported(tree):
    modules = tree({
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\nimport pkg.d\n",
        "pkg/b.py": "import pkg.c\n",
        "pkg/c.py": "import pkg.a\n",
        "pkg/d.py": "import pkg.a\n",
    })
    assert import_cycles(import_graph(modules)) == [["pkg.a", "pkg.d", "pkg.a"]]
