"""Task metrics on unrounded prediction arrays (numpy only; no torch).

Predictions are always 2-D float arrays of shape ``(n, task.n_outputs)``:
``sst`` class probabilities (n, 5), ``para`` paraphrase probability (n, 1), ``sts`` raw score (n, 1).
"""
from __future__ import annotations

import numpy as np

from .tasks import TASKS


def round_predictions(task: str, preds: np.ndarray) -> np.ndarray:
    """Leaderboard values from unrounded predictions, as the course's code rounds them.

    ``sst``: argmax class (first maximum on ties); ``para``: the probability rounded half to
    even, as ``torch.round`` does in the course code (0.5 -> 0.0); ``sts``: the raw score.
    """
    preds = np.asarray(preds, dtype=np.float64)
    kind = TASKS[task].kind
    if kind == "classes":
        return np.argmax(preds, axis=1).astype(np.int64)
    if kind == "binary":
        return np.round(preds[:, 0])
    return preds[:, 0]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r in float64; 0.0 where either side is constant (no linear relation to measure)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    xm = x - x.mean()
    ym = y - y.mean()
    denom = np.sqrt((xm * xm).sum() * (ym * ym).sum())
    if denom == 0.0:
        return 0.0
    return float((xm * ym).sum() / denom)


def score(task: str, preds: np.ndarray, labels: np.ndarray) -> float:
    """The task's leaderboard metric: accuracy for ``sst``/``para``, Pearson r for ``sts``."""
    labels = np.asarray(labels)
    if TASKS[task].metric == "pearson":
        return pearson(np.asarray(preds)[:, 0], labels)
    return float(np.mean(round_predictions(task, preds) == labels))


def secondary_loss(task: str, preds: np.ndarray, labels: np.ndarray) -> float:
    """A continuous loss (lower is better) used to break ties between equal metrics.

    Mean log-loss for the classification tasks (probabilities clipped to [1e-15, 1]),
    mean squared error for ``sts``.
    """
    preds = np.asarray(preds, dtype=np.float64)
    labels = np.asarray(labels)
    kind = TASKS[task].kind
    if kind == "classes":
        p = preds[np.arange(len(labels)), labels.astype(np.int64)]
        return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))
    if kind == "binary":
        p = np.clip(preds[:, 0], 1e-15, 1 - 1e-15)
        y = labels.astype(np.float64)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(np.mean((preds[:, 0] - labels.astype(np.float64)) ** 2))


def pearson_from_sums(n, sx, sy, sxx, syy, sxy):
    """Pearson r from running sums: ``n``, sum x, sum y, sum x^2, sum y^2, sum x*y (float64).

    Vectorised: any argument may be an array (they broadcast); returns a float for scalar
    inputs, else an array. Like :func:`pearson`, it gives 0.0 where either side is constant,
    including "constant up to rounding" (a variance below 1e-12 of the raw second moment, where
    the sums no longer carry any digits of it). Accurate to about 1e-15 for data whose mean is
    not many orders of magnitude larger than its spread; centre the data first if it may be.
    """
    n = float(n)
    sx = np.asarray(sx, dtype=np.float64)
    sy = np.asarray(sy, dtype=np.float64)
    sxx = np.asarray(sxx, dtype=np.float64)
    syy = np.asarray(syy, dtype=np.float64)
    sxy = np.asarray(sxy, dtype=np.float64)
    cov = sxy - sx * sy / n
    vx = sxx - sx * sx / n
    vy = syy - sy * sy / n
    ok = (vx > 1e-12 * np.abs(sxx)) & (vy > 1e-12 * np.abs(syy))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ok, cov / np.sqrt(np.where(ok, vx * vy, 1.0)), 0.0)
    r = np.clip(r, -1.0, 1.0)
    return float(r) if r.ndim == 0 else r
