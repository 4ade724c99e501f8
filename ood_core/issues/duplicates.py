"""Exact and near duplicates, grouped into duplicate sets; the feature score without them.

Candidates come from two places, so there is never an all-pairs pass:

- the neighbour search the feature score ran anyway: each fit item's ``k`` nearest fit items, each
  query item's ``k`` nearest fit items (``Analysis.feature_scorer`` / ``query_neighbors``);
- hash buckets (multi-index hashing): each 64-bit pHash and dHash is cut into 4 bands of 16 bits;
  two hashes within Hamming distance 3 agree exactly on at least one band, so items sharing a
  band value are candidates. Equal hashes are collapsed first, so a large group of identical images
  (blank frames) costs one entry.

A candidate pair's score (:func:`pair_scores`, 0-1, lower = closer) is the smaller of

- its hash distance: the mean Hamming distance of its pHash and dHash / 64. Measured on CIFAR-10
  (tests/test_issues.py, README): a copy resized to 28 px and saved at JPEG quality 70 lies at
  0-5.5 bits from its original; distinct images' nearest hash neighbours at 8.5 or more;
- its crop distance: 1 - the best gradient correlation of the two thumbnails over a grid of crop
  hypotheses (:mod:`._crops`), for pairs within :data:`_CROP_BITS` bits (a 5-15% crop of a CIFAR-10
  image moves the hashes 3-27 bits). Measured with bench/near_duplicates.py (5,000 CIFAR-10 training
  images, 350 planted copies): 349 of 350 copies cut by 5-15% (one side or centred) or resized score
  under 0.1; of the ~40,000 candidate pairs of distinct files, 28 do, and by eye 25 of those show one
  photograph twice (CIFAR-10's own near duplicates), 3 are distinct pictures.

Images under :data:`TINY_SIDE` pixels a side (8 x 8 digits) have too few pixels for either: 32 px
hashes of an 8 px picture agree for distinct digits, and so do their gradients. A pair with such an
image scores its mean absolute pixel difference (of the thumbnails) / 25.5 grey levels, so only
pictures equal to within 2.5 grey levels on average are near duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._crops import crop_similarity
from ._image_pass import hamming
from ._registry import IssueScores, IssueType, issue_family

NEAR_THRESHOLD = 0.1
# Bucket pairs farther apart than this (mean bits) are not kept: their score would not be near any threshold.
_KEEP_BITS = 16.0
_BANDS = 4
_BLOCK = 2048  # rows of a large bucket compared at once
_CROP_BITS = 30.0  # candidate pairs farther apart than this (mean bits) are not checked for crops
TINY_SIDE = 16  # images with a smaller side (pixels) are compared pixel for pixel
_TINY_LEVELS = 25.5  # tiny pairs: score = mean absolute difference (grey levels) / this


@issue_family(
    "duplicates",
    IssueType("exact_duplicate", "Exact duplicates", "duplicates", 0.5,
              "the score is 0 (another item has the same content digest) or 1 (none has); any threshold "
              "between them flags exactly the copies",
              "another item holds the same file (or, for images held in memory, the same pixels)"),
    IssueType("near_duplicate", "Near duplicates", "duplicates", NEAR_THRESHOLD,
              "score = the smaller of the share of pHash + dHash bits that differ and 1 - the best correlation "
              "of the two thumbnails' gradients over crops of up to 20% of a side, against the nearest "
              "candidate; 0.1 (6 bits of 64, or a correlation of 0.9) catches re-encoded, resized and 5-15% cropped "
              "copies (349 of 350 planted in 5,000 CIFAR-10 images) while 3 pairs of distinct pictures in ~40,000 "
              "candidates fall under it. Images under 16 px a side: mean pixel difference / 25.5 grey levels, "
              "i.e. flagged under 2.55",
              "the same picture re-encoded, resized or lightly edited is in the data (exact copies excluded)"),
)
def duplicate_issues(analysis, stats=None) -> dict[str, IssueScores]:
    """Both duplicate types over ``analysis.ids``; ``stats`` are the images' :class:`ImageStats`
    (None for precomputed features: exact duplicates are then identical feature rows, and near
    duplicates cannot be scored)."""
    n = len(analysis.ids)
    digests = item_digests(analysis, stats)
    split = _set_of(analysis)
    ids = analysis.ids
    # ---- exact
    groups = _groups_of_equal(digests)
    exact_scores = np.ones(n)
    exact_detail = [""] * n
    rep = _representatives(groups, analysis, stats)
    for members, r in zip(groups, rep):
        exact_scores[members] = 0.0
        leak = len({split[m] for m in members}) > 1
        for m in members:
            other = r if m != r else next(x for x in members if x != r)
            exact_detail[m] = (f"same content as {ids[other]}" + (f" and {len(members) - 2} more" if len(members) > 2
                                                                   else "")
                               + ("; kept copy" if m == r else "") + ("; in both fit and query" if leak else ""))
    info = {"sets": len(groups), "items_in_sets": int(sum(len(g) for g in groups)),
            "by": "file content digest" if getattr(analysis.items, "item_digests", None) is not None
            else "digest of the decoded pixels" if stats is not None else "identical feature rows",
            "sets_in_both_fit_and_query": int(sum(len({split[m] for m in g}) > 1 for g in groups))}
    result = {"exact_duplicate": IssueScores("exact_duplicate", exact_scores, 0.5, exact_detail, info)}
    if stats is None:
        return result
    # ---- near
    a, b, pair, kind, source = pair_scores(analysis, stats)
    near = np.full(n, np.nan)
    near[stats.ok] = 1.0
    partner = np.full(n, -1)
    pick = np.full(n, -1)
    # nearest partner per item: sort by (item, score, partner) and keep the first of each item
    both = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([pair, pair])
    order = np.lexsort((both[1], both[2], both[0]))
    first = order[np.r_[True, both[0][order][1:] != both[0][order][:-1]]] if len(order) else order
    near[both[0][first]] = np.minimum(both[2][first], 1.0)
    partner[both[0][first]] = both[1][first]
    pick[both[0][first]] = first % max(len(a), 1)
    near_detail = [""] * n
    for i in np.flatnonzero(partner >= 0):
        j, k = partner[i], pick[i]
        how = {"hash": f"{both_bits(stats, i, j):g} of 64 bits differ",
               "crop": f"a crop or rescale: gradient correlation {1 - pair[k]:.2f}, {both_bits(stats, i, j):g} of 64 "
                       "hash bits differ",
               "pixels": f"pixels differ by {pair[k] * _TINY_LEVELS:.1f} grey levels on average"}[kind[k]]
        near_detail[i] = f"nearest: {ids[j]} ({how})" + ("; in both fit and query" if split[i] != split[j] else "")
    keep = pair < NEAR_THRESHOLD
    near_info = {"candidate_pairs": int(len(a)), "from_neighbours": int((source == 0).sum()),
                 "from_hash_buckets": int((source == 1).sum()), "pairs_below_threshold": int(keep.sum()),
                 "below_threshold_by": {k: int((keep & (kind == k)).sum()) for k in ("hash", "crop", "pixels")},
                 "crop_check": f"candidate pairs within {_CROP_BITS:g} hash bits, images {TINY_SIDE} px or more a side",
                 "tiny_images": int(((np.minimum(stats.properties[:, 0], stats.properties[:, 1]) < TINY_SIDE)
                                     & stats.ok).sum()),
                 "pairs_in_both_fit_and_query": int(sum(split[x] != split[y] for x, y in zip(a[keep], b[keep])))}
    result["near_duplicate"] = IssueScores("near_duplicate", near, NEAR_THRESHOLD, near_detail, near_info)
    return result


def pair_scores(analysis, stats) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The near-duplicate candidate pairs of ``analysis`` (exact copies and undecodable images
    left out): positions ``a`` < ``b``, each pair's score in [0, 1] (lower = closer, see the module
    docstring), what decided it ("hash", "crop" or "pixels") and where it came from (0: neighbours,
    1: hash buckets). Kept on the analysis once computed."""
    kept = getattr(analysis, "_issue_results", None)
    if kept is not None and kept.get("near_pairs", (None,))[0] is stats:
        return kept["near_pairs"][1]
    digests = item_digests(analysis, stats)
    a, b, source = candidate_pairs(analysis, stats)
    keep = (digests[a] != digests[b]) & stats.ok[a] & stats.ok[b]
    a, b, source = a[keep], b[keep], source[keep]
    bits = (hamming(stats.phash[a], stats.phash[b]) + hamming(stats.dhash[a], stats.dhash[b])) / 2.0
    score = bits / 64.0
    kind = np.full(len(a), "hash", dtype=object)
    side = np.minimum(stats.properties[:, 0], stats.properties[:, 1])
    tiny = (side[a] < TINY_SIDE) | (side[b] < TINY_SIDE)
    thumbs = stats.thumbs
    if thumbs is not None:
        check = ~tiny & (bits <= _CROP_BITS)
        crop = 1.0 - crop_similarity(thumbs, a[check], b[check])
        better = crop < score[check]
        score[np.flatnonzero(check)[better]] = crop[better]
        kind[np.flatnonzero(check)[better]] = "crop"
        if tiny.any():
            diff = np.abs(thumbs[a[tiny]].astype(np.int16) - thumbs[b[tiny]]).mean(axis=(1, 2))
            score[tiny] = np.minimum(diff / _TINY_LEVELS, 1.0)
    else:  # no thumbnails: a tiny pair cannot be compared
        score[tiny] = 1.0
    kind[tiny] = "pixels"
    out = (a, b, score, kind.astype(str), source)
    if kept is not None:
        kept["near_pairs"] = (stats, out)
    return out


def both_bits(stats, i: int, j: int) -> float:
    """Mean Hamming distance (bits) of the pHash and dHash of items ``i`` and ``j``."""
    return float(hamming(stats.phash[i], stats.phash[j]) + hamming(stats.dhash[i], stats.dhash[j])) / 2.0


def item_digests(analysis, stats=None) -> np.ndarray:
    """One content digest per item: the file's (as the image set's identity is built), else the
    decoded pixels' (``stats``), else the bytes of its feature row."""
    kept = getattr(analysis.items, "item_digests", None)
    if kept is not None:
        return np.asarray(kept, dtype=str)
    if stats is not None:
        return np.asarray(stats.pixel_digest, dtype=str)
    import hashlib

    from ..shards import blocks

    out = []
    for block in blocks(analysis.features):
        out.extend(hashlib.blake2b(np.ascontiguousarray(r).tobytes(), digest_size=20).hexdigest() for r in block)
    return np.asarray(out, dtype=str)


def _set_of(analysis) -> np.ndarray:
    """"fit", "query" or "" per item (fit wins when the sets are the same items)."""
    out = np.full(len(analysis.ids), "", dtype=object)
    out[np.asarray(analysis.query_index, dtype=np.int64)] = "query"
    out[np.asarray(analysis.fit_index, dtype=np.int64)] = "fit"
    return out


def _groups_of_equal(keys: np.ndarray) -> list[np.ndarray]:
    """Positions sharing a key, for every key held by 2 or more items (each group ascending)."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    ends = np.r_[starts[1:], len(k)]
    return [np.sort(order[s:e]) for s, e in zip(starts, ends) if e - s > 1 and k[s] != ""]


def _representatives(groups: list[np.ndarray], analysis, stats) -> list[int]:
    """The item each set keeps: the most pixels, then a fit item, then the first position."""
    fit = np.zeros(len(analysis.ids), dtype=bool)
    fit[np.asarray(analysis.fit_index, dtype=np.int64)] = True
    pixels = (stats.properties[:, 0] * stats.properties[:, 1]) if stats is not None else np.zeros(len(fit))
    pixels = np.nan_to_num(pixels, nan=-1.0)
    return [int(g[np.lexsort((g, ~fit[g], -pixels[g]))[0]]) for g in groups]


def candidate_pairs(analysis, stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of item positions (a < b, unique) to compare, and where each came from (0: the
    feature score's neighbours, 1: hash buckets)."""
    fit_index = np.asarray(analysis.fit_index, dtype=np.int64)
    pairs = []
    _, idx = analysis.feature_scorer.kneighbors()  # the fit set's own neighbours, kept by fit
    pairs.append(np.stack([np.repeat(fit_index, idx.shape[1]), fit_index[idx.reshape(-1)]], 1))
    qn = getattr(analysis, "query_neighbors", None)
    if qn is not None and not analysis.same_set:
        q = np.asarray(analysis.query_index, dtype=np.int64)
        pairs.append(np.stack([np.repeat(q, qn.shape[1]), fit_index[qn.reshape(-1)]], 1))
    neighbour_pairs = _unique_pairs(np.concatenate(pairs))
    bucket = bucket_pairs(stats.phash, stats.dhash, stats.ok)
    allp = np.concatenate([neighbour_pairs, bucket])
    source = np.r_[np.zeros(len(neighbour_pairs), np.int8), np.ones(len(bucket), np.int8)]
    key = allp[:, 0] * (len(analysis.ids) + 1) + allp[:, 1]
    _, first = np.unique(key, return_index=True)  # a pair found both ways counts as a neighbour pair
    return allp[first, 0], allp[first, 1], source[first]


def _unique_pairs(p: np.ndarray) -> np.ndarray:
    p = np.sort(p, axis=1)
    p = p[p[:, 0] != p[:, 1]]
    return np.unique(p, axis=0) if len(p) else p.reshape(0, 2)


def bucket_pairs(phash: np.ndarray, dhash: np.ndarray, ok: np.ndarray | None = None,
                 keep_bits: float = _KEEP_BITS) -> np.ndarray:
    """Pairs (a < b) of items sharing a 16-bit band of their pHash or dHash whose mean Hamming
    distance is at most ``keep_bits``; every pair within distance 3 of either hash is among them."""
    n = len(phash)
    ok = np.ones(n, bool) if ok is None else np.asarray(ok, bool)
    found = []
    # identical (pHash, dHash) pairs: collapse to one representative, pair the rest with it
    combined = np.array([f"{p:016x}{d:016x}" for p, d in zip(phash, dhash)])
    combined[~ok] = ""
    reps = np.flatnonzero(ok)
    for g in _groups_of_equal(combined):
        found.append(np.stack([np.full(len(g) - 1, g[0]), g[1:]], 1))
        reps = np.setdiff1d(reps, g[1:], assume_unique=True)
    members_of = {int(g[0]): g for g in _groups_of_equal(combined)}
    ph, dh = phash[reps], dhash[reps]
    for h in (ph, dh):
        for band in range(_BANDS):
            key = (h >> np.uint64(16 * band)) & np.uint64(0xFFFF)
            order = np.argsort(key, kind="stable")
            k = key[order]
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            ends = np.r_[starts[1:], len(k)]
            for s, e in zip(starts, ends):
                if e - s < 2:
                    continue
                g = order[s:e]
                for b0 in range(0, len(g), _BLOCK):
                    rows = g[b0:b0 + _BLOCK]
                    d = (hamming(ph[rows][:, None], ph[g][None, :]) + hamming(dh[rows][:, None], dh[g][None, :])) / 2
                    r, c = np.nonzero(d <= keep_bits)
                    sel = (b0 + r) < c  # each unordered pair once
                    if sel.any():
                        found.append(np.stack([reps[rows[r[sel]]], reps[g[c[sel]]]], 1))
    pairs = _unique_pairs(np.concatenate(found)) if found else np.zeros((0, 2), np.int64)
    # a pair involving a collapsed representative stands for its whole group
    extra = []
    for a, b in pairs:
        ga, gb = members_of.get(int(a)), members_of.get(int(b))
        if ga is not None or gb is not None:
            for x in (ga if ga is not None else [a]):
                for y in (gb if gb is not None else [b]):
                    extra.append((x, y))
    if extra:
        pairs = _unique_pairs(np.concatenate([pairs, np.array(extra, dtype=np.int64)]))
    return pairs.astype(np.int64)


# ---------------------------------------------------------------------- duplicate sets
@dataclass(frozen=True)
class DuplicateSet:
    """Items showing one picture: ``members`` (positions into ``Analysis.ids``, ascending), the one to
    keep (``representative``: the most pixels, then a fit item, then the first), and whether the set
    has items in both the fit and the query set (leakage between train and test)."""

    members: tuple[int, ...]
    representative: int
    exact: bool  # every member has the same content digest
    in_fit_and_query: bool


def duplicate_sets(analysis, exact: IssueScores, near: IssueScores | None, stats,
                   near_threshold: float | None = None) -> list[DuplicateSet]:
    """Union-find over exact copies and near-duplicate pairs below ``near_threshold`` (the default
    threshold when None); the sets, largest first, then by first member."""
    n = len(analysis.ids)
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(x: int, y: int) -> None:
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)

    digests = item_digests(analysis, stats)
    for g in _groups_of_equal(digests):
        for m in g[1:]:
            union(int(g[0]), int(m))
    if near is not None and stats is not None:
        thr = near.threshold if near_threshold is None else float(near_threshold)
        a, b, pair, _, _ = pair_scores(analysis, stats)
        close = pair < thr
        for x, y in zip(a[close], b[close]):
            union(int(x), int(y))
    roots = np.array([find(i) for i in range(n)])
    groups = [g for g in _groups_of_equal(roots.astype(str)) if len(g) > 1]
    split = _set_of(analysis)
    reps = _representatives(groups, analysis, stats)
    sets = [DuplicateSet(tuple(int(m) for m in g), r, bool(len(set(digests[g])) == 1),
                         len({split[m] for m in g}) > 1) for g, r in zip(groups, reps)]
    return sorted(sets, key=lambda s: (-len(s.members), s.members[0]))


def analysis_duplicate_sets(analysis, near_threshold: float | None = None) -> list[DuplicateSet]:
    """:func:`duplicate_sets` of an analysis from its (lazily computed, kept) issue scores."""
    near = analysis.issue_scores("near_duplicate")
    return duplicate_sets(analysis, analysis.issue_scores("exact_duplicate"), near if near.scored.any() else None,
                          analysis.image_stats(), near_threshold)


def feature_scores_without_duplicates(analysis, sets: list[DuplicateSet] | None = None,
                                      near_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The feature (KNN) scores ``(fit, query)`` of ``analysis`` with each item's own duplicates
    (``sets``; None: :func:`analysis_duplicate_sets` at ``near_threshold``) left out of its
    neighbours (a twin in the fit set makes an outlier look typical). Only items in a set change;
    their neighbours are searched again with ``k`` + the set's size."""
    if sets is None:
        sets = analysis_duplicate_sets(analysis, near_threshold)
    scorer = analysis.feature_scorer
    fit_scores = np.array(analysis.fit_feature_scores, dtype=np.float64)
    query_scores = np.array(analysis.query_feature_scores, dtype=np.float64)
    fit_row = {int(p): j for j, p in enumerate(analysis.fit_index)}
    fit_index = np.asarray(analysis.fit_index, dtype=np.int64)
    from ..shards import rows

    for s in sets:
        partners = set(s.members)
        want = min(scorer.k_ + len(partners), scorer.n_fit_)
        X = rows(analysis.features, np.array(s.members))
        dist, idx = scorer.kneighbors(np.asarray(X), k=want)
        for m, d, i in zip(s.members, dist, idx):
            keep = ~np.isin(fit_index[i], list(partners))
            d = d[keep][: scorer.k_]
            if len(d) == 0:
                continue
            score = float(scorer._to_scores(np.array([d.astype(np.float64).mean()]))[0])
            if m in fit_row:
                fit_scores[fit_row[m]] = score
            j = analysis.query_row_of.get(analysis.ids[m])
            if j is not None:
                query_scores[j] = score
    return fit_scores, query_scores
