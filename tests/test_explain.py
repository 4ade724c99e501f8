"""Tests of ood_core.explain: hand-computed cases, a planted-outlier check, every error message."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import ood_core.explain as E
from ood_core.scorers import FeatureScorer
from ood_core.thresholds import flag_metrics, ood_metrics, percentile_threshold


# ------------------------------------------------------------------ neighbours
@pytest.fixture
def line_scorer():
    # 1-D (Euclidean) fit set 0, 1, 2, 10 with k=2. Mean distances: 1.5, 1.0, 1.5, 8.5; scale 1.5.
    return FeatureScorer(k=2).fit(np.array([[0.0], [1.0], [2.0], [10.0]]))


def test_neighbours_of_query_row(line_scorer):
    out = E.explain_neighbours(line_scorer, np.array([4.0]), threshold=float(np.exp(-1)))
    assert out["indices"].tolist() == [2, 1]
    assert out["distances"].tolist() == [2.0, 3.0]
    assert out["mean_distance"] == 2.5
    assert out["score"] == pytest.approx(np.exp(-2.5 / 1.5), abs=1e-12)
    assert out["threshold_distance"] == pytest.approx(1.5, abs=1e-12)
    assert out["flagged"] is True
    assert (out["k"], out["k_score"], out["metric"], out["fit_position"]) == (2, 2, "euclidean", None)


def test_neighbours_more_than_k_keep_the_score_distance(line_scorer):
    out = E.explain_neighbours(line_scorer, [[4.0]], k=3)
    assert out["indices"].tolist() == [2, 1, 0]
    assert out["distances"].tolist() == [2.0, 3.0, 4.0]
    assert out["mean_distance"] == 2.5  # the score's d uses k_=2
    assert out["threshold"] is None and out["threshold_distance"] is None and out["flagged"] is None


def test_neighbours_of_fit_row_exclude_itself(line_scorer):
    out = E.explain_neighbours(line_scorer, fit_position=3, threshold=float(np.exp(-1)))
    assert out["indices"].tolist() == [2, 1]
    assert out["distances"].tolist() == [8.0, 9.0]
    assert out["mean_distance"] == 8.5
    assert out["score"] == line_scorer.fit_scores_[3]
    assert out["flagged"] is True
    tie = E.explain_neighbours(line_scorer, fit_position=1, k=2)
    assert tie["indices"].tolist() == [0, 2] and tie["distances"].tolist() == [1.0, 1.0]
    assert E.explain_neighbours(line_scorer, fit_position=1, threshold=float(np.exp(-1)))["flagged"] is False


def test_fit_row_with_k_above_k_score_searches_its_row(line_scorer):
    out = E.explain_neighbours(line_scorer, [0.0], fit_position=0, k=3)
    assert out["indices"].tolist() == [1, 2, 3]
    assert out["distances"].tolist() == [1.0, 2.0, 10.0]
    assert out["mean_distance"] == 1.5


def test_fit_row_among_exact_duplicates_is_dropped_by_index(monkeypatch):
    scorer = FeatureScorer(k=1).fit(np.array([[0.0], [0.0], [0.0], [0.0], [9.0]]))
    out = E.explain_neighbours(scorer, [0.0], fit_position=3, k=2)
    # Which of the tied rows 0, 1, 2 come back is up to the search; row 3 itself never does.
    assert set(out["indices"].tolist()) < {0, 1, 2} and len(out["indices"]) == 2
    assert out["distances"].tolist() == [0.0, 0.0]
    # When the k + 1 rows searched are all other rows (ties), the farthest of them is dropped.
    monkeypatch.setattr(scorer, "kneighbors", lambda X, k: (np.zeros((1, 3)), np.array([[0, 1, 2]])))
    assert E.explain_neighbours(scorer, [0.0], fit_position=3, k=2)["indices"].tolist() == [0, 1]


def test_neighbour_errors(line_scorer):
    with pytest.raises(TypeError, match="scorer must be a FeatureScorer; got str"):
        E.explain_neighbours("knn", [1.0])
    with pytest.raises(RuntimeError, match="not fitted yet: call fit first"):
        E.explain_neighbours(FeatureScorer(), [1.0])
    with pytest.raises(ValueError, match="pass x .* or fit_position .*; got neither"):
        E.explain_neighbours(line_scorer)
    with pytest.raises(ValueError, match=r"fit_position must be an integer in 0\.\.3; got 4"):
        E.explain_neighbours(line_scorer, fit_position=4)
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.3; got 4"):
        E.explain_neighbours(line_scorer, fit_position=0, k=4)
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.4; got 0"):
        E.explain_neighbours(line_scorer, [1.0], k=0)
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\] .*; got 1.5"):
        E.explain_neighbours(line_scorer, [1.0], threshold=1.5)
    with pytest.raises(ValueError, match="threshold must be a finite number; got nan"):
        E.explain_neighbours(line_scorer, [1.0], threshold=float("nan"))
    with pytest.raises(ValueError, match="x has 2 features but the scorer was fitted on 1"):
        E.explain_neighbours(line_scorer, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"x must be one item's features, shape \(D,\) or \(1, D\); got shape \(2, 1\)"):
        E.explain_neighbours(line_scorer, [[1.0], [2.0]])
    with pytest.raises(ValueError, match="k=3 is larger than the scorer's k_=2: for a fit item pass its features as x"):
        E.explain_neighbours(line_scorer, fit_position=0, k=3)


# ------------------------------------------------------------------ projection
def test_pca_of_points_on_a_line():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    coords, drawn = E.project_2d(X)
    assert coords.dtype == np.float32 and coords.shape == (4, 2)
    assert drawn.tolist() == [0, 1, 2, 3]
    # Centred at (2, 2), projected on (1, 1)/sqrt(2); the sign puts the farthest point (5, 5) positive.
    np.testing.assert_allclose(coords[:, 0], np.array([-2, -1, 0, 3]) * np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(coords[:, 1], 0, atol=1e-6)


def test_pca_matches_a_full_svd_up_to_the_fixed_sign():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(3).normal(size=(300, 20)) * np.linspace(1, 3, 20)
    coords, _ = E.project_2d(X)  # more rows than features: the covariance route
    ref = PCA(n_components=2, svd_solver="full").fit_transform(X)
    ref *= np.sign(ref[np.abs(ref).argmax(axis=0), [0, 1]])
    np.testing.assert_allclose(coords, ref, atol=1e-4)


def test_pca_of_one_feature_pads_a_zero_axis():
    coords, _ = E.project_2d(np.array([[1.0], [2.0], [6.0]]))
    np.testing.assert_allclose(coords, [[-2, 0], [-1, 0], [3, 0]], atol=1e-6)


def test_pca_of_identical_rows_is_the_origin():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert E.project_2d(np.ones((3, 4)))[0].tolist() == [[0.0, 0.0]] * 3
        assert E.project_2d(np.ones((1, 4)))[0].tolist() == [[0.0, 0.0]]


def test_projection_subsample_is_seeded_and_deterministic():
    X = np.random.default_rng(1).normal(size=(50, 6))
    calls = []
    coords, drawn = E.project_2d(X, max_points=10, random_state=3, progress=lambda *a: calls.append(a))
    assert calls == [("pca", 0, 1), ("pca", 1, 1)]
    assert drawn.tolist() == np.sort(np.random.default_rng(3).choice(50, 10, replace=False)).tolist()
    np.testing.assert_array_equal(coords, E.project_2d(X[drawn])[0])
    again, drawn_again = E.project_2d(X, max_points=10, random_state=3)
    np.testing.assert_array_equal(coords, again)
    assert drawn_again.tolist() == drawn.tolist()
    assert E.project_2d(X, max_points=10, random_state=4)[1].tolist() != drawn.tolist()
    assert E.project_2d(X, max_points=50)[1].tolist() == list(range(50))


def test_projection_normalize_uses_directions_only():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])
    coords, _ = E.project_2d(X, normalize=True)
    np.testing.assert_allclose(coords[0], coords[2], atol=1e-6)
    np.testing.assert_allclose(coords[1], coords[3], atol=1e-6)


def test_tsne_separates_two_blobs_deterministically():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (15, 5)), rng.normal(20, 1, (15, 5))])
    coords, drawn = E.project_2d(X, method="tsne")
    assert coords.shape == (30, 2) and coords.dtype == np.float32 and len(drawn) == 30
    np.testing.assert_array_equal(coords, E.project_2d(X, method="tsne")[0])
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    assert np.all((nearest < 15) == (np.arange(30) < 15))


def test_tsne_reports_each_iteration_without_changing_the_map(monkeypatch):
    import threading

    from ood_core.explain import projection

    monkeypatch.setattr(projection, "_REPORT_EVERY_S", 0.0)  # report every iteration, not 4 a second
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (15, 5)), rng.normal(20, 1, (15, 5))])
    calls = []

    def progress(*args):
        calls.append(args)
        if args[1] == 1:  # meanwhile, another thread's t-SNE: its iterations must not count here
            other = threading.Thread(target=E.project_2d, args=(X,), kwargs={"method": "tsne"})
            other.start()
            other.join()

    coords, _ = E.project_2d(X, method="tsne", progress=progress)
    assert calls[0] == ("tsne", 0, 1000) and calls[-1] == ("tsne", 1000, 1000)
    iterations = [done for name, done, total in calls[1:-1] if name == "tsne" and total == 1000]
    assert len(iterations) == len(calls) - 2 and 250 < len(iterations) <= 1000  # past early exaggeration
    assert iterations == [min(i, 999) for i in range(1, len(iterations) + 1)]  # scikit-learn's own count
    np.testing.assert_array_equal(coords, E.project_2d(X, method="tsne")[0])  # the same map without progress
    assert len(calls) == len(iterations) + 2  # and that run, without progress, reported nothing


def test_projection_progress_without_the_iteration_hook(monkeypatch):
    from ood_core.explain import projection

    monkeypatch.setattr(projection, "_count_tsne_iterations", lambda: False)  # another scikit-learn
    calls = []
    E.project_2d(np.random.default_rng(0).normal(size=(12, 3)), method="tsne", progress=lambda *a: calls.append(a))
    assert calls == [("tsne", 0, 1000), ("tsne", 1000, 1000)]


def test_projection_errors():
    X = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"method must be one of \['pca', 'tsne'\]; got 'umap'"):
        E.project_2d(X, method="umap")
    with pytest.raises(ValueError, match="max_points must be an integer >= 2; got 1"):
        E.project_2d(X, max_points=1)
    with pytest.raises(ValueError, match="random_state must be an integer >= 0; got -1"):
        E.project_2d(X, random_state=-1)
    with pytest.raises(ValueError, match="features needs at least 5 rows for method='tsne'; got 4"):
        E.project_2d(X[:4], method="tsne")
    with pytest.raises(ValueError, match="features must be 2-D"):
        E.project_2d(np.zeros(10))


# ------------------------------------------------------------------ quadrants
def test_quadrants_by_hand():
    f = [0.1, 0.2, 0.8, 0.9, 0.5]
    p = [0.1, 0.9, 0.2, 0.8, 0.5]
    q = E.quadrants(f, p, 0.5, 0.5)  # item 4 sits on both thresholds: not flagged (strict)
    assert {name: q["indices"][name].tolist() for name in E.QUADRANTS} == {
        "both": [0], "feature_only": [1], "prediction_only": [2], "neither": [3, 4]}
    assert q["counts"] == {"both": 1, "feature_only": 1, "prediction_only": 1, "neither": 2}
    assert sum(q["counts"].values()) == q["n"] == 5
    assert q["masks"]["neither"].tolist() == [False, False, False, True, True]
    # Ranks (1, 2, 4, 5, 3) and (1, 5, 2, 4, 3): sum d^2 = 14, rho = 1 - 6 * 14 / (5 * 24) = 0.3.
    assert q["spearman"] == pytest.approx(0.3, abs=1e-12)


def test_quadrants_spearman_nan_for_constant_scores():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = E.quadrants([0.5, 0.5, 0.5], [0.1, 0.2, 0.3], 0.6, 0.15)
    assert np.isnan(q["spearman"])
    assert q["counts"] == {"both": 1, "feature_only": 2, "prediction_only": 0, "neither": 0}


def test_quadrant_errors():
    with pytest.raises(ValueError, match="feature_scores has 2 rows but pred_scores has 3"):
        E.quadrants([0.1, 0.2], [0.1, 0.2, 0.3], 0.5, 0.5)
    with pytest.raises(ValueError, match="pred_threshold must be a finite number; got None"):
        E.quadrants([0.1], [0.1], 0.5, None)
    with pytest.raises(ValueError, match="feature_scores must be 1-D"):
        E.quadrants([[0.1]], [0.1], 0.5, 0.5)


# ------------------------------------------------------------------ rank average
FIT_A = [0.1, 0.5, 0.3, 0.3]
FIT_B = [0.9, 0.2, 0.4, 0.6]


def test_rank_average_by_hand():
    # Mid-ranks (1, 4, 2.5, 2.5) and (4, 1, 2, 3); u = (r - 0.5) / 4, then the mean.
    np.testing.assert_allclose(E.rank_average(FIT_A, FIT_B), [0.5, 0.5, 0.4375, 0.5625], atol=1e-12)
    np.testing.assert_allclose(E.rank_average(FIT_A), [0.125, 0.875, 0.5, 0.5], atol=1e-12)


def test_rank_average_fit_query_by_hand():
    fit, query = E.rank_average_fit_query([FIT_A, FIT_B], [[0.05, 0.3, 1.0], [0.4, 0.95, 0.6]])
    np.testing.assert_allclose(fit, E.rank_average(FIT_A, FIT_B), atol=1e-12)
    # A: 0.05 -> 0/4, 0.3 -> (1 + 2/2)/4, 1.0 -> 4/4.  B: 0.4 -> (1 + 1/2)/4, 0.95 -> 4/4, 0.6 -> (2 + 1/2)/4.
    np.testing.assert_allclose(query, [0.1875, 0.75, 0.8125], atol=1e-12)


def test_rank_average_errors():
    with pytest.raises(ValueError, match="score_arrays needs at least one score array; got none"):
        E.rank_average()
    with pytest.raises(ValueError, match=r"score_arrays\[1\] has 3 values but score_arrays\[0\] has 4"):
        E.rank_average(FIT_A, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="fit_scores_list has 2 score arrays but query_scores_list has 1"):
        E.rank_average_fit_query([FIT_A, FIT_B], [[0.1]])
    with pytest.raises(ValueError, match=r"query_scores_list\[0\] contains NaN"):
        E.rank_average_fit_query([FIT_A], [[float("nan")]])


def test_compare_auroc_by_hand_and_on_planted_outliers():
    # -score: out items -0.1 and -0.85 against in items -0.9, -0.8: 3 of the 4 pairs ordered.
    assert E.compare_auroc([False, False, True, True], s=[0.9, 0.8, 0.1, 0.85]) == {"s": 0.75}
    rng = np.random.default_rng(0)
    fit = rng.normal(size=(200, 8))
    query = np.vstack([rng.normal(size=(50, 8)), rng.normal(size=(50, 8)) + 4.0])
    is_ood = np.arange(100) >= 50
    scorer = FeatureScorer(metric="euclidean").fit(fit)  # cosine would not see a shift of the mean
    feature = scorer.score(query)
    noise_fit, noise_query = rng.uniform(size=200), rng.uniform(size=100)
    _, combined = E.rank_average_fit_query([scorer.fit_scores_, noise_fit], [feature, noise_query])
    auroc = E.compare_auroc(is_ood, feature=feature, noise=noise_query, rank_average=combined)
    assert list(auroc) == ["feature", "noise", "rank_average"]
    assert auroc["feature"] == 1.0
    assert 0.35 < auroc["noise"] < 0.65
    assert auroc["noise"] < auroc["rank_average"] < auroc["feature"]
    assert auroc["noise"] == ood_metrics(noise_query, is_ood)["auroc"]
    # Two independent, equally weak detectors: their rank average beats each of them.
    fits = [rng.normal(size=400) for _ in range(2)]
    queries = [rng.normal(size=100) - 1.0 * is_ood for _ in range(2)]
    _, combined = E.rank_average_fit_query(fits, queries)
    weak = E.compare_auroc(is_ood, a=queries[0], b=queries[1], both=combined)
    assert weak["both"] > max(weak["a"], weak["b"]) + 0.02


def test_compare_auroc_errors():
    with pytest.raises(ValueError, match="compare_auroc needs at least one named score array"):
        E.compare_auroc([True, False])
    with pytest.raises(ValueError, match="feature has 3 rows but is_ood has 2"):
        E.compare_auroc([True, False], feature=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="is_ood must hold both"):
        E.compare_auroc([True, True], feature=[0.1, 0.2])


# ------------------------------------------------------------------ per class
FIT_SCORES = [0.1, 0.2, 0.3, 0.4, 0.9, 0.5, 0.7]
FIT_LABELS = [0, 0, 0, 0, 1, 1, 2]


def test_per_class_thresholds_by_hand():
    with pytest.warns(UserWarning, match=r"class 2 \(1 row\): fewer than min_rows=2 fit rows, so the global threshold 0.25"):
        thr = E.per_class_thresholds(FIT_SCORES, FIT_LABELS, 25, n_classes=4)
    # Class 0: 25th percentile of .1 .2 .3 .4 = .175; class 1: of .5 .9 = .6;
    # classes 2 (1 row) and 3 (none) take the global 25th percentile of all 7 scores, .25.
    np.testing.assert_allclose(thr, [0.175, 0.6, 0.25, 0.25], atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(E.per_class_thresholds(FIT_SCORES[:6], FIT_LABELS[:6], 50), [0.25, 0.7])


def test_flag_and_count_per_class_by_hand():
    thr = np.array([0.175, 0.6, 0.25, 0.25])
    q_scores, q_classes = [0.15, 0.2, 0.55, 0.65, 0.2, 0.3], [0, 0, 1, 1, 2, 3]
    assert E.flag_per_class(q_scores, q_classes, thr).tolist() == [True, False, True, False, True, False]
    rows = E.per_class_counts(FIT_SCORES, FIT_LABELS, q_scores, q_classes, thr, class_names=["a", "b", "c", "d"])
    assert [(r["class"], r["name"], r["fit_rows"], r["fit_flagged"], r["query_rows"], r["query_flagged"])
            for r in rows] == [(0, "a", 4, 1, 2, 1), (1, "b", 2, 1, 2, 1), (2, "c", 1, 0, 1, 1), (3, "d", 0, 0, 1, 0)]
    assert [r["threshold"] for r in rows] == thr.tolist()
    assert E.flag_per_class([0.1], [0], [float("nan")]).tolist() == [False]
    assert E.flag_per_class([], [], thr).tolist() == []


def test_per_class_errors():
    with pytest.raises(ValueError, match="fit_labels has 2 rows but fit_scores has 3"):
        E.per_class_thresholds([0.1, 0.2, 0.3], [0, 1], 5)
    with pytest.raises(ValueError, match=r"percentile must be a number in \[0, 100\]; got 101"):
        E.per_class_thresholds([0.1, 0.2], [0, 1], 101)
    with pytest.raises(ValueError, match=r"fit_labels must lie in 0\.\.1 \(n_classes=2\); found 2"):
        E.per_class_thresholds([0.1, 0.2, 0.3], [0, 1, 2], 5, n_classes=2)
    with pytest.raises(ValueError, match="fit_labels must be class indices >= 0; found -1"):
        E.per_class_thresholds([0.1, 0.2], [0, -1], 5)
    with pytest.raises(ValueError, match="min_rows must be an integer >= 1; got 0"):
        E.per_class_thresholds([0.1, 0.2], [0, 1], 5, min_rows=0)
    with pytest.raises(ValueError, match=r"query_classes must lie in 0\.\.1 .*; found 2"):
        E.flag_per_class([0.1], [2], [0.5, 0.5])
    with pytest.raises(ValueError, match="query_classes has 1 rows but query_scores has 0"):
        E.flag_per_class([], [0], [0.5])
    with pytest.raises(ValueError, match="query_classes has 1 rows but query_scores has 2"):
        E.flag_per_class([0.1, 0.2], [0], [0.5])
    with pytest.raises(ValueError, match=r"class_thresholds must be a non-empty 1-D array .*; got shape \(0,\)"):
        E.flag_per_class([0.1], [0], [])
    with pytest.raises(ValueError, match="class_names has 1 names but class_thresholds has 2 classes"):
        E.per_class_counts([0.1], [0], [0.1], [1], [0.5, 0.5], class_names=["a"])


# ------------------------------------------------------------------ on a real Analysis
@pytest.fixture(scope="module")
def analysis():
    from ood_core import ArraySet, analyze

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, size=(3, 6))
    fit_y = np.repeat([0, 1, 2], 20)
    query_y = np.repeat([0, 1, 2], 10)
    feats = np.vstack([centres[fit_y] + rng.normal(size=(60, 6)),
                       centres[query_y] + rng.normal(size=(30, 6)),
                       rng.normal(0, 1, size=(10, 6)) + 30.0])
    labels = np.concatenate([fit_y, query_y, np.full(10, -1)])
    split = np.array(["train"] * 60 + ["test"] * 40)
    is_ood = np.arange(100) >= 90
    source = ArraySet(features=feats, pred_probs=None, labels=labels, ids=[f"i{i}" for i in range(100)],
                      class_names=["a", "b", "c"], split=split, is_ood=is_ood, description="synthetic",
                      identity="synthetic-explain")
    return analyze(source)


def test_explain_item_on_analysis(analysis):
    a = analysis
    thr = percentile_threshold(a.fit_feature_scores, 10)
    query_pos = int(a.query_index[35])  # a planted outlier
    out = a.explain(query_pos, threshold=thr)
    assert out["is_fit"] is False and out["position"] == query_pos
    assert out["score"] == pytest.approx(a.query_feature_scores[35], abs=1e-12)
    assert out["flagged"] is True and out["mean_distance"] > out["threshold_distance"]
    assert set(out["positions"].tolist()) <= set(a.fit_index.tolist())
    fit_pos = int(a.fit_index[7])
    fit_out = a.explain(fit_pos, k=a.feature_scorer.k_ + 3)
    assert fit_out["is_fit"] is True and fit_out["score"] == a.fit_feature_scores[7]
    assert fit_pos not in fit_out["positions"].tolist() and len(fit_out["positions"]) == a.feature_scorer.k_ + 3
    short = a.explain(fit_pos)
    assert short["positions"].tolist() == fit_out["positions"][: a.feature_scorer.k_].tolist()
    with pytest.raises(ValueError, match=r"position must be an integer in 0\.\.99; got 100"):
        a.explain(100)


def test_compare_and_per_class_on_analysis(analysis):
    a = analysis
    f_thr = percentile_threshold(a.fit_feature_scores, 10)
    p_thr = percentile_threshold(a.fit_pred_scores, 10)
    q = E.quadrants(a.query_feature_scores, a.query_pred_scores, f_thr, p_thr)
    assert sum(q["counts"].values()) == len(a.query_index) == 40
    _, combined = E.rank_average_fit_query([a.fit_feature_scores, a.fit_pred_scores],
                                         [a.query_feature_scores, a.query_pred_scores])
    auroc = E.compare_auroc(a.is_ood, feature=a.query_feature_scores, prediction=a.query_pred_scores,
                          rank_average=combined)
    assert auroc["feature"] == 1.0

    pred = a.predicted_classes()
    assert pred.shape == (40,)
    np.testing.assert_array_equal(pred[:30], a.labels[a.query_index[:30]])  # well-separated classes
    np.testing.assert_array_equal(a.predicted_classes("fit"), a.labels[a.fit_index])
    thr = E.per_class_thresholds(a.fit_feature_scores, a.labels[a.fit_index], 10, n_classes=3)
    flags = E.flag_per_class(a.query_feature_scores, pred, thr)
    rows = E.per_class_counts(a.fit_feature_scores, a.labels[a.fit_index], a.query_feature_scores, pred, thr,
                            class_names=a.class_names)
    assert sum(r["query_flagged"] for r in rows) == int(flags.sum())
    assert [r["fit_rows"] for r in rows] == [20, 20, 20]
    assert [r["fit_flagged"] for r in rows] == [2, 2, 2]  # 10th percentile of 20: 2 strictly below
    assert flags[30:].all()


def test_predicted_classes_without_pred_probs(analysis):
    import dataclasses

    bare = dataclasses.replace(analysis, query_pred_probs=None)
    assert bare.predicted_classes() is None
    with pytest.raises(ValueError, match="which must be 'query' or 'fit'; got 'test'"):
        analysis.predicted_classes("test")


def test_item_scores_puts_each_score_at_its_position(analysis):
    a = analysis
    out = a.item_scores("feature")
    assert out.shape == (100,) and out.dtype == np.float64
    np.testing.assert_array_equal(out[a.fit_index], a.fit_feature_scores)
    np.testing.assert_array_equal(out[a.query_index], a.query_feature_scores)
    np.testing.assert_array_equal(a.item_scores("prediction")[a.query_index], a.query_pred_scores)
    import dataclasses

    partial = dataclasses.replace(a, query_index=a.query_index[:5],
                                  query_feature_scores=a.query_feature_scores[:5])
    assert np.isnan(partial.item_scores()[a.query_index[5:]]).all()
    with pytest.raises(ValueError, match="scorer must be one of"):
        a.item_scores("knn")


def test_flag_metrics_counts_by_hand():
    flagged = np.array([True, True, False, False, True])
    truth = np.array([True, False, True, False, False])
    out = flag_metrics(flagged, truth)
    counts = {k: out[k] for k in ("flagged", "tp", "fp", "tn", "fn")}
    assert counts == {"flagged": 3, "tp": 1, "fp": 2, "tn": 1, "fn": 1}
    assert out["tpr"] == 0.5 and out["fpr"] == 2 / 3 and out["precision"] == 1 / 3
    none = flag_metrics(np.zeros(2, bool), np.array([True, False]))
    assert none["flagged"] == 0 and np.isnan(none["precision"]) and none["tpr"] == 0.0
    # Agrees with ood_metrics when the flags come from one threshold.
    scores = np.array([0.1, 0.5, 0.2, 0.9, 0.3])
    ref = ood_metrics(scores, truth, threshold=0.35)
    mine = flag_metrics(scores < 0.35, truth)
    assert {k: mine[k] for k in ("tp", "fp", "tn", "fn", "tpr", "fpr", "precision")} == \
        {k: ref[k] for k in ("tp", "fp", "tn", "fn", "tpr", "fpr", "precision")}
    with pytest.raises(ValueError, match=r"flagged must be a 1-D boolean array; got dtype int64, shape \(2,\)"):
        flag_metrics(np.array([1, 0]), np.array([True, False]))
    with pytest.raises(ValueError, match="is_ood must be a 1-D boolean array"):
        flag_metrics(np.array([True]), np.array([1]))
    with pytest.raises(ValueError, match="flagged has 1 rows but is_ood has 2"):
        flag_metrics(np.array([True]), np.array([True, False]))
