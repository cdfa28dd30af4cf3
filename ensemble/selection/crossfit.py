"""Honest estimate: repeated K-fold cross-fitting on dev.

For repeat ``r`` the rows, in ascending id order, are permuted by ``default_rng([seed, r])`` and
position ``p`` of the permutation goes to fold ``p % folds`` (a function of ``(seed, repeat)``
and the sorted ids only: the row order does not matter). For each fold the mode selects on the
other folds, the best single candidate is chosen there too, and both are scored on the fold:
``g_j = score(ensemble) - score(best single)``. Reported: the in-sample gain, the mean of the
``folds x repeats`` gains and its interval (:mod:`.interval`). The quantity is the gain on new
rows of the ensemble selected on all dev rows over the best single chosen on all dev rows; the
estimate is of the same procedure on ``(folds-1)/folds`` of the rows, so slightly pessimistic.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..tasks import get_task
from .checks import check_budget, check_folds, check_seed
from .estimator import EnsembleSelector
from .interval import describe, method, nb_interval
from .modes import FIXED_DEFAULT
from .pool import Pool
from .results import CrossFit, Fold


def kfold_splits(ids: Sequence[str], folds: int, repeats: int, seed: int) -> list[list[np.ndarray]]:
    """``repeats`` lists of ``folds`` held-out row index arrays (into ``ids``, each ascending)."""
    seed = check_seed(seed)
    ids = [str(i) for i in ids]
    by_id = np.asarray(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)
    out = []
    for r in range(repeats):
        perm = by_id[np.random.default_rng([seed, r]).permutation(len(ids))]
        out.append([np.sort(perm[f::folds]) for f in range(folds)])
    return out


def _fold(pool: Pool, full: EnsembleSelector, repeat: int, fold: int, out_rows: np.ndarray) -> Fold:
    """Select on the rows outside ``out_rows`` as ``full`` was selected, score on ``out_rows``."""
    sel_rows = np.setdiff1d(np.arange(pool.n), out_rows, assume_unique=True)
    sub = pool.take_rows(sel_rows)
    est = full.unfitted().fit_pool(sub)
    y_out = pool.y[out_rows]
    ens = metrics.score(pool.task, pool.ensemble(est.weights_, out_rows), y_out)
    single = metrics.score(pool.task, pool.single(est.best_single_, out_rows), y_out)
    sel_ens = metrics.score(pool.task, sub.ensemble(est.weights_), sub.y)
    return Fold(
        repeat, fold, len(sel_rows), len(out_rows), list(est.members_), dict(est.weights_),
        est.best_single_, float(sel_ens - est.best_single_score_),
        float(ens), float(single), float(ens - single),
    )


def fold_records(pool: Pool, ids: Sequence[str], selector: EnsembleSelector, folds: int, repeats: int,
                 seed: int) -> list[Fold]:
    """Every fold of the cross-fit: ``selector``'s mode and settings (it may be unfitted) select on
    the other folds, and the ensemble and the best single chosen there are scored on the fold."""
    return [_fold(pool, selector, r, f, out_rows)
            for r, rep in enumerate(kfold_splits(ids, folds, repeats, seed)) for f, out_rows in enumerate(rep)]


def cross_fit_pool(pool: Pool, ids: Sequence[str], full: EnsembleSelector, folds: int, repeats: int,
                   seed: int, level: float) -> CrossFit:
    """Cross-fit on a pool whose rows are ``ids``; ``full`` is the selection fitted on all of it
    (its mode and settings are the ones cross-fitted)."""
    full_ens = metrics.score(pool.task, pool.ensemble(full.weights_), pool.y)
    full_single = metrics.score(pool.task, pool.single(full.best_single_), pool.y)
    res = CrossFit(pool.task, full.mode, method(folds), int(folds), int(repeats), int(seed), float(level),
                   int(folds) - 1, float(full_ens - full_single))
    min_fold = 2 if pool.is_pearson else 1
    if repeats == 0:
        res.notes.append("cross-fit skipped (repeats=0): no held-out estimate")
        return res
    if pool.n // folds < min_fold:
        res.notes.append(f"cross-fit skipped: {pool.n} dev rows are too few for {folds} folds")
        return res
    return summarise_folds(res, fold_records(pool, ids, full, folds, repeats, seed), folds, level,
                           describe(folds, repeats, level))


def summarise_folds(res: CrossFit, per_fold: list[Fold], folds: int, level: float, note: str) -> CrossFit:
    """``res`` with its held-out folds, their gains' mean and Nadeau-Bengio interval, the held-out
    means of ensemble and best single, and the note saying how it was estimated (the one summary of
    the plain and the nested cross-fit)."""
    res.per_fold = per_fold
    res.fold_gains = [f.heldout_gain for f in per_fold]
    res.estimate, res.low, res.high, _ = nb_interval(res.fold_gains, folds, level)
    res.heldout_ensemble_mean = float(np.mean([f.heldout_ensemble_score for f in per_fold]))
    res.heldout_single_mean = float(np.mean([f.heldout_single_score for f in per_fold]))
    res.notes.append(note)
    return res


def cross_fit(task: str, preds: Mapping[str, np.ndarray], labels, ids: Sequence[str], mode: str = FIXED_DEFAULT,
              max_size: int | None = None, steps: int = 50, repeats: int = 2, seed: int = 0, folds: int = 5,
              level: float = 0.95, bags: int = 20, fraction: float = 0.5) -> CrossFit:
    """Honest estimate of the ensemble's gain by repeated K-fold cross-fitting on dev (module doc).

    ``preds``: candidate id -> predictions ``(n, k)`` aligned to ``labels`` and ``ids`` (the row ids,
    which seed the splits independently of row order). ``seed`` seeds the splits and bagged's bags.
    """
    get_task(task)
    check_budget(max_size, steps, repeats, bags, fraction, seed)
    folds, level = check_folds(folds, level)
    pool = Pool.from_aligned(task, preds, labels)
    ids = [str(i) for i in ids]
    if len(ids) != pool.n:
        raise EnsembleError(f"{task}: {len(ids)} row ids for {pool.n} labelled rows")
    if len(set(ids)) != len(ids):
        raise EnsembleError(f"{task}: duplicate row ids")
    full = EnsembleSelector(task, mode, max_size, steps, bags, fraction, seed).fit_pool(pool)
    return cross_fit_pool(pool, [ids[i] for i in pool.rows], full, folds, repeats, seed, level)
