"""The hostile corpus through both front ends: the CLI (``ood_core.cli.main``) and the dashboard's
loading path (``ood_dashboard.runs.compute_run``). Each case gives a clear message, valid items are kept,
nothing is written outside the cache and output folders, and the bombs are refused within
5 s and 1.5 GB of peak memory, measured in a child process."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ood_core.cli
from tests.conftest import REPO
from tests.hostile import _corpus as C

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
CASES = {case.name: case for case in C.image_cases()}
KEPT = sorted(name for name, case in CASES.items() if case.skip is None)
MAX_SECONDS, MAX_PEAK_MIB = 5.0, 1536


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache folder for the module (OOD_CACHE_DIR, as the dashboard reads it)."""
    cache = tmp_path_factory.mktemp("front-end-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_CACHE_DIR", str(cache))
        yield cache


def expected_skips(kind: str) -> dict[str, str]:
    only = C.FOLDER_ONLY if kind == "folder" else C.ZIP_ONLY
    return {**{name: case.skip for name, case in CASES.items() if case.skip}, **only}


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_corpus_through_the_cli_and_the_dashboard(kind, corpus_folder, corpus_zip, shared_cache, tmp_path, capsys):
    from ood_dashboard.runs import RunSettings, compute_run

    source = corpus_folder if kind == "folder" else corpus_zip
    watched = source.parent
    before, cwd_before = C.tree(watched), sorted(os.listdir())
    out = tmp_path / "out" / "scores.csv"
    assert ood_core.cli.main(["-q", "run", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name, reason in expected_skips(kind).items():
        assert re.search(f"  skipped {re.escape(name)}: {reason}", printed), name
    assert sorted(row["id"] for row in csv.DictReader(io.StringIO(out.read_text()))) == KEPT

    analysis = compute_run(RunSettings(source=str(source)))
    assert analysis.ids == KEPT and analysis.cache_hit  # the CLI's embeddings, by content
    skipped = dict(analysis.skipped)
    for name, reason in expected_skips(kind).items():
        assert re.match(reason, skipped[name]), name
    assert C.tree(watched) == before and sorted(os.listdir()) == cwd_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.csv", "scores.json"]


# Bombs refused outright: name -> the message every path gives (a regex).
REFUSED = {
    "zip-2gib-entry": r"'zip-2gib-entry.zip' would inflate to 2147484\d+ bytes \(2.0 GiB\), more than max_total_bytes=",
    "zip-over-total": r"'zip-over-total.zip' would inflate to \d+ bytes \(2.3 GiB\), more than max_total_bytes=",
    "zip-many-entries": r"'zip-many-entries.zip' holds more than max_files=100000 entries \(folders count too\)",
    "npz-3gib": r"would take 3.0 GiB in memory, over the 2.0 GiB limit for precomputed arrays",
    "npz-1gib-ratio": r"would inflate [\d,]+ times, to 1.0 GiB; refused as a likely decompression bomb",
    "npz-lying-header": r"declares shape \(100000, 1280\) .* but holds only 1024 bytes of data",
    "npy-lying-header": r"declares shape \(1000000000, 1280\) .* but holds only 1024 bytes of data",
}
# Bombs inside an otherwise valid source: the bomb is skipped with this reason, the rest is scored.
SKIPPED = {
    "zip-1gib-entry": ("bomb.png", "entry would inflate to 1.0 GiB, over the 64.0 MiB limit for one image; not read"),
    "zip-lying-header": ("liar.png", r"zip entry is corrupt or truncated \(Bad CRC-32 for file 'liar.png'\)"),
    "megapixels": ("megapixels-144.png", r"refused by Pillow's decompression-bomb guard: 12000x12000 image"),
}


@pytest.mark.slow
def test_bombs_are_bounded_in_time_and_memory(bombs, tmp_path):
    """All bombs in one child process (imports and the model load paid once); its peak RSS bounds
    every case. The library listing of each bomb, and every refusal, takes under 5 s."""
    before = C.tree(next(iter(bombs.values())).parent)
    env = {**os.environ, "OOD_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    names = [*REFUSED, *SKIPPED]
    done = subprocess.run([sys.executable, "-m", "tests.hostile._probe", str(tmp_path / "out"),
                           *(str(bombs[n]) for n in names)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    report = {}
    for name in names:
        result = results[str(bombs[name])]
        report[name] = {path: (round(r["seconds"], 2), round(r["peak_mib"])) for path, r in result.items()}
        assert result["library"]["seconds"] < MAX_SECONDS, (name, result["library"])
        if name in REFUSED:
            for path in ("library", "dashboard"):
                assert re.search(REFUSED[name], result[path]["error"]), (name, path, result[path])
                assert result[path]["seconds"] < MAX_SECONDS, (name, path)
            assert result["cli"]["rc"] == 2 and re.search("error: .*" + REFUSED[name], result["cli"]["stderr"])
            assert result["cli"]["seconds"] < MAX_SECONDS, name
        else:
            bomb, reason = SKIPPED[name]
            for path in ("library", "dashboard"):
                assert re.match(reason, dict(result[path].get("skipped", []))[bomb]), (name, path, result[path])
                assert result[path]["items"] == 2
            assert result["cli"]["rc"] == 0 and re.search(f"skipped {bomb}: {reason}", result["cli"]["stdout"])
    peak = max(r["peak_mib"] for result in results.values() if isinstance(result, dict) for r in result.values())
    for name, times in report.items():  # shown with -s: the numbers for the README
        print(f"{name:18s} " + "  ".join(f"{path} {sec:.2f} s (peak {mib} MiB)" for path, (sec, mib) in times.items()))
    assert peak < MAX_PEAK_MIB
    assert C.tree(next(iter(bombs.values())).parent) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]


def _all_encrypted(path: Path) -> Path:
    data = C.solid("x.png", (1, 2, 3))
    return C.write_zip(path, [C.stored(f"{i}.png", data, flags=0x1) for i in range(3)])


def _truncated(path: Path) -> Path:
    whole = C.write_zip(path.with_suffix(".whole"), [C.stored(f"{i}.png", C.solid("x.png", (i, 0, 0)))
                                                     for i in range(3)])
    path.write_bytes(whole.read_bytes()[:200])
    whole.unlink()
    return path


def _pickled(path: Path) -> Path:
    import numpy as np

    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


REFUSED_SOURCES = {
    "slip.zip": (lambda p: C.write_zip(p, [C.stored("../../escape.png", C.solid("x.png", (1, 2, 3)))]),
                 r"entry '../../escape.png' in 'slip.zip' has an absolute path or a '..' component; the archive is "
                 "refused"),
    "cut.zip": (_truncated, "'cut.zip' looks truncated: it starts like a zip archive but its table of contents"),
    "locked.zip": (_all_encrypted, r"the source has 0 readable image\(s\) \(3 skipped: 0.png \(encrypted \(password-protected\) zip entry"),
    "pickled.npy": (_pickled, r"'pickled.npy' holds an object \(pickled\) array, which is not loaded for safety"),
    "pipe.zip": (_fifo, r"'pipe.zip' is not a regular file"),
    "pipe.npz": (_fifo, r"path=.*pipe.npz' is not a file"),
}


@pytest.mark.parametrize("name", sorted(REFUSED_SOURCES))
def test_refused_sources_say_why_in_both_front_ends(name, tmp_path, shared_cache, capsys):
    from ood_dashboard.runs import RunSettings, compute_run

    make, message = REFUSED_SOURCES[name]
    source = make(tmp_path / name)
    before = C.tree(tmp_path)
    out = tmp_path / "out" / "scores.csv"
    assert ood_core.cli.main(["-q", "run", str(source), "--out", str(out)]) == 2
    assert re.search("error: .*" + message, capsys.readouterr().err)
    with pytest.raises(ValueError, match=message):
        compute_run(RunSettings(source=str(source)))
    assert C.tree(tmp_path) == before  # no output, nothing extracted
