"""The documentation stays true: the CLI reference is the parser's, the README stays short, and
every relative link (and every anchor into a local page) leads somewhere."""
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 15_000
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "docs" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '#' comment in code is no heading
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return LINK.findall(text)


def test_cli_reference_is_generated_from_the_parser():
    generated = _generator().render()
    current = (ROOT / "docs" / "CLI.md").read_text()
    assert current == generated, (
        "docs/CLI.md differs from ood_core.cli.build_parser(); regenerate it: "
        "python docs/gen_cli_reference.py > docs/CLI.md")


def test_cli_reference_lists_every_command_and_flag():
    from ood_core.cli import build_parser

    text = (ROOT / "docs" / "CLI.md").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name, sub in commands.items():
        assert f"### `ood-explorer {name}`" in text, name
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text, f"{name} {flag}"


def test_check_mode_fails_on_a_stale_reference(tmp_path, monkeypatch, capsys):
    gen = _generator()
    stale = tmp_path / "CLI.md"
    stale.write_text(gen.render().replace("--percentile", "--pct"))
    monkeypatch.setattr(gen, "CLI_MD", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert "python docs/gen_cli_reference.py > docs/CLI.md" in capsys.readouterr().err
    stale.write_text(gen.render())
    assert gen.main(["--check"]) == 0


def test_readme_is_short():
    size = len((ROOT / "README.md").read_text())
    assert size <= README_LIMIT, f"README.md has {size:,} characters (limit {README_LIMIT:,}): move reference to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_check_sees_links():
    readme_links = _links(ROOT / "README.md")
    assert "docs/USER_GUIDE.md" in readme_links and "docs/CLI.md" in readme_links
    assert _slug("How the classifier's regularisation is chosen") == "how-the-classifiers-regularisation-is-chosen"
