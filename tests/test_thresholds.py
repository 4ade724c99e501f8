"""Percentile thresholds, rankings and evaluation metrics (SCORING.md sections 3-4)."""
import numpy as np
import pytest

from ood_core import flag, ood_metrics, percentile_of, percentile_threshold, rank_outliers, roc_points


def test_percentile_threshold_is_linear_and_flags_strictly_below():
    fit = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    thr = percentile_threshold(fit, 5)
    assert thr == pytest.approx(0.1 + 0.05 * 4 * 0.1)  # 0.12
    np.testing.assert_array_equal(flag([0.1, thr, 0.13], thr), [True, False, False])
    assert percentile_threshold(fit, 0) == 0.1 and percentile_threshold(fit, 100) == 0.5
    assert percentile_of(fit, 0.35) == 60.0


def test_about_p_percent_of_the_fit_set_is_flagged():
    fit = np.random.default_rng(0).uniform(size=10_000)
    thr = percentile_threshold(fit, 5)
    assert flag(fit, thr).mean() == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize("p", [-1, 100.5, "5", None, True])
def test_percentile_must_be_in_range(p):
    with pytest.raises(ValueError, match="percentile must be a number in"):
        percentile_threshold([0.1, 0.2], p)


def test_rank_outliers_orders_and_breaks_ties_by_index():
    s = np.array([0.5, 0.1, 0.9, 0.1, 0.3, 0.9, 0.25])
    r = rank_outliers(s, threshold=0.3, n=3)
    np.testing.assert_array_equal(r["top"], [1, 3, 6])
    np.testing.assert_array_equal(r["bottom"], [2, 5, 0])
    # flagged: 0.1, 0.1, 0.25 (0.3 is not strictly below); highest first, ties by index
    np.testing.assert_array_equal(r["borderline"], [6, 1, 3])
    assert len(rank_outliers(s)["borderline"]) == 0
    assert len(rank_outliers(s, n=100)["top"]) == 7


def test_ood_metrics_by_hand():
    # out items should score low. scores of 3 out items: 0.1, 0.2, 0.6; of 3 in items: 0.3, 0.7, 0.8
    scores = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.8])
    is_ood = np.array([True, True, True, False, False, False])
    m = ood_metrics(scores, is_ood, threshold=0.5)
    # pairs (out, in) ranked right: 0.1,0.2 beat all 3; 0.6 beats 0.7, 0.8 -> 8 of 9
    assert m["auroc"] == pytest.approx(8 / 9)
    # catching all 3 outliers needs threshold above 0.6, which also flags 0.3: FPR 1/3
    assert m["fpr_at_95_tpr"] == pytest.approx(1 / 3)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 2, 1)
    assert m["tpr"] == pytest.approx(2 / 3) and m["fpr"] == pytest.approx(1 / 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert np.isnan(ood_metrics(scores, is_ood, threshold=0.0)["precision"])
    fpr, tpr = roc_points(scores, is_ood)
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)


def test_ood_metrics_validates_truth():
    with pytest.raises(ValueError, match="both in-distribution and out-of-distribution"):
        ood_metrics([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="scores has 2 rows but is_ood has 3"):
        ood_metrics([0.1, 0.2], [True, False, True])
    with pytest.raises(ValueError, match="is_ood must be booleans"):
        ood_metrics([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="scores contains NaN"):
        ood_metrics([np.nan, 0.2], [True, False])
