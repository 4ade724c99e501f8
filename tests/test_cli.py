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
