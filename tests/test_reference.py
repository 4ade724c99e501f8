"""A saved reference (issue 20): fit on in-distribution images, check new batches against the frozen
thresholds with Beta-binomial odds, a folder that refuses damage, and a history safe with concurrency."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from ood_core._binomial import flag_rate_interval, too_many_p_value
from ood_core.reference import REFERENCE_FORMAT, Reference, ReferenceError
from ood_core.sources import ArraySet
from tests.conftest import extract_cifar

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- helpers
def arrays(X: np.ndarray, tag: str, labels=None, class_names=()) -> ArraySet:
    """An in-memory ArraySet of features ``X`` (labels -1 unless given)."""
    n = len(X)
    labels = np.full(n, -1) if labels is None else np.asarray(labels)
    return ArraySet(np.asarray(X, dtype=np.float32), None, labels, [f"{tag}/{i}" for i in range(n)],
                    list(class_names), None, None, tag, f"identity-{tag}")


def two_blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of 16-d features in two classes (a and b)."""
    labels = np.arange(n) % 2
    centres = np.zeros((2, 16))
    centres[0, 0], centres[1, 1] = 4.0, 4.0
    X = centres[labels] + rng.normal(size=(n, 16))
    return X.astype(np.float32), labels


def write_npz(path: Path, X: np.ndarray, labels: np.ndarray) -> Path:
    np.savez(path, features=X, labels=labels, class_names=np.array(["a", "b"]))
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A small reference fitted on two labelled blobs (arrays), saved; tests copy it before damaging it."""
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("ref") / "blobs"
    X, y = two_blobs(rng, 200)
    Reference.fit(write_npz(folder.parent / "fit.npz", X, y), percentile=5).save(folder)
    return folder


@pytest.fixture
def copy_of(saved, tmp_path) -> Path:
    """A copy of the saved reference without the history other tests' checks left in it."""
    return Path(shutil.copytree(saved, tmp_path / "copy", ignore=shutil.ignore_patterns("history.sqlite*")))


# ---------------------------------------------------------------------- the statistics
def test_interval_and_p_value_numbers():
    # The docstring's example: p = 5 of 5,000 fit images, batches of 1,000.
    assert flag_rate_interval(5000, 5, 1000) == (0.036, 0.066)
    # With a huge fit set the threshold's own uncertainty vanishes: the plain binomial range.
    assert flag_rate_interval(10**8, 5, 1000) == tuple(binom(1000, 0.05).ppf([0.025, 0.975]) / 1000)
    # With 200 fit images the range is much wider than the binomial's (0.037, 0.064).
    assert flag_rate_interval(200, 5, 1000) == (0.025, 0.093)
    # 0 flagged is never surprising; all flagged always is.
    assert too_many_p_value(0, 100, 400, 5) == 1.0
    assert too_many_p_value(100, 100, 400, 5) < 1e-10
    # By hand: the lowest of 2 fit scores as threshold; a new score falls below it with chance
    # q ~ Beta(1, 2), so one new item is flagged with probability E[q] = 1/3 (the highest: 2/3).
    assert too_many_p_value(1, 1, 2, 0) == pytest.approx(1 / 3)
    assert too_many_p_value(1, 1, 2, 100) == pytest.approx(2 / 3)
    # Ties at the threshold: only 10 of 1,000 fit scores strictly below it, so about 1.1% is expected.
    lo, hi = flag_rate_interval(1000, 5, 1000, below=10)
    assert lo < 0.011 < hi < 0.025
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
        flag_rate_interval(1000, 5, 100, level=1.5)
    with pytest.raises(ValueError, match="percentile must be a number in"):
        flag_rate_interval(1000, 101, 100)


def test_beta_binomial_agrees_with_scipy():
    from scipy.stats import betabinom

    from ood_core._binomial import beta_binomial_interval, beta_binomial_p_value

    for m, a, b, k in [(1000, 250.95, 4750.05, 60), (100, 20.95, 380.05, 9), (37, 1.0, 2.0, 1), (5000, 3.5, 60.2, 400)]:
        dist = betabinom(m, a, b)
        assert beta_binomial_interval(m, a, b, 0.95) == (dist.ppf(0.025) / m, dist.ppf(0.975) / m)
        assert beta_binomial_p_value(k, m, a, b) == pytest.approx(dist.sf(k - 1), rel=1e-9)


def test_interval_covers_its_level_of_in_distribution_batches():
    """The frozen threshold of fresh fit sets (uniform scores), then one batch each: ~95% of the
    batches' flagged rates fall in the interval, and at most ~alpha of them are called too many."""
    rng = np.random.default_rng(0)
    n_fit, m, trials = 400, 300, 4000
    thresholds = np.percentile(rng.random((trials, n_fit)), 5, axis=1)
    flagged = rng.binomial(m, thresholds)  # a uniform score falls below thr with probability thr
    lo, hi = flag_rate_interval(n_fit, 5, m)
    covered = np.mean((flagged >= lo * m) & (flagged <= hi * m))
    assert 0.94 <= covered <= 0.99, covered
    p_values = {int(k): too_many_p_value(int(k), m, n_fit, 5) for k in np.unique(flagged)}
    alarms = np.mean([p_values[int(k)] < 0.05 for k in flagged])
    assert 0.025 <= alarms <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials), alarms


@pytest.mark.slow
def test_alarm_rate_over_many_clean_batches_stays_near_alpha():
    """500 clean batches, each against a reference fitted on fresh data from the same distribution:
    the alarm rate stays in the binomial band of alpha. A plain binomial test (ignoring the threshold's
    uncertainty) would alarm far more often."""
    rng = np.random.default_rng(0)
    alpha, trials, n_fit, m = 0.05, 500, 400, 400
    alarms = plain = 0
    for i in range(trials):
        ref = Reference.fit(arrays(rng.normal(size=(n_fit, 8)), f"fit{i}"), percentile=5)
        result = ref.check(arrays(rng.normal(size=(m, 8)), f"batch{i}"), alpha=alpha)
        assert result.scorers == ("feature",) and result.n == m
        alarms += result.alarm
        plain += binom(m, 0.05).sf(int(result.flagged["feature"].sum()) - 1) < alpha
    low, high = binom(trials, alpha).ppf([0.001, 0.999])
    assert low <= alarms <= high, (alarms, low, high)
    assert plain > high, plain


# ---------------------------------------------------------------------- fit, save, load, check (arrays)
def test_saved_reference_scores_like_the_fitted_one_and_holds_no_pickle(saved, tmp_path):
    rng = np.random.default_rng(2)
    X, y = two_blobs(rng, 200)
    fitted = Reference.fit(write_npz(tmp_path / "fit.npz", X, y), percentile=5)
    loaded = Reference.load(saved)
    assert loaded.scorers == ("feature", "prediction") and loaded.n_fit == 200
    assert loaded.settings["format"] == REFERENCE_FORMAT and loaded.settings["embedding"] is None
    for name in os.listdir(saved):
        if name.endswith(".npy"):
            assert np.load(saved / name, allow_pickle=False).dtype != object
    assert {p.suffix for p in saved.iterdir()} == {".npy", ".json"}
    # The same fit data gives the same reference (the arrays are deterministic) ...
    Xs, ys = two_blobs(np.random.default_rng(1), 200)
    again = Reference.fit(write_npz(tmp_path / "again.npz", Xs, ys), percentile=5)
    batch = write_npz(tmp_path / "batch.npz", *two_blobs(rng, 120))
    # ... and the saved one scores a batch exactly as the fitted one
    assert again.check(batch).to_csv() == loaded.check(batch, log=False).to_csv()
    assert fitted.thresholds != loaded.thresholds  # other fit data, other thresholds (the test can fail)


def test_check_flags_a_shifted_batch_and_reports_per_class(saved, tmp_path):
    ref = Reference.load(saved)
    rng = np.random.default_rng(3)
    clean = ref.check(write_npz(tmp_path / "clean.npz", *two_blobs(rng, 300)), name="clean")
    X, y = two_blobs(rng, 300)
    X[:120] = rng.normal(size=(120, 16))
    X[:120, 3] += 4.0  # 40% of the batch from a third blob
    shifted = ref.check(write_npz(tmp_path / "shifted.npz", X, y), name="shifted")
    assert not clean.alarm and clean.p_value > 0.01
    assert shifted.alarm and shifted.tests["feature"].alarm
    assert shifted.tests["feature"].flagged_rate >= 0.35
    card = shifted.card()
    json.dumps(card)  # JSON-able
    feature = card["scorers"]["feature"]
    assert feature["n"] == 300 and feature["n_fit"] == 200
    assert feature["expected_rate"] == ref.expected_rate("feature") == 10 / 200
    assert feature["interval"] == list(ref.interval("feature", 300))
    assert set(feature["per_class"]) == {"a", "b"}
    assert sum(c["n"] for c in feature["per_class"].values()) == 300
    assert card["batch"]["name"] == "shifted" and card["reference"]["digest"] == ref.digest
    rows = shifted.table()
    assert set(rows[0]) == {"id", "path", "label", "predicted_class", "feature_score", "feature_flagged",
                            "prediction_score", "prediction_flagged"}
    assert sum(r["feature_flagged"] for r in rows) == card["scorers"]["feature"]["flagged"]


def test_batch_features_must_match_the_reference(saved, tmp_path):
    ref = Reference.load(saved)
    np.savez(tmp_path / "wide.npz", features=np.zeros((5, 12), np.float32) + 1)
    with pytest.raises(ValueError, match="the batch has 12 features per item but the reference has 16"):
        ref.check(tmp_path / "wide.npz")
    Image = pytest.importorskip("PIL.Image")
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    with pytest.raises(ValueError, match="fitted on precomputed features"):
        ref.check(tmp_path / "imgs")


def test_fit_arguments_are_checked(tmp_path):
    X, y = two_blobs(np.random.default_rng(0), 40)
    path = write_npz(tmp_path / "fit.npz", X, y)
    with pytest.raises(ValueError, match="percentile must be a number strictly between 0 and 100; got 0"):
        Reference.fit(path, percentile=0)
    with pytest.raises(ValueError, match="in_classes: unknown class 'c'"):
        Reference.fit(path, in_classes=["c"])
    from ood_core import ScoreConfig
    with pytest.raises(ValueError, match="searches its fit features exactly"):
        Reference.fit(path, scores=ScoreConfig(index="approximate"))
    only_a = Reference.fit(path, in_classes=["a"])
    assert only_a.n_fit == 20 and only_a.scorers == ("feature",)  # one class: no classifier


# ---------------------------------------------------------------------- a damaged folder is refused
def _rewrite_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_damaged_file_is_refused_by_name(copy_of):
    data = bytearray((copy_of / "fit_features.npy").read_bytes())
    data[-1] ^= 0x01  # one bit of one feature
    (copy_of / "fit_features.npy").write_bytes(bytes(data))
    with pytest.raises(ReferenceError, match=r"fit_features\.npy is damaged or was replaced"):
        Reference.load(copy_of)


def test_missing_file_is_refused_by_name(copy_of):
    (copy_of / "classifier_coef.npy").unlink()
    with pytest.raises(ReferenceError, match=r"classifier_coef\.npy is missing"):
        Reference.load(copy_of)


def test_swapped_files_are_refused(copy_of):
    a, b = copy_of / "fit_ids.npy", copy_of / "fit_labels.npy"
    a.rename(copy_of / "tmp")
    b.rename(a)
    (copy_of / "tmp").rename(b)
    with pytest.raises(ReferenceError, match=r"fit_ids\.npy is damaged or was replaced"):
        Reference.load(copy_of)


def test_extra_file_is_refused_by_name(copy_of):
    (copy_of / "notes.txt").write_text("hi")
    with pytest.raises(ReferenceError, match=r"notes\.txt is not part of the reference"):
        Reference.load(copy_of)


def test_other_format_version_and_missing_manifest_are_refused(copy_of):
    _rewrite_manifest(copy_of, format="ood-explorer-reference-v0")
    with pytest.raises(ReferenceError, match="written in format 'ood-explorer-reference-v0'.*Fit the reference again"):
        Reference.load(copy_of)
    (copy_of / "manifest.json").unlink()
    with pytest.raises(ReferenceError, match=r"manifest\.json is missing"):
        Reference.load(copy_of)


def test_pickled_array_is_refused_even_with_a_matching_digest(copy_of):
    from ood_core._files import file_digest

    path = copy_of / "fit_ids.npy"
    np.save(path, np.array([{"a": 1}] * 200, dtype=object), allow_pickle=True)
    manifest = json.loads((copy_of / "manifest.json").read_text())
    manifest["files"]["fit_ids.npy"]["sha256"] = file_digest(path)
    (copy_of / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ReferenceError, match=r"fit_ids\.npy cannot be read as an array without pickle"):
        Reference.load(copy_of)


def test_save_is_atomic_and_does_not_overwrite_by_accident(saved, tmp_path):
    ref = Reference.load(saved)
    target = tmp_path / "out"
    ref.save(target)
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        ref.save(target)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a saved reference"):
        ref.save(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    ref.save(target, overwrite=True)
    assert Reference.load(target).digest == ref.digest  # same content, same manifest digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "out"]  # no temporary folder left


# ---------------------------------------------------------------------- history
def test_concurrent_checks_write_history_without_loss(copy_of, tmp_path):
    """Threads checking batches in this process and other processes appending at the same time:
    every check is in the history, once."""
    ref = Reference.load(copy_of)
    rng = np.random.default_rng(4)
    batches = [write_npz(tmp_path / f"b{i}.npz", *two_blobs(rng, 50)) for i in range(8)]
    writer = ("import sys; from ood_core._reference_store import CheckHistory\n"
              "h = CheckHistory(sys.argv[1])\n"
              "for i in range(25): h.record('t', f'proc{sys.argv[2]}-{i}', 'd', 1, False, 1.0, {'n': 1})\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(copy_of / "history.sqlite"), str(p)], cwd=REPO)
             for p in range(3)]
    errors = []

    def check(paths):
        try:
            for path in paths:
                ref.check(path, name=path.stem)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert not errors, errors
    history = ref.history()
    names = [h["batch_name"] for h in history]
    assert sorted(n for n in names if n.startswith("b")) == [f"b{i}" for i in range(8)]
    assert sorted(n for n in names if n.startswith("proc")) == sorted(f"proc{p}-{i}" for p in range(3)
                                                                      for i in range(25))
    assert len({h["id"] for h in history}) == len(history) == 8 + 75
    entry = next(h for h in history if h["batch_name"] == "b0")
    assert entry["n"] == 50 and entry["feature_expected_rate"] == 0.05 and len(entry["feature_interval"]) == 2
    assert entry["card"]["reference"]["digest"] == ref.digest
    # The history does not count as part of the reference: the folder still loads
    assert Reference.load(copy_of).digest == ref.digest


# ---------------------------------------------------------------------- CIFAR-10: cat and dog images


@pytest.fixture(scope="module")
def pets(cifar_zip, tmp_path_factory):
    """Fit images (train cats and dogs, plus airplanes left out by in_classes), a clean batch of new
    cats and dogs, and a batch of 40% airplanes; one embedding cache for the module."""
    root = tmp_path_factory.mktemp("pets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_CACHE_DIR", str(root / "cache"))
        fit = extract_cifar(cifar_zip, root / "fit", {"cat": range(150), "dog": range(150), "airplane": range(20)},
                       split="train")
        clean = extract_cifar(cifar_zip, root / "clean", {"cat": range(60), "dog": range(60)})
        planes = extract_cifar(cifar_zip, root / "planes", {"cat": range(100, 130), "dog": range(100, 136),
                                                       "airplane": range(44)})
        ref = Reference.fit(fit, in_classes=["cat", "dog"], model="lite0", percentile=5)
        yield {"root": root, "ref": ref, "clean": clean, "planes": planes}


def test_cat_dog_reference_alarms_on_airplanes_only(pets):
    ref = pets["ref"]
    assert ref.n_fit == 300 and ref.scorers == ("feature", "prediction")
    assert ref.embed_config["model"] == "tf_efficientnet_lite0" and ref.embed_config["image_size"] == 128
    clean = ref.check(pets["clean"], name="new cats and dogs")
    planes = ref.check(pets["planes"], name="40% airplanes")
    assert clean.n == 120 and not clean.alarm, clean.card()
    assert planes.n == 110 and planes.alarm and planes.tests["feature"].alarm, planes.card()
    flagged = planes.flagged["feature"]
    is_plane = np.array([label == "airplane" for label in planes.labels])
    assert flagged[is_plane].mean() >= 0.5 and flagged[~is_plane].mean() <= 0.15
    assert planes.tests["feature"].flagged_rate > planes.tests["feature"].interval[1]
    assert set(planes.predicted) <= {"cat", "dog"}


def test_moved_reference_gives_the_same_csv(pets, tmp_path):
    ref = pets["ref"]
    first = ref.save(tmp_path / "here" / "pets-ref")
    before = Reference.load(first).check(pets["planes"], name="planes")
    moved = Path(shutil.move(str(first), str(tmp_path / "elsewhere")))
    assert not first.exists()
    # A fresh embedding cache: the batch is embedded again with the reference's frozen settings.
    after = Reference.load(moved).check(pets["planes"], name="planes", cache_dir=tmp_path / "fresh-cache")
    assert after.to_csv() == before.to_csv()
    assert after.card()["scorers"] == before.card()["scorers"]
    assert after.reference_digest == before.reference_digest
    assert [h["batch_name"] for h in Reference.load(moved).history()] == ["planes", "planes"]



def test_fit_embeds_with_the_runs_backend_and_check_follows_it(pets, monkeypatch):
    """``Reference.fit`` embeds with ``RunConfig.backend`` ("auto" by default, as analyze does), records
    the backend that ran, and a check embeds with it; where it cannot run, torch (which the export
    agreed with) embeds the batch, with a warning, and the scores agree to 1e-3."""
    from ood_core._backends import AUTO_ORDER, installed

    auto = pets["ref"]  # fitted with the default backend
    expected = next((name for name in AUTO_ORDER if installed(name)), "torch")
    assert auto.backend == expected and auto.settings["backend_asked"] == "auto"
    torch_ref = Reference.fit(pets["root"] / "fit", in_classes=["cat", "dog"], model="lite0", percentile=5,
                              backend="torch")
    assert torch_ref.backend == "torch" and torch_ref.settings["backend_asked"] == "torch"
    assert np.abs(torch_ref.features - auto.features).max() < 1e-3
    by_torch, by_auto = torch_ref.check(pets["clean"], log=False), auto.check(pets["clean"], log=False)
    assert by_torch.backend == "torch" and by_auto.backend == expected
    assert by_auto.card()["batch"]["backend"] == expected
    for scorer in ("feature", "prediction"):
        np.testing.assert_allclose(by_auto.scores[scorer], by_torch.scores[scorer], atol=1e-3)
    if expected == "torch":
        return
    # the reference's backend is not installed on the checking machine: torch embeds the batch
    monkeypatch.setattr("ood_core._backends.installed", lambda name: name == "torch")
    with pytest.warns(UserWarning, match=f"embedded with the {expected} backend but {expected} is not installed "
                                         "here: the batch is embedded with torch"):
        fallback = auto.check(pets["clean"], log=False)
    assert fallback.backend == "torch"
    np.testing.assert_allclose(fallback.scores["feature"], by_auto.scores["feature"], atol=1e-3)

# ---------------------------------------------------------------------- the interval everywhere (20.5)
def test_the_interval_sentence_in_cards_and_the_cli_report(tmp_path, capsys):
    from ood_core import analyze
    from ood_core.cli._common import report
    from ood_core.reference import expected_flag_rate

    assert expected_flag_rate(5000, 5)["text"] == ("p = 5 of 5,000 fit images: 95% of in-distribution batches of "
                                                   "1,000 will flag between 3.6% and 6.6%")
    assert expected_flag_rate(200, 2.5, 300)["interval"] == list(flag_rate_interval(200, 2.5, 300))
    rng = np.random.default_rng(5)
    X, y = two_blobs(rng, 400)
    split = np.where(np.arange(400) < 300, "train", "test")
    with_query = ArraySet(X, None, y, [f"i{i}" for i in range(400)], ["a", "b"], split, None, "blobs", "id-blobs")
    analysis = analyze(with_query)
    view = analysis.threshold_view("feature", percentile=5)
    assert (view.fit_total, view.query_total) == (300, 100)
    card = analysis.threshold_card(view)["expected_flag_rate"]
    lo, hi = flag_rate_interval(300, 5, 100, below=view.fit_flagged)  # batches the query set's size
    assert card["batch_size"] == 100 and card["interval"] == [lo, hi] and card["n_fit"] == 300
    assert card["text"] == (f"p = 5 of 300 fit images: 95% of in-distribution batches of 100 will flag between "
                            f"{lo:.1%} and {hi:.1%}")
    report(analysis, 5, tmp_path / "scores.csv")
    assert f"  {card['text']}\n" in capsys.readouterr().out
    cards = json.loads((tmp_path / "scores.json").read_text())["cards"]
    assert cards[0]["expected_flag_rate"] == card
    same = analyze(arrays(X, "all", y, ["a", "b"]))  # no query set: quoted for batches of 1,000
    view = same.threshold_view("feature", percentile=5)
    assert same.same_set and same.expected_flag_rate(view)["interval"] == list(
        flag_rate_interval(400, 5, 1000, below=view.fit_flagged))
