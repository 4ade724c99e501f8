"""Exact parity with cleanlab 2.9's OutOfDistribution (optional AGPL test oracle; skipped when absent)."""
import warnings

import numpy as np
import pytest

from ood_core import FeatureScorer, PredProbScorer

cleanlab_outlier = pytest.importorskip("cleanlab.outlier", reason="cleanlab (optional parity oracle) not installed")


def _features(d, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, d)).astype(dtype)
    X[5] = X[7]  # exact duplicates inside the fit set
    X[11] = X[7]
    X[10] = 0  # a zero row
    Q = rng.normal(size=(30, d)).astype(dtype)
    Q[0] = X[3]  # a query equal to a fit row
    Q[1] = 0
    return X, Q


@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("d", [2, 3, 16])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_feature_scores_match_cleanlab(k, d, dtype, capsys):
    X, Q = _features(d, dtype, seed=k * 100 + d)
    ref = cleanlab_outlier.OutOfDistribution(params={"k": k})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_fit, ref_query = ref.fit_score(features=X), ref.score(features=Q)
    fs = FeatureScorer(k=k, block_size=32)  # several blocks, so the symmetric path is exercised
    tol = 1e-6 if dtype == np.float64 else 1e-4
    assert np.abs(fs.fit_score(X) - ref_fit).max() <= tol
    assert np.abs(fs.score(Q) - ref_query).max() <= tol


@pytest.mark.parametrize("method", ["entropy", "least_confidence"])
@pytest.mark.parametrize("adjust", [True, False])
def test_pred_prob_scores_match_cleanlab(method, adjust, capsys):
    rng = np.random.default_rng(7)
    P = rng.dirichlet(np.full(5, 0.4), size=120)
    y = rng.integers(0, 5, size=120)
    Pq = rng.dirichlet(np.full(5, 0.4), size=40)
    Pq[0] = np.eye(5)[2]  # a one-hot row (0 log 0)
    ref = cleanlab_outlier.OutOfDistribution(params={"method": method, "adjust_pred_probs": adjust})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_fit = ref.fit_score(pred_probs=P, labels=y)
        ref_query = ref.score(pred_probs=Pq)
    ps = PredProbScorer(method=method, adjust=adjust)
    assert np.abs(ps.fit_score(P, y) - ref_fit).max() <= 1e-6
    assert np.abs(ps.score(Pq) - ref_query).max() <= 1e-6
