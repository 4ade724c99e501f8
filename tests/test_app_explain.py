"""AppTest flows of the explain pages (issue 5) on the built-in digits default.

The digits embedding is computed once per test session (into a session-scoped OOD_CACHE_DIR) and
kept by the dashboard's in-process run store, so every AppTest after the first starts in
about a second. Expected numbers come from ``ood_core`` called on the session's own Analysis.

AppTest cannot draw a box on a plotly chart, so the map selection is tested in two halves: the
pure ``selection_positions`` on event dicts of the shape the browser sends, and the page with such
an event injected as the chart's state through session state (AppTest allows this; a real browser
session does not: there the browser sets it, and the page reads it before drawing the chart).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import ood_core
from ood_core import (compare_auroc, per_class_counts, per_class_thresholds, percentile_threshold, quadrants,
                      rank_average_fit_query)
from ood_dashboard.explain_views import QUADRANT_TITLES, selection_positions, verdict
from ood_dashboard.grid import caption
from tests.conftest import markdown_text

TIMEOUT = 300  # the first run embeds the digits (about a minute on 2 busy cores); later runs take seconds


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory):
    old = os.environ.get("OOD_CACHE_DIR")
    os.environ["OOD_CACHE_DIR"] = str(tmp_path_factory.mktemp("ood_cache"))
    yield
    if old is None:
        os.environ.pop("OOD_CACHE_DIR", None)
    else:
        os.environ["OOD_CACHE_DIR"] = old


def open_page(page: str) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT).run()
    assert not at.exception
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ------------------------------------------------------------------ why this one
def test_selecting_an_image_shows_its_neighbours():
    at = open_page("ood_dashboard/views/neighbours.py")
    a = at.session_state["analysis"]
    assert len(a.ids) == 1797  # the digits default
    for position in (int(a.query_index[3]), int(a.fit_index[5])):  # a test image, then a train image
        at.selectbox(key="neighbours_pick").set_value(position).run()
        assert not at.exception
        expected = a.explain(position, k=a.feature_scorer.k_, threshold=at.session_state["feature_threshold"])
        ids = [a.ids[p] for p in expected["positions"]]
        assert at.dataframe[0].value["id"].tolist() == ids
        np.testing.assert_allclose(at.dataframe[0].value["distance"], expected["distances"])
        captions = [c for image in at.image for c in image.captions]
        assert markdown_text(captions[0]).startswith(a.ids[position])
        assert [markdown_text(c).split(" · ")[0] for c in captions[1:]] == [f"{r}. {i}" for r, i in enumerate(ids, start=1)]
        shown = at.warning if expected["flagged"] else at.success
        assert shown[0].value == verdict(expected)
        assert metrics(at)["Feature score"] == f"{expected['score']:.4f}"
    assert position not in expected["positions"]  # a train image is not its own neighbour


def test_arriving_from_a_why_button_explains_that_image():
    at = open_page("ood_dashboard/views/neighbours.py")
    a = at.session_state["analysis"]
    position = int(a.query_index[-1])
    at.session_state["explain_position"] = position
    at.number_input(key="neighbours_k").set_value(4).run()
    assert at.selectbox(key="neighbours_pick").value == position
    expected = a.explain(position, k=4, threshold=at.session_state["feature_threshold"])
    assert at.dataframe[0].value["id"].tolist() == [a.ids[p] for p in expected["positions"]]
    assert "explain_position" not in at.session_state  # consumed: the pick is free to change again


def test_why_button_in_a_grid_opens_the_neighbours_page():
    at = open_page("ood_dashboard/views/compare.py")
    a = at.session_state["analysis"]
    q = quadrants(a.query_feature_scores, a.query_pred_scores, at.session_state["feature_threshold"],
                  at.session_state["prediction_threshold"])
    _, combined = rank_average_fit_query([a.fit_feature_scores, a.fit_pred_scores],
                                         [a.query_feature_scores, a.query_pred_scores])
    both = q["indices"]["both"]
    position = int(a.query_index[both[np.lexsort((both, combined[both]))][0]])  # the grid's first image
    assert at.image[0].captions[0] == caption(a, position, combined[both].min())
    next(b for b in at.button if b.label == "Why?").click().run()
    assert not at.exception
    assert at.title[0].value == "Why this one?"
    assert at.selectbox(key="neighbours_pick").value == position
    assert markdown_text(at.image[0].captions[0]).startswith(a.ids[position])


# ------------------------------------------------------------------ compare
def test_quadrant_counts_sum_to_the_query_size_and_follow_the_thresholds():
    at = open_page("ood_dashboard/views/compare.py")
    a = at.session_state["analysis"]
    shown = metrics(at)
    q = quadrants(a.query_feature_scores, a.query_pred_scores, at.session_state["feature_threshold"],
                  at.session_state["prediction_threshold"])
    counts = {name: int(shown[title].replace(",", "")) for name, title in QUADRANT_TITLES.items()}
    assert counts == q["counts"]
    assert sum(counts.values()) == len(a.query_index) == 1347
    assert shown["Spearman correlation"] == f"{q['spearman']:.3f}"
    _, combined = rank_average_fit_query([a.fit_feature_scores, a.fit_pred_scores],
                                         [a.query_feature_scores, a.query_pred_scores])
    auroc = compare_auroc(a.is_ood, feature=a.query_feature_scores, prediction=a.query_pred_scores,
                          rank_average=combined)
    assert shown["AUROC · Feature score"] == f"{auroc['feature']:.4f}"
    assert shown["AUROC · Rank average of both"] == f"{auroc['rank_average']:.4f}"

    # A threshold moved on the score page moves the counts; the grid lists the chosen corner.
    at.session_state["feature_threshold"] = percentile_threshold(a.fit_feature_scores, 20)
    at.segmented_control(key="compare_quadrant").set_value("feature_only").run()
    q2 = quadrants(a.query_feature_scores, a.query_pred_scores, at.session_state["feature_threshold"],
                   at.session_state["prediction_threshold"])
    assert q2["counts"] != q["counts"]
    assert int(metrics(at)["Features only"].replace(",", "")) == q2["counts"]["feature_only"]
    members = q2["indices"]["feature_only"]
    first = members[np.lexsort((members, a.query_feature_scores[members]))][:16]  # by the score that flags them
    assert [c for image in at.image for c in image.captions] == \
        [caption(a, p, a.query_feature_scores[i]) for p, i in zip(a.query_index[first], first)]


def test_compare_without_prediction_scores_says_so():
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT).run()
    a = at.session_state["analysis"]
    at.session_state["analysis"] = dataclasses.replace(a, fit_pred_scores=None, query_pred_scores=None)
    at.switch_page("ood_dashboard/views/compare.py").run()
    assert not at.exception
    assert "nothing to compare" in at.info[0].value


# ------------------------------------------------------------------ embedding map
def test_selection_positions_reads_customdata():
    # Every trace of the map stores each point's position as customdata; a point without one is skipped.
    event = {"selection": {"points": [{"customdata": 7, "curve_number": 1, "point_index": 0},
                                      {"customdata": [3], "curve_number": 0, "point_index": 2},
                                      {"curve_number": 1, "point_index": 1},
                                      {"customdata": 7, "curve_number": 1, "point_index": 0}],
                           "point_indices": [0, 1, 2], "box": [], "lasso": []}}
    out = selection_positions(event)
    assert out.dtype == np.int64 and out.tolist() == [3, 7]
    empty = {"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}
    assert selection_positions(empty).tolist() == [] and selection_positions(None).tolist() == []


def map_traces(at: AppTest) -> dict[str, list[int]]:
    """The embedding map's traces as drawn: name -> positions (each point's customdata)."""
    (chart,) = at.get("plotly_chart")
    return {t["name"]: sorted(_decoded(t["customdata"]).tolist()) for t in json.loads(chart.proto.spec)["data"]}


def _decoded(value) -> np.ndarray:
    """An array of figure JSON: a list, or plotly's typed array (1-D ``{"dtype", "bdata": base64}``)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), value["dtype"])
    return np.asarray(value)


def select_on_map(at: AppTest, positions: list[int]) -> None:
    """What the browser sends after a box selection (AppTest cannot draw one), then a rerun."""
    at.session_state["map_chart"] = {"selection": {
        "points": [{"customdata": p, "curve_number": 0, "point_index": i, "x": 0.0, "y": 0.0}
                   for i, p in enumerate(positions)],
        "point_indices": list(range(len(positions))), "box": [{"x": [0, 1], "y": [0, 1]}], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def test_the_kept_selection_outlives_a_new_figure_and_clears_on_request(monkeypatch):
    import types

    import ood_dashboard.map_selection as ms

    state: dict = {}
    monkeypatch.setattr(ms, "st", types.SimpleNamespace(session_state=state))
    sel = ms.MapSelection("kept", "chart")

    def browser_sends(*positions):
        state["chart"] = {"selection": {"points": [{"customdata": p} for p in positions]}}

    def run(token):
        kept, drawn = sel.update(token)
        return kept.tolist(), None if drawn is None else drawn.tolist()

    assert run("A") == ([], None)
    browser_sends(3, 1)  # a lasso on chart A
    assert run("A") == ([1, 3], None)  # same figure: the chart keeps showing its own selection
    assert run("B") == ([1, 3], [1, 3])  # a new figure (e.g. recoloured by mark): drawn as selected
    state["chart"] = None  # the new chart starts empty
    assert run("B") == ([1, 3], [1, 3])
    browser_sends(7)  # a click on chart B
    assert run("B") == ([7], [1, 3])  # the same chart again (its figure unchanged), showing the click
    state["chart"] = {"selection": {"points": []}}  # a double-click on the map empties it
    assert run("B") == ([], [1, 3])
    browser_sends(5)
    assert run("B") == ([5], [1, 3])
    sel.clear()  # the "Clear selection" button: a fresh chart, nothing selected
    assert run("B") == ([], None)


def test_a_map_selection_fills_the_grid_and_the_side_panel():
    at = open_page("ood_dashboard/views/embedding_map.py")
    a = at.session_state["analysis"]
    assert "Draw a box or a lasso" in at.main.caption[-1].value
    assert "Click a point on the map" in at.caption[0].value
    chosen = [int(a.query_index[i]) for i in (0, 5, 9)] + [int(a.fit_index[2])]
    select_on_map(at, chosen)
    scores = a.item_scores("feature")
    order = sorted(chosen, key=lambda p: (scores[p], p))  # most atypical first
    panel, *grid = [c for image in at.image for c in image.captions]
    assert panel == caption(a, order[0], scores[order[0]])  # the side panel: the most atypical selected
    assert grid == [caption(a, p, scores[p]) for p in order]
    assert at.main.caption[-1].value.startswith("4 selected")


def test_the_map_colours_by_truth_class_and_split_with_flagged_rings():
    at = open_page("ood_dashboard/views/embedding_map.py")
    a = at.session_state["analysis"]
    assert at.selectbox(key="map_colour").options == ["Score", "Known truth", "Review mark", "Class", "Train / test"]
    assert list(map_traces(at)) == ["typical", "flagged"]  # by score, as before
    flagged = np.flatnonzero(a.item_scores("feature") < at.session_state["feature_threshold"]).tolist()
    query = a.query_index
    at.selectbox(key="map_colour").set_value("truth").run()
    assert map_traces(at) == {  # the faint train items drawn first, the outliers last (on top)
        f"train (fit) ({len(a.fit_index):,})": sorted(a.fit_index.tolist()),
        f"in distribution ({np.sum(~a.is_ood):,})": sorted(query[~a.is_ood].tolist()),
        f"out of distribution ({np.sum(a.is_ood):,})": sorted(query[a.is_ood].tolist()),
        f"flagged ({len(flagged):,})": flagged}
    at.selectbox(key="map_colour").set_value("class").run()
    traces = map_traces(at)
    assert [name.split(" (")[0] for name in traces][:-1] == [str(c) for c in range(9, -1, -1)]
    assert traces[f"3 ({np.sum(a.labels == 3)})"] == np.flatnonzero(a.labels == 3).tolist()
    at.selectbox(key="map_colour").set_value("split").run()
    assert list(map_traces(at))[:2] == [f"train (fit) ({len(a.fit_index):,})", f"test (query) ({len(query):,})"]


def test_a_colouring_the_next_data_lacks_falls_back_to_the_score():
    at = open_page("ood_dashboard/views/embedding_map.py")
    a = at.session_state["analysis"]
    at.selectbox(key="map_scorer").set_value("prediction").run()
    at.selectbox(key="map_colour").set_value("truth").run()
    at.session_state["analysis"] = dataclasses.replace(a, is_ood=None, fit_pred_scores=None, query_pred_scores=None)
    at.run()
    assert not at.exception
    assert at.selectbox(key="map_colour").options == ["Score", "Review mark", "Class", "Train / test"]
    assert (at.selectbox(key="map_colour").value, at.selectbox(key="map_scorer").value) == ("score", "feature")
    assert list(map_traces(at)) == ["typical", "flagged"]


def test_marking_a_map_selection_colours_the_map_by_mark():
    at = open_page("ood_dashboard/views/embedding_map.py")
    a = at.session_state["analysis"]
    store, key = ood_core.ReviewStore(), ood_core.dataset_key(a)  # the file the dashboard writes (OOD_DATA_DIR)
    chosen = [int(p) for p in a.query_index[:3]]
    try:
        at.selectbox(key="map_colour").set_value("mark").run()
        assert list(map_traces(at))[0] == f"not reviewed ({len(a.ids):,})"
        select_on_map(at, chosen)
        at.button(key="map_selection_bulk_outlier").click().run()
        assert not at.exception
        assert {i: m.verdict for i, m in store.marks(key).items()} == {a.ids[p]: "outlier" for p in chosen}
        traces = map_traces(at)
        assert traces["outlier (3)"] == sorted(chosen)
        assert f"not reviewed ({len(a.ids) - 3:,})" in traces
        assert at.image[0].captions[0].endswith("⚑ outlier")  # the side panel shows the mark too
        # The recoloured figure is a new chart (Streamlit drops its selection); the page kept it.
        assert at.main.caption[-1].value.startswith("3 selected")
        (chart,) = at.get("plotly_chart")
        outliers = next(t for t in json.loads(chart.proto.spec)["data"] if t["name"] == "outlier (3)")
        assert _decoded(outliers["selectedpoints"]).tolist() == [0, 1, 2]  # drawn as selected
        at.selectbox(key="map_colour").set_value("score").run()
        assert at.main.caption[-1].value.startswith("3 selected")
        at.button(key="map_clear").click().run()
        assert "Draw a box or a lasso" in at.main.caption[-1].value
        assert "selectedpoints" not in at.get("plotly_chart")[0].proto.spec
    finally:
        store.clear(key, [a.ids[p] for p in chosen])  # other tests see the digits unreviewed


# ------------------------------------------------------------------ per class
def test_class_conditional_thresholds_flag_what_ood_core_flags():
    at = open_page("ood_dashboard/views/per_class.py")
    a = at.session_state["analysis"]
    at.toggle(key="per_class_conditional").set_value(True).run()
    at.number_input(key="per_class_percentile_feature").set_value(10.0).run()
    assert not at.exception
    fit_labels = a.labels[a.fit_index]
    predicted = a.predicted_classes()
    thresholds = per_class_thresholds(a.fit_feature_scores, fit_labels, 10.0, n_classes=10)
    rows = per_class_counts(a.fit_feature_scores, fit_labels, a.query_feature_scores, predicted, thresholds,
                            a.class_names)
    table = at.dataframe[0].value
    assert table["class"].tolist() == ["0", "1", "2", "3", "4"]  # the fit classes; every prediction is one
    assert table["test flagged (class)"].tolist() == [r["query_flagged"] for r in rows[:5]]
    assert table["train flagged (class)"].tolist() == [r["fit_flagged"] for r in rows[:5]]
    assert table["train images"].tolist() == np.bincount(fit_labels).tolist() == [89, 97, 82, 92, 90]
    np.testing.assert_allclose(table["class threshold"], thresholds[:5])
    global_rows = per_class_counts(a.fit_feature_scores, fit_labels, a.query_feature_scores, predicted,
                                   np.full(10, percentile_threshold(a.fit_feature_scores, 10.0)), a.class_names)
    assert table["test flagged (global)"].tolist() == [r["query_flagged"] for r in global_rows[:5]]
    assert metrics(at)["Test flagged, class thresholds"] == \
        f"{sum(r['query_flagged'] for r in rows):,} of {len(a.query_index):,}"


# ------------------------------------------------------------------ figure builders (pure)
def test_verdict_says_flagged_or_not_and_why():
    base = {"k_score": 3, "mean_distance": 0.5, "score": 0.1, "threshold": 0.2, "threshold_distance": 0.4,
            "is_fit": False}
    assert verdict({**base, "flagged": True}) == (
        "Flagged: its mean distance to its 3 nearest train (fit) images, 0.5000, is larger than the threshold's "
        "distance 0.4000 (score 0.1000 < threshold 0.2000).")
    calm = verdict({**base, "flagged": False, "is_fit": True, "mean_distance": 0.3, "score": 0.3})
    assert calm.startswith("Not flagged: its mean distance to its 3 nearest train (fit) images (itself excluded), "
                           "0.3000, is within")


def test_figure_builders_carry_positions_and_thresholds():
    from ood_dashboard.explain_views import (class_histograms_figure, embedding_map_figure, neighbour_distance_figure,
                                  score_scatter_figure)

    fig = neighbour_distance_figure([0.1, 0.2, 0.4], 0.15, 0.3, k_score=2)
    assert [s.y0 for s in fig.layout.shapes] == [0.15, 0.3]
    assert list(fig.data[0].marker.color)[2] != list(fig.data[0].marker.color)[0]  # beyond k_score: lighter

    fig = score_scatter_figure([0.1, 0.5, 0.9], [0.2, 0.6, 0.1], 0.3, 0.4, positions=[7, 8, 9],
                               is_ood=[True, False, False], counts={"both": 1, "feature_only": 0,
                                                                    "prediction_only": 1, "neither": 1})
    assert [t.name for t in fig.data] == ["test: in distribution", "test: out of distribution"]
    assert list(fig.data[1].customdata) == [7] and list(fig.data[0].customdata) == [8, 9]
    assert (fig.layout.shapes[0].x0, fig.layout.shapes[1].y0) == (0.3, 0.4)
    assert "Flagged by both: 1" in [a.text for a in fig.layout.annotations]
    with pytest.raises(ValueError, match="feature_scores has 2 values but pred_scores has 1"):
        score_scatter_figure([0.1, 0.2], [0.3], 0.5, 0.5)

    fig = embedding_map_figure([[0, 0], [1, 1], [2, 2]], [0.05, 0.5, 0.9], [4, 5, 6], threshold=0.1)
    assert [(t.name, list(t.customdata)) for t in fig.data] == [("typical", [5, 6]), ("flagged", [4])]
    with pytest.raises(ValueError, match=r"coords must have shape \(n, 2\); got \(3,\)"):
        embedding_map_figure([0, 1, 2], [0.1, 0.2, 0.3], [0, 1, 2], threshold=0.1)

    classes = [{"name": n, "fit_scores": np.array([0.2, 0.6]), "query_scores": np.array([0.1]), "threshold": 0.3}
               for n in "abcd"]
    fig = class_histograms_figure(classes, 0.25, columns=3)
    assert len(fig.data) == 8 and len(fig.layout.shapes) == 8  # two bars and two lines per class
    assert fig.layout.annotations[0].text == "a (2 train, 1 test)"
    with pytest.raises(ValueError, match="classes is empty"):
        class_histograms_figure([], 0.5)
