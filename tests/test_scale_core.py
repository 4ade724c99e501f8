"""Large fit sets: the classifier behind the prediction score is cross-validated on a seeded sample,
and every fit row's pred_probs stay out of sample."""
import numpy as np

import ood_core._analyze as analyze_module
from ood_core import ArraySet, analyze


def test_classifier_on_a_sample_keeps_every_fit_row_out_of_sample(monkeypatch, tmp_path):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(analyze_module, "MAX_CLASSIFIER_ROWS", 600)
    seen = {}
    real = analyze_module.out_of_sample_pred_probs

    def spy(X, y, **kwargs):
        seen["rows"] = {row.tobytes() for row in X}
        seen["labels"] = np.bincount(y, minlength=3)
        held_out, clf = real(X, y, **kwargs)
        seen["clf"], seen["held_out"] = clf, held_out
        return held_out, clf

    monkeypatch.setattr(analyze_module, "out_of_sample_pred_probs", spy)
    rng = np.random.default_rng(0)
    n = 3000
    y = np.where(rng.random(n) < 0.01, 2, rng.integers(0, 2, n))  # class 2 is rare (about 30 rows)
    X = (rng.standard_normal((n, 16)) + 1.5 * y[:, None]).astype(np.float32)
    source = ArraySet(features=X, pred_probs=None, labels=y, ids=[str(i) for i in range(n)],
                      class_names=["a", "b", "c"], split=np.where(np.arange(n) < 2500, "train", "test"),
                      is_ood=None, description="synthetic", identity="scale-core-classifier")
    a = analyze(source)
    assert len(seen["rows"]) <= 600 + 5 and seen["labels"].min() >= 5  # a sample; the rare class kept
    fit_X = X[a.fit_index]
    in_sample = np.array([row.tobytes() in seen["rows"] for row in fit_X])
    assert 0 < in_sample.sum() < len(fit_X)
    # rows outside the sample: predicted by the classifier fitted on the sample, which never saw them
    np.testing.assert_allclose(a.fit_pred_probs[~in_sample], seen["clf"].predict_proba(fit_X[~in_sample]))
    # rows in the sample: their held-out (cross-validated) predictions, not the final classifier's
    assert not np.allclose(a.fit_pred_probs[in_sample], seen["clf"].predict_proba(fit_X[in_sample]))
    np.testing.assert_allclose(a.query_pred_probs, seen["clf"].predict_proba(X[a.query_index]))
    assert np.isfinite(a.scores("prediction")[0]).all()
