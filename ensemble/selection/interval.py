"""The interval around the cross-fitted gain: the corrected resampled t interval.

Nadeau and Bengio (2003, "Inference for the generalization error", Machine Learning 52:239-281):
with ``J`` fold gains ``g`` from repeated K-fold cross-fitting, each held-out fold ``1/(K-1)`` the
size of its selection rows, the interval is ``mean(g) +- t_{df, (1+level)/2} * sqrt(var(g, ddof=1)
* (1/J + 1/(K-1)))``. The degrees of freedom are ``K - 1``, not ``J - 1``: the repeats re-deal the
same rows, so their gains carry about one repeat's worth of independent information about the
spread (Bouckaert 2003, "Choosing between two learning algorithms based on calibrated tests", ICML,
calibrates the degrees of freedom of repeated cross-validation down the same way).
"""
from __future__ import annotations

import math

import numpy as np


def nb_interval(gains, folds: int, level: float) -> tuple[float, float, float, int]:
    """(mean, low, high, df) of the fold ``gains`` (low and high NaN with fewer than 2 gains)."""
    g = np.asarray(gains, dtype=np.float64)
    mean = float(g.mean())
    df = folds - 1
    if len(g) < 2:
        return mean, math.nan, math.nan, df
    se = math.sqrt(float(g.var(ddof=1)) * (1.0 / len(g) + 1.0 / (folds - 1)))
    from scipy import stats   # here, not at the top: scipy.stats takes a second to import

    q = float(stats.t.ppf(0.5 + level / 2, df))
    return mean, mean - q * se, mean + q * se, df


def method(folds: int) -> str:
    """The method's name as reported."""
    return f"repeated {folds}-fold cross-fitting, Nadeau-Bengio corrected resampled t (df = {folds - 1})"


def describe(folds: int, repeats: int, level: float) -> str:
    """The note that says how the held-out gain and its interval were computed."""
    return (
        f"cross-fit: {repeats} x {folds}-fold; held-out gain = ensemble score minus score of the best single "
        f"candidate, both chosen on the other folds, on each held-out fold; {level:.0%} interval: Nadeau-Bengio "
        f"(2003) corrected resampled t, mean +- t(df={folds - 1}) * sd * sqrt(1/{folds * repeats} + 1/{folds - 1}), "
        f"for the gain on new rows of the ensemble selected on all dev rows"
    )
