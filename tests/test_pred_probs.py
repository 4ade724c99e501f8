"""Out-of-sample pred_probs: held-out by stratified K-fold, C chosen by cross-validation."""
import numpy as np
import pytest

from ood_core import PredProbScorer, out_of_sample_pred_probs, ood_metrics


def _blobs(n_per_class, n_classes, d, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(n_classes, d))
    X = np.concatenate([c + rng.normal(scale=spread, size=(n_per_class, d)) for c in centers])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return X, y, centers


def test_pred_probs_are_out_of_sample_and_detect_planted_outliers():
    X, y, centers = _blobs(60, 3, 10, seed=0)
    P, clf = out_of_sample_pred_probs(X, y, Cs=(0.01, 0.1, 1.0))
    assert P.shape == (180, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1, atol=1e-9)
    assert clf.C in (0.01, 0.1, 1.0) and set(clf.cv_scores_) == {0.01, 0.1, 1.0}
    # out of sample: differs from what the refitted classifier says on its own training rows
    assert not np.allclose(P, clf.predict_proba(X))
    # planted outliers: points halfway between two class centres are ambiguous
    rng = np.random.default_rng(1)
    mid = (centers[0] + centers[1]) / 2 + rng.normal(scale=0.3, size=(30, 10))
    inl = centers[2] + rng.normal(size=(30, 10))
    Q = np.concatenate([mid, inl])
    scorer = PredProbScorer().fit(P, y)
    m = ood_metrics(scorer.score(clf.predict_proba(Q)), np.repeat([True, False], 30))
    assert m["auroc"] > 0.9


def test_progress_is_reported():
    X, y, _ = _blobs(20, 2, 4, seed=2)
    seen = []
    out_of_sample_pred_probs(X, y, n_splits=3, Cs=(1.0, 0.1), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 7) for i in range(0, 8)]


@pytest.mark.parametrize(
    "labels, kwargs, match",
    [
        (np.repeat([0, 2], 10), {}, r"class\(es\) \[1\] have no row"),
        (np.repeat([0, 1], [17, 3]), {}, "class 1 has 3"),
        (np.zeros(20, int), {}, "at least 2 classes"),
        (np.repeat([0, 1], 10), {"n_splits": 1}, "n_splits must be an integer >= 2"),
        (np.repeat([0, 1], 10), {"Cs": (0.0,)}, "Cs must be a non-empty list of positive numbers"),
        (np.repeat([0, 1], 5), {}, "features has 20 rows but labels has 10"),
    ],
)
def test_rejects_bad_labels_and_params(labels, kwargs, match):
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises((ValueError, TypeError), match=match):
        out_of_sample_pred_probs(X, labels, **kwargs)


def test_selection_criteria_pick_their_best_c_and_parallel_runs_agree():
    X, y, _ = _blobs(30, 3, 6, seed=3, spread=2.5)
    Cs = (1e-3, 1e-2, 1.0)
    P1, clf1 = out_of_sample_pred_probs(X, y, Cs=Cs, n_jobs=1)
    P2, clf2 = out_of_sample_pred_probs(X, y, Cs=Cs, n_jobs=2)
    np.testing.assert_allclose(P1, P2)
    assert clf1.C == clf2.C == max(Cs, key=lambda c: (clf1.cv_scores_[c], -c))
    assert clf1.cv_select_ == "error_auroc"
    _, clf3 = out_of_sample_pred_probs(X, y, Cs=Cs, select="log_loss")
    assert clf3.C == min(Cs, key=lambda c: clf3.cv_scores_[c])


def test_error_auroc_by_hand():
    from ood_core.pred_probs import _error_auroc

    # adjust=True: thresholds are 0.75 (class 0, rows 0 and 2) and 0.6 (class 1, rows 1 and 3)
    P = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # predictions 0, 1, 0, 1: no mistake -> 0.5 by definition
    assert _error_auroc(P, y) == 0.5
    y_wrong = np.array([0, 1, 1, 1])  # row 2 is now a mistake
    from ood_core import PredProbScorer

    s = PredProbScorer().fit(P, y_wrong).fit_scores_
    expected = np.mean([s[2] < s[i] for i in (0, 1, 3)])
    assert _error_auroc(P, y_wrong) == pytest.approx(expected)


def test_unknown_selection_criterion():
    X, y, _ = _blobs(10, 2, 4, seed=4)
    with pytest.raises(ValueError, match="select must be one of"):
        out_of_sample_pred_probs(X, y, select="accuracy")
