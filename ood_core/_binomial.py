"""How many items of an in-distribution batch a frozen percentile threshold should flag.

A threshold at percentile ``p`` of ``n`` fit scores (linear interpolation, SCORING.md section 3)
sits at the fractional 0-based position ``h = (n - 1) * p / 100`` of the sorted fit scores. For a
new item drawn from the same (continuous) distribution, the chance ``q`` that it scores strictly
below the ``(r+1)``-th smallest of ``n`` scores is ``Beta(r + 1, n - r)`` distributed (the order
statistic of ``n`` uniforms); at a fractional position the linear interpolation between two
neighbouring order statistics has mean ``(h + 1) / (n + 1)``, and we take ``q ~ Beta(h + 1, n - h)``,
exact at whole positions. When fit scores tie at the threshold fewer of them lie strictly below it
(``below``) and the flag rate is at most that of the next order statistic: ``h`` is then taken as
``min(h, below)``.

So the true in-distribution flag rate is itself uncertain: it is one draw of that Beta. The number
``K`` of flagged items in a batch of ``m`` in-distribution items is ``Binomial(m, q)`` given ``q``,
hence Beta-binomial(``m``, ``h + 1``, ``n - h``) before ``q`` is known. That is the distribution the
interval and the one-sided p-value below use: with many fit scores it narrows to the plain binomial,
with few it is much wider (the threshold could have landed anywhere near the ``p``-th percentile).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import check_int, check_number


def threshold_position(n_fit: int, percentile: float, below: int | None = None) -> float:
    """The 0-based (fractional) position ``h`` among the sorted fit scores a percentile threshold sits
    at; with ``below`` (fit scores strictly below it, known when they tie) at most ``below``."""
    n_fit = check_int(n_fit, "n_fit", 2)
    p = check_number(percentile, "percentile")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be a number in [0, 100]; got {percentile!r}")
    h = (n_fit - 1) * p / 100.0
    if below is not None:
        h = min(h, float(check_int(below, "below", 0, n_fit - 1)))
    return h


def rate_beta(n_fit: int, percentile: float, below: int | None = None) -> tuple[float, float]:
    """``(a, b)`` of the Beta distribution of the true in-distribution flag rate (module docstring)."""
    h = threshold_position(n_fit, percentile, below)
    return h + 1.0, n_fit - h


def class_rate_beta(n_items: int, below: int) -> tuple[float, float]:
    """``(a, b)`` of the flag rate of a subgroup of fit items (e.g. those predicted as one class)
    under a threshold that is fixed for them: ``below`` of ``n_items`` scored strictly under it, so
    with a uniform prior the rate is ``Beta(below + 1, n_items - below + 1)``."""
    n_items = check_int(n_items, "n_items", 0)
    below = check_int(below, "below", 0, n_items)
    return below + 1.0, n_items - below + 1.0


def _pmf(m: int, a: float, b: float) -> np.ndarray:
    """``P(K = k)`` for ``k = 0..m``, ``K ~ Beta-binomial(m, a, b)`` (computed in logs, in one pass)."""
    from scipy.special import betaln, gammaln

    k = np.arange(m + 1, dtype=np.float64)
    log_pmf = (gammaln(m + 1.0) - gammaln(k + 1.0) - gammaln(m - k + 1.0)
               + betaln(k + a, m - k + b) - betaln(a, b))
    return np.exp(log_pmf)


def _check_level(level: float) -> float:
    level = check_number(level, "level")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1; got {level!r}")
    return level


def beta_binomial_interval(m: int, a: float, b: float, level: float = 0.95) -> tuple[float, float]:
    """Equal-tailed ``level`` range of ``K / m`` for ``K ~ Beta-binomial(m, a, b)``: at most
    ``(1 - level) / 2`` of the mass lies below ``lo * m`` and at most as much above ``hi * m``."""
    m = check_int(m, "batch_size", 1)
    tail = (1.0 - _check_level(level)) / 2.0
    pmf = _pmf(m, a, b)
    below = np.cumsum(pmf)  # P(K <= k)
    above = np.cumsum(pmf[::-1])[::-1]  # P(K >= k), accurate in the upper tail
    lo = int(np.argmax(below >= tail * (1 - 1e-12)))  # the smallest k with P(K <= k) >= tail
    hi = int(np.flatnonzero(above >= tail * (1 - 1e-12))[-1])  # the largest k with P(K >= k) >= tail
    return lo / m, hi / m


def beta_binomial_p_value(k: int, m: int, a: float, b: float) -> float:
    """``P(K >= k)`` for ``K ~ Beta-binomial(m, a, b)`` (1.0 for ``k = 0``)."""
    m = check_int(m, "batch_size", 1)
    k = check_int(k, "flagged", 0, m)
    if k == 0:
        return 1.0
    return float(min(1.0, _pmf(m, a, b)[k:].sum()))


def flag_rate_interval(n_fit: int, percentile: float, batch_size: int, level: float = 0.95, *,
                       below: int | None = None) -> tuple[float, float]:
    """The range of flagged rates (fractions in [0, 1]) that ``level`` of in-distribution batches of
    ``batch_size`` items fall in, for a threshold at ``percentile`` of ``n_fit`` fit scores.

    Accounts for both sources of noise: the batch's own (binomial) and the threshold's (it is an
    empirical quantile of ``n_fit`` scores, so the rate it truly flags is uncertain; see the module
    docstring). Equal-tailed on the counts: at most ``(1 - level) / 2`` of such batches flag fewer
    than ``lo * batch_size`` items, and at most as many flag more than ``hi * batch_size``.
    ``below``: the number of fit scores strictly below the threshold, when known (ties lower it).

    Example: ``flag_rate_interval(5000, 5, 1000)`` is ``(0.036, 0.066)``: "p = 5 of 5,000 fit
    images: 95% of in-distribution batches of 1,000 will flag between 3.6% and 6.6%" (the plain
    binomial, ignoring the threshold's own uncertainty, would say 3.7% to 6.4%).
    """
    a, b = rate_beta(n_fit, percentile, below)
    return beta_binomial_interval(batch_size, a, b, level)


DEFAULT_BATCH = 1000  # the batch size an interval is quoted for when there is no batch to quote it for


def expected_flag_rate(n_fit: int, percentile: float, batch_size: int = DEFAULT_BATCH, level: float = 0.95, *,
                       below: int | None = None) -> dict:
    """:func:`flag_rate_interval` as a JSON-ready record with the sentence the score pages, the cards
    and the CLI show: ``{"n_fit", "percentile", "batch_size", "level", "interval": [lo, hi], "text"}``,
    e.g. "p = 5 of 5,000 fit images: 95% of in-distribution batches of 1,000 will flag between 3.6%
    and 6.6%"."""
    lo, hi = flag_rate_interval(n_fit, percentile, batch_size, level, below=below)
    text = (f"p = {round(percentile, 2):g} of {n_fit:,} fit images: {level:.0%} of in-distribution batches of "
            f"{batch_size:,} will flag between {lo:.1%} and {hi:.1%}")
    return {"n_fit": int(n_fit), "percentile": float(percentile), "batch_size": int(batch_size), "level": level,
            "interval": [lo, hi], "text": text}


def too_many_p_value(flagged: int, batch_size: int, n_fit: int, percentile: float, *,
                     below: int | None = None) -> float:
    """One-sided p-value of an in-distribution batch of ``batch_size`` items flagging ``flagged`` or
    more at a threshold at ``percentile`` of ``n_fit`` fit scores (the Beta-binomial above)."""
    a, b = rate_beta(n_fit, percentile, below)
    return beta_binomial_p_value(flagged, batch_size, a, b)


@dataclass(frozen=True)
class RateTest:
    """A batch's flagged count against what an in-distribution batch of its size would flag."""

    n: int  # items in the batch (or in one predicted class of it)
    flagged: int  # of them, scoring strictly below the frozen threshold
    expected_rate: float  # the share of the fit items it rests on that score strictly below the threshold
    interval: tuple[float, float] | None  # flagged rates of `level` of in-distribution batches; None if untestable
    p_value: float  # P(an in-distribution batch of n flags >= flagged); 1.0 when untestable
    alarm: bool  # p_value < alpha
    n_fit: int  # fit items the expectation rests on

    @property
    def flagged_rate(self) -> float:
        """``flagged / n`` (NaN for an empty batch)."""
        return self.flagged / self.n if self.n else math.nan

    def as_dict(self) -> dict:
        """JSON-ready fields (rates as numbers, None when undefined)."""
        return {"n": self.n, "flagged": self.flagged,
                "flagged_rate": self.flagged_rate if self.n else None,
                "expected_rate": None if math.isnan(self.expected_rate) else self.expected_rate,
                "interval": None if self.interval is None else list(self.interval),
                "p_value": self.p_value, "alarm": self.alarm, "n_fit": self.n_fit}


def rate_test(flagged: int, n: int, beta: tuple[float, float] | None, expected_rate: float, n_fit: int, *,
              alpha: float, level: float = 0.95) -> RateTest:
    """:class:`RateTest` of ``flagged`` of ``n`` items when the in-distribution flag rate is
    ``Beta(*beta)`` (:func:`rate_beta`, :func:`class_rate_beta`); ``beta=None`` or ``n == 0``:
    nothing to test (no interval, p-value 1, no alarm)."""
    if n == 0 or beta is None:
        return RateTest(n=n, flagged=flagged, expected_rate=expected_rate, interval=None, p_value=1.0,
                        alarm=False, n_fit=n_fit)
    p_value = beta_binomial_p_value(flagged, n, *beta)
    return RateTest(n=n, flagged=flagged, expected_rate=expected_rate,
                    interval=beta_binomial_interval(n, *beta, level), p_value=p_value,
                    alarm=bool(p_value < alpha), n_fit=n_fit)


__all__ = ["DEFAULT_BATCH", "RateTest", "beta_binomial_interval", "beta_binomial_p_value", "class_rate_beta",
           "expected_flag_rate", "flag_rate_interval",
           "rate_beta", "rate_test", "threshold_position", "too_many_p_value"]
