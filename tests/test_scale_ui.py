"""The dashboard on a large run (200,000 items, built directly as an ``Analysis``): the table sends
one page of rows and sorts every item, the histogram sends bin counts, the map says it shows a
sample, and a threshold change reuses what depends only on the run (no sort, no AUROC) while
showing exactly what ``ood_core`` computes.

Also, without Streamlit: the run-level orders of ``ood_dashboard.grid`` against ``ood_core.rank_outliers``,
``percentile_threshold`` and ``percentile_of``.
"""
from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import ood_core  # noqa: E402
from ood_core import percentile_of, percentile_threshold, rank_outliers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app.py"
N_FIT, N_QUERY = 160_000, 40_000
N = N_FIT + N_QUERY


class _TinyImages:
    """Reader of an ImageSet of seeded 8 x 8 noise images (one per key)."""

    def load(self, key, draft_size=None):
        from PIL import Image

        rng = np.random.default_rng(int(key))
        return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def big_analysis(seed: int = 7) -> ood_core.Analysis:
    """200,000 items (160,000 fit / 160,000 query), both scorers' scores drawn from beta
    distributions (20% of the queries out of distribution, lower), 4-D features for the map."""
    rng = np.random.default_rng(seed)
    is_ood = rng.random(N_QUERY) < 0.2
    labels = rng.integers(0, 10, N)
    ids = [f"big/{i:06d}" for i in range(N)]
    items = ood_core.ImageSet(
        ids=ids, paths=ids, labels=labels, class_names=[f"class {c}" for c in range(10)],
        split=np.array(["train"] * N_FIT + ["test"] * N_QUERY), is_ood=np.r_[np.zeros(N_FIT, bool), is_ood],
        skipped=[], description="big synthetic", identity=f"scale-test-{N}-{seed}", _reader=_TinyImages(),
        _keys=list(range(N)), size_hint=8)

    def scores(size, ood=None):
        s = rng.beta(6, 2, size).round(5)  # rounded: equal scores occur, as they do in real runs
        if ood is not None:
            s[ood] = rng.beta(2, 5, int(ood.sum())).round(5)
        return s

    scorer = ood_core.FeatureScorer()
    scorer.k_, scorer.metric_, scorer.scale_ = 10, "euclidean", 1.0  # what the pages read of a fitted one
    scorer.index_, scorer.search_ = {"kind": "exact"}, "exact"
    return ood_core.Analysis(
        run_id=f"scale-test-{N}-{seed}", data_id=items.data_id, source="big synthetic", embed_config={},
        items=items, ids=ids, paths=ids, labels=labels, class_names=items.class_names,
        fit_index=np.arange(N_FIT), query_index=np.arange(N_FIT, N),
        features=rng.standard_normal((N, 4)).astype(np.float32), is_ood=is_ood, score_config=ood_core.ScoreConfig(),
        feature_scorer=scorer, fit_feature_scores=scores(N_FIT), query_feature_scores=scores(N_QUERY, is_ood),
        fit_pred_scores=scores(N_FIT), query_pred_scores=scores(N_QUERY, is_ood),
    )


@pytest.fixture(scope="module")
def analysis():
    return big_analysis()


@pytest.fixture(autouse=True)
def scale_cache(monkeypatch, tmp_path_factory):
    """The map's projection is kept in a cache folder of this test session."""
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "scale_cache"))


def app_on(analysis, page: str) -> AppTest:
    """A session whose current analysis is ``analysis``, on ``page``."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["analysis"] = analysis
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def expected_order(values: np.ndarray, descending: bool = False) -> np.ndarray:
    """Positions by score (equal scores in position order), from scratch."""
    positions = np.arange(len(values))
    return np.lexsort((positions, -values if descending else values))


# ----------------------------------------------------------------------------- the table
def test_the_table_sends_one_page_and_sorts_every_item(analysis):
    at = app_on(analysis, "ood_dashboard/views/table.py")
    feature = analysis.item_scores("feature")
    table = at.dataframe[0].value
    assert len(table) == 1000  # one page of the 200,000 rows
    assert "200,000 items; showing rows 1 to 1,000" in [c.value for c in at.caption]
    np.testing.assert_array_equal(table["position"], expected_order(feature)[:1000])  # the lowest of all items

    # the page selector: page 50 holds rows 49,001 to 50,000 of the same order
    page = at.number_input(key="table_page_all_False_all")
    assert page.max == 200
    page.set_value(50).run()
    np.testing.assert_array_equal(at.dataframe[0].value["position"], expected_order(feature)[49_000:50_000])
    assert "200,000 items; showing rows 49,001 to 50,000" in [c.value for c in at.caption]

    # another order sorts all the items (not the page shown) and starts again at its first page
    at.selectbox(key="table_sort").set_value("prediction_desc").run()
    prediction = analysis.item_scores("prediction")
    rows = at.dataframe[0].value
    np.testing.assert_array_equal(rows["position"], expected_order(prediction, descending=True)[:1000])
    assert rows["prediction score"].iloc[0] == prediction.max()
    assert at.number_input(key="table_page_all_False_all").value == 1
    at.number_input(key="table_page_all_False_all").set_value(200).run()
    np.testing.assert_array_equal(at.dataframe[0].value["position"],
                                  expected_order(prediction, descending=True)[199_000:])

    # the test set only, in the data's order
    at.selectbox(key="table_set").set_value("query").run()
    at.selectbox(key="table_sort").set_value("position").run()
    np.testing.assert_array_equal(at.dataframe[0].value["position"], analysis.query_index[:1000])
    assert set(at.dataframe[0].value["set"]) == {"test"}

    # a selection names rows of the page shown
    at.number_input(key="table_page_query_False_all").set_value(3).run()
    at.session_state["table_rows"] = {"selection": {"rows": [5, 1], "columns": [], "cells": []}}
    at.run()
    assert at.button(key="table_open").label == f"Open #{analysis.query_index[2005]} large"
    assert "Mark all 2 selected rows as" in [c.value for c in at.caption]


# ----------------------------------------------------------------------------- the score page
def sent_figure(at: AppTest) -> tuple[dict, str]:
    (chart,) = at.get("component_instance")
    text = json.loads(chart.proto.json_args)["figure"]
    return json.loads(text), text


def values(array) -> np.ndarray:
    """An array of figure JSON: a list, or plotly's typed array (``{"dtype", "bdata": base64}``)."""
    import base64

    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), array["dtype"])
    return np.asarray(array)


def test_the_histogram_sends_bin_counts_not_one_value_per_item(analysis):
    at = app_on(analysis, "ood_dashboard/views/feature_scores.py")
    figure, text = sent_figure(at)
    bars = [trace for trace in figure["data"] if trace["type"] == "bar"]
    assert [bar["name"] for bar in bars] == [f"train (fit) (n={N_FIT:,})", f"test (query) (n={N_QUERY:,})"]
    for bar, n in zip(bars, (N_FIT, N_QUERY)):
        counts = values(bar["customdata"]).reshape(-1, 3)[:, 2]  # (low edge, high edge, count) per bin
        assert len(values(bar["x"])) == len(values(bar["y"])) == len(counts) == 50  # the bins, not the items
        assert counts.sum() == n
    assert len(text) < 40_000  # a few kB, whatever the number of items
    # the line sits at the exact threshold (a float, not a bin edge)
    threshold = percentile_threshold(analysis.fit_feature_scores, 5.0)
    assert figure["layout"]["shapes"][0]["x0"] == threshold


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def grid_captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions]


def expected_grids(analysis, scorer: str, which: str, n: int, threshold: float) -> list[str]:
    from ood_dashboard.grid import caption

    out = []
    for index, scores in zip((analysis.fit_index, analysis.query_index), analysis.scores(scorer)):
        ranked = rank_outliers(scores, threshold=threshold, n=n)[which]
        out += [caption(analysis, int(index[r]), float(scores[r])) for r in ranked]
    return out


def test_a_threshold_change_shows_what_ood_core_computes_without_sorting_again(analysis, monkeypatch):
    at = app_on(analysis, "ood_dashboard/views/prediction_scores.py")
    at.segmented_control(key="prediction_listing").set_value("Borderline").run()
    calls = []

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return wrapper

    # what depends only on the run: sorting the scores, the ROC curve and the AUROC
    import ood_core.analysis
    import ood_core.thresholds

    for module in (ood_core, ood_core.thresholds, ood_core.analysis):
        for name in ("rank_outliers", "ood_metrics", "roc_points"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    fit, query = analysis.fit_pred_scores, analysis.query_pred_scores
    for percentile in (7.5, 22.25, 0.5):
        at.number_input(key="prediction_percentile_input").set_value(percentile).run()
        assert not at.exception, [e.value for e in at.exception]
        threshold = percentile_threshold(fit, percentile)
        assert at.session_state["prediction_threshold"] == threshold
        nf, nq = int(np.sum(fit < threshold)), int(np.sum(query < threshold))
        shown = metrics(at)
        assert shown["Threshold (score)"] == f"{threshold:.4f}"
        assert shown["Train (fit) flagged"] == f"{nf:,} ({100 * nf / len(fit):.1f}%)"
        assert shown["Test (query) flagged"] == f"{nq:,} ({100 * nq / len(query):.1f}%)"
        assert grid_captions(at) == expected_grids(analysis, "prediction", "borderline", 16, threshold)
    assert calls == []
    # the numbers the page shows are ood_core's
    monkeypatch.undo()
    m = ood_core.ood_metrics(query, analysis.is_ood, threshold)
    assert shown["AUROC"] == f"{m['auroc']:.4f}" and shown["FPR at threshold"] == f"{m['fpr']:.4f}"
    assert shown["TPR at threshold"] == f"{m['tpr']:.4f}"
    at.segmented_control(key="prediction_listing").set_value("Most typical").run()
    assert grid_captions(at) == expected_grids(analysis, "prediction", "bottom", 16, threshold)


def test_the_view_equals_analysis_threshold_view(analysis, monkeypatch):
    """ood_dashboard.score_page.threshold_view (run-level sorts and AUROC reused) against Analysis.threshold_view."""
    import ood_dashboard.score_page as page

    state = {}
    monkeypatch.setattr(page, "st", types.SimpleNamespace(session_state=state))
    monkeypatch.setattr(page, "sync_threshold", lambda a, scorer: state["feature_threshold"])
    fit = analysis.fit_feature_scores
    for percentile, threshold in ((5.0, None), (12.34, None), (0.0, None), (100.0, None),
                                  (3.0, float(fit[17])), (40.0, 0.5), (1.0, -1.0), (99.0, 2.0)):
        threshold = percentile_threshold(fit, percentile) if threshold is None else threshold
        state.update(feature_percentile=percentile, feature_threshold=threshold)
        view = page.threshold_view(analysis, "feature")
        expected = (analysis.threshold_view("feature", percentile=percentile)
                    if percentile_threshold(fit, percentile) == threshold
                    else analysis.threshold_view("feature", threshold=threshold))
        assert {**vars(view), "metrics": None} == {**vars(expected), "metrics": None}
        np.testing.assert_equal(view.metrics, expected.metrics)  # NaN precision equal to NaN


# ----------------------------------------------------------------------------- the map
def test_the_map_says_it_shows_a_seeded_sample(analysis):
    at = app_on(analysis, "ood_dashboard/views/embedding_map.py")
    what = "a seeded sample of 5,000 of 200,000 items"
    assert any(what in c.value for c in at.caption)
    (chart,) = at.get("plotly_chart")
    figure = json.loads(chart.proto.spec)
    assert figure["layout"]["title"]["text"] == f"PCA map of {what}"
    assert sum(len(values(t["x"])) for t in figure["data"]) <= 5_000 + 5_000  # the sample (flagged drawn twice)


# ----------------------------------------------------------------------------- run-level orders
@pytest.mark.parametrize("seed", [0, 1])
def test_rankings_list_what_rank_outliers_lists(seed):
    from ood_dashboard.grid import Ranking

    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 50, 3_000) / 50.0  # many equal scores: ties go by index
    ranking = Ranking.of(scores)
    for threshold in (-1.0, 0.0, 0.02, 0.37, 0.5, 0.999, 1.0, 2.0, *scores[:5]):
        expected = rank_outliers(scores, threshold=threshold, n=len(scores))
        for which in ("top", "bottom", "borderline"):
            np.testing.assert_array_equal(ranking.listing(which, threshold), expected[which])
        assert ranking.count_below(threshold) == int(np.sum(scores < threshold))
        assert 100.0 * ranking.count_below(threshold) / len(scores) == percentile_of(scores, threshold)
    for percentile in np.r_[0, 100, rng.uniform(0, 100, 50)]:
        assert ranking.percentile_threshold(percentile) == percentile_threshold(scores, percentile)
    assert len(ranking.listing("borderline", None)) == 0


def test_review_filters_keep_the_rank_order():
    from ood_dashboard.grid import listing_page, review
    from ood_dashboard.grid import review_codes

    rng = np.random.default_rng(3)
    n = 5_000
    ids = [f"x{i}" for i in range(n)]
    fit_index, query_index = np.arange(0, n, 2), np.arange(1, n, 2)
    fit, query = rng.random(len(fit_index)).round(2), rng.random(len(query_index)).round(2)
    fake = types.SimpleNamespace(ids=ids, run_id="filters", fit_index=fit_index, query_index=query_index,
                                 scores=lambda scorer: (fit, query), scores_id=lambda scorer: "filters:feature")
    marked = rng.choice(n, 300, replace=False)
    item_marks = {ids[p]: types.SimpleNamespace(verdict=ood_core.VERDICTS[i % 3]) for i, p in enumerate(marked)}
    codes = review_codes(fake, item_marks)
    for which_set, scores, index in (("fit", fit, fit_index), ("query", query, query_index)):
        for listing in ("top", "bottom", "borderline"):
            for shown in ("all", "unreviewed", *ood_core.VERDICTS):
                ranked, positions = listing_page(fake, "feature", which_set, listing, 0.3, 20, codes, shown)
                reference = rank_outliers(scores, threshold=0.3, n=len(scores))[listing]
                kept = review.shown(index[reference], item_marks, ids, shown)
                np.testing.assert_array_equal(ranked, reference[kept][:20])
                np.testing.assert_array_equal(positions, index[reference[kept][:20]])
