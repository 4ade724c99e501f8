"""The README's test command is what CI runs, and its launch command starts the app on the default."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#") and "python3 -m venv" in line]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    launch, test = _commands(block)
    assert "streamlit run app.py" in launch
    assert test.endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, "the README's test command must appear verbatim in .ci/run"
    assert ci[-1] == test, "the README's test command must be the last thing .ci/run does"
