"""Issue types with unscored train items (issue 19): one image of the planted folder of
``test_app_issues`` whose statistics could not be computed while it was decoded (the embedder logs
it, records the failure and keeps the image's features), so its seven image-property scores and its
near-duplicate score are NaN. The threshold is a percentile of the *scored* train items, the
unscored one is counted and named with why (library view, threshold card, CSV, the CLI's card and
CSV, the issue pages), never flagged nor cleared; a type is refused only when no train item is scored."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import ood_core  # noqa: E402
from ood_core.cli import main  # noqa: E402
from ood_core.issues import ImageStatsCollector, list_issue_types  # noqa: E402
from ood_core.issues._run import STATS_FAILED  # noqa: E402

from test_app import APP, TIMEOUT, metrics  # noqa: E402
from test_app_issues import ISSUE_SCORES, ISSUES, write_planted  # noqa: E402

UNMEASURED = "train/red/dark1.png"  # one of the three darkened images: it must not pass as "not dark"
IMAGE_TYPES = ("dark", "light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio",
               "near_duplicate")


def fail_statistics_of(monkeypatch, root, rel: str) -> None:
    """Make computing the image statistics of ``rel`` fail, as an image the statistics code cannot
    handle does: the embedder's decoding pass (and a separate statistics pass) logs it, records the
    failure (``collector.fail``) and keeps the image's features."""
    paths = [str(p).replace("\\", "/") for p in ood_core.open_source(root).paths]
    target = next(i for i, p in enumerate(paths) if p.endswith(rel))
    add_batch = ImageStatsCollector.add_batch

    def failing_add_batch(self, items, imgs):
        if target in list(items):
            raise ValueError("the statistics code cannot handle this image")
        return add_batch(self, items, imgs)

    monkeypatch.setattr(ImageStatsCollector, "add_batch", failing_add_batch)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("unscored") / "data"
    write_planted(root)
    return root


@pytest.fixture(scope="module")
def analysis(folder, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_CACHE_DIR", str(tmp_path_factory.mktemp("unscored_cache")))  # embedded afresh
        fail_statistics_of(mp, folder, UNMEASURED)
        found = ood_core.analyze(folder, model="pixels", device="cpu")
        found.issues()  # computed and kept while the cache folder is set
        yield found


def test_scored_values_leave_out_the_unscored_and_refuse_when_none_is_scored():
    np.testing.assert_array_equal(ood_core.scored_values([0.2, np.nan, 0.4, np.nan]), [0.2, 0.4])
    with pytest.raises(ValueError, match=r"the train \(fit\) scores of 'dark' holds no scored item \(2 item"):
        ood_core.scored_values([np.nan, np.nan], "the train (fit) scores of 'dark'")
    with pytest.raises(ValueError, match="infinite"):
        ood_core.scored_values([0.2, np.inf])


def test_the_threshold_is_a_percentile_of_the_scored_train_items_and_the_unscored_one_is_named(analysis):
    unmeasured = analysis.ids.index(UNMEASURED)
    fit, query = analysis.scores("dark")
    assert np.isnan(fit).sum() == 1 and not np.isnan(query).any()
    for name in IMAGE_TYPES:
        assert np.isnan(analysis.issue_scores(name).scores[unmeasured]), name
    assert not np.isnan(analysis.issue_scores("exact_duplicate").scores).any()  # from the files' digests

    scored = fit[~np.isnan(fit)]
    view = analysis.threshold_view("dark", percentile=50)
    assert view.threshold == np.percentile(scored, 50)
    assert (view.fit_total, view.fit_unscored, view.query_unscored) == (len(fit), 1, 0)
    assert view.fit_flagged == int(np.sum(scored < view.threshold))
    assert view.fit_flagged_pct == pytest.approx(100 * view.fit_flagged / (len(fit) - 1))
    assert view.reached == pytest.approx(view.fit_flagged_pct)

    # at the default: the two measured dark images flagged, the unmeasured one neither flagged nor cleared
    view = analysis.threshold_view("dark", threshold=0.4)
    assert view.fit_flagged == 2 and view.reached == pytest.approx(100 * 2 / (len(fit) - 1))
    card = analysis.threshold_card(view)
    assert card["fit"] == {"flagged": 2, "total": len(fit), "unscored": 1}
    assert card["unscored"] == [{"id": UNMEASURED, "why": STATS_FAILED}]
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(analysis.scores_csv({"dark": 0.4})))}
    assert (rows[UNMEASURED]["dark_score"], rows[UNMEASURED]["dark_flagged"]) == ("", "")
    assert rows[UNMEASURED]["dark_unscored"] == STATS_FAILED
    assert sum(r["dark_flagged"] == "True" for r in rows.values()) == 2
    assert all(r["dark_unscored"] == "" for i, r in rows.items() if i != UNMEASURED)


def test_the_issues_command_names_the_unscored_item_in_its_card_and_csv(folder, tmp_path, monkeypatch, capsys):
    fail_statistics_of(monkeypatch, folder, UNMEASURED)
    out = tmp_path / "issues.csv"
    assert main(["-q", "issues", str(folder), "--out", str(out), "--model", "pixels", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    card = json.loads(out.with_suffix(".json").read_text())
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    n = card["items"]
    for name in IMAGE_TYPES:
        t = card["types"][name]
        assert (t["scored"], t["unscored"], t["unscored_fit"], t["unscored_query"]) == (n - 1, 1, 1, 0), name
        assert t["unscored_items"] == [{"id": UNMEASURED, "why": STATS_FAILED}], name
        assert t["unscored_reasons"] == {STATS_FAILED: 1}, name
        here = [r for r in rows if r["issue"] == name]
        assert len(here) == n, name  # every item has a row: scored, or saying why not
        (row,) = [r for r in here if r["id"] == UNMEASURED]
        assert (row["score"], row["flagged"], row["detail"]) == ("", "", f"not scored: {STATS_FAILED}"), name
        assert t["flagged"] == sum(r["flagged"] == "True" for r in here), name
        assert f"not scored for {name}: 1 item(s): {STATS_FAILED}" in printed
    assert card["types"]["dark"]["flagged"] == 2  # dark0 and dark2; dark1 unmeasured, not "not dark"
    assert card["types"]["exact_duplicate"]["unscored"] == 0
    assert "unscored" in printed.splitlines()[printed.splitlines().index(next(
        line for line in printed.splitlines() if line.startswith("issue ")))]


def app_on(analysis, page: str, issue: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["analysis"] = analysis
    at.run()
    if issue is not None:
        at.query_params["type"] = issue
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_the_issue_page_shows_the_type_with_its_unscored_item_named_and_the_counts_adding_up(analysis):
    from ood_dashboard.markup import escape

    at = app_on(analysis, ISSUE_SCORES, "dark")
    assert at.selectbox(key="issues_type").value == "dark"
    assert not [i.value for i in at.info]  # not refused
    fit, query = analysis.scores("dark")
    n_fit = len(fit)
    m = metrics(at)
    assert m["Threshold (score)"] == "0.4000"
    assert m["Train (fit) flagged"] == f"2 ({100 * 2 / (n_fit - 1):.1f}%)"  # of the scored train items
    texts = [c.value for c in at.caption]
    assert at.session_state["dark_percentile"] == round(100 * 2 / (n_fit - 1), 2)
    nq = int(np.sum(query < 0.4))
    assert any(t.startswith(f"p = {100 * 2 / (n_fit - 1):.4g} of {n_fit - 1} scored train (fit) items; 1 unscored")
               and f"neither flagged nor cleared (listed below): {escape(STATS_FAILED)}." in t
               and f"2 flagged + {n_fit - 3} not flagged + 1 unscored = {n_fit}" in t
               and f"{nq} flagged + {len(query) - nq} not flagged + 0 unscored = {len(query)}" in t
               for t in texts), texts
    unscored = next(d.value for d in at.dataframe if "why unscored" in d.value.columns)
    assert unscored["id"].tolist() == [UNMEASURED] and unscored["why unscored"].tolist() == [STATS_FAILED]
    assert unscored["set"].tolist() == ["train (fit)"]
    # the unmeasured image is in no grid: the top outliers are the two measured dark images first
    severe = next(d.value for d in at.dataframe if "detail" in d.value.columns)
    assert UNMEASURED not in severe["id"].tolist()

    # a typed percentile is of the scored train items
    at.number_input(key="dark_percentile_input").set_value(50.0).run()
    threshold = np.percentile(fit[~np.isnan(fit)], 50)
    flagged = int(np.sum(fit < threshold))
    m = metrics(at)
    assert m["Threshold (score)"] == f"{threshold:.4f}"
    assert m["Train (fit) flagged"] == f"{flagged:,} ({100 * flagged / (n_fit - 1):.1f}%)"

    # the CSV and card the page's download buttons give
    from ood_dashboard.score_page import export_payloads
    csv_text, card_text = export_payloads(analysis, "dark", 0.4)
    card = json.loads(card_text)
    assert card["unscored"] == [{"id": UNMEASURED, "why": STATS_FAILED}] and card["fit"]["unscored"] == 1
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    assert rows[UNMEASURED]["dark_flagged"] == "" and rows[UNMEASURED]["dark_unscored"] == STATS_FAILED

    at.selectbox(key="issues_type").set_value("near_duplicate").run()  # the other type it leaves unscored
    assert not at.exception and not [i.value for i in at.info]
    assert any(t.startswith(f"p = ") and "1 unscored" in t for t in (c.value for c in at.caption))


def test_the_overview_counts_the_unscored_item_of_each_type(analysis):
    at = app_on(analysis, ISSUES)
    shown = at.dataframe[0].value.set_index("type")
    for name in list_issue_types():
        if name not in shown.index:
            continue
        assert shown.loc[name, "scored"] + shown.loc[name, "unscored"] == len(analysis.ids), name
        expected = (1, STATS_FAILED) if name in IMAGE_TYPES else (0, "")
        assert (shown.loc[name, "unscored"], shown.loc[name, "why unscored"]) == expected, name
    assert shown.loc["dark", "flagged"] == 2


def test_a_type_no_train_item_has_a_score_for_is_refused_saying_why(analysis, monkeypatch):
    found = analysis.issue_scores("dark")
    fit = np.asarray(analysis.fit_index)
    scores = found.scores.copy()
    scores[fit] = np.nan  # only the test items scored
    monkeypatch.setitem(analysis._issue_results["properties"], "dark",
                        type(found)("dark", scores, found.threshold, found.detail, found.info))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["analysis"] = analysis
    at.run()
    at.query_params["type"] = "dark"
    at.switch_page(ISSUE_SCORES).run()
    assert not at.exception
    (info,) = [i.value for i in at.info]
    assert info.startswith("No train (fit) item has a score for dark images, so there is no percentile")
    assert not at.metric
