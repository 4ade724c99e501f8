"""Issue scores of one :class:`~ood_core.analysis.Analysis`: computed lazily, kept on disk with the run.

Two kinds of file in the cache's ``runs/`` folder (:func:`ood_core.cache.run_file`):

- the images' statistics (:class:`ImageStats`), keyed by the image set's identity (its contents), so
  another model or split of the same images reuses them;
- each family's scores, keyed by the run, the family and the settings it depends on.

A kept file that cannot be read or does not hold what the run expects is recomputed, with a warning.
"""
from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import numpy as np

from .._files import atomic_write, digest as _digest
from .._progress import Progress, stage
from ._crops import THUMB
from ._image_pass import PROPERTY_COLUMNS, ImageStats, collect_image_stats
from ._registry import FAMILIES, ISSUE_TYPES, IssueScores, get_issue_type, resolve_types

logger = logging.getLogger(__name__)

# bump when image_records' output changes for equal images (v2: thumbnails; v3: batched, PIL-exact resize
# weights without the intermediate rounding)
STATS_FORMAT = "ood-explorer-image-stats-v3"
# bump when a family's scores change for equal input (v2: crop-tolerant near duplicates, grayscale rule)
ISSUES_FORMAT = "ood-explorer-issues-v2"
TABLE_DTYPE = np.dtype([("id", object), ("position", np.int64), ("issue", object), ("score", np.float64),
                        ("flagged", bool), ("detail", object)])


def _keep(path, arrays: dict[str, Any]) -> None:
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as exc:  # a read-only cache costs only the reuse
        logger.warning("could not keep %s (%s)", path, exc)


def _stats_path(items, cache_dir=None):
    from ..cache import run_file

    return run_file(_digest([STATS_FORMAT, items.identity, len(items)]), cache_dir)


def keep_image_stats(items, stats: ImageStats, cache_dir=None) -> None:
    """Keep ``stats`` (row ``i`` = item ``i`` of the image set ``items``) where :func:`image_stats`
    reads them: ``ood_core.embed`` stores what the embedder's decoding pass collected, so no second
    read of the files is needed."""
    if len(stats) != len(items):
        raise ValueError(f"stats hold {len(stats)} images, the image set {len(items)}")
    _keep(_stats_path(items, cache_dir), {"format": np.array(STATS_FORMAT), "properties": stats.properties,
                                          "phash": stats.phash, "dhash": stats.dhash,
                                          "pixel_digest": stats.pixel_digest, "ok": stats.ok,
                                          "thumbs": stats.thumbs if stats.thumbs is not None
                                          else np.zeros((len(stats), THUMB, THUMB), np.uint8)})


def image_stats(analysis, progress: Progress | None = None) -> ImageStats | None:
    """The :class:`ImageStats` of ``analysis.items``, from the disk when kept (by the embedding, or an
    earlier pass), else by a pass through the images (then kept). For features read from a shard
    folder, the statistics its embedding kept beside the shards (no image is read); None for other
    precomputed features."""
    items = analysis.items
    if items is None:
        from .._shard_stats import shard_image_stats

        return shard_image_stats(analysis.features, analysis.ids, STATS_FORMAT)
    n = len(items)
    path = _stats_path(items, analysis.cache_dir)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as kept:
                if str(kept["format"]) != STATS_FORMAT:
                    raise ValueError(f"format {str(kept['format'])!r}, expected {STATS_FORMAT!r}")
                stats = ImageStats(np.asarray(kept["properties"], dtype=np.float64),
                                   np.asarray(kept["phash"], dtype=np.uint64), np.asarray(kept["dhash"], dtype=np.uint64),
                                   np.asarray(kept["pixel_digest"]).astype(str), np.asarray(kept["ok"], dtype=bool),
                                   np.asarray(kept["thumbs"], dtype=np.uint8))
            if stats.properties.shape != (n, len(PROPERTY_COLUMNS)) or stats.thumbs.shape != (n, THUMB, THUMB) or any(
                    len(a) != n for a in (stats.phash, stats.dhash, stats.pixel_digest, stats.ok)):
                raise ValueError(f"holds {len(stats.ok)} images' statistics, expected {n}")
            return stats
        except Exception as exc:  # noqa: BLE001 - truncated, foreign or tampered: recompute
            warnings.warn(f"ignoring the kept image statistics {path} ({exc}); computing them again", stacklevel=3)
    stats = collect_image_stats(items, progress=stage(progress, "image statistics"))
    keep_image_stats(items, stats, analysis.cache_dir)
    return stats


def _family_key(analysis, family: str) -> list:
    if family == "duplicates":  # candidates come from the feature score's neighbours
        return [analysis.score_config.of("feature")]
    return []


def _read_family(path, names: list[str], n: int) -> dict[str, IssueScores] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as kept:
            if str(kept["format"]) != ISSUES_FORMAT:
                raise ValueError(f"format {str(kept['format'])!r}, expected {ISSUES_FORMAT!r}")
            out = {}
            for name in json.loads(str(kept["types"])):
                scores = np.asarray(kept[f"{name}/scores"], dtype=np.float64)
                detail = [str(d) for d in kept[f"{name}/detail"]]
                if scores.shape != (n,) or len(detail) != n:
                    raise ValueError(f"{name} holds {len(scores)} scores, expected {n}")
                out[name] = IssueScores(name, scores, float(kept[f"{name}/threshold"]), detail,
                                        json.loads(str(kept[f"{name}/info"])))
        if sorted(out) != sorted(names):
            raise ValueError(f"holds types {sorted(out)}, expected {sorted(names)}")
        return out
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or tampered: recompute
        warnings.warn(f"ignoring the kept issue scores {path} ({exc}); computing them again", stacklevel=4)
        return None


def family_scores(analysis, family: str, progress: Progress | None = None) -> dict[str, IssueScores]:
    """Every type of ``family`` for ``analysis``, from the disk when kept, else computed (then kept)."""
    from ..cache import run_file

    n = len(analysis.ids)
    names = [t for t, spec in ISSUE_TYPES.items() if spec.family == family]
    path = run_file(_digest([ISSUES_FORMAT, analysis.run_id, family, _family_key(analysis, family)]),
                    analysis.cache_dir)
    kept = _read_family(path, names, n)
    if kept is not None:
        return kept
    fn = FAMILIES[family]
    if family == "label":
        result = fn(analysis)
    else:
        stats = cached_image_stats(analysis, progress=progress)
        if stats is None and family == "properties":
            result = {name: IssueScores(name, np.full(n, np.nan), ISSUE_TYPES[name].threshold, [""] * n,
                                        {"unavailable": "image properties need the images; this analysis holds "
                                                        "precomputed features"}) for name in names}
        else:
            result = fn(analysis, stats)
        for name in names:
            if name not in result:
                result[name] = IssueScores(name, np.full(n, np.nan), ISSUE_TYPES[name].threshold, [""] * n,
                                           {"unavailable": "needs the images' perceptual hashes; this analysis "
                                                           "holds precomputed features"})
    arrays: dict[str, Any] = {"format": np.array(ISSUES_FORMAT), "types": np.array(json.dumps(names))}
    for name, r in result.items():
        arrays.update({f"{name}/scores": r.scores, f"{name}/threshold": np.array(r.threshold),
                       f"{name}/detail": np.array(r.detail, dtype=str), f"{name}/info": np.array(json.dumps(r.info))})
    _keep(path, arrays)
    return result


def cached_image_stats(analysis, progress: Progress | None = None) -> ImageStats | None:
    """``analysis.image_stats()``: computed (or read from the disk) once per Analysis object."""
    kept = analysis._issue_results
    if "stats" not in kept:
        kept["stats"] = image_stats(analysis, progress=progress)
    return kept["stats"]


def cached_issue_scores(analysis, issue: str, progress: Progress | None = None) -> IssueScores:
    """``analysis.issue_scores(issue)``: its family computed (or read from the disk) once per Analysis."""
    family = get_issue_type(issue).family
    kept = analysis._issue_results
    if family not in kept:
        kept[family] = family_scores(analysis, family, progress=progress)
    return kept[family][issue]


# why an image type leaves an item unscored: measuring it failed in the decoding (or statistics) pass,
# which keeps its features and logs the error
STATS_FAILED = "its image statistics could not be computed (the log names the error)"


def unscored_items(analysis, issue: str) -> dict[int, str]:
    """The items (positions into ``analysis.ids``) that ``issue`` leaves unscored (NaN), each with why:
    the type's ``unavailable`` reason when it scores nothing on this analysis, a class the classifier
    was not trained on (``label``), or image statistics that could not be computed (the image
    types and ``near_duplicate``: the embedder keeps an image's features when measuring it fails)."""
    found = cached_issue_scores(analysis, issue)
    missing = np.flatnonzero(~found.scored)
    if not len(missing):
        return {}
    if "unavailable" in found.info:
        return {int(p): str(found.info["unavailable"]) for p in missing}
    family = get_issue_type(issue).family
    stats = cached_image_stats(analysis) if family != "label" else None
    known = set(np.asarray(analysis.pred_classes if analysis.pred_classes is not None else [], dtype=np.int64).tolist())
    why = {}
    for p in missing.tolist():
        if stats is not None and p < len(stats) and not stats.ok[p]:
            why[p] = STATS_FAILED
        elif family == "label":
            label = int(analysis.labels[p])
            why[p] = ("no known class" if label < 0 else
                      f"its class ({analysis.class_name(p)}) is not one the classifier was trained on"
                      if label not in known else "not scored by the label issue pass")
        else:
            why[p] = found.detail[p] or "no score for this item"
    return why


def issue_table(analysis, types=None, thresholds: dict[str, float] | None = None,
                progress: Progress | None = None) -> np.ndarray:
    """One row per (scored item, issue type): a structured array of :data:`TABLE_DTYPE` (id,
    position into ``ids``, issue, score in [0, 1] (lower = more severe), flagged, detail), types in
    registration order, items in position order. ``types``: None for every type this analysis can
    score (the others are left out), else the names wanted (ValueError when one cannot be scored).
    ``flagged`` is ``score < threshold``: the type's default, or the value ``thresholds`` gives it."""
    names = resolve_types(types)
    for name in names:
        cached_issue_scores(analysis, name, progress)
    explicit = types is not None
    parts = []
    for name in names:
        r = analysis.issue_scores(name)
        if not r.scored.any():
            if explicit:
                raise ValueError(f"issue type {name!r} cannot be scored on this analysis: "
                                 f"{r.info.get('unavailable', 'no item has a score')}")
            continue
        pos = np.flatnonzero(r.scored)
        rows = np.empty(len(pos), dtype=TABLE_DTYPE)
        rows["id"] = [analysis.ids[p] for p in pos]
        rows["position"] = pos
        rows["issue"] = name
        rows["score"] = r.scores[pos]
        rows["flagged"] = r.flagged((thresholds or {}).get(name))[pos]
        rows["detail"] = [r.detail[p] for p in pos]
        parts.append(rows)
    return np.concatenate(parts) if parts else np.empty(0, dtype=TABLE_DTYPE)
