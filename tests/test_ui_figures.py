"""ui.figures: histogram and ROC figure builders (no browser, no Streamlit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("plotly", reason="plotly is not installed (pip install plotly)")

from ui.figures import (  # noqa: E402
    THRESHOLD_SHAPE_NAME,
    roc_figure,
    score_histogram_figure,
    shared_bin_edges,
)

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
