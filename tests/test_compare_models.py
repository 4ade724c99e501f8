"""Which model for my data: ``compare_models``, the ``compare-models`` command and the Models page."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

import ood_core
from ood_core._compare_models import compare_models
from ood_core.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pets(cifar_zip, tmp_path_factory) -> Path:
    """48 CIFAR-10 test images in class folders: cat, dog, ship (16 each)."""
    cifar = ood_core.cifar10(cifar_zip)
    root = tmp_path_factory.mktemp("pets") / "pets"
    test = np.flatnonzero(cifar.split == "test")
    for name in ("cat", "dog", "ship"):
        (root / name).mkdir(parents=True)
        for i in test[cifar.labels[test] == cifar.class_names.index(name)][:16]:
            cifar.load_image(i).save(root / name / f"{cifar.ids[i].replace('/', '_')}.png")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compare_cache")


def test_comparison_matches_each_model_analyzed_alone(pets, cache):
    result = compare_models(pets, ["lite0", "pixels"], image_size=32, in_classes=["cat", "dog"], cache_dir=cache)
    assert result.models == ("lite0", "pixels") and result.has_truth
    rows = {r["model"]: r for r in result.table()}
    assert rows["lite0"]["resolved"] == "tf_efficientnet_lite0" and rows["lite0"]["input size"] == 32
    pixels = rows["pixels"]
    assert (pixels["resolved"], pixels["input size"], pixels["features"]) == ("pixels", 32, 3072)
    split = ood_core.in_out_split(ood_core.image_folder(pets), ["cat", "dog"])
    for model in result.models:
        alone = ood_core.analyze(split, model=model, image_size=None if model == "pixels" else 32, cache_dir=cache)
        assert alone.cache_hit  # compare_models embedded through the same cache
        view = alone.threshold_view("feature", percentile=5)
        assert rows[model]["feature AUROC"] == view.metrics["auroc"]
        assert rows[model]["FPR@95%TPR"] == view.metrics["fpr_at_95_tpr"]
        assert rows[model]["query flagged"] == view.query_flagged
        assert rows[model]["prediction AUROC"] == alone.threshold_view("prediction", percentile=5).metrics["auroc"]
    (pair,) = result.agreement()
    a, b = (result.analyses[m].query_feature_scores for m in result.models)
    assert pair["models"] == "lite0 vs pixels" and pair["items"] == len(a) == 32
    assert pair["spearman"] == pytest.approx(spearmanr(a, b).statistic)
    fa, fb = result.flagged_ids("lite0"), result.flagged_ids("pixels")
    assert (pair["flagged by both"], pair["flagged by either"]) == (len(fa & fb), len(fa | fb))


def test_cli_prints_the_per_model_metrics_and_agreement(pets, cache, capsys):
    args = ["-q", "compare-models", str(pets), "--models", "lite0,pixels", "--image-size", "32",
            "--in-classes", "cat,dog", "--cache-dir", str(cache)]
    assert main(args) == 0
    out = capsys.readouterr().out
    expected = compare_models(pets, ["lite0", "pixels"], image_size=32, in_classes=["cat", "dog"], cache_dir=cache)
    assert "fit items: 16   query items: 32" in out
    lines = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if " | " in line}
    for row in expected.table():
        cells = lines[row["model"]]
        assert cells[1:4] == [row["resolved"], str(row["input size"]), str(row["features"])]
        assert cells[5:8] == [f"{row[c]:.4f}" for c in ("feature AUROC", "FPR@95%TPR", "prediction AUROC")]
        assert cells[8] == str(row["query flagged"])
    (pair,) = expected.agreement()
    assert lines["lite0 vs pixels"][1] == f"{pair['spearman']:.4f}"


def test_cli_without_truth_reports_agreement_only(pets, cache, capsys):
    assert main(["-q", "compare-models", str(pets), "--models", "pixels,pixels-raw", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "no out-of-distribution truth: agreement between the models only" in out
    assert "feature AUROC" not in out and "median query score" in out
    expected = compare_models(pets, ["pixels", "pixels-raw"], cache_dir=cache)
    (pair,) = expected.agreement()
    assert f"pixels vs pixels-raw | {pair['spearman']:.4f} | {pair['flagged by both']}" in out


@pytest.mark.parametrize("models, message", [
    (["pixels"], "compare_models needs at least 2 model names"),
    (["pixels", "pixels"], "a model is named twice"),
    (["pixels", "resnet_nonsense"], "model='resnet_nonsense' is not a timm model"),
])
def test_bad_model_lists_are_refused_before_any_work(models, message):
    with pytest.raises(ValueError, match=message):
        compare_models("digits", models)


def test_cli_names_a_bad_model(capsys):
    assert main(["-q", "compare-models", "digits", "--models", "pixels,nonsense_net"]) == 2
    assert "model='nonsense_net' is not a timm model" in capsys.readouterr().err


# ------------------------------------------------------------------ the page
def test_models_page_draws_what_compare_models_computes(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page("ood_dashboard/views/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Which model for my data?"
    assert at.multiselect(key="models_choice").value[0] == "pixels"  # the digits' own model comes first
    at.multiselect(key="models_choice").set_value(["pixels", "pixels-raw"]).run()
    at.button(key="models_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    analysis = at.session_state["analysis"]
    expected = compare_models(analysis.items, ["pixels", "pixels-raw"])
    table = at.dataframe[0].value
    assert list(table["model"]) == ["pixels", "pixels-raw"]
    np.testing.assert_allclose(table["feature AUROC"], [r["feature AUROC"] for r in expected.table()])
    assert list(table["query flagged"]) == [r["query flagged"] for r in expected.table()]
    agreement = at.dataframe[1].value
    assert agreement["spearman"][0] == pytest.approx(expected.agreement()[0]["spearman"])
    assert any("Best feature AUROC here: **pixels**" in c.value for c in at.caption)
    at.number_input(key="models_percentile").set_value(10.0).run()  # from the store: no recompute
    again = compare_models(analysis.items, ["pixels", "pixels-raw"], percentile=10.0)
    assert list(at.dataframe[0].value["query flagged"]) == [r["query flagged"] for r in again.table()]
