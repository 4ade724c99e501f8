"""Data issues (ood_core.issues): hand-made cases, then a planted CIFAR-10 folder with exact copies,
resized re-encoded copies, lightly cropped copies, darkened images and dogs filed as cats, and the
cleanlab oracle; the digits' grayscale and near-duplicate rules."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

import ood_core
from ood_core.issues import (ImageStatsCollector, bucket_pairs, feature_scores_without_duplicates, get_issue_type, hamming, image_properties,
                             image_record, list_issue_types, property_scores)
from planted_folder import planted_counts, write_planted_folder

TYPES = ["exact_duplicate", "near_duplicate", "label", "dark", "light", "blurry", "low_information", "grayscale",
         "odd_size", "odd_aspect_ratio"]


# ---------------------------------------------------------------------- small cases
def test_registry_lists_every_type_and_names_the_valid_ones():
    assert list_issue_types() == TYPES
    assert get_issue_type("dark").threshold == 0.4 and "brightness" in get_issue_type("dark").reason
    with pytest.raises(ValueError, match="unknown issue type 'darkness'; valid: exact_duplicate, near_duplicate"):
        get_issue_type("darkness")


def test_bucket_pairs_find_every_pair_within_3_bits_without_all_pairs():
    rng = np.random.default_rng(0)
    ph = rng.integers(0, 2**63, 2000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 2000, dtype=np.uint64)
    dh = rng.integers(0, 2**63, 2000, dtype=np.uint64)
    # items 2000..2099 copy items 0..99 with 3 pHash bits and 2 dHash bits flipped
    flips = np.array([sum(1 << int(b) for b in rng.choice(64, 3, replace=False)) for _ in range(100)], np.uint64)
    ph = np.r_[ph, ph[:100] ^ flips]
    dh = np.r_[dh, dh[:100] ^ np.uint64(0b101)]
    pairs = {tuple(p) for p in bucket_pairs(ph, dh).tolist()}
    assert {(i, 2000 + i) for i in range(100)} <= pairs
    assert len(pairs) < 150  # random 64-bit hashes rarely share a 16-bit band and never lie within 16 bits


def test_hashes_separate_a_resized_copy_from_another_picture():
    rng = np.random.default_rng(1)
    a = Image.fromarray(np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    b = Image.fromarray(np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    buf = io.BytesIO()
    a.resize((56, 56)).save(buf, "JPEG", quality=70)
    copy = Image.open(io.BytesIO(buf.getvalue()))
    ra, rc, rb = image_record(a), image_record(copy), image_record(b)
    assert hamming(ra[1], rc[1]) <= 3 and hamming(ra[1], rb[1]) >= 14


def test_a_batch_of_mixed_images_gives_each_image_its_own_record():
    """The decoding pass records a whole batch at once (images of several sizes, modes and array
    kinds): every image's record is the one it gets alone, and the thumbnails and the luma are
    PIL's own (BOX resize within one grey level, ``convert("L")`` exactly)."""
    from ood_core.issues._image_pass import _brightness, image_records

    rng = np.random.default_rng(3)
    imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    imgs += [Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)),  # reduced to 35 x 25
             rng.integers(0, 256, (20, 90), dtype=np.uint8),  # grayscale array, odd aspect
             Image.fromarray(rng.integers(0, 256, (2, 5, 3), dtype=np.uint8)),  # too small for a Laplacian
             Image.new("RGB", (40, 40), (0, 0, 0))]
    batch = image_records(imgs)
    for b, img in enumerate(imgs):
        alone = image_records([img])
        np.testing.assert_allclose(batch.properties[b], alone.properties[0], rtol=1e-6)
        assert (batch.phash[b], batch.dhash[b], batch.pixel_digest[b]) == (alone.phash[0], alone.dhash[0],
                                                                             alone.pixel_digest[0])
        np.testing.assert_array_equal(batch.thumbs[b], alone.thumbs[0])
        small = ood_core.issues._image_pass.small_copy(ood_core.issues._image_pass.as_rgb_image(img)).convert("L")
        pil_thumb = np.asarray(small.resize((16, 16), Image.Resampling.BOX), dtype=np.int16)
        assert np.abs(pil_thumb - batch.thumbs[b]).max() <= 1, b
    assert batch.phash[-1] == 0 and batch.dhash[-1] == 0  # a flat picture has no edge and no frequency
    rgb = rng.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_brightness(rgb), [np.asarray(Image.fromarray(x).convert("L")) for x in rgb])


def test_image_properties_of_known_images():
    flat = np.full((40, 80, 3), 200, np.uint8)
    props = image_properties(flat)
    assert props[:2].tolist() == [80, 40]  # width, height
    assert props[2] == props[3] == 200  # brightness percentiles
    assert props[5] == 0.0 and props[6] == 0.0  # entropy, colour spread
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    assert image_properties(np.stack([noise] * 3, axis=2))[5] > 7.9  # 8 bits for uniform grey noise
    with pytest.raises(ValueError, match=r"img must be a PIL image or a uint8 array \(H, W\) or \(H, W, 3\); "
                                         r"got float64 \(4, 4\)"):
        image_properties(np.zeros((4, 4)))


def test_property_scores_are_relative_to_the_median_image():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(60, 250, (32, 32, 3), dtype=np.uint8) for _ in range(9)]
    imgs.append((imgs[0] * 0.2).astype(np.uint8))  # dark
    collector = ImageStatsCollector(len(imgs))
    for i, img in enumerate(imgs):
        collector.add(i, img)
    stats = collector.result()
    scores = property_scores(stats.properties, stats.ok)
    assert np.flatnonzero(scores["dark"].flagged()).tolist() == [9]
    assert scores["dark"].scores[9] == pytest.approx(stats.properties[9, 3] / np.median(stats.properties[:, 3]))
    assert not scores["grayscale"].flagged().any() and not scores["odd_size"].flagged().any()
    with pytest.raises(ValueError, match="1 of 2 images were never passed to the collector"):
        c = ImageStatsCollector(2)
        c.add(0, imgs[0])
        c.result()


def test_grayscale_is_flagged_in_colour_data_only():
    rng = np.random.default_rng(0)
    colour = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(6)]
    grey = [np.repeat(rng.integers(0, 256, (16, 16, 1), dtype=np.uint8), 3, axis=2) for _ in range(5)]

    def scores(imgs):
        collector = ImageStatsCollector(len(imgs))
        for i, img in enumerate(imgs):
            collector.add(i, img)
        stats = collector.result()
        return property_scores(stats.properties, stats.ok)["grayscale"]

    mostly_colour = scores(colour + grey[:1])
    assert np.flatnonzero(mostly_colour.flagged()).tolist() == [6] and "unavailable" not in mostly_colour.info
    mostly_grey = scores(colour[:2] + grey)
    assert not mostly_grey.scored.any() and not mostly_grey.flagged().any()
    assert mostly_grey.info["unavailable"] == "the data are mostly grayscale (5 of 7 images): grey is their norm, not an issue"


# ---------------------------------------------------------------------- the planted folder
CLASSES = ("cat", "dog", "airplane", "ship")


@pytest.fixture(scope="module")
def planted(cifar_zip, tmp_path_factory):
    """A train/test folder of 4 CIFAR-10 classes (50 train + 15 test each) with planted problems
    (:func:`planted_folder.write_planted_folder`); returns (folder, {issue: set of planted relative paths})."""
    root = tmp_path_factory.mktemp("planted") / "data"
    return root, write_planted_folder(cifar_zip, root, CLASSES)


@pytest.fixture(scope="module")
def planted_analysis(planted, tmp_path_factory):
    root, _ = planted
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OOD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        analysis = ood_core.analyze(root, model="lite0", image_size=96, device="cpu")
        analysis.issues()  # computed (and kept) while the cache folder is set
        yield analysis


def test_planted_problems_are_flagged_under_their_type(planted, planted_analysis, capsys):
    root, plants = planted
    a = planted_analysis
    table = a.issues()
    assert set(table["issue"]) == set(TYPES)
    assert len(table) == len(TYPES) * len(a.ids) - np.sum(np.isnan(a.issue_scores("label").scores))
    counts = planted_counts(a, plants, root, TYPES, table)
    lines = [f"{'issue':<23}{'found/planted':>14}{'false flags':>13}{'(of clean)':>11}"]
    lines += [f"{row:<23}{found:>8}/{n:<5}{false:>13}{clean:>11}" for row, (found, n, false, clean) in counts.items()]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    results = {row: c[:3] for row, c in counts.items()}
    assert results["exact_duplicate"] == (6, 6, 0)
    assert results["near_duplicate"] == (6, 6, 0)
    assert results["near_duplicate (crop)"] == (6, 6, 0)  # 5-15% of a side cut off: missed by the hashes alone
    assert results["dark"][:2] == (6, 6) and results["dark"][2] <= 2
    assert results["label"][0] >= 5 and results["label"][2] <= 0.12 * len(a.ids)
    assert results["label (dog as cat)"][0] >= 1
    for issue in ("light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio"):
        assert results[issue][2] <= 0.02 * len(a.ids), issue
    # details name the duplicate and the likely class; leaks across fit and query are called out
    detail = dict(zip(table["id"][table["issue"] == "exact_duplicate"], table["detail"][table["issue"] == "exact_duplicate"]))
    assert detail["test/ship/copy3.jpg"] == "same content as train/ship/013.jpg; in both fit and query"
    assert detail["train/cat/copy0.jpg"] == "same content as train/cat/010.jpg"
    label = dict(zip(table["id"][table["issue"] == "label"], table["detail"][table["issue"] == "label"]))
    assert sum(label[p].startswith(("likely dog", "likely cat")) for p in plants["label"]) >= 5  # an animal
    sets = a.duplicate_sets()
    assert len(sets) == 18 and sum(s.in_fit_and_query for s in sets) == 6
    assert all(len(s.members) == 2 for s in sets)  # each copy with its original: no distinct images merged
    crop = dict(zip(table["id"][table["issue"] == "near_duplicate"], table["detail"][table["issue"] == "near_duplicate"]))
    assert crop["train/airplane/crop2.jpg"].startswith("nearest: train/airplane/032.jpg (a crop or rescale: gradient correlation")
    small = next(s for s in sets if "train/cat/small0.jpg" in {a.ids[m] for m in s.members})
    assert a.ids[small.representative] == "train/cat/020.jpg"  # the larger picture is kept


def test_issue_scores_work_where_a_scorer_name_does(planted_analysis):
    a = planted_analysis
    fit, query = a.scores("dark")
    assert len(fit) == len(a.fit_index) and len(query) == len(a.query_index)
    view = a.threshold_view("dark", threshold=0.4)
    assert view.fit_flagged == 6 and view.metrics is None


def test_feature_score_without_duplicates_unmasks_the_twins(planted_analysis):
    a = planted_analysis
    fit, query = feature_scores_without_duplicates(a)
    members = sorted({m for s in a.duplicate_sets() for m in s.members})
    changed = np.flatnonzero(~np.isclose(a.item_scores("feature"), _items(a, fit, query)))
    assert set(changed.tolist()) <= set(members) and len(changed) >= 6
    before, after = a.item_scores("feature")[changed], _items(a, fit, query)[changed]
    assert np.all(after <= before + 1e-12)  # a twin only ever made an item look more typical


def _items(a, fit, query):
    out = np.full(len(a.ids), np.nan)
    out[a.query_index] = query
    out[a.fit_index] = fit
    return out


def test_kept_issue_files_are_reused_and_a_damaged_one_is_recomputed(planted, tmp_path, monkeypatch):
    root, _ = planted
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    a = ood_core.analyze(root, model="pixels", device="cpu")
    first = a.issues(["exact_duplicate", "dark"])
    runs = sorted((tmp_path / "cache" / "runs").glob("*.npz"))
    kept = [p for p in runs if "properties" in str(np.load(p, allow_pickle=False).get("types", ""))
            or "dark" in str(np.load(p, allow_pickle=False).get("types", ""))]
    assert len(kept) == 1
    kept[0].write_bytes(kept[0].read_bytes()[:100])  # cut short
    again = ood_core.analyze(root, model="pixels", device="cpu")
    with pytest.warns(UserWarning, match="ignoring the kept issue scores .* computing them again"):
        second = again.issues(["exact_duplicate", "dark"])
    assert np.array_equal(first["score"], second["score"]) and list(first["detail"]) == list(second["detail"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = ood_core.analyze(root, model="pixels", device="cpu").issues(["dark"])  # read back, no warning
    assert np.array_equal(third["score"], second["score"][second["issue"] == "dark"])


def test_types_that_need_images_say_so_on_features(tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    X[5] = X[4]
    labels = np.repeat([0, 1], 30)
    np.savez(tmp_path / "f.npz", features=X, labels=labels)
    a = ood_core.analyze(str(tmp_path / "f.npz"))
    table = a.issues()
    assert set(table["issue"]) == {"exact_duplicate", "label"}
    assert set(table["id"][(table["issue"] == "exact_duplicate") & table["flagged"]]) == {a.ids[4], a.ids[5]}
    with pytest.raises(ValueError, match="issue type 'dark' cannot be scored on this analysis: image properties "
                                         "need the images"):
        a.issues(["dark"])


# ---------------------------------------------------------------------- oracle (test time only)
def test_label_issues_agree_with_cleanlab(planted, planted_analysis, capsys):
    filter_mod = pytest.importorskip("cleanlab.filter")
    a = planted_analysis
    labels = np.searchsorted(a.pred_classes, a.labels[a.fit_index])
    P = np.asarray(a.fit_pred_probs)
    theirs = filter_mod.find_label_issues(labels, P, return_indices_ranked_by="self_confidence")
    ours_scores = a.issue_scores("label").scores[a.fit_index]
    k = len(theirs)
    ours = np.argsort(ours_scores, kind="stable")[:k]
    overlap = len(set(ours.tolist()) & set(theirs.tolist())) / max(k, 1)
    flagged = np.flatnonzero(a.issue_scores("label").flagged()[a.fit_index])
    jaccard = len(set(flagged) & set(theirs)) / max(len(set(flagged) | set(theirs)), 1)
    with capsys.disabled():
        print(f"\nlabel issues vs cleanlab find_label_issues: top-{k} overlap {overlap:.2f}, "
              f"flagged {len(flagged)} vs {k} (Jaccard {jaccard:.2f})")
    assert overlap >= 0.7


def test_image_properties_agree_with_cleanvision(planted, planted_analysis, capsys):
    """Cleanvision (AGPL, test-time only) on the same folder: its flagged images per shared type."""
    cleanvision = pytest.importorskip("cleanvision")
    root, _ = planted
    a = planted_analysis
    lab = cleanvision.Imagelab(data_path=str(root))
    shared = ["dark", "light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio",
              "exact_duplicates", "near_duplicates"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with capsys.disabled():
            lab.find_issues({t: {} for t in shared}, n_jobs=1, verbose=False)
    rel = [str(p).split(str(root) + "/", 1)[1] for p in lab.issues.index]
    lines, agree = [], {}
    for t in shared:
        ours_name = {"exact_duplicates": "exact_duplicate", "near_duplicates": "near_duplicate"}.get(t, t)
        theirs = {r for r, f in zip(rel, lab.issues[f"is_{t}_issue"]) if f}
        ours = {a.ids[i] for i in np.flatnonzero(a.issue_scores(ours_name).flagged())}
        both = len(ours & theirs)
        agree[ours_name] = (len(ours), len(theirs), both)
        lines.append(f"{ours_name:<17} ours {len(ours):>3}  cleanvision {len(theirs):>3}  both {both:>3}")
    with capsys.disabled():
        print("\nflagged on the planted folder, vs cleanvision " + cleanvision.__version__ + ":\n" + "\n".join(lines))
    assert agree["exact_duplicate"] == (12, 12, 12)
    assert agree["dark"][2] >= 6  # both flag the planted dark images


# ---------------------------------------------------------------------- tiny grayscale images: digits
def test_digits_are_neither_all_grayscale_nor_near_duplicates_but_a_pixel_copy_is(tmp_path, monkeypatch):
    """scikit-learn's 8x8 digits: every image is grey (the norm of these data, not an issue) and no two
    are pixel-identical (counted here), yet 150+ distinct pairs lie within 6 hash bits, since 32 px
    hashes of an 8 px picture agree for distinct digits. Near duplicates of tiny images are decided by
    their pixels: a copy 1 grey level off is one, the closest distinct digits are not."""
    from sklearn.datasets import load_digits

    from ood_core.sources._imageset import content_digest, pixel_set

    monkeypatch.setenv("OOD_CACHE_DIR", str(tmp_path / "cache"))
    a = ood_core.analyze("digits")
    pixels = np.rint(load_digits().images * (255.0 / 16.0)).astype(np.uint8)
    assert len(np.unique(pixels.reshape(len(pixels), -1), axis=0)) == len(pixels) == 1797  # the truth: no copies
    stats = a.image_stats()
    bits = (hamming(stats.phash[:, None], stats.phash[None]) + hamming(stats.dhash[:, None], stats.dhash[None])) / 2
    assert np.triu(bits < 6.4, 1).sum() > 150  # the hashes alone would call these near duplicates
    grey = a.issue_scores("grayscale")
    assert not grey.scored.any()
    assert grey.info["unavailable"] == ("the data are mostly grayscale (1,797 of 1,797 images): grey is their norm, "
                                        "not an issue")
    assert "grayscale" not in set(a.issues()["issue"])
    near = a.issue_scores("near_duplicate")
    assert near.flagged().sum() == 0 and a.issue_scores("exact_duplicate").flagged().sum() == 0
    assert np.nanmin(near.scores) > 0.15  # the closest distinct digits differ by 4 grey levels on average
    # a copy of digit 0 one grey level brighter, and digit 1 stored as exact pixels twice
    extra = np.concatenate([pixels[:40], np.minimum(pixels[:1].astype(np.int16) + 1, 255).astype(np.uint8),
                            pixels[1:2]])
    ids = [f"d{i:02d}" for i in range(len(extra))]
    planted = pixel_set(extra, ids, np.r_[load_digits().target[:40], 0, 1], [str(d) for d in range(10)],
                        identity=content_digest("digits-planted", extra.tobytes()), size_hint=8)
    p = ood_core.analyze(planted)
    near = p.issue_scores("near_duplicate")
    assert set(np.flatnonzero(near.flagged())) == {0, 40}
    assert near.detail[40] == "nearest: d00 (pixels differ by 1.0 grey levels on average)"
    assert set(np.flatnonzero(p.issue_scores("exact_duplicate").flagged())) == {1, 41}
