"""``--mode auto``: per task, the system with the best cross-fitted held-out estimate, and an honest
estimate of that choice by a nested cross-fit.

Candidate systems (:data:`SYSTEM_ORDER`, simplest first): ``single`` (the best single candidate
chosen on the selection rows; its gain over itself is 0 on every fold), ``greedy``,
``greedy-strict``, ``caruana``, ``bagged``. Every mode is cross-fitted on the same folds
(:func:`systems_cross_fit`: the folds are a function of the seed, the repeat and the sorted row
ids only), so choosing costs selection only. :func:`choose` takes the highest estimate; estimates
equal to 12 decimals tie, and a tie goes to the simpler system (earlier in :data:`SYSTEM_ORDER`).

The choice is itself a selection, so the chosen system's own cross-fitted estimate is optimistic
(the maximum of several noisy estimates). :func:`nested_cross_fit` estimates the gain of the whole
procedure instead (nested cross-validation: Varma and Simon 2006, "Bias in error estimation when
using cross-validation for model selection", BMC Bioinformatics 7:91; Cawley and Talbot 2010, "On
over-fitting in model selection and subsequent selection bias in performance evaluation", JMLR
11:2079-2107). For each outer fold ``j`` of the outer cross-fit (the folds above):

1. inside the outer training part ``T_j`` only, every mode is cross-fitted again (``folds`` inner
   folds, :data:`INNER_REPEATS` repeat, dealt from the sorted ids of ``T_j`` by ``(seed, repeat)``)
   and :func:`choose` picks a system from these inner estimates (single: 0);
2. the system picked is fit on all of ``T_j`` and scored on the held-out fold against the best
   single candidate chosen on ``T_j``: that is the chosen mode's outer fold gain, which the
   per-mode cross-fit already computed (single: 0);

and the nested fold gains get the same mean and Nadeau-Bengio interval (:mod:`.interval`) as a
fixed mode's. The rows of fold ``j`` are never seen by the choice made for fold ``j``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .crossfit import cross_fit_pool, fold_records, kfold_splits, summarise_folds
from .estimator import EnsembleSelector
from .keys import PEARSON_DECIMALS
from .modes import AUTO
from .pool import Pool
from .results import CrossFit, Fold

SINGLE = "single"
SYSTEM_ORDER = (SINGLE, "greedy", "greedy-strict", "caruana", "bagged")   # ties go to the earlier
INNER_REPEATS = 1            # repeats of the inner cross-fit (each outer fold's choice)


def systems_in_order(modes) -> list[str]:
    """``single`` then the modes, in :data:`SYSTEM_ORDER` (modes not listed there last, by name)."""
    rank = {s: i for i, s in enumerate(SYSTEM_ORDER)}
    return [SINGLE] + sorted(modes, key=lambda m: (rank.get(m, len(rank)), m))


def choose(estimates: Mapping[str, float | None], with_single: bool = True) -> str | None:
    """The system with the highest estimate (None: not estimated, never chosen); ``single`` is 0
    (``with_single=False``: the best mode only). Estimates equal to 12 decimals tie and the tie
    goes to the simpler (:data:`SYSTEM_ORDER`)."""
    order = systems_in_order([m for m in estimates if m != SINGLE])[0 if with_single else 1:]
    est = {**estimates, SINGLE: 0.0}
    best = None
    for s in order:
        if est.get(s) is None:
            continue
        if best is None or round(float(est[s]), PEARSON_DECIMALS) > round(float(est[best]), PEARSON_DECIMALS):
            best = s
    return best


def _gain(v: float | None) -> str:
    if v is None:
        return "not estimated"
    return "0" if round(v, PEARSON_DECIMALS) == 0 else f"{v:+.4f}"


def reason(chosen: str, estimates: Mapping[str, float | None]) -> str:
    """The choice in words: "greedy: held-out +0.0078 against caruana +0.0020, bagged +0.0077, single 0"."""
    est = {**estimates, SINGLE: 0.0}
    others = [s for s in systems_in_order([m for m in est if m != SINGLE]) if s != chosen]
    text = f"{chosen}: held-out {_gain(est[chosen])} against " + ", ".join(f"{s} {_gain(est[s])}" for s in others)
    tied = [s for s in others if est[s] is not None
            and round(float(est[s]), PEARSON_DECIMALS) == round(float(est[chosen]), PEARSON_DECIMALS)]
    if tied:
        text += f" (tie with {', '.join(tied)}: the simpler is kept)"
    return text


def systems_cross_fit(pool: Pool, ids: Sequence[str], selectors: Mapping[str, EnsembleSelector], folds: int,
                      repeats: int, seed: int, level: float) -> dict[str, CrossFit]:
    """Each mode's cross-fit on the same folds; ``selectors``: mode -> its selection fitted on the pool."""
    return {md: cross_fit_pool(pool, ids, sel, folds, repeats, seed, level) for md, sel in selectors.items()}


def _inner_choice(pool: Pool, ids: Sequence[str], train: np.ndarray, selectors: Mapping[str, EnsembleSelector],
                  folds: int, seed: int) -> str | None:
    """The system the inner cross-fit on the outer training rows ``train`` picks (None: too few rows)."""
    sub = pool.take_rows(train)
    if sub.n // folds < (2 if pool.is_pearson else 1):
        return None
    sub_ids = [ids[i] for i in train]
    est = {md: float(np.mean([f.heldout_gain for f in fold_records(sub, sub_ids, sel, folds, INNER_REPEATS, seed)]))
           for md, sel in selectors.items()}
    return choose(est)


def nested_cross_fit(pool: Pool, ids: Sequence[str], selectors: Mapping[str, EnsembleSelector],
                     fits: Mapping[str, CrossFit], folds: int, repeats: int, seed: int, level: float,
                     chosen: str) -> CrossFit:
    """The nested estimate of choosing by :func:`choose` (module doc). ``fits``: every mode's outer
    cross-fit (:func:`systems_cross_fit`); ``chosen``: the system chosen on all rows (reported)."""
    any_fit = next(iter(fits.values()))
    in_sample = 0.0 if chosen == SINGLE else fits[chosen].in_sample_gain
    res = CrossFit(pool.task, AUTO, method_nested(folds), folds, repeats, seed, level, folds - 1, in_sample)
    if not any_fit.per_fold:
        res.notes.append("nested cross-fit skipped: the outer cross-fit was skipped")
        return res
    splits = kfold_splits(ids, folds, repeats, seed)
    per_fold: list[Fold] = []
    for j, outer in enumerate(any_fit.per_fold):
        train = np.setdiff1d(np.arange(pool.n), splits[outer.repeat][outer.fold], assume_unique=True)
        pick = _inner_choice(pool, ids, train, {m: selectors[m] for m in fits}, folds, seed)
        if pick is None:
            res.notes.append(f"nested cross-fit skipped: {len(train)} rows are too few for {folds} inner folds")
            res.per_fold = per_fold
            return res
        per_fold.append(_nested_fold(fits, j, pick))
    return summarise_folds(res, per_fold, folds, level, describe_nested(folds, repeats, level))


def _nested_fold(fits: Mapping[str, CrossFit], j: int, pick: str) -> Fold:
    """Outer fold ``j`` scored with the system the inner cross-fit picked."""
    base = next(iter(fits.values())).per_fold[j]
    if pick == SINGLE:
        s = base.heldout_single_score
        return Fold(base.repeat, base.fold, base.n_select, base.n_heldout, [base.best_single], {base.best_single: 1},
                    base.best_single, 0.0, s, s, 0.0, system=SINGLE)
    f = fits[pick].per_fold[j]
    return Fold(f.repeat, f.fold, f.n_select, f.n_heldout, list(f.members), dict(f.weights), f.best_single,
                f.selection_gain, f.heldout_ensemble_score, f.heldout_single_score, f.heldout_gain, system=pick)


def method_nested(folds: int) -> str:
    return (f"nested cross-fit: the system chosen inside each outer training part by an inner {folds}-fold "
            f"cross-fit; repeated {folds}-fold outer cross-fitting, Nadeau-Bengio corrected resampled t "
            f"(df = {folds - 1})")


def describe_nested(folds: int, repeats: int, level: float) -> str:
    return (f"auto: held-out gain of the choice by nested cross-fit ({repeats} x {folds}-fold outer; inside each "
            f"outer training part an inner {INNER_REPEATS} x {folds}-fold cross-fit of every mode chooses the "
            f"system, which is then scored on the outer held-out fold); {level:.0%} Nadeau-Bengio interval "
            "(Varma and Simon 2006; Cawley and Talbot 2010)")
