"""Hostile feature files (bombs, lying headers, pickles, huge magnitudes) and hostile text in
the exported CSV."""
from __future__ import annotations

import csv
import io
import pathlib
import time

import numpy as np
import pytest

import ood_core
import ood_core.cli
from ood_core import load_arrays
from tests.hostile import _corpus as C


def refused(path, match: str) -> float:
    """Seconds ``load_arrays(path)`` took to refuse it with a message matching ``match``."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        load_arrays(path)
    return time.perf_counter() - start


def test_npz_bomb_over_the_cap_is_refused_from_its_headers(bombs):
    assert refused(bombs["npz-3gib"], r"the arrays in 'npz-3gib.npz' would take 3.0 GiB in memory, over the "
                                      r"2.0 GiB limit for precomputed arrays .*; refused before reading them\. "
                                      r"Larger sets are read from disk a block at a time as a shard folder") < 1


def test_npz_bomb_under_the_cap_is_refused_by_its_ratio(bombs):
    assert refused(bombs["npz-1gib-ratio"], r"key 'features' in 'npz-1gib-ratio.npz' would inflate [\d,]+ times, "
                                            "to 1.0 GiB; refused as a likely decompression bomb") < 1


@pytest.mark.parametrize("name", ["npz-lying-header", "npy-lying-header"])
def test_headers_promising_more_than_the_file_holds_are_refused(bombs, name):
    assert refused(bombs[name], r"declares shape \(\d+, 1280\) of float32 \(.*\) but holds only 1024 bytes of "
                                "data; the file is truncated or tampered with") < 1


class Touch:
    """Unpickling this creates ``path``: proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


@pytest.mark.parametrize("layout", ["npy", "npz-features", "npz-ids"])
def test_pickled_arrays_are_refused_unopened(tmp_path, layout):
    marker = tmp_path / "unpickled"
    evil = np.array([Touch(marker), Touch(marker)], dtype=object)
    path = tmp_path / f"evil.{layout[:3]}"
    if layout == "npy":
        np.save(path, evil, allow_pickle=True)
    elif layout == "npz-features":
        np.savez(path, features=evil)
    else:
        np.savez(path, features=np.ones((2, 4)), ids=evil)
    key = {"npy": "'evil.npy'", "npz-features": "key 'features' in 'evil.npz'", "npz-ids": "key 'ids' in 'evil.npz'"}
    refused(path, f"{key[layout]} holds an object \\(pickled\\) array, which is not loaded for safety")
    assert not marker.exists()


def test_npz_with_too_many_entries_is_refused(tmp_path):
    path = C.write_zip(tmp_path / "many.npz", [C.stored(f"k{i}.npy", b"") for i in range(1001)])
    refused(path, "'many.npz' holds more than 1000 entries; a features file holds at most 7 arrays")


def test_encrypted_and_truncated_npz(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, features=np.ones((3, 4)))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-30])
    refused(cut, "'cut.npz' is not a .npy or .npz file")
    data = good.read_bytes()
    locked = C.write_zip(tmp_path / "locked.npz", [C.stored("features.npy", np.lib.format.MAGIC_PREFIX + data,
                                                            flags=0x1)])
    refused(locked, r"key 'features' in 'locked.npz' is encrypted \(password-protected\); not supported")


@pytest.mark.parametrize("magnitude", [1e155, 1e300])
def test_huge_features_still_rank(tmp_path, magnitude):
    """|x| >= 1e155 overflowed the norm: every score became exp(-1) = 0.3679."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 16))
    plain, path = tmp_path / "plain.npz", tmp_path / "huge.npz"
    np.savez(plain, features=features)
    np.savez(path, features=features * magnitude)
    expected = ood_core.analyze(str(plain)).query_feature_scores
    scores = ood_core.analyze(str(path)).query_feature_scores
    np.testing.assert_allclose(scores, expected, rtol=1e-9)
    assert len(np.unique(scores.round(6))) > 50  # not one value for all (0.3679 before the fix)


def test_csv_cells_cannot_run_as_formulas(tmp_path):
    names = np.array(["=1+2", "@SUM(A1)", "+cmd", "-2", "\tx", "plain"])
    ids = np.array([f"{n}|{i}" for i in range(4) for n in names])
    features = np.random.default_rng(1).normal(size=(len(ids), 8))
    path = tmp_path / "named.npz"
    np.savez(path, features=features, ids=ids, labels=np.tile(np.arange(6), 4), class_names=names)
    out = tmp_path / "out" / "scores.csv"
    assert ood_core.cli.main(["-q", "run", str(path), "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    risky = ("=", "+", "-", "@", "\t", "\r")
    for row in rows:
        for column, value in row.items():
            assert not value.startswith(risky) or _is_number(value), (column, value)
    assert {row["label"] for row in rows} == {"'=1+2", "'@SUM(A1)", "'+cmd", "'-2", "'\tx", "plain"}
    assert {row["id"].split("|")[0] for row in rows} == {"'=1+2", "'@SUM(A1)", "'+cmd", "'-2", "'\tx", "plain"}


def test_csv_numbers_stay_numbers():
    from ood_core._export import to_csv

    text = to_csv([{"name": "-1+2", "score": -0.25, "count": -3, "big": np.float64(1e-300), "flag": True}])
    assert text == "name,score,count,big,flag\n'-1+2,-0.25,-3,1e-300,True\n"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
