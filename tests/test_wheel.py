"""The package as a user installs it: the wheel built from this checkout, installed (not editable)
into a fresh virtual environment and run from a folder outside the repository.

Offline and quick: the wheel is built without build isolation, installed with ``--no-deps
--no-index``, and the fresh environment sees the test environment's third-party packages through
a ``.pth`` file that lists its site-packages. Python adds the lines of a ``.pth`` file to
``sys.path`` but does not read the ``.pth`` files inside those folders, so the test environment's
editable install of this checkout stays invisible: what imports is the wheel's copy (checked).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from browser_support import ROOT, chromium, free_port, server, skip_without_browser, wait_until_idle

pytestmark = pytest.mark.slow

# The top-level packages the wheel ships (pyproject's `packages.find` include patterns).
PACKAGES = ("ood_core", "ood_dashboard")
# Modules that are programs rather than libraries: importing one runs it (the CLI's `__main__`,
# the dashboard's entry script and pages, which Streamlit executes). The test imports what each
# of them imports instead, and runs them for real through `ood-explorer` and `ood-explorer app`.
SCRIPT_MODULES = re.compile(r"(^|\.)__main__$|^ood_dashboard\.app$|^ood_dashboard\.views\.")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def _run(argv: list, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``argv``; fail showing its output unless it exits 0."""
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


class Installed:
    """The wheel and the fresh environment it is installed in."""

    def __init__(self, wheel: Path, venv: Path, workdir: Path, env: dict[str, str]):
        self.wheel, self.venv, self.workdir, self.env = wheel, venv, workdir, env
        self.python = venv / "bin" / "python"
        self.cli = venv / "bin" / "ood-explorer"

    def run(self, argv: list, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run(argv, self.workdir, self.env, timeout)

    def wheel_files(self) -> list[str]:
        """The paths the wheel's RECORD lists (its dist-info included)."""
        with zipfile.ZipFile(self.wheel) as whl:
            record = next(n for n in whl.namelist() if n.endswith(".dist-info/RECORD"))
            return [row[0] for row in csv.reader(whl.read(record).decode().splitlines()) if row]


def _build_wheel(out: Path, tmp: Path, env: dict[str, str]) -> Path:
    """Build the wheel from a clean copy of the sources: setuptools' ``build/`` folder keeps files
    of earlier builds, so building in the checkout could ship a module that no longer exists."""
    import setuptools

    if tuple(int(part) for part in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.fail(f"setuptools {setuptools.__version__} cannot build the wheel without the `wheel` package: "
                    "pip install 'setuptools>=70.1' (the dev extra asks for it)")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", out], tmp, env)
    (wheel,) = out.glob("ood_explorer-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1",
               OOD_CACHE_DIR=os.environ.get("OOD_CACHE_DIR") or str(tmp / "cache"),
               OOD_DATA_DIR=str(tmp / "data"))
    wheel = _build_wheel(tmp / "dist", tmp, env)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env)
    # This environment's third-party packages, seen by the fresh one (after its own site-packages).
    dev_sites = [p for p in dict.fromkeys([*site.getsitepackages(), site.getusersitepackages()]) if Path(p).is_dir()]
    (Path(purelib.stdout.strip()) / "dev_site_packages.pth").write_text("\n".join(dev_sites) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         tmp, env)
    workdir = tmp / "elsewhere"  # outside the repository: nothing can come from the checkout
    workdir.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return Installed(wheel, venv, workdir, env)


def _source_modules() -> set[str]:
    """Every .py file under the shipped packages in the checkout, as a path inside the wheel."""
    return {p.relative_to(ROOT).as_posix() for package in PACKAGES if (ROOT / package).is_dir()
            for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}


def test_the_wheel_holds_every_module_of_the_source_tree(installed):
    shipped = set(installed.wheel_files())
    missing = sorted(_source_modules() - shipped)
    assert not missing, f"modules missing from {installed.wheel.name} (is their folder in packages.find?): {missing}"
    assert "ood_core/sources/__init__.py" in shipped and "ood_core/explain/__init__.py" in shipped
    # The other files: ood_core's type information, the dashboard's components (HTML, JS) and settings.
    data = {p.relative_to(ROOT).as_posix() for package in PACKAGES if (ROOT / package).is_dir()
            for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".py", ".pyc")}
    assert {"ood_core/py.typed", "ood_core/__init__.pyi"} <= data
    assert not sorted(data - shipped), f"files missing from {installed.wheel.name}: {sorted(data - shipped)}"


def test_the_installed_package_is_the_wheel_and_every_module_imports(installed):
    modules = sorted({path[:-3].replace("/", ".").removesuffix(".__init__") for path in installed.wheel_files()
                      if path.endswith(".py") and path.split("/")[0] in PACKAGES})
    assert "ood_core.sources.folder" in modules and "ood_core.explain.neighbours" in modules
    libraries = [m for m in modules if not SCRIPT_MODULES.search(m)]
    # A program is not imported (that would run it); what it imports must be importable.
    needed = set()
    with zipfile.ZipFile(installed.wheel) as whl:
        for module in set(modules) - set(libraries):
            needed |= _imported_modules(module, whl.read(module.replace(".", "/") + ".py").decode())
    packages = sorted({m.split(".")[0] for m in modules})
    code = f"""
import importlib, json, sys, traceback
failed = {{}}
for name in {sorted(libraries)!r} + {sorted(needed)!r}:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
files = {{p: sys.modules[p].__file__ or [*sys.modules[p].__path__][0] for p in {packages!r} if p in sys.modules}}
print(json.dumps({{"files": files, "failed": failed}}))
"""
    report = json.loads(installed.run([installed.python, "-c", code]).stdout.splitlines()[-1])
    for package, file in report["files"].items():
        assert file and Path(file).is_relative_to(installed.venv), \
            f"{package} was imported from {file}, not from the wheel installed in {installed.venv}"
    assert sorted(report["files"]) == packages
    assert not report["failed"], "modules that do not import from the installed wheel:\n" + "\n".join(
        f"{name}: {tb}" for name, tb in report["failed"].items())


def _imported_modules(module: str, source: str) -> set[str]:
    """The modules a module's top level and functions import (relative imports resolved)."""
    package = module.rsplit(".", 1)[0] if "." in module else ""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
    return {name for name in found if name.split(".")[0] in PACKAGES or name == "streamlit"}


@pytest.fixture(scope="module")
def digits_run(installed) -> tuple[str, Path]:
    """``ood-explorer run digits --out digits_scores.csv`` from the installed wheel: what it printed, the CSV."""
    out = installed.workdir / "digits_scores.csv"
    return installed.run([installed.cli, "-q", "run", "digits", "--out", out.name]).stdout, out


def _feature_counts(printed: str) -> tuple[int, int]:
    """The KNN scorer's flagged counts (fit, query) as the report prints them."""
    feature = printed.split("Feature score")[1].split("Prediction score")[0]
    fit, query = re.search(r"flagged: fit (\d+)/\d+ \([\d.]+%\), query (\d+)/", feature).groups()
    return int(fit), int(query)


def test_run_digits_writes_its_csv(digits_run):
    printed, out = digits_run
    assert f"wrote {out.name} and {out.with_suffix('.json').name}" in printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1797 and sum(r["set"] == "fit" for r in rows) == 450
    assert list(rows[0])[:3] == ["id", "path", "set"]
    # The flagged counts in the CSV are the ones the report printed.
    fit_flagged = sum(r["set"] == "fit" and r["feature_flagged"] == "True" for r in rows)
    query_flagged = sum(r["set"] == "query" and r["feature_flagged"] == "True" for r in rows)
    assert _feature_counts(printed) == (fit_flagged, query_flagged)
    assert 18 <= fit_flagged <= 27, fit_flagged  # the 5th percentile of 450 fit scores
    assert json.loads(out.with_suffix(".json").read_text())["cards"]


def test_version_is_the_pyproject_version(installed):
    for flag in ("--version", "-V"):
        printed = installed.run([installed.cli, flag]).stdout.strip()
        assert printed.split()[-1] == VERSION, f"`ood-explorer {flag}` printed {printed!r}; pyproject says {VERSION}"


@pytest.mark.browser
def test_the_installed_app_serves_feature_scores_with_its_counts(installed, digits_run, tmp_path):
    """``ood-explorer app`` from the wheel, started outside the repository: the Feature scores page
    shows the digits default's flagged counts, the ones ``ood-explorer run digits`` reports."""
    skip_without_browser()
    fit, query = _feature_counts(digits_run[0])
    port = free_port()
    env = {"STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    argv = [str(installed.cli), "app", "--port", str(port)]
    with server(argv, port, tmp_path / "app.log", env=env, cwd=installed.workdir, start_timeout=90,
                base_env=installed.env) as url, \
            chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/feature_scores")
        counts = {}
        for label in ("Train (fit) flagged", "Test (query) flagged"):
            value = page.locator('[data-testid="stMetric"]').filter(
                has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{re.escape(label)}$"))
            ).locator('[data-testid="stMetricValue"]')
            value.wait_for()
            counts[label] = value
        wait_until_idle(page, timeout=120)
        shown = {label: value.inner_text() for label, value in counts.items()}
        assert int(shown["Train (fit) flagged"].split()[0].replace(",", "")) == fit, shown
        assert int(shown["Test (query) flagged"].split()[0].replace(",", "")) == query, shown
