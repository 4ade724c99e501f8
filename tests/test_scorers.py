"""FeatureScorer and PredProbScorer against hand-computed cases, the spec's edge cases and errors."""
import math

import numpy as np
import pytest

import ood_core._neighbors as neighbors
from ood_core import FeatureScorer, PredProbScorer


# ---------------------------------------------------------------- FeatureScorer: exact numbers
def test_euclidean_hand_computed_fit_and_score():
    X = np.array([[0.0], [1.0], [3.0]])
    fs = FeatureScorer(k=1).fit(X)
    assert fs.metric_ == "euclidean" and fs.k_ == 1
    # nearest other rows: 0->1 (1), 1->0 (1), 3->1 (2); median scale 1
    np.testing.assert_allclose(fs.fit_distances_, [1, 1, 2])
    assert fs.scale_ == 1.0
    np.testing.assert_allclose(fs.fit_scores_, [math.exp(-1), math.exp(-1), math.exp(-2)], atol=1e-15)
    # a query on a fit row is at distance 0 (nothing excluded) and scores exactly 1
    np.testing.assert_allclose(fs.score([[2.0], [0.0], [7.0]]), [math.exp(-1), 1.0, math.exp(-4)])


def test_cosine_hand_computed_with_zero_row_and_temperature():
    e = np.eye(5)
    X = np.stack([e[0], e[1], (e[0] + e[1]) * 3.0, e[2], np.zeros(5)])
    fs = FeatureScorer(k=1, t=2.0).fit(X)
    assert fs.metric_ == "cosine"
    c = 1 - 1 / math.sqrt(2)  # distance between e0 and the (scaled) diagonal
    # e2 is orthogonal to all (distance 1); the zero row is at distance 1 from everything
    np.testing.assert_allclose(fs.fit_distances_, [c, c, c, 1, 1], atol=1e-15)
    assert fs.scale_ == pytest.approx(c)
    np.testing.assert_allclose(fs.fit_scores_, np.exp(-2 * np.array([c, c, c, 1, 1]) / c), atol=1e-15)


def test_default_k_is_min_10_and_n_minus_1():
    rng = np.random.default_rng(0)
    assert FeatureScorer().fit(rng.normal(size=(5, 8))).k_ == 4
    assert FeatureScorer().fit(rng.normal(size=(50, 8))).k_ == 10


def test_exact_duplicate_is_a_neighbour_at_distance_zero():
    X = np.array([[1.0, 2, 3, 4], [1.0, 2, 3, 4], [4.0, 3, 2, 1], [0.5, 0.1, 0.2, 0.9]])
    fs = FeatureScorer(k=1).fit(X)
    dist, idx = fs.kneighbors()
    assert idx[0, 0] == 1 and idx[1, 0] == 0  # each duplicate finds the other, never itself
    assert dist[0, 0] == pytest.approx(0, abs=1e-12)
    assert fs.fit_scores_[0] == 1.0 and fs.fit_scores_[1] == 1.0


def test_scale_floor_when_most_rows_are_duplicates():
    X = np.repeat(np.eye(6)[:3], 10, axis=0)
    fs = FeatureScorer(k=3).fit(X)
    assert fs.scale_ == 1e-6
    assert np.all(fs.fit_scores_ == 1.0)
    assert fs.score(np.eye(6)[[5]])[0] == pytest.approx(0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [2, 40])
def test_blocked_search_matches_brute_force(dtype, d):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(203, d)).astype(dtype)
    Q = rng.normal(size=(57, d)).astype(dtype)
    ref = FeatureScorer(k=7, block_size=10_000).fit(X)
    brute = _brute_mean_distances(X.astype(np.float64), None, 7, ref.metric_)
    np.testing.assert_allclose(ref.fit_distances_, brute, atol=1e-5 if dtype == np.float32 else 1e-12)
    for bs in (1, 16, 64):
        fs = FeatureScorer(k=7, block_size=bs).fit(X)
        np.testing.assert_allclose(fs.fit_scores_, ref.fit_scores_, atol=1e-6)
        np.testing.assert_allclose(fs.score(Q), ref.score(Q), atol=1e-6)
        d1, i1 = fs.kneighbors(Q)
        d2, i2 = ref.kneighbors(Q)
        np.testing.assert_array_equal(i1, i2)


def _brute_mean_distances(X, Q, k, metric):
    A = X if Q is None else Q
    if metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        An = A / np.linalg.norm(A, axis=1, keepdims=True)
        D = 1 - An @ Xn.T
    else:
        D = np.linalg.norm(A[:, None, :] - X[None, :, :], axis=2)
    if Q is None:
        np.fill_diagonal(D, np.inf)
    return np.sort(D, axis=1)[:, :k].mean(axis=1)


def test_search_never_allocates_n_by_n(monkeypatch):
    """The fit set is searched in blocks of at most block_size x block_size similarities."""
    shapes = []
    real = neighbors._closeness

    def spy(A, B, metric):
        shapes.append((A.shape[0], B.shape[0]))
        return real(A, B, metric)

    monkeypatch.setattr(neighbors, "_closeness", spy)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(1000, 32)).astype(np.float32)
    fs = FeatureScorer(k=10, block_size=128).fit(X)
    fs.score(X[:300])
    assert max(a * b for a, b in shapes) <= 128 * 128
    # symmetric fit: 8 row blocks -> 8*9/2 = 36 blocks for the fit (not 64), 3*8 for the query
    assert len(shapes) == 36 + 24


def test_kneighbors_of_fit_set_and_queries():
    X = np.array([[0.0], [1.0], [3.0], [10.0]])
    fs = FeatureScorer(k=2).fit(X)
    dist, idx = fs.kneighbors()
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2], [1, 0], [2, 1]])
    np.testing.assert_allclose(dist, [[1, 3], [1, 2], [2, 3], [7, 9]])
    dist, idx = fs.kneighbors([[2.0]], k=3)
    np.testing.assert_array_equal(idx, [[1, 2, 0]])  # 1 and 3 tie at distance 1: lower index first
    np.testing.assert_allclose(dist, [[1, 1, 2]])
    d3, i3 = fs.kneighbors(k=3)  # more than fitted: searched again, self still excluded
    assert not np.any(i3 == np.arange(4)[:, None])


def test_score_to_distance_inverts_the_transform():
    rng = np.random.default_rng(3)
    fs = FeatureScorer(k=3, t=1.5).fit(rng.normal(size=(40, 6)))
    d = fs.score_to_distance(0.3)
    assert math.exp(-1.5 * d / fs.scale_) == pytest.approx(0.3)


# ---------------------------------------------------------------- FeatureScorer: errors
@pytest.mark.parametrize(
    "kwargs, X, match",
    [
        ({"k": 3}, np.zeros((3, 4)), r"k=3 must be smaller than the number of fit rows \(3\)"),
        ({"k": 0}, np.zeros((5, 4)), "k must be a positive integer"),
        ({"t": 0}, np.zeros((5, 4)), "t must be a positive number"),
        ({"metric": "manhattan"}, np.zeros((5, 4)), "metric must be 'auto', 'cosine' or 'euclidean'"),
        ({}, np.zeros(5), "X must be 2-D"),
        ({}, np.zeros((0, 4)), "X needs at least 1 row"),
        ({}, np.zeros((1, 4)), "at least 2 rows"),
        ({}, np.array([[1.0, np.nan], [1, 2], [3, 4]]), "NaN or infinite value.*row 0, column 1"),
        ({}, np.array([[1.0, np.inf], [1, 2], [3, 4]]), "NaN or infinite"),
    ],
)
def test_feature_scorer_rejects_bad_input(kwargs, X, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FeatureScorer(**kwargs).fit(X)


def test_feature_scorer_requires_fit_and_matching_dimension():
    with pytest.raises(RuntimeError, match="not fitted yet: call fit first"):
        FeatureScorer().score(np.zeros((2, 4)))
    fs = FeatureScorer().fit(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(ValueError, match="X has 5 features but this FeatureScorer was fitted on 4"):
        fs.score(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="k must be an integer in 1..9"):
        fs.kneighbors(k=10)


# ---------------------------------------------------------------- PredProbScorer
P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
Y = np.array([0, 1, 0])


def test_confident_thresholds_and_least_confidence_by_hand():
    ps = PredProbScorer(method="least_confidence").fit(P, Y)
    np.testing.assert_allclose(ps.thresholds_, [0.75, 0.8])
    # q = (P - [0.75, 0.8] + 0.8) / row sum (1.05 for every row)
    np.testing.assert_allclose(ps.fit_scores_, [0.95 / 1.05, 0.8 / 1.05, 0.65 / 1.05])
    np.testing.assert_allclose(ps.score([[0.5, 0.5]]), [0.55 / 1.05])


def test_entropy_by_hand_and_unadjusted():
    ps = PredProbScorer().fit(P, Y)
    q = np.array([0.95, 0.1]) / 1.05
    h = -(q * np.log(q)).sum()
    assert ps.fit_scores_[0] == pytest.approx(1 - h / math.log(2), abs=1e-15)
    raw = PredProbScorer(adjust=False).fit(P)  # no labels needed
    assert raw.thresholds_ is None
    # one-hot row: entropy 0 (0 log 0 = 0), score 1; uniform row: score 0
    np.testing.assert_allclose(raw.score([[1.0, 0.0], [0.5, 0.5]]), [1.0, 0.0], atol=1e-15)


def test_missing_class_gets_threshold_2_with_a_warning():
    P3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    with pytest.warns(UserWarning, match=r"class\(es\) \[2\]"):
        ps = PredProbScorer().fit(P3, [0, 1, 0])
    np.testing.assert_allclose(ps.thresholds_, [0.65, 0.8, 2.0])


@pytest.mark.parametrize(
    "pp, labels, match",
    [
        ([[0.5, 0.6], [0.5, 0.5]], [0, 1], r"rows must sum to 1.*first row 0 sums to 1.1"),
        ([[1.5, -0.5], [0.5, 0.5]], [0, 1], r"entries must lie in \[0, 1\]"),
        ([[1.0], [1.0]], [0, 0], "at least 2 class columns"),
        (P, [0, 2, 0], r"labels must lie in 0..1"),
        (P, [0, 1], "pred_probs has 3 rows but labels has 2"),
        (P, [0.5, 1, 0], "labels must be integers"),
        (P, [-1, 1, 0], "labels must be class indices >= 0"),
        (P, None, "labels are required when adjust=True"),
        (np.array([[np.nan, 1.0], [0.5, 0.5]]), [0, 1], "NaN or infinite"),
    ],
)
def test_pred_prob_scorer_rejects_bad_input(pp, labels, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PredProbScorer().fit(pp, labels)


def test_pred_prob_scorer_params_fit_and_columns():
    with pytest.raises(ValueError, match="method must be one of"):
        PredProbScorer(method="margin").fit(P, Y)
    with pytest.raises(RuntimeError, match="call fit first"):
        PredProbScorer().score(P)
    ps = PredProbScorer().fit(P, Y)
    with pytest.raises(ValueError, match="pred_probs has 3 class columns but .* fitted on 2"):
        ps.score([[0.2, 0.3, 0.5]])
