"""The issue pages through ``AppTest`` on a small planted folder (pixels model, seconds): the
overview's counts equal ``Analysis.issues()``, a planted copy shows in the duplicate sets with its
leakage called out, moving an issue type's threshold changes its counts on both pages, and a mark
made on an issue page is the mark the outlier pages show."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import ood_core  # noqa: E402
from ood_core.issues import get_issue_type  # noqa: E402

from test_app import APP, TIMEOUT, captions, metrics  # noqa: E402

ISSUES, ISSUE_SCORES = "ood_dashboard/views/issues.py", "ood_dashboard/views/issue_scores.py"
FEATURE = "ood_dashboard/views/feature_scores.py"


def _blocks(rng, low=60, high=250) -> Image.Image:
    """A 64x64 picture of 8x8 flat blocks (its perceptual hash survives a resize and a JPEG)."""
    return Image.fromarray(np.kron(rng.integers(low, high, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write_planted(root) -> dict[str, str]:
    """Write a train/test folder of 2 classes with one exact copy from train into test (leakage), one
    resized JPEG copy within train and 3 darkened images into ``root``; returns {plant: relative path}."""
    rng = np.random.default_rng(7)
    files: dict[str, bytes] = {}
    for c in ("red", "blue"):
        for k in range(36):
            files[f"{'train' if k < 28 else 'test'}/{c}/{k:02d}.png"] = _png(_blocks(rng))
    files["test/red/copy.png"] = files["train/red/03.png"]
    small = io.BytesIO()
    Image.open(io.BytesIO(files["train/blue/05.png"])).resize((56, 56)).save(small, "JPEG", quality=70)
    files["train/blue/small.jpg"] = small.getvalue()
    for k in range(3):
        dark = np.asarray(_blocks(rng), dtype=np.float64) * 0.2
        files[f"train/red/dark{k}.png"] = _png(Image.fromarray(dark.astype(np.uint8)))
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {"copy": "test/red/copy.png", "original": "train/red/03.png", "small": "train/blue/small.jpg"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted folder of :func:`write_planted` and its plants."""
    root = tmp_path_factory.mktemp("issues_app") / "data"
    return root, write_planted(root)


@pytest.fixture(scope="module")
def analysis(planted, tmp_path_factory):
    root, _ = planted
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_CACHE_DIR", str(tmp_path_factory.mktemp("issues_app_cache")))
        found = ood_core.analyze(root, model="pixels", device="cpu")
        found.issues()  # computed and kept while the cache folder is set
        yield found


def app_on(analysis, page: str) -> AppTest:
    """A session whose current analysis is ``analysis``, on ``page``."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["analysis"] = analysis
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def position(analysis, rel: str) -> int:
    return next(p for p, path in enumerate(analysis.paths) if path.replace("\\", "/").endswith(rel))


def counts_table(at: AppTest):
    return at.dataframe[0].value.set_index("type")


def test_the_overview_counts_equal_the_library_and_the_planted_problems_show(analysis, planted):
    _, plants = planted
    at = app_on(analysis, ISSUES)
    assert at.title[0].value == "Data issues"
    table = analysis.issues()
    shown = counts_table(at)
    for name in set(table["issue"]):
        rows = table[table["issue"] == name]
        assert shown.loc[name, "flagged"] == rows["flagged"].sum(), name
        assert shown.loc[name, "scored"] == len(rows), name
        assert shown.loc[name, "default"] == pytest.approx(analysis.issue_scores(name).threshold)
        assert shown.loc[name, "why the default"] == get_issue_type(name).reason
    assert shown.loc["dark", "flagged"] == 3 and shown.loc["exact_duplicate", "flagged"] == 2

    # the overlap matrix: a type against itself is its own count; the two exact copies are not dark
    overlap = at.dataframe[1].value.set_index("flagged by")
    assert overlap.loc["Dark images", "Dark images"] == 3
    assert overlap.loc["Exact duplicates", "Dark images"] == 0
    dark = analysis.issue_scores("dark").flagged()
    feature = analysis.item_scores("feature") < at.session_state["feature_threshold"]
    assert overlap.loc["Feature score (KNN)", "Dark images"] == int(np.sum(dark & feature))

    # the duplicate set of the planted copy: one row, the original (train) and its copy (test), leakage said
    copy, original = position(analysis, plants["copy"]), position(analysis, plants["original"])
    texts = captions(at)
    assert any(t.startswith(f"#{copy} · test (query)") for t in texts)
    assert any(t.startswith(f"#{original} · train (fit)") for t in texts)
    assert any("leakage: in both train and test" in m.value for m in at.markdown)
    small = position(analysis, plants["small"])
    assert any(t.startswith(f"#{small} · train (fit)") for t in texts)  # the resized JPEG copy: a near duplicate


def test_the_issue_page_starts_at_the_default_and_its_threshold_moves_the_counts(analysis):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["analysis"] = analysis
    at.run()
    at.query_params["type"] = "dark"
    at.switch_page(ISSUE_SCORES).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="issues_type").value == "dark"
    fit, query = analysis.scores("dark")
    m = metrics(at)
    assert m["Threshold (score)"] == "0.4000"  # the type's default, not the 5th percentile
    assert m["Train (fit) flagged"] == f"3 ({100 * 3 / len(fit):.1f}%)"
    assert "AUROC" not in m  # no outlier truth to evaluate an issue type against

    at.number_input(key="dark_percentile_input").set_value(50.0).run()
    threshold = ood_core.percentile_threshold(fit, 50.0)
    n_fit, n_query = int(np.sum(fit < threshold)), int(np.sum(query < threshold))
    m = metrics(at)
    assert m["Threshold (score)"] == f"{threshold:.4f}"
    assert m["Train (fit) flagged"] == f"{n_fit:,} ({100 * n_fit / len(fit):.1f}%)" and n_fit > 3
    assert m["Test (query) flagged"] == f"{n_query:,} ({100 * n_query / len(query):.1f}%)"

    at.switch_page(ISSUES).run()  # the overview counts at the moved threshold
    shown = counts_table(at)
    assert shown.loc["dark", "flagged"] == int(np.sum(analysis.issue_scores("dark").scores < threshold))
    assert shown.loc["dark", "flagged at default"] == 3


def test_a_mark_made_on_an_issue_page_is_the_mark_of_the_outlier_pages(analysis):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["analysis"] = analysis
    at.run()
    at.query_params["type"] = "dark"
    at.switch_page(ISSUE_SCORES).run()
    at.button(key="dark_fit_bulk_outlier").click().run()  # the train grid's 16 darkest images
    assert not at.exception, [e.value for e in at.exception]
    fit = analysis.scores("dark")[0]
    darkest = [int(analysis.fit_index[i]) for i in np.argsort(fit, kind="stable")[:16]]
    at.switch_page(FEATURE).run()
    at.segmented_control(key="feature_review_filter").set_value("outlier").run()
    assert {int(c.split(" · ")[0][1:]) for c in captions(at)} == set(darkest)
    assert all("⚑ outlier" in c for c in captions(at))

    # and back: the test grid's 16 top outliers marked fine on the feature page show so on the issue page
    at.segmented_control(key="feature_review_filter").set_value("all").run()
    at.button(key="feature_query_bulk_fine").click().run()
    query = analysis.query_feature_scores
    fine = {int(analysis.query_index[i]) for i in np.argsort(query, kind="stable")[:16]}
    at.switch_page(ISSUE_SCORES).run()
    at.segmented_control(key="dark_review_filter").set_value("fine").run()
    assert {int(c.split(" · ")[0][1:]) for c in captions(at)} == fine
    assert all("✓ fine" in c for c in captions(at))
