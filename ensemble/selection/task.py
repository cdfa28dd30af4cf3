"""``select``: one task's ensemble from a :class:`TaskInput`, with its honest estimate."""
from __future__ import annotations

from .. import metrics
from ..tasks import TASKS, get_task
from .checks import check_budget, check_folds, examples
from .crossfit import cross_fit_pool
from .estimator import EnsembleSelector
from .inputs import TaskInput, align
from .modes import DEFAULT_MODE, get_mode
from .results import TaskSelection


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

    ``mode``: a name in :data:`MODES`; ``max_size``: greedy, members; caruana, distinct members;
    bagged, distinct members per bag (None: no bound); ``steps``: caruana and bagged steps;
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
    and level).

    Deterministic: the same inputs give the same output, whatever the order of the candidates
    dict or of the candidates' rows; reordering the dev rows changes at most float rounding.
    """
    get_task(inp.task)
    get_mode(mode)
    check_budget(max_size, steps, repeats, bags, fraction, seed)
    folds, level = check_folds(folds, level)
    pool, row_ids, rejected, notes = align(inp)
    est = EnsembleSelector(inp.task, mode, max_size, steps, bags, fraction, seed).fit_pool(pool)
    cf = cross_fit_pool(pool, row_ids, est, folds, repeats, seed, level)
    ens_score = metrics.score(pool.task, pool.ensemble(est.weights_), pool.y)
    single_score = metrics.score(pool.task, pool.single(est.best_single_), pool.y)
    note = est.note()
    if note is not None:
        notes.append(note)
    params_total = _params_total(inp.params, est.members_, notes)
    notes.extend(cf.notes)
    return TaskSelection(
        task=inp.task, mode=mode, metric=TASKS[inp.task].metric, n_rows=pool.n, n_candidates=pool.m,
        max_size=est.max_size, steps=steps if est.takes_steps else None, settings=est.settings,
        members=list(est.members_), weights=dict(est.weights_), trajectory=est.trajectory_, order=est.order_,
        best_single=(est.best_single_, float(single_score)), ensemble_dev_score=float(ens_score),
        in_sample_gain=float(ens_score - single_score), heldout_gain_mean=cf.estimate,
        heldout_gain_ci=None if cf.estimate is None else (cf.low, cf.high), heldout=cf if repeats else None, rejected=rejected,
        params_total=params_total, notes=notes,
    )
