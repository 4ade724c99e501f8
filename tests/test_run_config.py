"""One description of a run's settings (``ood_core.RunConfig``): the CLI, the dashboard, ``analyze``,
``embed``, ``embed_shards``, ``compare_models`` and ``Reference.fit`` take their defaults from it and
from nowhere else; and the scorers come from one registry that a new kind of score joins."""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

import ood_core
from ood_core import RunConfig, ScoreConfig, analyze
from ood_core.analysis import SCORERS
from ood_core.cli import build_parser, main
from ood_core.cli._common import report, run_config
from ood_core.reference import Reference
from ood_core.run_config import EMBEDDING_FIELDS, SPLIT_FIELDS, EmbeddingKeywords, RunKeywords

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]


def test_the_keywords_are_the_fields_and_no_function_lists_its_own():
    assert list(RunKeywords.__annotations__) == FIELDS
    assert list(EmbeddingKeywords.__annotations__) == list(EMBEDDING_FIELDS) == FIELDS[:6]
    assert SPLIT_FIELDS == ("in_classes", "fit_fraction", "seed")
    for function in (ood_core.analyze, ood_core.embed, ood_core.embed_shards, ood_core.compare_models, Reference.fit):
        params = inspect.signature(function).parameters
        own = sorted(set(params) & set(FIELDS))
        assert not own, f"{function.__qualname__} lists its own defaults for {own}"
        assert "settings" in params and params["settings"].default is None


@pytest.fixture
def changed_defaults(monkeypatch):
    """RunConfig's defaults changed in their one place: batch 7, backend torch, fit fraction 0.25, seed 3."""
    changed = {**{f.name: f.default for f in dataclasses.fields(RunConfig)},
               "batch_size": 7, "backend": "torch", "fit_fraction": 0.25, "seed": 3}
    monkeypatch.setattr(RunConfig.__init__, "__defaults__", tuple(changed[name] for name in FIELDS))
    assert RunConfig().batch_size == 7
    return changed


def test_the_cli_the_dashboard_and_analyze_follow_the_one_description(changed_defaults, monkeypatch, tmp_path):
    # the CLI: the flags left out take RunConfig's defaults, and --help says them
    parser = build_parser()
    args = parser.parse_args(["run", "digits", "--out", str(tmp_path / "s.csv"), "--in-classes", "0,1"])
    assert run_config(args) == RunConfig(in_classes=("0", "1"))
    assert (run_config(args).batch_size, run_config(args).backend, run_config(args).fit_fraction) == (7, "torch", 0.25)
    args = parser.parse_args(["run", "digits", "--out", str(tmp_path / "s.csv"), "--batch-size", "16"])
    assert run_config(args).batch_size == 16 and run_config(args).seed == 3
    run_help = parser._subparsers._group_actions[0].choices["run"].format_help()
    assert "(default: 7)" in run_help and "(default: 0.25)" in run_help and "(default: torch)" in run_help

    # the dashboard: a run's settings are RunConfig's
    from ood_dashboard.runs import RunSettings

    assert RunSettings().config == RunConfig() and RunSettings().config.batch_size == 7

    # analyze and embed: the embedder is built from the defaults; the split too
    built = []

    class Stop(Exception):
        pass

    def spy(**kwargs):
        built.append(kwargs)
        raise Stop

    monkeypatch.setattr("ood_core.embedder.Embedder", spy)
    with pytest.raises(Stop):
        analyze("digits")
    with pytest.raises(Stop):
        ood_core.embed("digits", image_size=24, cache_dir=tmp_path / "c")
    # the run's cache folder goes to the embedder too (its backend's exports are kept there)
    assert built[0] == {**RunConfig().embedding(), "cache_dir": None}
    assert built[0]["batch_size"] == 7 and built[0]["backend"] == "torch"
    assert built[1] == {**RunConfig().embedding(), "image_size": 24, "cache_dir": tmp_path / "c"}

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", features=rng.normal(size=(40, 4)).astype(np.float32),
             labels=np.repeat([0, 1, 2, 3], 10), class_names=np.array(["a", "b", "c", "d"]))
    analysis = analyze(str(tmp_path / "f.npz"), in_classes=["a", "b"])
    assert analysis.class_split == {"in_classes": ["a", "b"], "fit_fraction": 0.25, "seed": 3}
    assert len(analysis.fit_index) == 5  # a quarter of the 20 in-class items


def test_a_wrong_keyword_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"analyze\(\) got an unexpected keyword argument 'modle'"):
        analyze("digits", modle="lite0")
    with pytest.raises(TypeError, match=r"embed\(\) got an unexpected keyword argument 'in_classes'"):
        ood_core.embed("digits", in_classes=["0"])
    with pytest.raises(TypeError, match=r"embed_shards\(\) got an unexpected keyword argument 'seed'"):
        ood_core.embed_shards("digits", tmp_path / "shards", seed=1)
    with pytest.raises(TypeError, match="settings must be a RunConfig"):
        analyze("digits", settings={"model": "lite0"})


def test_settings_and_keywords_mean_the_same_run(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "f.npz", features=rng.normal(size=(60, 5)).astype(np.float32),
             labels=np.repeat([0, 1, 2], 20), class_names=np.array(["a", "b", "c"]))
    by_keywords = analyze(str(tmp_path / "f.npz"), in_classes=["a", "b"], fit_fraction=0.5, seed=4)
    by_settings = analyze(str(tmp_path / "f.npz"), settings=RunConfig(in_classes=("a", "b"), seed=4))
    assert by_keywords.run_id == by_settings.run_id
    np.testing.assert_array_equal(by_keywords.fit_index, by_settings.fit_index)
    # a keyword replaces the field of the settings given
    other = analyze(str(tmp_path / "f.npz"), settings=RunConfig(in_classes=("a", "b"), seed=4), seed=5)
    assert other.class_split["seed"] == 5 and other.run_id != by_settings.run_id


def test_a_new_kind_of_score_is_one_registration(tmp_path, monkeypatch, capsys):
    """A kind registered in SCORERS is listed, thresholded, exported, carded and reported without any
    other edit (here one that reads the feature scores' fields, so it needs no new Analysis field)."""
    feature = SCORERS["feature"]
    kind = dataclasses.replace(feature, name="echo", title="Echo score (test)", card=lambda a: {"echo": True},
                               report=lambda a: ["an echo of the feature score"], missing="never missing")
    monkeypatch.setitem(SCORERS, "echo", kind)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    analysis = analyze(ood_core.ArraySet(features=X, pred_probs=None, labels=np.full(30, -1),
                                         ids=[str(i) for i in range(30)], class_names=[], split=None, is_ood=None,
                                         description="random rows", identity="random rows"))
    assert analysis.scorers == ("feature", "echo")
    np.testing.assert_array_equal(analysis.scores("echo")[0], analysis.scores("feature")[0])
    view = analysis.threshold_view("echo", percentile=10)
    assert view.fit_flagged == analysis.threshold_view("feature", percentile=10).fit_flagged
    assert analysis.threshold_card(view)["scorer_params"] == {"echo": True}
    assert "echo_score" in analysis.scores_table({"echo": view.threshold})[0]
    # a change of the settings it depends on refits it through its own refit
    assert analysis.rescore(ScoreConfig(k=3)).score_config.of("echo") == (3, 1.0, "auto")
    report(analysis, 10.0, tmp_path / "out.csv")
    printed = capsys.readouterr().out
    assert "Echo score (test)\n  an echo of the feature score\n  threshold at the 10th percentile" in printed
    assert "Prediction score (pred_probs)\n  none: the prediction score needs class labels" in printed


def test_the_cli_report_and_scorer_choices_come_from_the_registry(tmp_path, capsys):
    parser = build_parser()
    copy = parser._subparsers._group_actions[0].choices["copy-items"]
    scorer = next(a for a in copy._actions if a.dest == "scorer")
    assert tuple(scorer.choices) == tuple(SCORERS) == ("feature", "prediction")
    assert main(["-q", "run", "digits", "--model", "pixels", "--out", str(tmp_path / "d.csv")]) == 0
    printed = capsys.readouterr().out
    for kind in SCORERS.values():
        assert f"\n{kind.title}\n" in printed
