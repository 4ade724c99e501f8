"""Review marks (issue 10): the SQLite store under crashes and concurrent writers, the dataset key,
the precision estimate, the export with scores, curation copies, and the two CLI commands."""
from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ood_core
from ood_core.cli import main
from ood_core.review import (VERDICTS, Mark, ReviewStore, ReviewStoreError, copy_items, dataset_key,
                             flagged_positions, marked_positions, precision_estimate, review_csv,
                             review_summary, review_table, reviewed_truth)

WRITER = Path(__file__).with_name("review_writer.py")
IMAGES = {"cat/a.jpg": (250, 10, 10), "cat/b.png": (240, 30, 20), "dog/c.jpg": (10, 10, 250),
          "dog/d.png": (20, 30, 240)}


@pytest.fixture()
def store(tmp_path) -> ReviewStore:
    return ReviewStore(tmp_path / "marks" / "reviews.sqlite3")


@pytest.fixture()
def features_npz(tmp_path) -> Path:
    """70 rows: 50 train rows of two classes, 20 test rows (10 like the train rows, 10 far away)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(3, 6))
    labels = np.r_[np.repeat([0, 1], 25), np.repeat([0, 1], 5), np.full(10, -1)]
    X = np.r_[centres[labels[:60]], np.repeat(centres[[2]], 10, axis=0)] + rng.normal(size=(70, 6))
    path = tmp_path / "features.npz"
    np.savez(path, features=X, labels=labels, class_names=np.array(["cat", "dog"]),
             ids=np.array([f"img/{i:03d}" for i in range(70)]), split=np.array(["train"] * 50 + ["test"] * 20))
    return path


# ---------------------------------------------------------------------- the store
def test_marks_round_trip_and_survive_a_new_store(store, tmp_path):
    assert store.path == tmp_path / "marks" / "reviews.sqlite3"
    assert store.mark("data-1", "cat/a.jpg", "outlier", note="two cats") == 1
    assert store.mark("data-1", ["cat/b.png", "dog/c.jpg"], "fine", label="pets folder") == 2
    store.mark("data-2", "cat/a.jpg", "unsure")
    marks = store.marks("data-1")
    assert {item: m.verdict for item, m in marks.items()} == {"cat/a.jpg": "outlier", "cat/b.png": "fine",
                                                              "dog/c.jpg": "fine"}
    assert marks["cat/a.jpg"].note == "two cats" and marks["cat/b.png"].note == ""
    assert abs(marks["cat/a.jpg"].updated_at.timestamp() - time.time()) < 60
    store.mark("data-1", ["cat/a.jpg", "cat/b.png"], "fine")  # a bulk mark keeps each item's note
    assert store.marks("data-1")["cat/a.jpg"] == Mark("fine", "two cats", store.marks("data-1")["cat/a.jpg"].updated_at)
    store.mark("data-1", "cat/a.jpg", "outlier", note="")  # a given note replaces it
    assert store.marks("data-1")["cat/a.jpg"].note == ""
    assert store.counts("data-1") == {"outlier": 1, "fine": 2, "unsure": 0}
    assert store.clear("data-1", ["cat/b.png", "never/marked.png"]) == 1
    reopened = ReviewStore(store.path)  # another process or a server restart opens the same file
    assert set(reopened.marks("data-1")) == {"cat/a.jpg", "dog/c.jpg"}
    assert [(d.dataset, d.label, d.marks) for d in reopened.datasets()] == [("data-1", "pets folder", 2),
                                                                           ("data-2", "", 1)]
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_marks_are_clear_errors(store):
    with pytest.raises(ValueError, match=r"verdict must be one of \('outlier', 'fine', 'unsure'\); got 'bad'"):
        store.mark("d", "x", "bad")
    with pytest.raises(TypeError, match=r"items must be non-empty item ids \(str\); got 3 \(int\)"):
        store.mark("d", ["x", 3], "fine")
    with pytest.raises(TypeError, match="dataset must be a non-empty dataset key"):
        store.mark("", "x", "fine")
    with pytest.raises(ValueError, match="note is 10,001 characters long; at most 10,000 are kept"):
        store.mark("d", "x", "fine", note="n" * 10_001)
    assert store.marks("d") == {}  # nothing half-written


def test_default_file_is_in_the_one_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_DATA_DIR", str(tmp_path / "data home"))
    assert ReviewStore().path == tmp_path / "data home" / "reviews.sqlite3"
    assert ood_core.cifar10_data_dir() == tmp_path / "data home" / "cifar10"


def test_files_that_are_not_review_databases_are_refused(tmp_path):
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ReviewStoreError, match="garbage.sqlite3' is not a readable review database"):
        ReviewStore(garbage)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (n)")
    with pytest.raises(ReviewStoreError, match="is an SQLite database of another program, not a review database"):
        ReviewStore(other)
    with pytest.raises(ReviewStoreError, match="is a folder; give a file path"):
        ReviewStore(tmp_path)


def test_threads_share_one_store(store):
    def work(t):
        for i in range(40):
            store.mark("shared", f"t{t}/{i}", VERDICTS[i % 3])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.marks("shared")) == 240 and store.counts("shared") == {"outlier": 84, "fine": 78, "unsure": 78}


def test_two_processes_one_killed_lose_no_acknowledged_mark(tmp_path):
    """Two writers mark 1,000 items each at once; one is killed with SIGKILL after 300 acknowledged
    marks. Every mark whose call returned is there, and the file is intact."""
    db = tmp_path / "reviews.sqlite3"
    ReviewStore(db)
    env = {**os.environ, "PYTHONPATH": str(WRITER.parents[1])}
    start = time.perf_counter()
    children = {name: subprocess.Popen([sys.executable, str(WRITER), str(db), "data", f"{name}/", "1000"],
                                       stdout=subprocess.PIPE, text=True, env=env) for name in ("killed", "kept")}
    acked = {"killed": [], "kept": []}
    killed = children["killed"]
    while len(acked["killed"]) < 300:
        line = killed.stdout.readline()
        assert line, f"the writer stopped early: {killed.wait()}"
        acked["killed"].append(line.strip())
    killed.send_signal(signal.SIGKILL)
    acked["killed"] += [line.strip() for line in killed.stdout]  # acknowledged before the kill
    assert killed.wait() == -signal.SIGKILL
    acked["kept"] = [line.strip() for line in children["kept"].stdout]
    assert children["kept"].wait() == 0
    elapsed = time.perf_counter() - start
    assert len(acked["kept"]) == 1100  # 1,000 calls, every tenth marking two items
    marks = ReviewStore(db).marks("data")
    for name in acked:
        for item in acked[name]:
            i = int(item.split("/")[1][:4])
            assert marks[item].verdict == VERDICTS[i % 3] and marks[item].note == f"note {i}", item
    assert len(acked["killed"]) < 1100, "the writer finished before it was killed"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    print(f"{len(acked['killed'])} + {len(acked['kept'])} acknowledged marks checked; {elapsed:.1f} s")


# ---------------------------------------------------------------------- the dataset key
def test_dataset_key_is_the_content_of_the_whole_data(write_tree, write_zip, tmp_path):
    folder = write_tree(IMAGES)
    key = dataset_key(ood_core.open_source(folder))
    moved = shutil.copytree(folder, tmp_path / "elsewhere" / "renamed")
    assert dataset_key(ood_core.open_source(moved)) == key  # not the path
    assert dataset_key(ood_core.open_source(write_zip({f"pets/{k}": v for k, v in IMAGES.items()}))) == key
    split = ood_core.in_out_split(ood_core.open_source(folder), ["cat"], fit_fraction=1.0)
    assert split.identity != ood_core.open_source(folder).identity and dataset_key(split) == key
    (moved / "dog" / "d.png").write_bytes((folder / "cat" / "b.png").read_bytes())
    assert dataset_key(ood_core.open_source(moved)) != key  # other pixels: other data
    assert dataset_key(ood_core.digits(in_classes=(0, 1))) == dataset_key(ood_core.digits())
    with pytest.raises(TypeError, match="dataset_key takes an Analysis, ImageSet or ArraySet; got str"):
        dataset_key("folder")


# ---------------------------------------------------------------------- what the marks say
def test_precision_estimate_is_a_wilson_interval():
    estimate = precision_estimate(["outlier"] * 8 + ["fine"] * 2 + ["unsure"] * 5)
    assert estimate.n == 10 and estimate.precision == 0.8
    assert (round(estimate.low, 4), round(estimate.high, 4)) == (0.4902, 0.9433)
    assert precision_estimate({"a": Mark("outlier", "", None)}).high == 1.0
    assert precision_estimate({"a": Mark("outlier", "", None)}).low == pytest.approx(0.2065, abs=1e-4)
    assert np.isnan(precision_estimate(["unsure"]).precision) and precision_estimate([]).n == 0
    with pytest.raises(ValueError, match="verdict must be one of"):
        precision_estimate(["yes"])


def test_summary_truth_and_export_of_an_analysis(features_npz, store):
    analysis = ood_core.analyze(features_npz)
    key = dataset_key(analysis)
    assert key == dataset_key(ood_core.load_arrays(features_npz))
    threshold = analysis.threshold_view("feature", percentile=10).threshold
    fit_scores, query_scores = analysis.scores("feature")
    flagged = flagged_positions(analysis, "feature", threshold)
    assert sorted(flagged) == sorted(analysis.query_index[query_scores < threshold])
    flagged_scores = query_scores[np.searchsorted(analysis.query_index, flagged)]
    assert list(flagged_scores) == sorted(query_scores[query_scores < threshold])  # most atypical first
    assert len(flagged) >= 6
    ids = [analysis.ids[p] for p in flagged]
    store.mark(key, ids[:3], "outlier")
    store.mark(key, ids[3], "fine", note="=HYPERLINK(\"http://x\")")
    store.mark(key, ids[4], "unsure")
    typical = analysis.ids[int(analysis.query_index[np.argmax(query_scores)])]
    store.mark(key, typical, "fine")
    store.mark(key, "img/gone", "outlier")  # marked on data this run does not score
    marks = store.marks(key)

    summary = review_summary(analysis, marks, "feature", threshold)
    assert (summary.flagged, summary.reviewed) == (len(flagged), 5)
    assert summary.verdicts == {"outlier": 3, "fine": 1, "unsure": 1}
    assert summary.precision == precision_estimate(["outlier"] * 3 + ["fine"])
    rows, is_ood = reviewed_truth(analysis, marks)
    assert [analysis.ids[analysis.query_index[j]] for j in rows[is_ood]] == sorted(ids[:3])
    assert sorted(analysis.ids[analysis.query_index[j]] for j in rows[~is_ood]) == sorted([ids[3], typical])
    metrics = ood_core.ood_metrics(query_scores[rows], is_ood, threshold)
    assert (metrics["tp"], metrics["fp"], metrics["precision"]) == (3, 1, 0.75)
    assert list(marked_positions(analysis.ids, marks, ["outlier"])) == sorted(flagged[:3])

    table = review_table(analysis, marks, {"feature": threshold})
    assert [r["id"] for r in table] == [r["id"] for r in analysis.scores_table({"feature": threshold})
                                        if r["id"] in marks] + ["img/gone"]
    first = next(r for r in table if r["id"] == ids[0])
    assert first["feature_flagged"] and first["verdict"] == "outlier" and first["set"] == "query"
    assert first["feature_score"] == query_scores[list(analysis.query_index).index(flagged[0])]
    assert table[-1]["set"] == "" and table[-1]["feature_score"] == "" and table[-1]["verdict"] == "outlier"
    assert len(review_table(analysis, marks, {"feature": threshold}, reviewed_only=False)) == 70 + 1
    text = review_csv(analysis, marks, {"feature": threshold})
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["id"] == ids[3])
    assert row["note"] == "'=HYPERLINK(\"http://x\")" and row["updated_at"].endswith("+00:00")


# ---------------------------------------------------------------------- curation copies
def test_copies_are_the_original_bytes_at_their_relative_paths(write_tree, write_zip, tmp_path):
    folder = write_tree(IMAGES)
    images = ood_core.open_source(folder)
    dest = tmp_path / "picked"
    paths = copy_items(images, [images.ids.index("dog/c.jpg"), images.ids.index("cat/a.jpg")], dest)
    assert paths == [dest / "dog" / "c.jpg", dest / "cat" / "a.jpg"]
    assert all(p.read_bytes() == (folder / p.relative_to(dest)).read_bytes() for p in paths)
    assert copy_items(images, [images.ids.index("cat/a.jpg")], dest) == [dest / "cat" / "a.jpg"]  # same bytes: fine
    archive = write_zip({f"pets/{k}": v for k, v in IMAGES.items()})
    zipped = ood_core.open_source(archive)
    (from_zip,) = copy_items(zipped, [zipped.ids.index("dog/d.png")], tmp_path / "from zip")
    with zipfile.ZipFile(archive) as zf:
        assert from_zip.read_bytes() == zf.read("pets/dog/d.png")
    digits = ood_core.digits()
    (png,) = copy_items(digits, [5], tmp_path / "digits")
    assert png.name == f"{digits.ids[5].split('/')[-1]}.png"
    assert np.array_equal(np.asarray(Image.open(png)), digits._reader.pixels[digits._keys[5]])


def test_copies_never_overwrite_or_escape(write_tree, tmp_path):
    folder = write_tree(IMAGES)
    images = ood_core.open_source(folder)
    dest = tmp_path / "dest"
    (dest / "cat").mkdir(parents=True)
    (dest / "cat" / "a.jpg").write_bytes(b"someone else's file")
    with pytest.raises(ValueError, match=r"1 file\(s\) in .*dest' differ from the images to copy \('cat/a.jpg'\); "
                                         "nothing was copied"):
        copy_items(images, range(len(images)), dest)
    assert not (dest / "dog").exists() and (dest / "cat" / "a.jpg").read_bytes() == b"someone else's file"
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "dog").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link that leads out of the destination folder"):
        copy_items(images, [images.ids.index("dog/c.jpg")], tmp_path / "linked")
    assert list(outside.iterdir()) == []
    climbing = ood_core.ImageSet(ids=["../up.png"], paths=["../up.png"], labels=[-1], class_names=[], split=None,
                                 is_ood=None, skipped=[], description="crafted", identity="x",
                                 _reader=images._reader)
    with pytest.raises(ValueError, match=r"refusing to copy '../up.png': its path is absolute or climbs out"):
        copy_items(climbing, [0], dest)
    with pytest.raises(ValueError, match=r"positions \[4\] are out of range for 4 items"):
        copy_items(images, [0, 4], dest)


def test_precomputed_features_have_no_images_to_copy(features_npz, tmp_path):
    analysis = ood_core.analyze(features_npz)
    with pytest.raises(ValueError, match="precomputed arrays features.npz .* holds precomputed features, not images: "
                                         "there are no image files to copy"):
        copy_items(analysis, [0], tmp_path / "dest")


# ---------------------------------------------------------------------- the command line
def test_cli_export_review(features_npz, store, tmp_path, capsys):
    key = dataset_key(ood_core.load_arrays(features_npz))
    store.mark(key, ["img/060", "img/061"], "outlier", label="features.npz")
    store.mark(key, "img/055", "fine", note="@SUM(A1)")
    out = tmp_path / "out" / "marks.csv"
    args = ["-q", "export-review", str(features_npz), "--out", str(out), "--reviews", str(store.path)]
    assert main(args + ["--percentile", "10"]) == 0
    printed = capsys.readouterr().out
    assert "3 review mark(s) for precomputed arrays features.npz" in printed
    assert "2 outlier, 1 fine, 0 unsure" in printed
    assert "flagged query item(s) reviewed; estimated precision" in printed and f"wrote {out}" in printed
    rows = list(csv.DictReader(out.open()))
    assert [(r["id"], r["verdict"], r["note"]) for r in rows] == [
        ("img/055", "fine", "'@SUM(A1)"), ("img/060", "outlier", ""), ("img/061", "outlier", "")]
    analysis = ood_core.analyze(features_npz)
    q = dict(zip([analysis.ids[p] for p in analysis.query_index], analysis.scores("feature")[1]))
    assert float(rows[1]["feature_score"]) == q["img/060"] and "prediction_score" in rows[0]

    other = tmp_path / "other.npz"
    np.savez(other, features=np.random.default_rng(1).normal(size=(20, 4)))
    assert main(["-q", "export-review", str(other), "--out", str(out), "--reviews", str(store.path)]) == 2
    err = capsys.readouterr().err
    assert f"no review marks for precomputed arrays other.npz (20 rows, 4 features) (dataset key " in err
    assert "Marks are kept for 1 other dataset(s):\n  features.npz [key " in err and "3 mark(s), last " in err
    empty = tmp_path / "empty.sqlite3"
    assert main(["-q", "export-review", str(other), "--out", str(out), "--reviews", str(empty)]) == 2
    assert "the review database holds no marks yet: mark images in the dashboard first" in capsys.readouterr().err


def test_cli_copy_items(write_tree, features_npz, tmp_path, capsys):
    folder = write_tree(IMAGES)
    db = tmp_path / "reviews.sqlite3"
    ReviewStore(db).mark(dataset_key(ood_core.open_source(folder)), ["cat/b.png", "dog/c.jpg"], "outlier")
    dest = tmp_path / "curated"
    reviews = ["--reviews", str(db)]
    assert main(["-q", "copy-items", str(folder), "--verdict", "outlier", "--dest", str(dest), *reviews]) == 0
    assert f"2 image(s) (marked outlier) are in {dest}" in capsys.readouterr().out
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.*")) == ["cat/b.png", "dog/c.jpg"]
    assert (dest / "dog" / "c.jpg").read_bytes() == (folder / "dog" / "c.jpg").read_bytes()

    assert main(["copy-items", str(folder), "--dest", str(dest)]) == 2
    assert "copy-items needs --flagged, --verdict or both" in capsys.readouterr().err
    ReviewStore(db).mark(dataset_key(ood_core.load_arrays(features_npz)), "img/001", "outlier")
    assert main(["copy-items", str(features_npz), "--verdict", "outlier", "--dest", str(dest), *reviews]) == 2
    assert "holds precomputed features, not images: there are no image files to copy" in capsys.readouterr().err


def test_cli_copy_flagged_digits(tmp_path, capsys):
    dest = tmp_path / "flagged"
    assert main(["-q", "copy-items", "digits", "--flagged", "--percentile", "2", "--dest", str(dest)]) == 0
    analysis = ood_core.analyze("digits")
    threshold = analysis.threshold_view("feature", percentile=2).threshold
    expected = {f"{analysis.ids[p]}.png" for p in flagged_positions(analysis, "feature", threshold)}
    assert {p.relative_to(dest).as_posix() for p in dest.rglob("*.png")} == expected
    assert f"{len(expected)} image(s) (query items flagged by the feature score at the 2th percentile) are in" \
        in capsys.readouterr().out
