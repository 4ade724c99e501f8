"""Issue 18.9: review marks remember the fit/query split they were made under, and `export-review` /
`copy-items` score them under it (or refuse another one) instead of silently re-scoring under a new split."""
from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import ood_core
from ood_core.cli import main
from ood_core.review import ReviewStore, describe_split, key_of_split, split_key

CLASSES = ["cat", "dog", "horse", "truck"]


@pytest.fixture()
def four_classes(tmp_path) -> Path:
    """120 rows of 4 well separated classes, no split of their own."""
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=6.0, size=(4, 8))
    labels = np.repeat(np.arange(4), 30)
    path = tmp_path / "animals.npz"
    np.savez(path, features=centres[labels] + rng.normal(size=(120, 8)), labels=labels,
             class_names=np.array(CLASSES), ids=np.array([f"{CLASSES[y]}/{i:03d}.jpg" for i, y in enumerate(labels)]))
    return path


def _marked(four_classes, tmp_path):
    """Marks made as the dashboard makes them, on a run with in-classes cat,dog,horse: three trucks
    (query items, out of distribution) outlier, one query cat fine."""
    analysis = ood_core.analyze(four_classes, in_classes=["horse", "cat", "dog"])
    query_ids = [analysis.ids[i] for i in analysis.query_index]
    trucks = [i for i in query_ids if i.startswith("truck/")][:3]
    cat = next(i for i in query_ids if i.startswith("cat/"))
    store = ReviewStore(tmp_path / "reviews.sqlite3")
    key = ood_core.dataset_key(analysis)
    store.mark(key, trucks, "outlier", label=analysis.source, split=split_key(analysis))
    store.mark(key, cat, "fine", label=analysis.source, split=split_key(analysis))
    return analysis, store, trucks, cat


def test_split_key_is_the_drawn_classes_fraction_and_seed(four_classes):
    analysis = ood_core.analyze(four_classes, in_classes=["dog", "cat"], fit_fraction=0.4, seed=3)
    assert analysis.class_split == {"in_classes": ["cat", "dog"], "fit_fraction": 0.4, "seed": 3}
    assert split_key(analysis) == key_of_split({"in_classes": ["cat", "dog"], "fit_fraction": 0.4, "seed": 3})
    assert describe_split(split_key(analysis)) == "in-classes cat,dog (fit fraction 0.4, seed 3)"
    assert describe_split(split_key(ood_core.analyze(four_classes))) == "the source's own split"


def test_export_review_uses_the_split_the_marks_were_made_under(four_classes, tmp_path, capsys):
    analysis, store, trucks, cat = _marked(four_classes, tmp_path)
    out = tmp_path / "review.csv"
    assert main(["-q", "export-review", str(four_classes), "--out", str(out), "--reviews", str(store.path)]) == 0
    printed = capsys.readouterr().out
    assert "scoring under the split the marks were made under: in-classes cat,dog,horse (fit fraction 0.5, seed 0)" \
        in printed
    rows = {row["id"]: row for row in csv.DictReader(out.open())}
    assert {rows[t]["set"] for t in trucks} == {"query"} and rows[cat]["set"] == "query"
    assert {rows[t]["is_ood"] for t in trucks} == {"True"} and rows[cat]["is_ood"] == "False"
    flags = analysis.threshold_view("feature", percentile=5)
    for t in trucks:  # the flags of the marks' own run
        score = analysis.query_feature_scores[analysis.query_row_of[t]]
        assert rows[t]["feature_flagged"] == str(bool(score < flags.threshold))
    assert "estimated precision 0.00" not in printed


def test_another_split_is_refused_naming_the_marks_split(four_classes, tmp_path, capsys):
    _, store, _, _ = _marked(four_classes, tmp_path)
    out = tmp_path / "review.csv"
    args = ["-q", "export-review", str(four_classes), "--out", str(out), "--reviews", str(store.path)]
    assert main([*args, "--in-classes", "cat,dog"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the marks were made under another split than in-classes cat,dog (fit fraction "
                          "0.5, seed 0): 4 under in-classes cat,dog,horse (fit fraction 0.5, seed 0) (--in-classes "
                          "cat,dog,horse --fit-fraction 0.5 --seed 0)")
    assert not out.exists()
    assert main([*args, "--in-classes", "dog,horse,cat"]) == 0  # the same split, named in another order
    dest = tmp_path / "copies"
    assert main(["-q", "copy-items", str(four_classes), "--flagged", "--verdict", "outlier", "--dest", str(dest),
                 "--reviews", str(store.path), "--seed", "1", "--in-classes", "cat,dog,horse"]) == 2
    assert "the marks were made under another split" in capsys.readouterr().err


def test_marks_of_several_splits_ask_which(four_classes, tmp_path, capsys):
    _, store, trucks, _ = _marked(four_classes, tmp_path)
    other = ood_core.analyze(four_classes, in_classes=["cat"])
    store.mark(ood_core.dataset_key(other), trucks[0], "fine", split=split_key(other))
    assert main(["-q", "export-review", str(four_classes), "--out", str(tmp_path / "r.csv"),
                 "--reviews", str(store.path)]) == 2
    err = capsys.readouterr().err
    assert "the marks were made under 2 different splits: 3 under in-classes cat,dog,horse" in err
    assert "1 under in-classes cat (fit fraction 0.5, seed 0)" in err and "Choose one with --in-classes" in err
    assert main(["-q", "export-review", str(four_classes), "--out", str(tmp_path / "r.csv"),
                 "--reviews", str(store.path), "--in-classes", "cat"]) == 0
    assert "warning: 3 mark(s) were made under other splits" in capsys.readouterr().out


def test_marks_of_a_version_1_database_are_read_and_said_to_lack_a_split(four_classes, tmp_path, capsys):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # the schema before splits were kept
        conn.executescript("""
            CREATE TABLE marks (dataset TEXT NOT NULL, item TEXT NOT NULL, verdict TEXT NOT NULL, note TEXT NOT NULL
                DEFAULT '', updated_at REAL NOT NULL, PRIMARY KEY (dataset, item)) WITHOUT ROWID;
            CREATE TABLE datasets (dataset TEXT PRIMARY KEY, label TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
            PRAGMA application_id = 1330594898; PRAGMA user_version = 1;""")
        key = ood_core.dataset_key(ood_core.open_source(str(four_classes)))
        conn.execute("INSERT INTO marks VALUES (?, 'truck/090.jpg', 'outlier', 'old', 1.0)", (key,))
    store = ReviewStore(path)
    assert store.marks(key)["truck/090.jpg"].split == "" and store.marks(key)["truck/090.jpg"].note == "old"
    assert main(["-q", "export-review", str(four_classes), "--out", str(tmp_path / "r.csv"), "--reviews", str(path),
                 "--in-classes", "cat,dog,horse"]) == 0
    assert "note: 1 mark(s) do not record the split they were made under" in capsys.readouterr().out
    store.mark(key, "truck/091.jpg", "fine", split=key_of_split(None))
    assert store.marks(key)["truck/091.jpg"].split == '{"in_classes": null}'
