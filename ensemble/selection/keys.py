"""How scores are compared: accuracies exactly, Pearson r rounded to :data:`PEARSON_DECIMALS`;
secondary losses (the first tie-break) rounded the same way, so that two candidates whose losses
differ only by float rounding (the same values summed in another row order) tie and fall through
to the content hash."""
from __future__ import annotations

import numpy as np

from ..tasks import TASKS

PEARSON_DECIMALS = 12


def score_key(task: str, score: float):
    """The value scores are compared by: the accuracy itself, or Pearson r rounded to 12 decimals."""
    if TASKS[task].metric == "pearson":
        return float(np.round(score, PEARSON_DECIMALS))
    return float(score)


def score_keys(task: str, scores: np.ndarray) -> np.ndarray:
    """:func:`score_key` of every score in an array."""
    scores = np.asarray(scores, dtype=np.float64)
    if TASKS[task].metric == "pearson":
        return np.round(scores, PEARSON_DECIMALS)
    return scores


def loss_key(loss: float) -> float:
    """The value secondary losses are compared by: rounded to :data:`PEARSON_DECIMALS` decimals."""
    return float(np.round(loss, PEARSON_DECIMALS))


def fmt_change(x: float) -> str:
    """The size of a score change as trajectory reasons print it."""
    x = abs(float(x))
    return f"{x:.4f}" if x >= 1e-4 else f"{x:.2e}"
