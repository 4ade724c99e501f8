"""What the default settings promise (issue 12): a good detector on the digits (the dashboard's first
screen) and on the CIFAR-10 demo split, with an honest false-positive rate at the 5% threshold."""
from __future__ import annotations

import pytest

import ood_core
from ood_core.scorers import FeatureScorer
from ood_core.thresholds import ood_metrics, percentile_threshold


def test_default_settings_on_the_digits_show_a_good_detector():
    analysis = ood_core.analyze("digits")
    assert analysis.embed_config["model"] == "pixels" and analysis.features.shape == (1797, 64)
    view = analysis.threshold_view("feature", percentile=5)
    assert view.metrics["auroc"] >= 0.97, view.metrics
    assert abs(100 * view.metrics["fpr"] - 5) <= 2, view.metrics  # the honest test FPR at the 5% threshold


@pytest.mark.slow
def test_default_settings_on_the_cifar10_demo_split(cifar_zip):
    """About 40 s of embedding on 2 cores the first time (6,000 images), then read from the cache."""
    demo = ood_core.demo_split(ood_core.cifar10(cifar_zip))
    embedded = ood_core.embed(demo)
    assert embedded.config["model"] == ood_core.DEFAULT_NETWORK and embedded.config["image_size"] == 160
    fit, query = demo.split == "train", demo.split == "test"
    scorer = FeatureScorer().fit(embedded.features[fit])
    threshold = percentile_threshold(scorer.fit_scores_, 5)
    m = ood_metrics(scorer.score(embedded.features[query]), demo.is_ood[query], threshold)
    assert m["auroc"] >= 0.95, m
    assert abs(100 * m["fpr"] - 5) <= 2, m
