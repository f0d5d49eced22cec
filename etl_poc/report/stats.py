"""The one summary every benchmark gives of repeated figures."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --- How sure a figure is (issue 20): intervals, outliers, regressions ----------------------

CONFIDENCE = 0.95
# A run is an outlier when its modified z-score (0.6745 * |x - median| / MAD, Iglewicz and
# Hoaglin) exceeds this.
OUTLIER_Z = 3.5


def median_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> dict:
    """A distribution-free interval for the median of repeated runs: the order statistics
    x_(k) and x_(n-k+1) with k the largest for which the binomial(n, 1/2) coverage is at least
    `confidence` (exact, no assumption on the distribution). Too few runs for that coverage:
    min-max, labelled with the coverage it has (1 - 2^(1-n))."""
    from scipy.stats import binom

    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no values")
    low = 0  # the largest k (0-based) whose coverage 1 - 2 * P(B <= k) >= confidence
    for k in range(n // 2):
        if 1 - 2 * binom.cdf(k, n, 0.5) >= confidence:
            low = k + 1
        else:
            break
    if low == 0:
        coverage = 1 - 2 * 0.5**n if n > 1 else 0.0
        return {"low": ordered[0], "high": ordered[-1], "coverage": coverage, "method": "min-max"}
    k = low - 1
    return {
        "low": ordered[k],
        "high": ordered[n - 1 - k],
        "coverage": float(1 - 2 * binom.cdf(k, n, 0.5)),
        "method": "order statistics",
    }


def ratio_interval(
    numerator: Iterable[float], denominator: Iterable[float], confidence: float = CONFIDENCE
) -> dict:
    """An interval for median(numerator) / median(denominator), two independent sets of runs,
    by bootstrap (scipy.stats.bootstrap, percentile); fewer than 3 runs on a side: the ratio's
    extremes over the runs, labelled min-max."""
    import numpy as np
    from scipy.stats import bootstrap

    top, bottom = np.asarray(list(numerator), float), np.asarray(list(denominator), float)
    ratio = float(np.median(top) / np.median(bottom))
    if min(len(top), len(bottom)) < 3:
        extremes = (top.min() / bottom.max(), top.max() / bottom.min())
        return {"ratio": ratio, "low": float(extremes[0]), "high": float(extremes[1]),
                "method": "min-max"}  # fmt: skip
    result = bootstrap(
        (top, bottom),
        lambda a, b, axis: np.median(a, axis=axis) / np.median(b, axis=axis),
        confidence_level=confidence,
        method="percentile",
        n_resamples=2000,
        random_state=np.random.default_rng(0),
        vectorized=True,
    )
    interval = result.confidence_interval
    return {"ratio": ratio, "low": float(interval.low), "high": float(interval.high),
            "method": f"bootstrap {confidence:.0%}"}  # fmt: skip


def outliers(values: Iterable[float], threshold: float = OUTLIER_Z) -> list[int]:
    """The positions of the runs whose modified z-score exceeds `threshold` (median absolute
    deviation; none when the MAD is 0 and every run equals the median)."""
    import numpy as np
    from scipy.stats import median_abs_deviation

    runs = np.asarray(list(values), float)
    if len(runs) < 3:
        return []
    mad = median_abs_deviation(runs)
    deviation = np.abs(runs - np.median(runs))
    if mad == 0:
        return [int(i) for i in np.flatnonzero(deviation > 0)] if deviation.any() else []
    return [int(i) for i in np.flatnonzero(0.6745 * deviation / mad > threshold)]


def regression(
    baseline: Iterable[float],
    current: Iterable[float],
    *,
    tolerance: float = 0.05,
    higher_is_worse: bool = True,
) -> dict:
    """Whether the current runs' median lies outside the baseline's noise band in the bad
    direction. The band is the baseline median's interval (median_interval), widened to at
    least `tolerance` of the median on each side; `regressed` names a figure that got worse."""
    import statistics as stats

    base = list(baseline)
    middle = stats.median(base)
    interval = median_interval(base)
    low = min(interval["low"], middle * (1 - tolerance))
    high = max(interval["high"], middle * (1 + tolerance))
    now = stats.median(list(current))
    worse = now > high if higher_is_worse else now < low
    return {
        "baseline": middle,
        "current": now,
        "band": (low, high),
        "band_method": interval["method"],
        "regressed": worse,
        "change": now / middle - 1 if middle else float("inf"),
    }
