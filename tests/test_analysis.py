"""analyze / Analysis.rescore / exports on precomputed arrays (no embedding needed)."""
import csv
import io
import json
import warnings

import numpy as np
import pytest

from ood_core import FeatureScorer, PredProbScorer, out_of_sample_pred_probs, percentile_threshold
from ood_core import ScoreConfig, analyze
from ood_core.sources import ArraySet


def _arrays(split=True, seed=0):
    """Three Gaussian classes in; a fourth class (out) only among the query rows."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(4, 12))
    y = np.repeat([0, 1, 2], 40)
    X_fit = centers[y] + rng.normal(size=(120, 12))
    yq = np.repeat([0, 1, 2, 3], 10)
    X_q = centers[yq] + rng.normal(size=(40, 12))
    X = np.concatenate([X_fit, X_q])
    labels = np.concatenate([y, np.full(40, -1)])
    is_ood = np.concatenate([np.zeros(120, bool), yq == 3])
    return ArraySet(
        features=X, pred_probs=None, labels=labels, ids=[f"r{i}" for i in range(160)],
        class_names=["a", "b", "c"], split=np.array(["train"] * 120 + ["test"] * 40) if split else None,
        is_ood=is_ood if split else None, description="synthetic", identity="synthetic-0",
    )


def test_analyze_matches_the_scorers_used_directly():
    src = _arrays()
    a = analyze(src)
    X_fit, X_q = src.features[:120], src.features[120:]
    fs = FeatureScorer().fit(X_fit)
    np.testing.assert_allclose(a.fit_feature_scores, fs.fit_scores_)
    np.testing.assert_allclose(a.query_feature_scores, fs.score(X_q))
    pp, clf = out_of_sample_pred_probs(X_fit, src.labels[:120])
    np.testing.assert_allclose(a.fit_pred_probs, pp)
    ps = PredProbScorer().fit(pp, src.labels[:120])
    np.testing.assert_allclose(a.query_pred_scores, ps.score(clf.predict_proba(X_q)))
    assert a.scorers == ("feature", "prediction") and not a.same_set
    np.testing.assert_array_equal(a.is_ood, np.arange(40) >= 30)


def test_planted_outliers_are_found_by_both_scorers():
    a = analyze(_arrays())
    for scorer in a.scorers:
        view = a.threshold_view(scorer, percentile=5)
        assert view.metrics["auroc"] > 0.9, scorer


def test_rescore_refits_only_what_changed():
    a = analyze(_arrays())
    b = a.rescore(ScoreConfig(k=3))
    assert b.feature_scorer.k_ == 3 and b.pred_scorer is a.pred_scorer
    assert b.fit_pred_probs is a.fit_pred_probs  # the classifier is never refitted
    c = b.rescore(ScoreConfig(k=3, method="least_confidence", adjust=False))
    assert c.feature_scorer is b.feature_scorer
    np.testing.assert_allclose(c.fit_pred_scores, a.fit_pred_probs.max(axis=1))


def test_same_set_when_the_source_has_no_split():
    a = analyze(_arrays(split=False))
    assert a.same_set and a.is_ood is None
    np.testing.assert_array_equal(a.fit_feature_scores, a.query_feature_scores)


def test_threshold_view_counts_and_export_payloads_agree():
    a = analyze(_arrays())
    view = a.threshold_view("feature", percentile=10)
    assert view.threshold == percentile_threshold(a.fit_feature_scores, 10)
    assert view.fit_flagged == int((a.fit_feature_scores < view.threshold).sum()) == 12
    rows = list(csv.DictReader(io.StringIO(a.scores_csv({"feature": view.threshold}))))
    assert len(rows) == 160
    query_rows = [r for r in rows if r["set"] == "query"]
    np.testing.assert_allclose([float(r["feature_score"]) for r in query_rows], a.query_feature_scores, rtol=0,
                               atol=0)
    assert sum(r["feature_flagged"] == "True" for r in query_rows) == view.query_flagged
    card = json.loads(json.dumps(a.threshold_card(view)))
    assert card["threshold"] == view.threshold and card["query"]["flagged"] == view.query_flagged
    assert card["scorer_params"]["k"] == 10 and card["metrics"]["auroc"] == pytest.approx(view.metrics["auroc"])


def test_threshold_view_needs_one_of_percentile_or_threshold():
    a = analyze(_arrays())
    with pytest.raises(ValueError, match="exactly one of percentile or threshold"):
        a.threshold_view("feature")
    with pytest.raises(ValueError, match="scorer must be one of"):
        a.scores("knn")


def test_threshold_card_records_the_percentile_set_and_the_one_reached():
    a = analyze(_arrays())
    view = a.threshold_view("feature", percentile=5)
    card = a.threshold_card(view)
    assert card["percentile"] == 5 and card["threshold"] == percentile_threshold(a.fit_feature_scores, 5)
    reached = 100 * np.mean(a.fit_feature_scores < card["threshold"])
    assert card["percentile_reached"] == pytest.approx(reached) and card["run_id"] == a.run_id
    dragged = a.threshold_view("feature", threshold=view.threshold)  # a threshold value: its own percentile
    assert dragged.percentile == dragged.reached == pytest.approx(reached)


def test_the_prediction_score_says_when_two_classes_cannot_find_outliers():
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=4.0, size=(3, 12))
    y = np.repeat([0, 1], 60)
    X = np.concatenate([centers[y] + rng.normal(size=(120, 12)), centers[[2]] + rng.normal(size=(40, 12))])
    two = ArraySet(features=X, pred_probs=None, labels=np.r_[y, np.full(40, -1)], ids=[f"r{i}" for i in range(160)],
                   class_names=["a", "b"], split=np.array(["train"] * 120 + ["test"] * 40), is_ood=None,
                   description="two classes", identity="two-classes")
    a = analyze(two)
    assert a.caveats("feature") == []
    notes = a.caveats("prediction")
    assert len(notes) >= 1 and notes[0].startswith("With only 2 classes the prediction score")
    assert "Use the feature score (KNN)" in notes[0]
    card = a.threshold_card(a.threshold_view("prediction", percentile=5))
    assert card["caveats"] == notes
    assert analyze(_arrays()).caveats("prediction") == []  # three classes: no such note


def test_the_classifiers_pred_probs_are_kept_on_disk(tmp_path, monkeypatch):
    """A second run of the same data (a server restart) reads the out-of-sample pred_probs from the
    cache folder instead of cross-validating the classifier again."""
    import ood_core._analyze as run

    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    first = analyze(_arrays())
    assert [p.parent.name for p in (tmp_path / "cache").rglob("*.npz")] == ["runs"]

    def never(*args, **kwargs):
        raise AssertionError("the classifier was cross-validated again")

    monkeypatch.setattr(run, "out_of_sample_pred_probs", never)
    again = analyze(_arrays())
    np.testing.assert_array_equal(again.fit_pred_probs, first.fit_pred_probs)
    np.testing.assert_array_equal(again.query_pred_scores, first.query_pred_scores)
    assert again.classifier == first.classifier and again.classifier.C > 0
    other = _arrays()
    other.features[0, 0] += 1.0  # other fit rows under the same (in-memory) identity: computed afresh
    with pytest.raises(AssertionError, match="cross-validated again"):
        analyze(other)


def test_a_map_is_computed_once_per_run_and_kept_on_disk(tmp_path, monkeypatch):
    import ood_core.explain.projection as projection

    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    a = analyze(_arrays())
    coords, positions = a.projection("pca")
    assert coords.shape == (160, 2) and sorted(positions.tolist()) == list(range(160))

    def never(*args, **kwargs):
        raise AssertionError("the map was computed again")

    monkeypatch.setattr(projection, "project_2d", never)
    again = analyze(_arrays()).projection("pca")  # a new Analysis of the same run, as after a restart
    np.testing.assert_array_equal(again[0], coords)
    np.testing.assert_array_equal(again[1], positions)


# ------------------------------------------------------------------ issue 18.6: damaged kept artifacts
def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _fewer_coords(path):
    with np.load(path) as kept:
        coords, positions = kept["coords"], kept["positions"]
    np.savez(path, coords=coords[:-3], positions=positions)  # rows that disagree with the positions


def _wrong_shape_pred_probs(path):
    with np.load(path) as kept:
        arrays = dict(kept)
    arrays["query"] = arrays["query"][:5]
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage", [_truncate, _fewer_coords, lambda p: p.write_bytes(b"not a zip")])
def test_a_damaged_kept_map_is_computed_again_with_a_warning(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    coords, positions = analyze(_arrays()).projection("pca")
    before = set((tmp_path / "cache" / "runs").glob("*.npz"))
    (kept,) = [p for p in before if "coords" in np.load(p).files]
    damage(kept)
    with pytest.warns(RuntimeWarning, match=f"the kept pca map {kept} is unreadable or does not match this run"):
        again = analyze(_arrays()).projection("pca")
    np.testing.assert_array_equal(again[0], coords)
    np.testing.assert_array_equal(again[1], positions)
    with np.load(kept) as rewritten:  # written over the damaged one
        assert rewritten["coords"].shape == coords.shape


@pytest.mark.parametrize("damage", [_truncate, _wrong_shape_pred_probs])
def test_damaged_kept_pred_probs_are_computed_again_with_a_warning(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    first = analyze(_arrays())
    (kept,) = (tmp_path / "cache" / "runs").glob("*.npz")
    damage(kept)
    with pytest.warns(RuntimeWarning, match=f"the kept pred_probs {kept} is unreadable or does not match this run"):
        again = analyze(_arrays())
    np.testing.assert_allclose(again.query_pred_probs, first.query_pred_probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analyze(_arrays())  # rewritten: read back without a warning
