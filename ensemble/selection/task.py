"""``select``: one task's ensemble from a :class:`TaskInput`, with its honest estimate; ``auto``
cross-fits every mode on the same folds, chooses per :mod:`.choice` and estimates the choice nested."""
from __future__ import annotations

from .. import metrics
from ..tasks import TASKS, get_task
from .checks import check_budget, check_folds, examples
from .choice import SINGLE, choose, nested_cross_fit, reason, systems_cross_fit
from .crossfit import cross_fit_pool
from .estimator import EnsembleSelector
from .inputs import TaskInput, align
from .modes import AUTO, DEFAULT_MODE, MODES, get_mode
from .results import CrossFit, TaskSelection

FALLBACK = "greedy"          # auto without estimates (--repeats 0, too few rows): the report's rule


def _params_total(params: dict[str, int], members: list[str], notes: list[str]) -> int | None:
    if not params:
        return None
    unknown = [c for c in members if c not in params]
    if unknown:
        notes.append(f"parameter count unknown for {examples(unknown)}")
        return None
    return int(sum(int(params[c]) for c in members))


def select(inp: TaskInput, mode: str = DEFAULT_MODE, max_size: int | None = None, steps: int = 50,
           repeats: int = 2, seed: int = 0, folds: int = 5, level: float = 0.95, bags: int = 20,
           fraction: float = 0.5) -> TaskSelection:
    """Select the task's ensemble on dev and estimate honestly what it gains (see the package doc).

    ``mode``: ``auto`` or a name in :data:`MODES`; ``max_size``: greedy, members; caruana, distinct
    members; bagged, distinct members per bag (None: no bound); ``steps``: caruana and bagged steps;
    ``repeats`` x ``folds``: cross-fit (repeats 0: skip); ``level``: the interval's level;
    ``bags``, ``fraction``: bagged; ``seed``: cross-fit splits and bagged's bags.

    Candidate rows are joined to ``dev_ids`` by id. Raises EnsembleError when there is no
    candidate, when a candidate's ids differ from the dev ids (all such candidates in one
    message: counts and example ids of missing, extra and duplicated ids), or on malformed input;
    a candidate with non-finite predictions is left out and listed in ``rejected``. Dev rows
    without a label are left out (noted).

    ``ensemble_dev_score``, ``best_single`` and ``in_sample_gain`` are recomputed with
    :func:`ensemble.metrics.score` from :func:`ensemble_predictions`; the trajectory's scores come
    from the running sums (equal up to float rounding). ``heldout_gain_mean`` and
    ``heldout_gain_ci`` come from :func:`cross_fit` (``heldout`` holds every fold, the method, df
    and level). ``auto``: every mode is selected and cross-fitted on the same folds, ``systems``
    holds each system's estimate, ``chosen`` the system with the best one (ties: the simpler,
    :data:`.choice.SYSTEM_ORDER`) and ``choice_reason`` why; the other fields describe the best
    mode's ensemble (``ensemble_mode``) and ``heldout`` is the nested cross-fit of the choice.

    Deterministic: the same inputs give the same output, whatever the order of the candidates
    dict or of the candidates' rows; reordering the dev rows changes at most float rounding.
    """
    get_task(inp.task)
    if mode != AUTO:
        get_mode(mode)
    check_budget(max_size, steps, repeats, bags, fraction, seed)
    folds, level = check_folds(folds, level)
    pool, row_ids, rejected, notes = align(inp)
    if mode == AUTO:
        sels = {md: EnsembleSelector(inp.task, md, max_size, steps, bags, fraction, seed).fit_pool(pool) for md in MODES}
        fits = systems_cross_fit(pool, row_ids, sels, folds, repeats, seed, level)
        est, cf, auto = _choose(pool, row_ids, sels, fits, folds, repeats, seed, level, notes)
        est_mode = auto["ensemble_mode"]
        notes.extend(fits[est_mode].notes if cf is None else cf.notes)
    else:
        est = EnsembleSelector(inp.task, mode, max_size, steps, bags, fraction, seed).fit_pool(pool)
        cf, auto = cross_fit_pool(pool, row_ids, est, folds, repeats, seed, level), {}
    return _selection(inp, pool, est, cf, mode, steps, repeats, rejected, notes, auto)


def _choose(pool, row_ids, sels, fits, folds, repeats, seed, level, notes: list[str]):
    """auto: (the best mode's selector, the nested cross-fit or None, the choice's fields)."""
    estimates = {md: cf.estimate for md, cf in fits.items()}
    if all(v is None for v in estimates.values()):
        notes.append(f"auto: no held-out estimate ({next(iter(fits.values())).notes[0]}), so no choice by it: "
                     f"{FALLBACK}, the report's rule, is used")
        return sels[FALLBACK], None, {"chosen": FALLBACK, "ensemble_mode": FALLBACK, "systems": None,
                                      "choice_reason": f"{FALLBACK}: no held-out estimate to choose by"}
    chosen = choose(estimates)
    ens_mode = choose(estimates, with_single=False)
    systems = {SINGLE: {"estimate": 0.0, "low": 0.0, "high": 0.0, "in_sample_gain": 0.0, "members": 1}}
    systems.update({md: {"estimate": cf.estimate, "low": cf.low, "high": cf.high, "in_sample_gain": cf.in_sample_gain,
                         "members": len(sels[md].weights_)} for md, cf in fits.items()})
    cf = nested_cross_fit(pool, row_ids, sels, fits, folds, repeats, seed, level, chosen)
    return sels[ens_mode], cf, {"chosen": chosen, "ensemble_mode": ens_mode, "systems": systems,
                                "choice_reason": reason(chosen, estimates)}


def _selection(inp: TaskInput, pool, est: EnsembleSelector, cf: CrossFit | None, mode: str, steps: int, repeats: int,
               rejected, notes: list[str], auto: dict) -> TaskSelection:
    ens_score = metrics.score(pool.task, pool.ensemble(est.weights_), pool.y)
    single_score = metrics.score(pool.task, pool.single(est.best_single_), pool.y)
    note = est.note()
    if note is not None:
        notes.append(note)
    params_total = _params_total(inp.params, est.members_, notes)
    if mode != AUTO:
        notes.extend(cf.notes)
    has = cf is not None and cf.estimate is not None
    return TaskSelection(
        task=inp.task, mode=mode, metric=TASKS[inp.task].metric, n_rows=pool.n, n_candidates=pool.m,
        max_size=est.max_size, steps=steps if est.takes_steps else None, settings=est.settings,
        members=list(est.members_), weights=dict(est.weights_), trajectory=est.trajectory_, order=est.order_,
        best_single=(est.best_single_, float(single_score)), ensemble_dev_score=float(ens_score),
        in_sample_gain=float(ens_score - single_score), heldout_gain_mean=cf.estimate if has else None,
        heldout_gain_ci=(cf.low, cf.high) if has else None, heldout=cf if repeats and cf is not None else None,
        rejected=rejected, params_total=params_total, notes=notes, **auto,
    )
