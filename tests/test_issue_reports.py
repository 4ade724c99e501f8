"""The data-issue front ends: ``ood-explorer issues`` (CSV + card) and ``ood-explorer report`` (one
self-contained HTML file) on the planted CIFAR-10 folder of tests/test_issues.py, and the embedder's
image-statistics hook (the statistics gathered while embedding, no second read of the files)."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ood_core
from ood_core.issues import _run, collect_image_stats
from ood_core.sources import image_folder
from test_issues import planted  # noqa: F401 - the planted folder fixture (module scope)

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ("<img src=x onerror=alert(1)>.jpg", "[x](javascript:alert(1)).jpg")


# ---------------------------------------------------------------------- the embedder's hook
def _pattern_images(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {f"{'ab'[i % 2]}/{i:02d}.png": Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
            for i in range(n)}


def test_embedding_keeps_the_image_statistics_so_issues_read_no_image_again(write_tree, tmp_path, monkeypatch):
    files = _pattern_images(12)
    files["a/broken.png"] = b"not an image"
    folder = write_tree(files)
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    unverified = image_folder(folder, verify=False)  # the broken file fails only when the embedder decodes it
    with pytest.warns(UserWarning, match="1 of 13 images could not be decoded"):
        a = ood_core.analyze(unverified, model="pixels", device="cpu")
    assert len(a.ids) == 12 and [p for p, _ in a.skipped] == ["a/broken.png"]
    expected = collect_image_stats(a.items)  # what the separate pass would find

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the images were read again for their statistics")

    monkeypatch.setattr(_run, "collect_image_stats", no_second_pass)
    stats = a.image_stats()
    assert stats.ok.all() and len(stats) == 12
    np.testing.assert_array_equal(stats.properties, expected.properties)
    np.testing.assert_array_equal(stats.phash, expected.phash)
    np.testing.assert_array_equal(stats.dhash, expected.dhash)
    assert a.issue_scores("dark").scored.all()
    # an embedding read from the cache decodes nothing: the kept statistics serve, and when they are
    # gone the separate pass is the fallback
    for kept in (tmp_path / "cache" / "runs").glob("*.npz"):
        kept.unlink()
    calls = []
    monkeypatch.setattr(_run, "collect_image_stats", lambda items, **kw: calls.append(len(items)) or expected)
    again = ood_core.analyze(image_folder(folder, verify=False), model="pixels", device="cpu")
    assert again.cache_hit and again.image_stats() is not None and calls == [12]


# ---------------------------------------------------------------------- the CLI on the planted folder
@pytest.fixture(scope="module")
def hostile_planted(planted, tmp_path_factory):  # noqa: F811
    """The planted folder with two hostile file names added (darkened copies: shown as dark images) and
    a file that is not an image (skipped, and named with the reason)."""
    root, plants = planted
    folder = tmp_path_factory.mktemp("hostile") / "data"
    shutil.copytree(root, folder)
    dark = np.asarray(Image.open(folder / "train/dog/dark1.jpg").convert("RGB"))
    for k, name in enumerate(HOSTILE):
        Image.fromarray((dark * (0.6 + 0.2 * k)).astype(np.uint8)).save(folder / "train/ship" / name, quality=95)
    (folder / "train/ship/broken.jpg").write_bytes(b"not a picture")
    return folder, plants, tmp_path_factory.mktemp("cli_cache")


def _cli(*args) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "ood_core", "-q", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=900)
    assert out.returncode == 0, out.stderr
    return out


EMBED = ("--model", "lite0", "--image-size", "96", "--device", "cpu")


@pytest.fixture(scope="module")
def issues_run(hostile_planted, tmp_path_factory):
    folder, _, cache = hostile_planted
    out = tmp_path_factory.mktemp("out") / "issues.csv"
    done = _cli("issues", str(folder), "--out", str(out), *EMBED, "--cache-dir", str(cache))
    return done.stdout, list(csv.DictReader(io.StringIO(out.read_text()))), json.loads(out.with_suffix(".json").read_text())


def test_issues_command_flags_the_planted_problems(hostile_planted, issues_run):
    _, plants, _ = hostile_planted
    stdout, rows, card = issues_run
    assert list(rows[0]) == ["id", "issue", "score", "flagged", "detail"]
    flagged = {t: {r["id"] for r in rows if r["issue"] == t and r["flagged"] == "True"} for t in card["types"]}
    assert plants["exact_duplicate"] <= flagged["exact_duplicate"]
    assert plants["near_duplicate"] | plants["near_duplicate (crop)"] <= flagged["near_duplicate"]
    assert plants["dark"] | {f"train/ship/{n}" for n in HOSTILE} <= flagged["dark"]
    assert len(plants["label"] & flagged["label"]) >= 5
    details = {(r["id"], r["issue"]): r["detail"] for r in rows}
    assert details[("test/ship/copy3.jpg", "exact_duplicate")] == \
        "same content as train/ship/013.jpg; in both fit and query"
    assert details[("train/cat/dog0.jpg", "label")].startswith("likely ")
    # the card: counts equal the CSV's, thresholds with their reasons, duplicate sets and leakage
    for name, t in card["types"].items():
        here = [r for r in rows if r["issue"] == name]
        assert (t["scored"], t["flagged"]) == (len(here), len(flagged[name])), name
        assert t["threshold_reason"] and (t["threshold"] is not None)
        assert all(float(r["score"]) < t["threshold"] for r in here if r["flagged"] == "True")
    assert card["types"]["dark"]["threshold"] == 0.4 and "brightness" in card["types"]["dark"]["threshold_reason"]
    # the 18 planted sets (6 copies, 6 resized, 6 cropped), and dark1 with its two brightened copies (the hostile names)
    assert card["duplicate_sets"] == {"sets": 19, "items": 39, "in_fit_and_query": 6}
    assert card["embedding"]["model"] == "tf_efficientnet_lite0" and card["scoring"]["k"] is None
    # the printed table says the same
    for name, t in card["types"].items():
        assert re.search(rf"^{name}\s+{t['flagged']}\s+{t['scored']}\s", stdout, re.M), name
    assert "duplicate sets: 19 (39 items); with items in both fit and query (leakage): 6" in stdout
    assert "skipped files: 1" in stdout and re.search(r"^  skipped train/ship/broken\.jpg: \S", stdout, re.M)


def test_issues_command_refuses_an_unknown_type_before_any_work(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ood_core", "issues", "digits", "--out", str(tmp_path / "x.csv"),
                          "--types", "dark,darkness"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert "unknown issue type 'darkness'; valid: exact_duplicate, near_duplicate" in out.stderr
    assert not (tmp_path / "x.csv").exists()


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text of each ``<tr data-...>`` row's cells."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.rows: dict[str, list[str]] = {}
        self._row: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "tr":
            key = attrs.get("data-issue") or (f"{attrs['data-score']}/{attrs['data-set']}" if "data-score" in attrs
                                               else None)
            self._row = key
            if key:
                self.rows[key] = []
        elif tag == "td" and self._row:
            self.rows[self._row].append("")

    def handle_data(self, data):
        if self._row and self.rows[self._row]:
            self.rows[self._row][-1] += data

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None


def test_report_is_one_self_contained_file_holding_the_printed_counts(hostile_planted, issues_run, tmp_path):
    folder, _, cache = hostile_planted
    out = tmp_path / "report.html"
    done = _cli("report", str(folder), "--out", str(out), *EMBED, "--cache-dir", str(cache), "--top", "6")
    text = out.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    page.close()
    tags = [t for t, _ in page.tags]
    assert tags.count("html") == 1 and "script" not in tags and "link" not in tags and "iframe" not in tags
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)", text, re.I)
    srcs = [a.get("src") for t, a in page.tags if t == "img"]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert text.count('<img src="data:image/png;base64,') == text.count('<figure class="item">') == len(srcs)
    assert not any("href" in a or any(k.startswith("on") for k in a) for _, a in page.tags)
    # the hostile names are shown, escaped
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in text and "<img src=x" not in text
    assert "[x](javascript:alert(1)).jpg" in text
    # every count the CLI printed is in the page, and equals the issues command's card
    _, _, card = issues_run
    for name, t in card["types"].items():
        assert re.search(rf"^{name}\s+{t['flagged']}\s+{t['scored']}\s", done.stdout, re.M), name
        assert page.rows[name][:1] + page.rows[name][2:4] == [name, str(t["flagged"]), str(t["scored"])]
    assert f'data-duplicate-sets="19" data-leakage="6"' in text
    for m in re.finditer(r"^(Feature|Prediction) score .*flagged fit (\d+)/(\d+), query (\d+)/(\d+)$", done.stdout, re.M):
        scorer = m.group(1).lower()
        assert page.rows[f"{scorer}/fit"][:3] == ["fit", m.group(2), m.group(3)]
        assert page.rows[f"{scorer}/query"][:3] == ["query", m.group(4), m.group(5)]
    assert len(re.findall(r"^(Feature|Prediction) score", done.stdout, re.M)) == 2
