"""The interval reported around the mean held-out gain: a seeded bootstrap of the fold gains."""
from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(gains: np.ndarray, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean of ``gains`` over :data:`BOOTSTRAP_RESAMPLES` resamples."""
    rng = np.random.default_rng([seed, 0xB007])
    idx = rng.integers(0, len(gains), size=(BOOTSTRAP_RESAMPLES, len(gains)))
    means = gains[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def describe(repeats: int, n_gains: int) -> str:
    """The note that says how the held-out gain and its interval were computed."""
    return (
        f"cross-fit: {repeats} seeded half splits x 2 directions; held-out gain = held-out ensemble score "
        f"minus held-out score of the best single candidate chosen on the selection half; 95% interval "
        f"from {BOOTSTRAP_RESAMPLES} bootstrap resamples of the {n_gains} gains"
    )
