"""THE weighted average of an ensemble, and the task metric on it.

``predict`` writes and ``select`` scores this one average, so their dev scores agree bit for bit.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..tasks import get_task
from .checks import as_2d, check_labels, examples


def _check_weight(cid: str, w) -> None:
    if isinstance(w, bool) or not isinstance(w, (int, np.integer, float, np.floating)) or not w >= 0 \
            or not np.isfinite(w):
        raise EnsembleError(f"weight of {cid!r} must be a non-negative finite number, got {w!r}")


def ensemble_predictions(preds_by_id: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted average of aligned predictions, float64: ``sum_i w_i p_i / sum_i w_i``.

    Members are summed in ``weights`` order (for greedy ensembles, the order they were added),
    starting from zeros; weight 1 adds the array itself, so the result matches the selection's
    running sums bit for bit. Weights must be non-negative finite numbers with a positive total:
    integers (greedy, caruana) are summed as integers, floats (bagged) as floats.
    """
    if not weights:
        raise EnsembleError("the ensemble has no members")
    missing = [cid for cid in weights if cid not in preds_by_id]
    if missing:
        raise EnsembleError(f"no predictions for ensemble member(s) {examples(missing)}")
    for cid, w in weights.items():
        _check_weight(cid, w)
    weights = _tamed(weights)
    acc = None
    total = 0
    for cid, w in weights.items():
        if w == 0:
            continue
        p = np.asarray(preds_by_id[cid], dtype=np.float64)
        if acc is None:
            acc = np.zeros(p.shape, dtype=np.float64)
        elif p.shape != acc.shape:
            raise EnsembleError(f"predictions of {cid!r} have shape {p.shape}, other members {acc.shape}")
        if w == 1:
            acc += p
        else:
            acc += w * p
        total += w if isinstance(w, (float, np.floating)) else int(w)
    if total == 0:
        raise EnsembleError("ensemble weights sum to zero")
    out = acc / total
    if not np.all(np.isfinite(out)):
        raise EnsembleError(f"the weighted average of {examples(list(weights))} is not finite (weights "
                            f"{', '.join(f'{cid}: {w!r}' for cid, w in list(weights.items())[:5])}); select again")
    return out


WEIGHT_RANGE = (2.0 ** -64, 2.0 ** 64)   # weights within it are used as given (bit for bit with the selection)


def _tamed(weights: Mapping[str, float]) -> Mapping[str, float]:
    """The weights as given when every positive one lies in :data:`WEIGHT_RANGE` (what selection
    writes); else each divided by the largest, in float64, before anything is summed, so that
    ``1e308`` cannot overflow and ``5e-324`` cannot underflow the average (the ratios are kept)."""
    positive = [float(w) for w in weights.values() if w > 0]
    if not positive or all(WEIGHT_RANGE[0] <= w <= WEIGHT_RANGE[1] for w in positive):
        return weights
    top = max(positive)
    return {cid: float(w) / top for cid, w in weights.items()}


def score_on(task: str, preds_test: Mapping[str, np.ndarray], labels_test, weights: Mapping[str, float]) -> float:
    """The task metric of the weighted ensemble on labelled data (e.g. a labelled test split).

    ``preds_test``: member id -> predictions ``(n, k)`` aligned to ``labels_test``.
    """
    get_task(task)
    y = check_labels(task, labels_test)
    missing = [cid for cid in weights if cid not in preds_test]
    if missing:
        raise EnsembleError(f"{task}: no predictions for ensemble member(s) {examples(missing)}")
    preds = {cid: as_2d(task, cid, preds_test[cid], len(y)) for cid in weights}
    for cid, p in preds.items():
        if not np.isfinite(p).all():
            raise EnsembleError(f"{task}: member {cid!r} has non-finite predictions")
    return metrics.score(task, ensemble_predictions(preds, weights), y)
