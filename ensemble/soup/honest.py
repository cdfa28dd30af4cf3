"""The greedy soup's held-out gain over the best single candidate, as selection's is estimated.

The same repeated K-fold cross-fitting over dev (:func:`ensemble.selection.crossfit.kfold_splits`:
the same folds for the same row ids and seed): for each fold the candidates are ordered and the
greedy soup's path is chosen on the other folds, the best single candidate is chosen there too,
and both are scored on the held-out fold. Interval: :func:`ensemble.selection.interval.nb_interval`;
verdict: :func:`ensemble.selection.verdict.verdict`'s words. ``soup_of`` returns the full dev
predictions of an averaged model; a caller that caches them per member set (as
:class:`ensemble.soup.average.Souper` does) pays each forward pass once across all folds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from .. import metrics
from ..selection.crossfit import kfold_splits
from ..selection.interval import describe, method, nb_interval
from ..selection.verdict import verdict
from .path import DEFAULT_RECIPE, PATHS, SoupOf, best_first, check_recipe


@dataclass
class SoupHeldout:
    task: str
    method: str
    folds: int
    repeats: int
    seed: int
    level: float
    in_sample_gain: float
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    heldout_soup_mean: float | None = None
    heldout_single_mean: float | None = None
    fold_gains: list[float] = field(default_factory=list)
    fold_members: list[list[str]] = field(default_factory=list)
    expected_to_beat_single: bool | None = None
    verdict: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _words(h: SoupHeldout, members: list[str], best: str) -> None:
    sel = SimpleNamespace(weights={m: 1 for m in members}, best_single=(best,),
                          heldout=SimpleNamespace(estimate=h.estimate, low=h.low, high=h.high, level=h.level))
    expected, words = verdict(sel)
    h.expected_to_beat_single = expected
    h.verdict = words.replace("the ensemble is", "the soup is")


def soup_cross_fit(task: str, ids: Sequence[str], labels: np.ndarray, singles, soup_of: SoupOf,
                   folds: int = 5, repeats: int = 2, seed: int = 0, level: float = 0.95,
                   recipe: str = DEFAULT_RECIPE) -> SoupHeldout:
    """Held-out gain of the recipe's soup (greedy by default) of ``task`` over its best single candidate (module doc).

    ``ids``: the dev row ids, aligned to ``labels`` and every prediction array."""
    lab = {task: np.asarray(labels)}
    path_of = PATHS[check_recipe(recipe)]
    order = best_first([task], singles, lab)
    full = path_of([task], order, singles, soup_of, lab)
    best = order[0]
    res = SoupHeldout(task, method(folds), folds, repeats, seed, level,
                      float(full.score - metrics.score(task, np.asarray(singles[best][task]), lab[task])))
    n = len(lab[task])
    if repeats == 0 or n // folds < 2:
        res.notes.append("cross-fit skipped: " + ("--repeats 0" if repeats == 0 else f"{n} dev rows are too few"))
        _words(res, full.members, best)
        return res
    soups, single_scores = [], []
    for rep in kfold_splits(ids, folds, repeats, seed):
        for out in rep:
            sel = np.setdiff1d(np.arange(n), out, assume_unique=True)
            rows = {task: sel}
            o = best_first([task], singles, lab, rows)
            path = path_of([task], o, singles, soup_of, lab, rows)
            soup = singles[o[0]] if len(path.members) == 1 else soup_of(tuple(path.members))
            s = metrics.score(task, np.asarray(soup[task])[out], lab[task][out])
            b = metrics.score(task, np.asarray(singles[o[0]][task])[out], lab[task][out])
            res.fold_gains.append(float(s - b))
            res.fold_members.append(path.members)
            soups.append(s)
            single_scores.append(b)
    res.estimate, res.low, res.high, _ = nb_interval(res.fold_gains, folds, level)
    res.heldout_soup_mean, res.heldout_single_mean = float(np.mean(soups)), float(np.mean(single_scores))
    res.notes.append(describe(folds, repeats, level).replace("ensemble", f"{recipe} soup"))
    _words(res, full.members, best)
    return res
