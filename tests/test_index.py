"""The approximate neighbour index behind FeatureScorer(index=...): agreement with the exact search,
self-exclusion, out-of-core input, and the errors a user can meet."""
import sys

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="the approximate index needs faiss (pip install 'ood-explorer[scale]')")

from ood_core import _index  # noqa: E402
from ood_core.scorers import FeatureScorer  # noqa: E402
from ood_core.shards import ShardWriter  # noqa: E402


def clustered(n: int, dim: int = 32, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Clusters of varied spread in an 8-d latent space, mapped to ``dim`` non-negative columns (a
    ReLU of a random projection) plus a little noise: low intrinsic dimension, as image embeddings."""
    base = np.random.default_rng(99)
    centres, W = 2 * base.standard_normal((clusters, 8)), base.standard_normal((8, dim)) / np.sqrt(8)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, clusters, n)
    z = centres[which] + (0.3 + 0.4 * (which % 3))[:, None] * rng.standard_normal((n, 8))
    return (np.maximum(z @ W, 0) + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    X, Q = clustered(6000), clustered(600, seed=1)
    return X, Q, FeatureScorer(index="exact").fit(X), FeatureScorer(index="approximate").fit(X)


def test_approximate_neighbours_agree_with_exact(fitted):
    X, Q, exact, approx = fitted
    _, idx_e = exact.kneighbors(Q)
    dist_a, idx_a = approx.kneighbors(Q)
    recall = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(idx_a, idx_e)])
    assert recall >= 0.95
    # distances are re-ranked exactly: the reported distance is the true cosine distance of that row
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    true = 1 - np.einsum("ij,ikj->ik", Qn, Xn[idx_a])
    np.testing.assert_allclose(dist_a, true, atol=1e-5)
    assert np.all(np.diff(dist_a, axis=1) >= 0)  # each row sorted by distance
    for a, e in ((approx.score(Q), exact.score(Q)), (approx.fit_scores_, exact.fit_scores_)):
        gap = np.abs(a - e)
        assert np.quantile(gap, 0.99) < 0.01 and gap.max() < 0.05  # a missed neighbour moves a score a little
    assert abs(approx.scale_ - exact.scale_) / exact.scale_ < 0.01


def test_fit_rows_exclude_only_themselves():
    X = clustered(3000)
    X[10] = X[20]  # an exact duplicate is a neighbour at distance ~0; the row itself never is
    scorer = FeatureScorer(index="approximate").fit(X)
    dist, idx = scorer.kneighbors()
    assert not np.any(idx == np.arange(len(X))[:, None])
    assert idx[10, 0] == 20 and idx[20, 0] == 10
    assert dist[10, 0] < 1e-6
    assert (idx >= 0).all() and len(np.unique(idx[0])) == scorer.k_


def test_index_is_described_wherever_it_is_used(fitted):
    _, _, exact, approx = fitted
    assert exact.index_ == {"kind": "exact"} and exact.search_ == "exact"
    assert approx.index_["kind"] == "approximate"
    assert approx.index_["factory"].startswith("IVF") and approx.index_["nprobe"] >= 1
    assert approx.index_["library"].startswith("faiss ")
    assert "approximate" in approx.search_ and f"nprobe={approx.index_['nprobe']}" in approx.search_


def test_auto_switches_above_the_measured_size(monkeypatch):
    X = clustered(2000)
    assert FeatureScorer().fit(X).index_["kind"] == "exact"
    monkeypatch.setattr(_index, "AUTO_APPROXIMATE_ROWS", 1000)
    assert FeatureScorer().fit(X).index_["kind"] == "approximate"
    # Euclidean data (3 columns or fewer) is always searched exactly
    assert FeatureScorer().fit(np.random.default_rng(0).random((2000, 2))).index_["kind"] == "exact"


def test_shards_and_memmaps_give_the_same_scores_as_an_array(tmp_path):
    X, Q = clustered(5000), clustered(500, seed=1)
    writer = ShardWriter(tmp_path / "fit", n_rows=len(X), key="test", shard_rows=1200)
    for number in writer.pending():
        start, stop = writer.span(number)
        writer.write(number, X[start:stop])
    shards = writer.finish()
    np.save(tmp_path / "q.npy", Q)
    memmap = np.load(tmp_path / "q.npy", mmap_mode="r")
    params = {"train_rows": 5000}
    in_memory = FeatureScorer(index="approximate", index_params=params).fit(X)
    on_disk = FeatureScorer(index="approximate", index_params=params).fit(shards)
    np.testing.assert_array_equal(on_disk.fit_scores_, in_memory.fit_scores_)
    np.testing.assert_array_equal(on_disk.score(memmap), in_memory.score(Q))
    # the exact search takes shards too (read into memory once)
    np.testing.assert_allclose(FeatureScorer(index="exact").fit(shards).fit_scores_,
                               FeatureScorer(index="exact").fit(X).fit_scores_, atol=1e-6)


def test_bad_input_and_settings_are_named():
    X = clustered(2000)
    bad = X.copy()
    bad[1234, 5] = np.nan
    with pytest.raises(ValueError, match="X row 1234 holds a non-finite value"):
        FeatureScorer(index="approximate").fit(bad)
    with pytest.raises(ValueError, match="index must be one of"):
        FeatureScorer(index="fast").fit(X)
    with pytest.raises(ValueError, match="3 or fewer use index='exact'"):
        FeatureScorer(index="approximate").fit(X[:, :3])
    with pytest.raises(ValueError, match=r"index_params has unknown key\(s\) \['probes'\]"):
        FeatureScorer(index="approximate", index_params={"probes": 4}).fit(X)
    with pytest.raises(ValueError, match=r"index_params\['nprobe'\] must be an integer >= 1"):
        FeatureScorer(index="approximate", index_params={"nprobe": 0}).fit(X)
    scorer = FeatureScorer(index="approximate").fit(X)
    with pytest.raises(ValueError, match="X has 16 features but this FeatureScorer was fitted on 32"):
        scorer.score(X[:, :16])
    with pytest.raises(ValueError, match="beyond k_=10 are not kept"):
        scorer.kneighbors(None, k=20)


def test_missing_faiss_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install 'ood-explorer\[scale\]'"):
        FeatureScorer(index="approximate").fit(clustered(500))
    monkeypatch.setattr(_index, "AUTO_APPROXIMATE_ROWS", 100)
    assert FeatureScorer().fit(clustered(500)).index_["kind"] == "exact"  # auto falls back, with a warning


def test_cli_and_reports_say_the_search_was_approximate(tmp_path, capsys):
    import csv
    import json

    from ood_core.cli import main

    X, Q = clustered(3000), clustered(300, seed=1)
    np.savez(tmp_path / "fit.npz", features=X)
    np.savez(tmp_path / "query.npz", features=Q)
    out = tmp_path / "scores.csv"
    assert main(["-q", "score", "--fit", str(tmp_path / "fit.npz"), "--query", str(tmp_path / "query.npz"),
                 "--index", "approximate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "neighbour search: approximate (faiss IVF" in printed and "nprobe=" in printed
    assert "note: The neighbour search was approximate (faiss IVF" in printed
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["feature_search"].startswith("approximate (faiss IVF")
    card = json.loads(out.with_suffix(".json").read_text())["cards"][0]
    search = card["scorer_params"]["neighbour_search"]
    assert search["kind"] == "approximate" and search["nlist"] >= 1 and search["k_factor"] == 24
    assert any("approximate" in caveat for caveat in card["caveats"])
    # exact runs say so too, and their CSV keeps its columns
    assert main(["-q", "score", "--fit", str(tmp_path / "fit.npz"), "--query", str(tmp_path / "query.npz"),
                 "--index", "exact", "--out", str(out)]) == 0
    assert "neighbour search: exact" in capsys.readouterr().out
    assert "feature_search" not in next(csv.DictReader(out.open()))
    import subprocess

    wrong = subprocess.run([sys.executable, "-m", "ood_core", "score", "--fit", "a.npz", "--query", "b.npz",
                            "--index", "fast", "--out", str(out)], capture_output=True, text=True)
    assert wrong.returncode == 2 and "argument --index: invalid choice: 'fast'" in wrong.stderr
