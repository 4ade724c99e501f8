"""ood_dashboard.figures: histogram and ROC figure builders (no browser, no Streamlit)."""

from __future__ import annotations

import json
import types
from datetime import datetime, timezone

import numpy as np
import pytest

pytest.importorskip("plotly", reason="plotly is not installed (pip install plotly)")

from ood_core import VERDICTS, Mark  # noqa: E402
from ood_dashboard.figures import (  # noqa: E402
    THRESHOLD_SHAPE_NAME,
    roc_figure,
    score_histogram_figure,
    shared_bin_edges,
)
from ood_dashboard.groups import MARK_COLORS, available_groupings, group_colors, group_order, item_groups  # noqa: E402

FIT = [0.0, 0.25, 0.5, 0.75, 1.0]
QUERY = [0.5, 1.0]


def test_histogram_bins_are_shared_and_heights_are_percent_of_each_set():
    fig = score_histogram_figure(FIT, QUERY, 0.3, bins=4)
    fit_bar, query_bar = fig.data
    np.testing.assert_allclose(fit_bar.x, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(query_bar.x, fit_bar.x)
    assert fit_bar.width == query_bar.width == 0.25
    # numpy's last bin is closed: 0.75 and 1.0 share it.
    np.testing.assert_allclose(fit_bar.y, [20, 20, 20, 40])
    np.testing.assert_allclose(query_bar.y, [0, 0, 50, 50])
    np.testing.assert_array_equal(np.asarray(query_bar.customdata)[:, 2], [0, 0, 1, 1])
    assert (fit_bar.name, query_bar.name) == ("train (fit) (n=5)", "test (query) (n=2)")
    assert fig.layout.yaxis.title.text == "% of set"


def test_histogram_counts_when_not_normalized():
    fig = score_histogram_figure(FIT, QUERY, 0.3, bins=4, normalize=False)
    np.testing.assert_array_equal(fig.data[0].y, [1, 1, 1, 2])
    assert fig.layout.yaxis.title.text == "count"


def test_threshold_line_is_a_named_full_height_vertical_shape():
    fig = score_histogram_figure(FIT, QUERY, 0.3, percentile=5, bins=4)
    (line,) = fig.layout.shapes
    assert line.name == THRESHOLD_SHAPE_NAME
    assert (line.type, line.xref, line.yref) == ("line", "x", "paper")
    assert (line.x0, line.x1, line.y0, line.y1) == (0.3, 0.3, 0, 1)
    assert line.label.text == "threshold 0.3 (p5)"
    assert line.label.xanchor == "left"  # left half of the range: text to its right
    right = score_histogram_figure(FIT, QUERY, 0.9, bins=4).layout.shapes[0]
    assert (right.label.text, right.label.xanchor) == ("threshold 0.9", "right")
    assert score_histogram_figure(FIT, QUERY, None).layout.shapes == ()


def test_x_range_pads_the_bins_and_stretches_to_an_outside_threshold():
    fig = score_histogram_figure(FIT, QUERY, 0.3, bins=4)
    assert fig.layout.xaxis.range == pytest.approx((-0.02, 1.02))
    assert fig.layout.xaxis.fixedrange and fig.layout.yaxis.fixedrange
    assert fig.layout.xaxis.range == score_histogram_figure(FIT, QUERY, -0.02).layout.xaxis.range
    assert score_histogram_figure(FIT, QUERY, 1.5).layout.xaxis.range == pytest.approx((-0.02, 1.5))


def test_query_none_or_empty_draws_one_histogram():
    assert len(score_histogram_figure(FIT, None, 0.3).data) == 1
    assert len(score_histogram_figure(FIT, [], 0.3).data) == 1


def test_degenerate_range_is_widened():
    np.testing.assert_allclose(shared_bin_edges(np.array([0.5, 0.5]), bins=2), [0.0, 0.5, 1.0])


def test_payload_for_50000_scores_is_bar_data_not_raw_arrays():
    rng = np.random.default_rng(0)
    fig = score_histogram_figure(rng.random(50_000), rng.random(50_000), 0.1, bins=50)
    payload = fig.to_json()
    assert len(payload) < 12_000
    assert json.loads(payload)["layout"]["shapes"][0]["x0"] == 0.1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(fit_scores=[0.1, np.nan, np.inf]), ValueError,
         r"fit_scores has 2 non-finite value\(s\) \(NaN or inf\) out of 3"),
        (dict(fit_scores=[[0.1, 0.2]]), ValueError, r"fit_scores must be 1-D, got an array of shape \(1, 2\)"),
        (dict(fit_scores=[]), ValueError, "fit_scores is empty"),
        (dict(fit_scores=["a"]), TypeError, "fit_scores must be a 1-D array of numbers, got list"),
        (dict(query_scores=[np.nan]), ValueError, r"query_scores has 1 non-finite value\(s\)"),
        (dict(threshold=float("nan")), ValueError, "threshold must be finite, got nan"),
        (dict(threshold="high"), TypeError, "threshold must be a number, got 'high'"),
        (dict(bins=0), ValueError, "bins must be a positive integer, got 0"),
        (dict(labels=("only one",)), ValueError, r"labels must be two names \(fit, query\), got \('only one',\)"),
        (dict(height=50), ValueError, "height must be an integer of at least 100 pixels, got 50"),
    ],
)
def test_histogram_input_errors(kwargs, error, match):
    args = dict(fit_scores=FIT, query_scores=QUERY, threshold=0.3) | kwargs
    with pytest.raises(error, match=match):
        score_histogram_figure(**args)


def test_roc_figure_marks_the_operating_point():
    fig = roc_figure([0, 0.1, 1], [0, 0.6, 1], point=(0.1, 0.6), auroc=0.8)
    chance, curve, point = fig.data
    assert chance.name == "chance" and chance.line.dash == "dash"
    assert curve.name == "ROC (AUROC 0.800)"
    np.testing.assert_allclose(curve.x, [0, 0.1, 1])
    assert (point.x, point.y) == ((0.1,), (0.6,))
    assert [t.name for t in roc_figure([0, 1], [0, 1]).data] == ["chance", "ROC"]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0, 1], [0, 0.5, 1]), {}, "fpr and tpr must have the same length, got 2 and 3"),
        (([0, 1.5], [0, 1]), {}, r"fpr must lie in \[0, 1\], got values from 0.0 to 1.5"),
        (([0, 1], [0, 1]), {"point": (0.1,)}, r"point must be \(fpr, tpr\), got \(0.1,\)"),
    ],
)
def test_roc_input_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        roc_figure(*args, **kwargs)


# ------------------------------------------------------------------ test bars stacked by group
GROUPS = ["out of distribution", "in distribution", "in distribution", "out of distribution"]


def test_query_bars_stack_by_group_on_the_shared_bins_with_the_fit_as_an_outline():
    fig = score_histogram_figure(FIT, [0.1, 0.5, 1.0, 0.9], 0.3, bins=4, query_groups=GROUPS)
    out, inside, fit = fig.data
    # Known truth stacks outliers at the bottom, then the in-distribution items on top of them.
    assert (out.name, inside.name) == ("test (query) · out of distribution (n=2)",
                                       "test (query) · in distribution (n=2)")
    np.testing.assert_allclose(out.x, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(out.y, [25, 0, 0, 25])  # percent of all 4 test items
    np.testing.assert_allclose(np.asarray(inside.base, float), out.y)
    np.testing.assert_allclose(inside.y, [0, 0, 25, 25])
    np.testing.assert_allclose(np.asarray(inside.base, float) + inside.y, [25, 0, 25, 50])  # the ungrouped histogram
    np.testing.assert_array_equal(np.asarray(inside.customdata)[:, 2], [0, 0, 1, 1])
    assert out.marker.color == "#F58518" and inside.marker.color == "#54A24B"
    assert fig.layout.barmode == "overlay"  # stacked by base: the fit outline is not stacked on top
    # The fit set: a closed step line over the same bins.
    assert (fit.type, fit.name, fit.line.shape) == ("scatter", "train (fit) (n=5)", "hv")
    np.testing.assert_allclose(fit.x, [0, 0, 0.25, 0.5, 0.75, 1, 1])
    np.testing.assert_allclose(fit.y, [0, 20, 20, 20, 40, 40, 0])
    assert [t.legendrank for t in fig.data] == [2, 3, 1]  # legend: train first, then the groups
    (line,) = fig.layout.shapes
    assert (line.name, line.x0) == (THRESHOLD_SHAPE_NAME, 0.3)


def test_marks_stack_in_verdict_order_and_counts_when_not_normalized():
    marks = ["not reviewed", "fine", "outlier", "not reviewed", "unsure"]
    fig = score_histogram_figure(FIT, [0.1, 0.2, 0.3, 0.9, 0.95], 0.3, bins=2, normalize=False,
                                 query_groups=marks)
    assert [t.name for t in fig.data[:-1]] == ["test (query) · outlier (n=1)", "test (query) · fine (n=1)",
                                               "test (query) · unsure (n=1)", "test (query) · not reviewed (n=2)"]
    np.testing.assert_array_equal([list(t.y) for t in fig.data[:-1]], [[1, 0], [1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(np.asarray(fig.data[3].base, float), [2, 1])
    assert fig.layout.yaxis.title.text == "count"


def test_groups_of_one_set_stack_that_set_and_unknown_groups_get_palette_colours():
    # Fit and query the same items (query_scores None): the groups are the fit items'.
    fig = score_histogram_figure(FIT, None, 0.3, bins=2, query_groups=["b", "a", "b", "a", "b"],
                                 group_colors={"b": "#000000"})
    assert [(t.type, t.name, t.marker.color) for t in fig.data] == [
        ("bar", "train (fit) · b (n=3)", "#000000"), ("bar", "train (fit) · a (n=2)", "#4C78A8")]
    np.testing.assert_allclose(fig.data[0].y, [20, 40])  # 0 | 0.5, 1.0


def test_stacked_payload_is_counts_per_group_not_points():
    rng = np.random.default_rng(0)
    groups = rng.choice(["outlier", "fine", "unsure", "not reviewed"], 50_000).tolist()
    payload = score_histogram_figure(rng.random(50_000), rng.random(50_000), 0.1, query_groups=groups).to_json()
    assert len(payload) < 25_000


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(query_groups=["a"]), ValueError, "query_groups has 1 names but there are 2 scores to group"),
        (dict(query_groups=["a", 1]), TypeError, r"query_groups must hold group names \(str\); got 1 \(int\)"),
        (dict(query_groups="ab"), TypeError, "query_groups must be a sequence of group names"),
        (dict(query_scores=None, query_groups=["a", "b"]), ValueError,
         "query_groups has 2 names but there are 5 scores"),
    ],
)
def test_group_errors(kwargs, error, match):
    args = dict(fit_scores=FIT, query_scores=QUERY, threshold=0.3) | kwargs
    with pytest.raises(error, match=match):
        score_histogram_figure(**args)


# ------------------------------------------------------------------ ood_dashboard.groups
def _analysis(is_ood=(False, True, True), same_set=False):
    """What ood_dashboard.groups reads of an Analysis: 5 items, fit 0-1, query 2-4 (or all of them)."""
    return types.SimpleNamespace(
        ids=["a", "b", "c", "d", "e"], labels=np.array([0, 1, -1, 1, 0]), class_names=["cat", "dog"],
        fit_index=np.arange(5) if same_set else np.array([0, 1]),
        query_index=np.arange(5) if same_set else np.array([2, 3, 4]),
        is_ood=None if is_ood is None else np.array(is_ood), same_set=same_set)


def test_item_groups_name_each_item_and_colour_each_group():
    a = _analysis()
    truth = item_groups(a, [4, 0, 2, 3], "truth")
    assert truth.names == ["out of distribution", "train (fit)", "in distribution", "out of distribution"]
    assert list(truth.colors) == ["out of distribution", "in distribution", "train (fit)"]
    assert truth.background == ("train (fit)",)
    now = datetime.now(timezone.utc)
    marks = {"c": Mark("outlier", "", now), "e": Mark("unsure", "x", now)}
    by_mark = item_groups(a, a.query_index, "mark", marks)
    assert by_mark.names == ["outlier", "not reviewed", "unsure"]
    assert by_mark.colors == {"outlier": MARK_COLORS["outlier"], "unsure": MARK_COLORS["unsure"],
                              "not reviewed": MARK_COLORS["not reviewed"]}
    assert set(MARK_COLORS) == {*VERDICTS, "not reviewed"}
    by_class = item_groups(a, [0, 1, 2, 3], "class")
    assert by_class.names == ["cat", "dog", "unknown class", "dog"]
    assert list(by_class.colors) == ["cat", "dog", "unknown class"] and len(set(by_class.colors.values())) == 3
    assert item_groups(a, [0, 4], "split").names == ["train (fit)", "test (query)"]
    with pytest.raises(ValueError, match="by must be one of"):
        item_groups(a, [0], "colour")
    with pytest.raises(ValueError, match="this data has no known truth"):
        item_groups(_analysis(is_ood=None), [0], "truth")


def test_available_groupings_offer_only_what_the_data_has():
    assert list(available_groupings(_analysis())) == ["truth", "mark", "class", "split"]
    plain = _analysis(is_ood=None, same_set=True)
    plain.labels = np.full(5, -1)
    assert list(available_groupings(plain, with_marks=False)) == []


def test_group_colours_follow_the_given_order_then_a_palette_without_repeats():
    assert group_order(["z", "b", "a", "b"], {"b": "#111111"}) == ["b", "a", "z"]
    colors = group_colors([f"g{i}" for i in range(31)])
    assert len(set(colors.values())) == 31
    assert group_colors(["x", "y"], {"y": "#4C78A8"}) == {"x": "#F58518", "y": "#4C78A8"}  # no clash
