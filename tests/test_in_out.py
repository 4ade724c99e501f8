"""In and out by class (issue 9): a folder of class folders, the in-classes chosen by the user, on the
CLI and in the dashboard; and `embed` twice then `score` when the two folders' classes differ."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ood_core.cli import main
from tests.conftest import extract_cifar

PER_CLASS = 120  # CIFAR-10 test images per class in the slices below (32x32 JPEGs)




@pytest.fixture(scope="module")
def pets_and_planes(cifar_zip, tmp_path_factory) -> Path:
    """cat/ dog/ airplane/: a plain folder of classes, no train/test split."""
    return extract_cifar(cifar_zip, tmp_path_factory.mktemp("data") / "pets",
                    {c: range(PER_CLASS) for c in ("cat", "dog", "airplane")})


@pytest.fixture(scope="module")
def cache(tmp_path_factory, cifar_zip) -> Path:
    """One embedding cache for this module, so the dashboard reads what the CLI embedded."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("OOD_CACHE_DIR", str(path))
        yield path


def test_cli_run_with_in_classes_evaluates_against_the_out_class(pets_and_planes, cache, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["-q", "run", str(pets_and_planes), "--in-classes", "cat,dog", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"fit items: {PER_CLASS}   query items: {2 * PER_CLASS}" in printed  # half of cat+dog fit; the rest
    card = json.loads(out.with_suffix(".json").read_text())["cards"][0]
    assert card["scorer"] == "feature" and "in: cat, dog" in card["source"]
    assert card["metrics"]["n_out"] == PER_CLASS and card["metrics"]["auroc"] >= 0.9, card["metrics"]
    rows = [r for r in csv.DictReader(out.open()) if r["set"] == "query"]
    assert {r["label"] for r in rows if r["is_ood"] == "True"} == {"airplane"}
    assert {r["label"] for r in rows if r["is_ood"] == "False"} == {"cat", "dog"}


def test_cli_refuses_unknown_in_classes_before_embedding(pets_and_planes, tmp_path, capsys):
    assert main(["-q", "run", str(pets_and_planes), "--in-classes", "cat,unicorn", "--out",
                 str(tmp_path / "x.csv")]) == 2
    assert "in_classes: unknown class 'unicorn'; valid classes are ['airplane', 'cat', 'dog']" \
        in capsys.readouterr().err


def test_embed_twice_then_score_when_the_query_folder_has_a_class_the_fit_folder_lacks(
        cifar_zip, cache, tmp_path, capsys):
    train = extract_cifar(cifar_zip, tmp_path / "train", {"cat": range(0, 80), "dog": range(0, 80)})
    test = extract_cifar(cifar_zip, tmp_path / "test", {"cat": range(200, 240), "dog": range(200, 240),
                                                   "airplane": range(200, 240)})
    assert main(["-q", "embed", str(train), "--out", str(tmp_path / "train.npz")]) == 0
    assert main(["-q", "embed", str(test), "--out", str(tmp_path / "test.npz")]) == 0
    out = tmp_path / "scores.csv"
    assert main(["-q", "score", "--fit", str(tmp_path / "train.npz"), "--query", str(tmp_path / "test.npz"),
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err  # different images: nothing shared
    cards = json.loads(out.with_suffix(".json").read_text())["cards"]
    feature = cards[0]
    assert feature["metrics"]["n_out"] == 40 and feature["metrics"]["auroc"] >= 0.9, feature["metrics"]
    rows = [r for r in csv.DictReader(out.open()) if r["set"] == "query"]
    assert {r["label"] for r in rows if r["is_ood"] == "True"} == {"airplane"}
    # pointing both at one file fits on everything: said loudly, not silently
    assert main(["-q", "score", "--fit", str(tmp_path / "test.npz"), "--query", str(tmp_path / "test.npz"),
                 "--out", str(tmp_path / "same.csv")]) == 0
    assert "warning: 120 of 120 query rows are identical to fit rows" in capsys.readouterr().err


def test_the_dashboard_runs_a_class_folder_with_chosen_in_classes(pets_and_planes, cache, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("OOD_DATA_ROOTS", str(pets_and_planes.parent))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=240)
    at.run()
    at.radio(key="data_source_choice").set_value("Image folder on this machine").run()
    at.text_input(key="data_folder_path").set_value(str(pets_and_planes)).run()
    spec = str(pets_and_planes.resolve())
    chooser = at.multiselect(key=f"data_in_classes:{spec}")
    assert chooser.options == ["airplane", "cat", "dog"]
    chooser.set_value(["cat", "dog"]).run()
    at.button(key="data_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    analysis = at.session_state["analysis"]
    assert (len(analysis.fit_index), len(analysis.query_index)) == (PER_CLASS, 2 * PER_CLASS)
    assert analysis.cache_hit  # the CLI test embedded these images already: same contents, same cache entry
    at.switch_page("ood_dashboard/views/feature_scores.py").run()
    assert not at.exception
    auroc = float(next(m.value for m in at.metric if m.label == "AUROC"))
    assert auroc >= 0.9
    assert auroc == pytest.approx(analysis.threshold_view("feature", percentile=5).metrics["auroc"], abs=1e-4)
    truth = np.asarray(analysis.labels)[analysis.query_index][analysis.is_ood]
    assert set(truth.tolist()) == {analysis.class_names.index("airplane")}
