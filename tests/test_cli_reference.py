"""``ood-explorer fit / check / history`` (issue 20), run as a user runs them: ``python -m ood_core``
in a subprocess, on CIFAR-10 cats and dogs (a reference), new cats and dogs (no alarm) and a batch of
40% airplanes (alarm)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ood_core._binomial import flag_rate_interval
from tests.conftest import extract_cifar

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ood_core", "-q", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)




@pytest.fixture(scope="module")
def pets(cifar_zip, tmp_path_factory):
    """A reference fitted by ``fit`` on 300 train cats and dogs (20 airplanes left out by --in-classes),
    a clean batch of 120 new cats and dogs, and a batch of 110 with 44 airplanes (40%)."""
    root = tmp_path_factory.mktemp("cli-pets")
    env = {**os.environ, "OOD_CACHE_DIR": str(root / "cache")}
    fit = extract_cifar(cifar_zip, root / "fit", {"cat": range(150), "dog": range(150), "airplane": range(20)}, "train")
    clean = extract_cifar(cifar_zip, root / "clean", {"cat": range(60), "dog": range(60)}, "test")
    planes = extract_cifar(cifar_zip, root / "planes", {"cat": range(100, 130), "dog": range(100, 136),
                                                   "airplane": range(44)}, "test")
    out = cli("fit", str(fit), "--in-classes", "cat,dog", "--model", "lite0", "--percentile", "5",
              "--save", str(root / "pets-ref"), env=env)
    assert out.returncode == 0, out.stderr
    return {"root": root, "env": env, "ref": root / "pets-ref", "clean": clean, "planes": planes, "fit_out": out}


def test_fit_prints_thresholds_and_the_interval_for_a_batch_of_1000(pets):
    text = pets["fit_out"].stdout
    assert "fit items: 300" in text and "model: tf_efficientnet_lite0 at 128 px" in text
    settings = json.loads((pets["ref"] / "reference.json").read_text())
    for scorer in ("feature", "prediction"):
        threshold, below = settings[scorer]["threshold"], settings[scorer]["below"]
        lo, hi = flag_rate_interval(300, 5, 1000, below=below)
        assert f"{scorer} score: threshold {threshold:.6f} (the 5th percentile of the fit scores); expected " \
               f"flagged rate {below / 300:.1%}" in text
        assert (f"p = 5 of 300 fit images: 95% of in-distribution batches of 1,000 will flag between {lo:.1%} and "
                f"{hi:.1%}") in text
    assert f"saved the reference to {pets['ref']}" in text


def test_check_clean_then_airplanes_then_moved_then_history(pets, tmp_path):
    env, ref = pets["env"], pets["ref"]
    clean = cli("check", str(ref), str(pets["clean"]), "--out", str(tmp_path / "clean.csv"), "--name", "clean",
                "--fail-on-alarm", env=env)
    assert clean.returncode == 0, clean.stderr
    assert "no alarm: p = " in clean.stdout and "batch: clean   items: 120" in clean.stdout
    card = json.loads((tmp_path / "clean.json").read_text())
    assert card["n"] == 120 and card["alarm"] is False and card["p_value"] >= 0.01
    feature = card["scorers"]["feature"]
    below = json.loads((ref / "reference.json").read_text())["feature"]["below"]
    assert feature["interval"] == list(flag_rate_interval(300, 5, 120, below=below))
    assert feature["flagged_rate"] == feature["flagged"] / 120 and feature["expected_rate"] == below / 300
    assert set(feature["per_class"]) == {"cat", "dog"}

    # 40% airplanes: exit 0 without --fail-on-alarm, 1 with it; the same CSV both times
    planes = cli("check", str(ref), str(pets["planes"]), "--out", str(tmp_path / "planes.csv"), "--name", "planes",
                 env=env)
    assert planes.returncode == 0, planes.stderr
    assert "ALARM: p = " in planes.stdout and "(too many)" in planes.stdout
    card = json.loads((tmp_path / "planes.json").read_text())
    assert card["alarm"] is True and card["p_value"] < 0.01 and card["scorers"]["feature"]["alarm"] is True
    assert card["scorers"]["feature"]["flagged_rate"] > card["scorers"]["feature"]["interval"][1]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "planes.csv").read_text())))
    assert len(rows) == 110 == card["n"]
    assert set(rows[0]) == {"id", "path", "label", "predicted_class", "feature_score", "feature_flagged",
                            "prediction_score", "prediction_flagged"}
    planes_flagged = [r["feature_flagged"] == "True" for r in rows if r["label"] == "airplane"]
    assert len(planes_flagged) == 44 and sum(planes_flagged) >= 22
    failing = cli("check", str(ref), str(pets["planes"]), "--out", str(tmp_path / "again.csv"), "--name", "planes",
                  "--fail-on-alarm", env=env)
    assert failing.returncode == 1, failing.stderr
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "planes.csv").read_text()

    # the folder moved, a fresh embedding cache: the same CSV, the history moved with it
    moved = Path(shutil.move(str(ref), str(tmp_path / "elsewhere")))
    try:
        after = cli("check", str(moved), str(pets["planes"]), "--out", str(tmp_path / "moved.csv"), "--name", "planes",
                    env={**env, "OOD_CACHE_DIR": str(tmp_path / "fresh-cache")})
        assert after.returncode == 0, after.stderr
        assert (tmp_path / "moved.csv").read_text() == (tmp_path / "planes.csv").read_text()
        history = cli("history", str(moved), env=env)
        assert history.returncode == 0, history.stderr
        lines = history.stdout.splitlines()
        assert lines[0].split()[:3] == ["id", "checked", "at"]
        assert [line.split()[-1] for line in lines[1:5]] == ["clean", "planes", "planes", "planes"]
        assert [line.split()[-3] for line in lines[1:5]] == ["no", "ALARM", "ALARM", "ALARM"]
        backends = {line.split()[-2] for line in lines[1:5]}  # the backend that embedded each batch
        assert len(backends) == 1 and backends <= {"torch", "onnx", "openvino"}
        assert "4 check(s); 3 alarm(s)" in history.stdout
        as_json = json.loads(cli("history", str(moved), "--json", env=env).stdout)
        assert [h["batch_name"] for h in as_json] == ["clean", "planes", "planes", "planes"]
        assert as_json[0]["card"]["n"] == 120 and as_json[1]["feature_alarm"] is True
    finally:
        shutil.move(str(moved), str(ref))


def test_errors_name_the_file_and_exit_2(pets, tmp_path):
    env = pets["env"]
    damaged = Path(shutil.copytree(pets["ref"], tmp_path / "damaged", ignore=shutil.ignore_patterns("history*")))
    with open(damaged / "fit_ids.npy", "ab") as f:
        f.write(b"x")
    out = cli("check", str(damaged), str(pets["clean"]), "--out", str(tmp_path / "x.csv"), env=env)
    assert out.returncode == 2
    assert f"error: {damaged / 'fit_ids.npy'} is damaged or was replaced" in out.stderr
    assert not (tmp_path / "x.csv").exists()
    import numpy as np

    np.savez(tmp_path / "features.npz", features=np.ones((4, 7), np.float32))
    out = cli("check", str(pets["ref"]), str(tmp_path / "features.npz"), "--out", str(tmp_path / "x.csv"), env=env)
    assert out.returncode == 2
    assert "features.npz (4 rows, 7 features): the batch has 7 features per item but the reference has 1280" \
        in out.stderr
    out = cli("history", str(tmp_path), env=env)
    assert out.returncode == 2 and f"error: {tmp_path / 'manifest.json'} is missing" in out.stderr
    out = cli("check", str(pets["ref"]), str(pets["clean"]), "--out", str(tmp_path / "x.csv"), "--alpha", "1", env=env)
    assert out.returncode == 2 and "--alpha: must lie strictly between 0 and 1; got '1'" in out.stderr
    out = cli("fit", str(pets["clean"]), "--save", str(pets["ref"]), env=env)
    assert out.returncode == 2 and "the folder is not empty; choose a new folder or pass --overwrite" in out.stderr
