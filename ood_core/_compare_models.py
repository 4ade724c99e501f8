"""Which model for my data? The same source embedded (through the cache) and scored with several models.

:func:`compare_models` runs :func:`ood_core.analyze` once per model on the same items and split,
and :class:`ModelComparison` lays the results side by side: per model the feature (and prediction)
AUROC and FPR at 95% TPR when the truth is known, always the score summaries and flag counts at a
percentile threshold, and per pair of models how far their scores agree (Spearman of the query
scores, overlap of the flagged query items). The CLI's ``compare-models`` and the dashboard's
Models page both read it.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Sequence, Unpack

import numpy as np

from ._progress import Progress
from .analysis import Analysis, ScoreConfig
from .run_config import RunConfig, RunKeywords
from .sources import ArraySet, ImageSet

DEFAULT_COMPARE_MODELS = ("lite0", "lite2", "pixels")


@dataclass(frozen=True, eq=False)
class ModelComparison:
    """The analyses of one source by several models (same items, same fit/query split)."""

    source: str
    models: tuple[str, ...]  # as asked, in order
    analyses: dict[str, Analysis]  # by model as asked
    seconds: dict[str, float]  # wall time of each model's run (embedding from the cache when cached)
    percentile: float  # the fit percentile the flags are counted at

    @property
    def has_truth(self) -> bool:
        """True when the query items' out-of-distribution truth is known (AUROC can be reported)."""
        return all(a.is_ood is not None for a in self.analyses.values())

    def query_scores(self, model: str, scorer: str = "feature") -> tuple[list[str], np.ndarray]:
        """``(ids, scores)`` of the query items under ``model``."""
        analysis = self.analyses[model]
        return [analysis.ids[p] for p in analysis.query_index], analysis.scores(scorer)[1]

    def flagged_ids(self, model: str, scorer: str = "feature") -> set[str]:
        """Ids of the query items ``model`` flags at the comparison's percentile of its fit scores."""
        view = self.analyses[model].threshold_view(scorer, percentile=self.percentile)
        ids, scores = self.query_scores(model, scorer)
        return {i for i, s in zip(ids, scores) if s < view.threshold}

    def table(self) -> list[dict[str, Any]]:
        """One row per model: what it resolved to, its cost, and its scores' quality or summary."""
        rows = []
        for model in self.models:
            a = self.analyses[model]
            config = a.embed_config
            feature = a.threshold_view("feature", percentile=self.percentile)
            query = a.scores("feature")[1]
            row: dict[str, Any] = {
                "model": model, "resolved": config.get("model", "precomputed"),
                "input size": config.get("image_size"), "features": int(a.features.shape[1]),
                "seconds": round(self.seconds[model], 2), "cached": bool(a.cache_hit),
                "query flagged": feature.query_flagged, "query flagged %": round(feature.query_flagged_pct, 2),
                "median query score": float(np.median(query)),
            }
            if feature.metrics is not None:
                row.update({"feature AUROC": feature.metrics["auroc"], "FPR@95%TPR": feature.metrics["fpr_at_95_tpr"],
                            "FPR at threshold": feature.metrics["fpr"], "TPR at threshold": feature.metrics["tpr"]})
                if "prediction" in a.scorers:
                    pred = a.threshold_view("prediction", percentile=self.percentile)
                    row["prediction AUROC"] = pred.metrics["auroc"]
            rows.append(row)
        return rows

    def agreement(self, scorer: str = "feature") -> list[dict[str, Any]]:
        """One row per pair of models: Spearman correlation of their query scores (on the items both
        scored) and the overlap of their flagged query items (shared / either, the Jaccard index)."""
        from .explain.compare import _spearman

        rows = []
        for a, b in combinations(self.models, 2):
            ids_a, s_a = self.query_scores(a, scorer)
            ids_b, s_b = self.query_scores(b, scorer)
            where_b = {i: n for n, i in enumerate(ids_b)}
            common = [(n, where_b[i]) for n, i in enumerate(ids_a) if i in where_b]
            x = np.array([s_a[n] for n, _ in common])
            y = np.array([s_b[m] for _, m in common])
            rho = _spearman(x, y)  # NaN when a model gives every item the same score
            fa, fb = self.flagged_ids(a, scorer), self.flagged_ids(b, scorer)
            union = fa | fb
            rows.append({"models": f"{a} vs {b}", "items": len(common), "spearman": rho,
                         "flagged by both": len(fa & fb), "flagged by either": len(union),
                         "flag overlap": len(fa & fb) / len(union) if union else float("nan")})
        return rows


def _check_models(models: Sequence[str]) -> tuple[str, ...]:
    from ._embed_config import canonical_model

    if isinstance(models, str):
        models = [m for m in models.split(",")]
    names = tuple(m.strip() for m in models if isinstance(m, str) and m.strip())
    if len(names) < 2 or len(names) != len(models):
        raise ValueError(f"compare_models needs at least 2 model names, e.g. {','.join(DEFAULT_COMPARE_MODELS)}; "
                         f"got {list(models)!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"compare_models: a model is named twice in {list(names)}")
    for name in names:
        canonical_model(name)  # raises a clear error for an unknown name before any work starts
    return names


def compare_models(
    source: str | os.PathLike | ImageSet,
    models: Sequence[str] = DEFAULT_COMPARE_MODELS,
    *,
    settings: RunConfig | None = None,
    percentile: float = 5.0,
    progress: Progress | None = None,
    name: str | None = None,
    scores: ScoreConfig = ScoreConfig(),
    cache_dir: str | os.PathLike | None = None,
    **overrides: Unpack[RunKeywords],
) -> ModelComparison:
    """Analyze ``source`` once per model (embeddings through the disk cache) and compare them.

    ``source``, ``settings`` (with its fields as keywords: ``in_classes``, ``fit_fraction``, ``seed``,
    ``weights``, ``image_size``, ``device``, ``batch_size``, ``backend``), ``scores``, ``cache_dir``
    and ``name`` are as for :func:`ood_core.analyze`, except the model, which ``models`` names;
    ``weights`` and ``image_size`` apply to the networks (pixel models keep their own size and take no
    weights). ``progress(stage, done, total)`` hears
    ``"<model>: <stage>"`` for each model's stages.
    """
    from ._analyze import _open, analyze
    from ._embed_config import PIXEL_MODELS, canonical_model
    from ._validation import check_number
    from .sources import in_out_split

    fields = [f.name for f in dataclasses.fields(RunConfig) if f.name != "model"]
    settings = RunConfig.resolve(settings, "compare_models", fields, **overrides)
    names = _check_models(models)
    p = check_number(percentile, "percentile")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must lie in [0, 100]; got {percentile!r}")
    opened = _open(source, name)
    if isinstance(opened, ArraySet):
        raise ValueError(f"{opened.description} holds precomputed features: there is no model to compare")
    drawn = settings.class_split()
    if drawn is not None:  # drawn once, so every model sees the same fit and query items
        opened = in_out_split(opened, **drawn)
    settings = dataclasses.replace(settings, in_classes=None)
    analyses, seconds = {}, {}
    for model in names:
        start = time.perf_counter()
        relay = None if progress is None else (lambda st, d, t, m=model: progress(f"{m}: {st}", d, t))
        own = dataclasses.replace(settings, model=model)
        if canonical_model(model) in PIXEL_MODELS:
            own = dataclasses.replace(own, image_size=None)
        analyses[model] = analyze(opened, settings=own, scores=scores, cache_dir=cache_dir, progress=relay)
        seconds[model] = time.perf_counter() - start
    first = analyses[names[0]]
    return ModelComparison(source=first.source, models=names, analyses=analyses, seconds=seconds, percentile=p)


__all__ = ["DEFAULT_COMPARE_MODELS", "ModelComparison", "compare_models"]
