"""What defines a run, written out once: :class:`RunConfig`, how a source's images become features
(the embedding) and how its items are split into fit and query sets by class.

:func:`ood_core.analyze`, :func:`ood_core.embed`, :func:`ood_core.embed_shards` and
``Reference.fit`` take one (``settings=``), the CLI builds one from its flags
(``ood_core.cli._common.run_config``) and the dashboard's runs hold one. Each also takes the fields
as plain keywords (``analyze("digits", model="lite0")``); :meth:`RunConfig.resolve` is the one place
those keywords meet the defaults, which come from :mod:`ood_core.settings`. The scorers' settings are
:class:`~ood_core.analysis.ScoreConfig`. This module imports nothing heavy (the CLI's ``--help``
reads the defaults from it).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypedDict

from ._backends import BACKENDS  # noqa: F401 - the backend field's choices, re-exported
from .settings import DEFAULT_BACKEND, DEFAULT_BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_FIT_FRACTION, DEFAULT_SEED, DEFAULT_WEIGHTS
from .weights import DEFAULT_MODEL


class EmbeddingKeywords(TypedDict, total=False):
    """RunConfig's embedding fields as keywords (``**overrides: Unpack[...]``), so a type checker
    sees ``embed(source, model=...)`` and flags a misspelt keyword; tests/test_run_config.py keeps
    the fields and these equal, in order."""

    model: str
    weights: str | os.PathLike
    image_size: int | None
    device: str
    batch_size: int
    backend: str


class RunKeywords(EmbeddingKeywords, total=False):
    """Every RunConfig field as a keyword: the embedding and the class split."""

    in_classes: Sequence[str | int] | None
    fit_fraction: float
    seed: int


# The fields that say how images become features (the Embedder's keywords), and those of the class split.
EMBEDDING_FIELDS = tuple(EmbeddingKeywords.__annotations__)
SPLIT_FIELDS = tuple(k for k in RunKeywords.__annotations__ if k not in EMBEDDING_FIELDS)


@dataclass(frozen=True)
class RunConfig:
    """How a run embeds its source and splits it by class; hashable (the dashboard keys its runs by it).

    The embedding fields are ignored for precomputed features, the split fields when ``in_classes``
    is None. Values are checked where they are used (the Embedder, the class split), so an error
    names the setting and the data it does not fit.
    """

    # ---- the embedding
    model: str = DEFAULT_MODEL  # "auto" (pixels for tiny grayscale images, else the default network), a
    #                             short alias (lite0, lite1, lite2), "pixels", "pixels-raw" or any timm name
    weights: str | os.PathLike = DEFAULT_WEIGHTS  # "bundled", "hub" (needs the network) or a local weights file
    image_size: int | None = None  # input size in pixels; None: chosen from the model and the images' size
    device: str = DEFAULT_DEVICE  # "auto" (CUDA when present), "cpu" or "cuda"
    batch_size: int = DEFAULT_BATCH_SIZE  # images per forward pass
    backend: str = DEFAULT_BACKEND  # inference on the CPU: "auto", "torch", "onnx" or "openvino"
    # ---- the fit / query split by class
    in_classes: tuple[str | int, ...] | None = None  # in-distribution classes (names or indices); None: the
    #                                                  source's own split (or every item against the others)
    fit_fraction: float = DEFAULT_FIT_FRACTION  # share of the in-class items fitted on (with in_classes)
    seed: int = DEFAULT_SEED  # seed of that draw

    def __post_init__(self):
        if self.in_classes is not None and not isinstance(self.in_classes, (tuple, str)):
            object.__setattr__(self, "in_classes", tuple(self.in_classes))  # a list stays hashable as a tuple

    @classmethod
    def resolve(cls, settings: "RunConfig | None" = None, caller: str = "RunConfig",
                fields: Sequence[str] | None = None, **overrides: Any) -> "RunConfig":
        """``settings`` (the defaults when None) with the keywords ``overrides`` replacing its fields:
        the one place a function's plain keywords become a RunConfig. ``fields``: the keywords
        ``caller`` takes (default: all); any other raises the TypeError Python gives for an unknown
        keyword argument."""
        allowed = tuple(f.name for f in dataclasses.fields(cls)) if fields is None else tuple(fields)
        for key in overrides:
            if key not in allowed:
                raise TypeError(f"{caller}() got an unexpected keyword argument {key!r} (its settings: "
                                f"{', '.join(allowed)})")
        if settings is None:
            settings = cls()
        elif not isinstance(settings, cls):
            raise TypeError(f"{caller}(): settings must be a {cls.__name__}; got {type(settings).__name__}")
        return dataclasses.replace(settings, **overrides) if overrides else settings

    def embedding(self) -> dict[str, Any]:
        """The embedding fields, as the keywords of :class:`~ood_core.embedder.Embedder`."""
        return {name: getattr(self, name) for name in EMBEDDING_FIELDS}

    def class_split(self) -> dict[str, Any] | None:
        """``in_classes``, ``fit_fraction`` and ``seed`` as the keywords of
        :func:`~ood_core.sources.in_out_split`; None when the source keeps its own split."""
        if self.in_classes is None:
            return None
        return {"in_classes": self.in_classes, "fit_fraction": self.fit_fraction, "seed": self.seed}


__all__ = ["RunConfig", "BACKENDS", "RunKeywords", "EmbeddingKeywords", "EMBEDDING_FIELDS", "SPLIT_FIELDS"]
