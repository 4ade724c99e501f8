"""The public surface of ``ood_core``: a short front door (``__all__``), public sub-modules, the
older flat names still importable, and ``__init__.pyi`` declaring all of it for editors and type
checkers while the runtime loads each name on first use."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ood_core

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "ood_core" / "__init__.pyi"
FRONT_ENDS = [ROOT / "app.py", *[p for d in ("ood_dashboard",) for p in (ROOT / d).rglob("*.py")]]


def stub_declarations() -> tuple[list[str], dict[str, str]]:
    """The stub's ``__all__`` and every name it declares, with the module it imports it from
    (``.sources`` for ``from .sources import ImageSet``, ``.`` for ``from . import sources``)."""
    tree = ast.parse(STUB.read_text())
    declared: dict[str, str] = {}
    stub_all: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                assert alias.asname == alias.name, f"{STUB.name}:{node.lineno}: re-export {alias.name} as itself"
                declared[alias.name] = module
        elif isinstance(node, ast.Assign) and node.targets[0].id == "__all__":
            stub_all = [elt.value for elt in node.value.elts]
        elif not isinstance(node, ast.Expr):  # the docstring
            raise AssertionError(f"{STUB.name}:{node.lineno}: only imports and __all__ belong in the stub")
    return stub_all, declared


def test_the_stub_and_the_runtime_list_the_same_names():
    stub_all, declared = stub_declarations()
    assert stub_all == ood_core.__all__
    assert len(set(ood_core.__all__)) == len(ood_core.__all__)
    runtime = set(ood_core._HOME) | set(ood_core._SUBMODULES)
    assert not sorted(runtime - set(declared)), f"missing from {STUB.name}: {sorted(runtime - set(declared))}"
    assert not sorted(set(declared) - runtime), f"in {STUB.name} only: {sorted(set(declared) - runtime)}"


def test_every_declared_name_is_the_object_its_home_module_holds():
    _, declared = stub_declarations()
    for name, module in declared.items():
        if module == ".":  # a sub-module: `from . import sources as sources`
            assert getattr(ood_core, name) is importlib.import_module(f"ood_core.{name}")
            continue
        home = importlib.import_module(module, "ood_core")
        assert getattr(ood_core, name) is getattr(home, name), f"ood_core.{name} is not {home.__name__}.{name}"
        assert module == ood_core._HOME[name], f"{name}: the stub imports it from {module}, the runtime from " \
                                               f"{ood_core._HOME[name]}"


def test_names_outside_the_front_door_live_in_a_public_sub_module_that_exports_them():
    """``from ood_core.scorers import IndexParams`` works for type checkers too: each such name is
    in its sub-module's ``__all__`` or defined there."""
    for module, names in ood_core._ELSEWHERE.items():
        assert module.lstrip(".") in ood_core._SUBMODULES, f"{module} is not a public sub-module"
        home = importlib.import_module(module, "ood_core")
        exported = getattr(home, "__all__", None)
        defined = _top_level_definitions(Path(home.__file__))
        for name in names:
            assert name in (exported if exported is not None else defined), \
                f"{name} is not exported by {home.__name__} ({'its __all__' if exported is not None else 'defined there'})"


def _top_level_definitions(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_the_front_door_is_short_and_holds_no_plumbing():
    assert {"analyze", "embed", "Analysis", "ScoreConfig", "open_source"} <= set(ood_core.__all__)
    assert len(ood_core.__all__) <= 15
    for plumbing in ("save_upload", "discard_upload", "cifar10_data_dir", "faiss_available", "default_cache_dir"):
        assert plumbing not in ood_core.__all__
        assert getattr(ood_core, plumbing)  # still importable, for the callers that use it


def test_sub_modules_are_reachable_as_attributes_and_unknown_names_are_refused():
    code = ("import ood_core, sys; t = ood_core.thresholds; "
            "print(t.__name__, t.percentile_threshold([1.0, 2.0, 3.0], 50), 'ood_core.review' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["ood_core.thresholds", "2.0", "False"]
    with pytest.raises(AttributeError, match="module 'ood_core' has no attribute 'no_such_name'"):
        ood_core.no_such_name
    assert {"analyze", "sources", "thresholds"} <= set(dir(ood_core))


def test_importing_ood_core_loads_nothing_heavy():
    code = ("import sys, ood_core; ood_core.__all__; dir(ood_core); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'sklearn') "
            "or m.startswith('ood_core.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_front_ends_import_no_private_module():
    private = re.compile(r"\bood_core\._\w+|from ood_core\.\w+\._|from ood_core import _")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in FRONT_ENDS for n, line in enumerate(p.read_text().splitlines(), 1)
             if private.search(line)]
    assert not found, f"the dashboard reaches into private ood_core modules: {found}"


@pytest.mark.slow
def test_a_type_checker_sees_every_name(tmp_path, monkeypatch):
    """mypy on a user's script: the names resolve to their real types, a wrong keyword and an unknown
    name are errors (through ``__getattr__`` alone both would be ``Any``, silently)."""
    api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install mypy)")
    monkeypatch.chdir(ROOT)  # mypy finds this checkout's ood_core in the working directory
    script = tmp_path / "user_script.py"
    script.write_text(
        "import ood_core\n"
        "from ood_core import Analysis, ScoreConfig, analyze, save_upload\n"
        "from ood_core.scorers import IndexParams, faiss_available\n"
        "from ood_core.sources import DownloadError, ImageSet\n"
        "from ood_core.embedder import MODEL_CHOICES\n"
        "analysis: Analysis = analyze('digits', scores=ScoreConfig())\n"
        "reveal_type(ood_core.analyze)\n"
        "reveal_type(ood_core.thresholds.percentile_threshold)\n"
        "reveal_type(ood_core.save_upload)\n"
        "reveal_type(MODEL_CHOICES)\n"
        "reveal_type(faiss_available())\n"
        "ood_core.analyze('digits', no_such_keyword=1)\n"
        "ood_core.no_such_name\n"
    )
    stdout, stderr, _ = api.run(["--follow-imports=silent", "--no-error-summary", "--cache-dir",
                                 str(tmp_path / "mypy_cache"), str(script)])
    lines = [line.split(": ", 1)[1] for line in stdout.splitlines() if line.startswith(str(script))]
    revealed = [line.split('"', 1)[1] for line in lines if line.startswith("note: Revealed type")]
    assert len(revealed) == 5, stdout + stderr
    assert revealed[0].startswith("def (source: ") and revealed[0].endswith("-> ood_core.analysis.Analysis\"")
    assert revealed[1] == 'def (fit_scores: Any, percentile: float) -> float"'
    assert revealed[2].endswith("-> pathlib.Path\"") and revealed[3:] == ['tuple[str, ...]"', 'bool"']
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == ['error: Unexpected keyword argument "no_such_keyword" for "analyze"  [call-arg]',
                      'error: Module has no attribute "no_such_name"  [attr-defined]'], stdout
