"""Settings (ood_core.settings), `ood-explorer config`, `--version` and `--cache-dir` meaning the whole cache."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import ood_core
from ood_core import settings
from ood_core.cli import main

REPO = Path(__file__).resolve().parents[1]
FILE_SETTINGS = ("cache_dir", "data_dir", "cifar10", "data_roots")


@pytest.fixture()
def clean_env(monkeypatch, tmp_path):
    """No OOD_* variable set; OOD_CONFIG points at a config file of this test (not written yet)."""
    for setting in settings.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("OOD_CONFIG", str(config))
    return config


def test_environment_beats_config_file_beats_default(clean_env, monkeypatch, tmp_path):
    for name in FILE_SETTINGS:
        assert settings.resolve(name).origin == "default"
    assert settings.resolve("data_roots").value == [Path.cwd()]
    clean_env.write_text('cache_dir = "~/from-file/cache"\ndata_dir = "/srv/ood-data"\ncifar10 = "/srv/cifar.zip"\n'
                         'data_roots = ["/data", "/mnt/images"]\n')
    expected = {"cache_dir": Path.home() / "from-file" / "cache", "data_dir": Path("/srv/ood-data"),
                "cifar10": Path("/srv/cifar.zip"), "data_roots": [Path("/data"), Path("/mnt/images")]}
    for name, value in expected.items():
        resolved = settings.resolve(name)
        assert (resolved.value, resolved.origin, resolved.where) == (value, "config file", f"{name} in {clean_env}")
    assert ood_core.default_cache_dir() == expected["cache_dir"]
    from ood_core._datadir import user_data_dir
    from ood_core.sources import cifar10_location

    assert user_data_dir() == Path("/srv/ood-data") and cifar10_location() == Path("/srv/cifar.zip")
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("OOD_DATA_ROOTS", f"/a{':'}/b")
    assert settings.resolve("cache_dir").value == tmp_path / "env-cache"
    assert settings.resolve("cache_dir").where == "the OOD_CACHE_DIR environment variable"
    assert settings.resolve("data_roots").value == [Path("/a"), Path("/b")]
    assert settings.resolve("data_dir").origin == "config file"  # the others still from the file


def test_a_bad_config_file_is_an_error_naming_it(clean_env):
    clean_env.write_text("cache_dir = [1, 2]\n")
    with pytest.raises(ValueError, match=re.escape(f"{clean_env}: cache_dir must be a path in quotes")):
        settings.resolve("cache_dir")
    clean_env.write_text("cache_dir = \n")
    with pytest.raises(ValueError, match=re.escape(f"cannot read the config file {clean_env}")):
        settings.resolve("cache_dir")
    clean_env.write_text('cache_dri = "/x"\n')
    with pytest.warns(UserWarning, match="unknown setting 'cache_dri' is ignored; the config file may set cache_dir"):
        assert settings.resolve("cache_dir").origin == "default"


def _env_vars_read_by_the_code() -> set[str]:
    """Every OOD_* name written in the code of ood_core and the dashboard."""
    names = set()
    for folder in ("ood_core", "ui", "ood_dashboard", "pages"):
        for path in (REPO / folder).rglob("*.py"):
            names |= set(re.findall(r"\bOOD_[A-Z0-9_]+\b", path.read_text()))
    return names


def test_config_lists_every_setting_value_and_origin(clean_env, monkeypatch, tmp_path, capsys):
    clean_env.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "c"))
    assert main(["config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in shown["settings"]}
    assert shown["config_file"] == str(clean_env) and shown["config_file_exists"] is True
    assert {row["env"] for row in rows.values()} >= _env_vars_read_by_the_code() >= {
        "OOD_CACHE_DIR", "OOD_DATA_DIR", "OOD_CIFAR10", "OOD_DATA_ROOTS", "OOD_CONFIG"}
    assert (rows["cache_dir"]["value"], rows["cache_dir"]["origin"]) == (str(tmp_path / "c"), "environment")
    assert (rows["data_dir"]["value"], rows["data_dir"]["origin"]) == (str(tmp_path / "d"), "config file")
    assert (rows["cifar10"]["value"], rows["cifar10"]["origin"]) == (None, "default")
    assert rows["config"]["origin"] == "environment" and rows["config"]["config_key"] is None
    assert shown["run_defaults"]["batch_size"] == 64 and shown["run_defaults"]["weights"] == "bundled"

    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert f"cache_dir = {tmp_path / 'c'}\n  from the OOD_CACHE_DIR environment variable\n" in text
    assert f"data_dir = {tmp_path / 'd'}\n  from data_dir in {clean_env}\n" in text
    assert "cifar10 = (not set)\n  from the default: none (the copy downloaded into data_dir/cifar10, if any)" in text


def test_config_with_a_broken_file_exits_2_naming_it(clean_env, capsys):
    clean_env.write_text("data_roots = '/data'\n")
    assert main(["config"]) == 2
    assert f"error: {clean_env}: data_roots must be a list of folder paths" in capsys.readouterr().err


def test_version_from_the_package_metadata(capsys, monkeypatch):
    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as done:
            main([flag])
        assert done.value.code == 0
        assert capsys.readouterr().out == f"ood-explorer {metadata.version('ood-explorer')}\n"

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(SystemExit):
        main(["-V"])
    assert capsys.readouterr().out.startswith("ood-explorer: version unknown (no installed package metadata")


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_cache_dir_holds_the_whole_cache(tmp_path, monkeypatch, capsys):
    """`--cache-dir X`: embeddings, pred_probs and maps in X; nothing in the default cache."""
    default, chosen = tmp_path / "default-cache", tmp_path / "chosen"
    monkeypatch.setenv("OOD_CACHE_DIR", str(default))
    args = ["-q", "run", "digits", "--in-classes", "0,1,2", "--cache-dir", str(chosen), "--out", str(tmp_path / "s.csv")]
    assert main(args) == 0
    kept = _files_under(chosen)
    assert len([p for p in kept if p.parent == chosen]) == 1  # the embeddings
    # the classifier's pred_probs and the image statistics gathered while embedding (ood_core.issues)
    assert len([p for p in kept if p.parent == chosen / "runs"]) == 2
    analysis = ood_core.analyze("digits", in_classes=["0", "1", "2"], cache_dir=chosen)
    assert analysis.cache_hit and analysis.cache_dir == str(chosen)
    analysis.projection("pca")
    assert len(_files_under(chosen / "runs")) == 3  # + the map
    assert _files_under(default) == []


def test_an_invalid_cache_file_is_recomputed_without_a_resource_warning(tmp_path):
    """In its own process: pytest's log capture would keep the failed load's file alive."""
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "ood_core", "-q", "run", "digits", "--cache-dir", str(cache),
               "--out", str(tmp_path / "s.csv")]
    assert subprocess.run(command, cwd=REPO, capture_output=True, timeout=300).returncode == 0
    first = (tmp_path / "s.csv").read_text()
    for path in _files_under(cache):
        path.write_bytes(b"PK\x03\x04 not a zip file at all")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0
    assert "ignoring invalid embedding cache file" in done.stderr and "unclosed file" not in done.stderr
    assert (tmp_path / "s.csv").read_text() == first


def test_the_report_says_why_there_is_no_prediction_score(tmp_path, capsys):
    features = tmp_path / "unlabelled.npz"
    np.savez(features, features=np.random.default_rng(0).normal(size=(40, 5)))
    assert main(["-q", "run", str(features), "--out", str(tmp_path / "s.csv")]) == 0
    assert ("Prediction score (pred_probs)\n  none: the prediction score needs class labels (at least 2 classes, "
            "2 items each) on the train (fit) items, or precomputed pred_probs. The feature score works without "
            "them.") in capsys.readouterr().out
