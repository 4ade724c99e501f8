"""The prefiltered exact search (bfloat16 candidates re-ranked in the input precision) returns the
plain search's neighbours: against a float64 brute force, on data built so that bfloat16 alone
orders the neighbours wrongly, on duplicated rows, and through FeatureScorer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ood_core._neighbors as neighbors
import ood_core._neighbors_prefilter as prefilter
from ood_core import FeatureScorer

CPU = torch.device("cpu")


def brute(X: np.ndarray, Q: np.ndarray | None, k: int) -> np.ndarray:
    """Each row's k smallest cosine distances, in float64 (self excluded when ``Q`` is None)."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    A = Xn if Q is None else Q / np.linalg.norm(Q, axis=1, keepdims=True)
    D = 1 - A.astype(np.float64) @ Xn.astype(np.float64).T
    if Q is None:
        np.fill_diagonal(D, np.inf)
    return np.sort(D, axis=1)[:, :k]


def search(X, Q, k, block_size, use_prefilter):
    fit = neighbors.prepare(X, "cosine", CPU)
    query = None if Q is None else neighbors.prepare(Q, "cosine", CPU)
    return neighbors.knn(fit, k, "cosine", query=query, block_size=block_size, prefilter=use_prefilter)


def assert_exact(X, Q, k, dist, idx, atol):
    """The distances are the brute force's, and each returned row really lies at its distance."""
    np.testing.assert_allclose(dist, brute(X, Q, k), atol=atol)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    A = Xn if Q is None else Q / np.linalg.norm(Q, axis=1, keepdims=True)
    actual = 1 - np.einsum("ij,ikj->ik", A.astype(np.float64), Xn[idx].astype(np.float64))
    np.testing.assert_allclose(dist, actual, atol=atol)
    if Q is None:
        assert not (idx == np.arange(len(X))[:, None]).any(), "a row is its own neighbour"


def rings(n_queries: int, per_query: int, d: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Queries, and for each ``per_query`` fit rows at cosine similarities spread over [0.90, 0.96]:
    neighbours about 4e-4 apart, ten to a bfloat16 step (0.0039 there)."""
    Q = rng.normal(size=(n_queries, d))
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    fit = []
    for q in Q:
        s = rng.uniform(0.90, 0.96, per_query)
        r = rng.normal(size=(per_query, d))
        r -= np.outer(r @ q, q)  # orthogonal to q
        r /= np.linalg.norm(r, axis=1, keepdims=True)
        fit.append(s[:, None] * q + np.sqrt(1 - s**2)[:, None] * r)
    return np.concatenate(fit).astype(np.float32), Q.astype(np.float32)


@pytest.mark.parametrize("case", ["signed", "non-negative", "odd blocks", "k=1", "float64"])
def test_same_neighbours_as_a_float64_brute_force(case):
    rng = np.random.default_rng(0)
    n, d, k, bs, dtype = 700, 48, 10, 128, np.float32
    if case == "odd blocks":
        n, k, bs = 999, 7, 100  # partial last blocks, a block width not divisible by the groups
    if case == "k=1":
        k = 1
    if case == "float64":
        dtype = np.float64
    X = rng.normal(size=(n, d))
    Q = rng.normal(size=(230, d))
    if case == "non-negative":
        X, Q = np.abs(X), np.abs(Q)
    X, Q = X.astype(dtype), Q.astype(dtype)
    atol = 1e-6 if dtype == np.float32 else 1e-12
    for query in (None, Q):
        dist, idx = search(X, query, k, bs, True)
        assert_exact(X, query, k, dist, idx, atol)


def test_neighbours_closer_together_than_bfloat16_can_tell(monkeypatch):
    X, Q = rings(40, 150, 64, np.random.default_rng(3))
    for query in (None, Q):
        dist, idx = search(X, query, 10, 1024, True)
        assert_exact(X, query, 10, dist, idx, 1e-6)
    # The data is hard: without the error bound's margin the bfloat16 pass drops true neighbours.
    monkeypatch.setattr(prefilter, "error_bound", lambda d: 0.0)
    dist, _ = search(X, Q, 10, 1024, True)
    assert np.abs(dist - brute(X, Q, 10)).max() > 1e-5


def test_non_negative_neighbours_closer_together_than_bfloat16_can_tell(monkeypatch):
    """Pooled CNN features have no negative entry; the floor is then relative (relative_floor)."""
    rng = np.random.default_rng(8)
    bases = np.abs(rng.normal(size=(40, 64)))
    X = np.concatenate([b + rng.uniform(0, 3, (150, 1)) * np.abs(rng.normal(size=(150, 64))) for b in bases])
    X, Q = X.astype(np.float32), bases.astype(np.float32)
    for query in (None, Q):
        dist, idx = search(X, query, 10, 1024, True)
        assert_exact(X, query, 10, dist, idx, 1e-6)
    monkeypatch.setattr(prefilter, "error_bound", lambda d: 1.0)  # the relative floor alone decides
    dist, idx = search(X, Q, 10, 1024, True)
    assert_exact(X, Q, 10, dist, idx, 1e-6)
    monkeypatch.setattr(prefilter, "relative_floor", lambda d: 1.0)  # no margin: neighbours dropped
    dist, _ = search(X, Q, 10, 1024, True)
    assert np.abs(dist - brute(X, Q, 10)).max() > 1e-5


def test_a_block_of_duplicated_rows_is_searched_exactly(monkeypatch):
    calls, results = [], []
    real_exact, real_search = prefilter._exact, prefilter.knn_prefiltered
    monkeypatch.setattr(prefilter, "_exact", lambda A, B, diagonal: calls.append(1) or real_exact(A, B, diagonal))
    monkeypatch.setattr(prefilter, "knn_prefiltered", lambda *a: results.append(real_search(*a)) or results[-1])
    monkeypatch.setattr(prefilter, "GIVE_WAY", 2.0)  # small random blocks are dense too: never give way here
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1000, 32)).astype(np.float32)
    X[900:] = X[900]  # the last block: 100 copies of one row, all within bfloat16's margin of each other
    dist, idx = search(X, None, 10, 128, True)
    assert calls and results[0] is not None, "the duplicated block should have been computed exactly"
    assert_exact(X, None, 10, dist, idx, 1e-6)
    assert np.all(dist[900:] < 1e-6) and np.all(idx[900:] >= 900)  # a copy's 10 nearest are copies


def test_concentrated_similarities_give_way_to_the_plain_search(monkeypatch):
    results = []
    real_search = prefilter.knn_prefiltered
    monkeypatch.setattr(prefilter, "knn_prefiltered", lambda *a: results.append(real_search(*a)) or results[-1])
    rng = np.random.default_rng(7)
    X = np.repeat(rng.normal(size=(12, 32)), 40, axis=0).astype(np.float32)  # 40 copies of each row
    dist, idx = search(X, None, 10, 128, True)
    assert results == [None]  # most blocks would be computed twice: the plain search ran instead
    assert_exact(X, None, 10, dist, idx, 1e-6)


def test_error_bound_covers_the_bfloat16_products():
    rng = np.random.default_rng(5)
    for X in (rng.normal(size=(400, 1280)), np.abs(rng.normal(size=(400, 1280))),
              np.where(rng.random((400, 1280)) < 0.9, 0.0, rng.exponential(size=(400, 1280)))):
        T = neighbors.prepare(X.astype(np.float32), "cosine", CPU)
        approx = (T.bfloat16() @ T.bfloat16().T).double().numpy()
        exact = T.double().numpy() @ T.double().numpy().T
        assert np.abs(approx - exact).max() <= prefilter.error_bound(1280)
    assert prefilter.error_bound(1280) < 0.013  # a wider margin would keep too many candidates


def test_bfloat16_products_here_accumulate_in_float32():
    # the bound above assumes it; a CPU that accumulated in bfloat16 would use the plain search
    assert prefilter.bfloat16_accumulates_in_float32()


def test_used_only_where_it_can_run_and_pays(monkeypatch):
    big = torch.zeros(5000, 8)
    monkeypatch.setattr(prefilter, "bfloat16_is_fast", lambda: True)
    assert prefilter.applies(big, None, 10, "cosine")
    assert not prefilter.applies(big, None, 10, "euclidean")
    assert not prefilter.applies(big[:100], None, 10, "cosine")  # too small to matter
    assert not prefilter.applies(big[:8], None, 10, "cosine")  # fewer rows than k
    monkeypatch.setattr(prefilter, "bfloat16_is_fast", lambda: False)
    assert not prefilter.applies(big, None, 10, "cosine")


def test_feature_scorer_uses_it_on_large_searches_with_the_same_scores(monkeypatch):
    rng = np.random.default_rng(6)
    X = np.abs(rng.normal(size=(600, 40))).astype(np.float32)
    Q = np.abs(rng.normal(size=(200, 40))).astype(np.float32)
    plain = FeatureScorer(k=10, block_size=256).fit(X)
    plain_scores = plain.score(Q)
    used = []
    real = prefilter.knn_prefiltered
    monkeypatch.setattr(prefilter, "MIN_WORK", 0)
    monkeypatch.setattr(prefilter, "bfloat16_is_fast", lambda: True)
    monkeypatch.setattr(prefilter, "knn_prefiltered", lambda *a, **kw: used.append(1) or real(*a, **kw))
    fast = FeatureScorer(k=10, block_size=256).fit(X)
    np.testing.assert_allclose(fast.fit_scores_, plain.fit_scores_, atol=1e-6)
    np.testing.assert_allclose(fast.score(Q), plain_scores, atol=1e-6)
    assert len(used) == 2  # the fit set's search and the queries'
