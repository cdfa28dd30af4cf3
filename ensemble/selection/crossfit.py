"""Honest estimate: cross-fitting on dev.

The dev rows are split into two seeded halves (a function of ``(seed, repeat)`` and the sorted
ids only); the ensemble is selected on one half and scored on the other, both ways, ``repeats``
times. Reported: the in-sample gain, the mean held-out gain and its interval (:mod:`.interval`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..tasks import get_task
from .checks import check_budget, check_seed
from .estimator import EnsembleSelector
from .interval import bootstrap_ci, describe
from .modes import get_mode
from .pool import Pool
from .results import CrossFit, Fold


def crossfit_split(ids: Sequence[str], seed: int, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the rows (row indices into ``ids``, each ascending).

    A function of ``(seed, repeat)`` and the *sorted* ids only: the same ids in another row order
    give the same halves (as id sets). Half a has ``n // 2`` rows, half b the rest.
    """
    seed = check_seed(seed)
    ids = list(ids)
    n = len(ids)
    by_id = sorted(range(n), key=ids.__getitem__)          # row of the i-th smallest id
    perm = np.random.default_rng([seed, int(repeat)]).permutation(n)
    rows = np.asarray(by_id, dtype=np.int64)
    h = n // 2
    return np.sort(rows[perm[:h]]), np.sort(rows[perm[h:]])


def _fold(pool: Pool, full: EnsembleSelector, repeat: int, name: str, sel_rows: np.ndarray,
          out_rows: np.ndarray) -> Fold:
    """Select on ``sel_rows`` as ``full`` was selected, score on ``out_rows``."""
    sub = pool.take_rows(sel_rows)
    est = EnsembleSelector(pool.task, full.mode, full.max_size, full.steps).fit_pool(sub)
    y_out = pool.y[out_rows]
    ens = metrics.score(pool.task, pool.ensemble(est.weights_, out_rows), y_out)
    single = metrics.score(pool.task, pool.single(est.best_single_, out_rows), y_out)
    sel_ens = metrics.score(pool.task, sub.ensemble(est.weights_), sub.y)
    return Fold(
        repeat, name, len(sel_rows), len(out_rows), list(est.members_), dict(est.weights_),
        est.best_single_, float(sel_ens - est.best_single_score_),
        float(ens), float(single), float(ens - single),
    )


def cross_fit_pool(pool: Pool, ids: Sequence[str], full: EnsembleSelector, repeats: int, seed: int) -> CrossFit:
    """Cross-fit on a pool whose rows are ``ids``; ``full`` is the selection fitted on all of it
    (its mode and budget are the ones cross-fitted)."""
    y = pool.y
    full_ens = metrics.score(pool.task, pool.ensemble(full.weights_), y)
    full_single = metrics.score(pool.task, pool.single(full.best_single_), y)
    res = CrossFit(pool.task, full.mode, int(repeats), int(seed), float(full_ens - full_single),
                   None, None, None, None)
    min_half = 2 if pool.is_pearson else 1
    if repeats == 0:
        res.notes.append("cross-fit skipped (repeats=0): no held-out estimate")
        return res
    if pool.n // 2 < min_half:
        res.notes.append(f"cross-fit skipped: {pool.n} dev rows are too few to split in two halves")
        return res
    for r in range(repeats):
        a, b = crossfit_split(ids, seed, r)
        for name, sel_rows, out_rows in (("a->b", a, b), ("b->a", b, a)):
            res.folds.append(_fold(pool, full, r, name, sel_rows, out_rows))
    gains = np.array([f.heldout_gain for f in res.folds])
    res.heldout_gain_mean = float(gains.mean())
    res.heldout_gain_ci = bootstrap_ci(gains, seed)
    res.heldout_ensemble_mean = float(np.mean([f.heldout_ensemble_score for f in res.folds]))
    res.heldout_single_mean = float(np.mean([f.heldout_single_score for f in res.folds]))
    res.notes.append(describe(repeats, len(gains)))
    return res


def cross_fit(task: str, preds: Mapping[str, np.ndarray], labels, ids: Sequence[str], mode: str = "greedy",
              max_size: int | None = None, steps: int = 50, repeats: int = 20, seed: int = 0) -> CrossFit:
    """Honest estimate of the ensemble's gain by cross-fitting on dev.

    ``preds``: candidate id -> predictions ``(n, k)`` aligned to ``labels`` and ``ids`` (the row ids,
    which seed the splits independently of row order). See :func:`crossfit_split`.
    """
    get_task(task)
    get_mode(mode)
    check_budget(max_size, steps, repeats)
    seed = check_seed(seed)
    pool = Pool.from_aligned(task, preds, labels)
    ids = [str(i) for i in ids]
    if len(ids) != pool.n:
        raise EnsembleError(f"{task}: {len(ids)} row ids for {pool.n} labelled rows")
    if len(set(ids)) != len(ids):
        raise EnsembleError(f"{task}: duplicate row ids")
    full = EnsembleSelector(task, mode, max_size, steps).fit_pool(pool)
    return cross_fit_pool(pool, [ids[i] for i in pool.rows], full, repeats, seed)

