"""The command line: `python -m ood_core score` on .npz files, its outputs and its errors."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from ood_core import FeatureScorer, percentile_threshold
from ood_core.cli import build_parser, main


@pytest.fixture()
def npz_pair(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 8))
    y = np.repeat([0, 1], 30)
    X = centers[y] + rng.normal(size=(60, 8))
    Q = np.concatenate([centers[[0, 1]].repeat(5, axis=0), centers[[2]].repeat(10, axis=0)]) + rng.normal(size=(20, 8))
    fit = tmp_path / "fit.npz"
    query = tmp_path / "query.npz"
    np.savez(fit, features=X, labels=y, class_names=np.array(["cat", "dog"]))
    np.savez(query, features=Q, is_ood=np.arange(20) >= 10)
    return fit, query, X, Q


def test_score_writes_csv_and_settings(npz_pair, tmp_path, capsys):
    fit, query, X, Q = npz_pair
    out = tmp_path / "out" / "scores.csv"
    assert main(["-q", "score", "--fit", str(fit), "--query", str(query), "--k", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Feature score (KNN)" in printed and "Prediction score (pred_probs)" in printed and "AUROC" in printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 80 and rows[0]["label"] == "cat"
    fs = FeatureScorer(k=5).fit(X)
    q_scores = np.array([float(r["feature_score"]) for r in rows if r["set"] == "query"])
    np.testing.assert_allclose(q_scores, fs.score(Q), atol=1e-12)
    thr = percentile_threshold(fs.fit_scores_, 5)
    assert [r["feature_flagged"] == "True" for r in rows if r["set"] == "query"] == list(q_scores < thr)
    cards = json.loads(out.with_suffix(".json").read_text())["cards"]
    assert cards[0]["scorer"] == "feature" and cards[0]["threshold"] == pytest.approx(thr)
    assert cards[0]["scorer_params"]["k"] == 5 and cards[1]["scorer"] == "prediction"


def test_score_rejects_mismatched_features(npz_pair, tmp_path, capsys):
    fit, _, _, _ = npz_pair
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((4, 3)))
    assert main(["score", "--fit", str(fit), "--query", str(bad), "--out", str(tmp_path / "x.csv")]) == 2
    assert "--fit features have 8 columns but --query features have 3" in capsys.readouterr().err


def test_unknown_source_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "neither a built-in source (cifar10-demo, digits) nor an existing path" in capsys.readouterr().err


def test_help_lists_every_subcommand():
    text = build_parser().format_help()
    for cmd in ("embed", "score", "run", "demo"):
        assert cmd in text
    out = subprocess.run([sys.executable, "-m", "ood_core", "score", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--percentile" in out.stdout and "(default: 5)" in out.stdout


def test_embed_then_score_a_folder_end_to_end(write_tree, tmp_path, capsys, monkeypatch):
    """`embed` writes the documented keys, skips what is not an image, and its output scores."""
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    files = {f"{c}/{i}.png": tuple(int(v) for v in rng.integers(0, 255, 3)) for c in ("red", "blue") for i in range(4)}
    files["notes.txt"] = b"not an image"
    folder = write_tree(files)
    out = tmp_path / "feats.npz"
    assert main(["-q", "embed", str(folder), "--out", str(out), "--image-size", "32", "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "embedded 8 images" in printed and "1 skipped" in printed and "notes.txt" in printed
    with np.load(out, allow_pickle=False) as data:
        assert data["features"].shape == (8, 1280) and data["features"].dtype == np.float32
        assert list(data["class_names"]) == ["blue", "red"]
        np.testing.assert_array_equal(data["labels"], [0, 0, 0, 0, 1, 1, 1, 1])
        assert list(data["ids"])[0] == "blue/0.png"
    # a second embed of the same folder is read from the cache
    assert main(["-q", "embed", str(folder), "--out", str(out), "--image-size", "32"]) == 0
    assert "from the cache" in capsys.readouterr().out
    csv_out = tmp_path / "s.csv"
    assert main(["-q", "score", "--fit", str(out), "--query", str(out), "--k", "3", "--out", str(csv_out)]) == 0
    assert len(list(csv.DictReader(csv_out.open()))) == 16
    assert "warning: 8 of 8 query rows are identical to fit rows" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--percentile", "150"], "argument --percentile: must be a finite number in [0, 100]; got '150'"),
    (["--percentile", "-5"], "argument --percentile: must be a finite number in [0, 100]; got '-5'"),
    (["--percentile", "nan"], "argument --percentile: must be a finite number in [0, 100]; got 'nan'"),
    (["--t", "inf"], "argument --t: must be a finite number > 0; got 'inf'"),
    (["--k", "0"], "argument --k: must be at least 1; got 0"),
])
def test_bad_flags_are_refused_before_any_work(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "digits", "--out", str(tmp_path / "x.csv"), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_output_paths_say_what_they_write(tmp_path, capsys):
    with pytest.raises(SystemExit):  # the CSV and its settings .json would be one file
        main(["run", "digits", "--out", str(tmp_path / "x.json")])
    assert "argument --out: must be a .csv file path; got" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a name with a file suffix is neither a .npz nor a shard folder
        main(["embed", "digits", "--out", str(tmp_path / "x.npy")])
    assert "argument --out: must be a .npz file path or a folder for shards; got" in capsys.readouterr().err


def test_embed_refuses_a_folder_without_images(write_tree, tmp_path, capsys):
    folder = write_tree({"notes.txt": b"hello", "a/readme.md": b"# hi"})
    assert main(["-q", "embed", str(folder), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "the source has 0 readable image(s) (2 skipped: a/readme.md (not an image file" in err
    assert err.rstrip().endswith("; at least 2 are needed")
    assert not (tmp_path / "x.npz").exists()


def test_help_does_not_load_torch():
    """`--help` answers at once: the CLI imports torch, timm and scikit-learn only when a command runs."""
    code = "import sys, ood_core.cli; ood_core.cli.build_parser().format_help(); " \
           "print(sorted(m for m in ('torch', 'timm', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_stage_done_at_once_reports_no_rate(capsys):
    from ood_core.cli._common import _Bars

    bars = _Bars()
    bars("embed", 1797, 1797)  # read from the cache
    bars.close()
    err = capsys.readouterr().err
    assert err == "embed: 1,797/1,797 (nothing to compute)\n" and "it/s" not in err
