"""The recipes over arrays: which members a soup takes, in which order, and each step tried.

A recipe sees the members' own dev predictions (their cached, unrounded predictions) and a
function ``soup_of(members) -> {task: predictions (n, k)}`` that returns the dev predictions of the
model averaged from those members (a real forward pass, cached per member set by the caller).

``greedy`` (Wortsman et al. 2022; the report's add-if-not-worse rule applied to weights):
candidates best-first by their own dev score, ties broken as selection breaks them (secondary
loss, then content hash; :meth:`ensemble.selection.pool.Pool.ranking`); the first starts the
soup and each next one joins only if the averaged model's dev score does not drop (``>=``, Pearson
r compared to 12 decimals). ``uniform``: every member of the group, one step. A multitask soup
scores the mean of its tasks' metrics and orders candidates by their mean own score (ties by id).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import metrics
from ..errors import EnsembleError
from ..selection.keys import PEARSON_DECIMALS, fmt_change, score_key
from ..selection.pool import Pool
from .recipes import DEFAULT_RECIPE, RECIPES  # noqa: F401  (the recipes' names, also read from here)


SoupOf = Callable[[tuple[str, ...]], Mapping[str, np.ndarray]]


def check_recipe(recipe: str) -> str:
    if recipe not in RECIPES:
        raise EnsembleError(f"--recipe {recipe!r}: unknown recipe; expected one of {', '.join(RECIPES)}")
    return recipe


@dataclass
class Step:
    step: int
    candidate: str
    own_score: float
    soup_score: float
    joined: bool
    reason: str


@dataclass
class SoupPath:
    recipe: str
    tasks: list[str]
    members: list[str]
    score: float
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def objective(tasks: Sequence[str], preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
              rows: Mapping[str, np.ndarray] | None = None) -> float:
    """The task's metric (one task) or the mean of the tasks' metrics, on ``rows`` (None: all)."""
    out = []
    for t in tasks:
        p, y = np.asarray(preds[t]), np.asarray(labels[t])
        r = None if rows is None else rows[t]
        out.append(metrics.score(t, p if r is None else p[r], y if r is None else y[r]))
    return float(np.mean(out))


def _key(tasks: Sequence[str], s: float) -> float:
    return score_key(tasks[0], s) if len(tasks) == 1 else float(np.round(s, PEARSON_DECIMALS))


def best_first(tasks: Sequence[str], singles: Mapping[str, Mapping[str, np.ndarray]],
               labels: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """Candidate ids best-first by own dev score on ``rows``: one task as selection orders them,
    several by the mean score, then id."""
    ids = sorted(singles)
    if len(tasks) == 1:
        t = tasks[0]
        r = slice(None) if rows is None else rows[t]
        T = np.stack([np.asarray(singles[c][t], dtype=np.float64)[r].T for c in ids])
        pool = Pool.in_content_order(t, ids, T, np.asarray(labels[t])[r])
        return [pool.ids[i] for i in pool.ranking()]
    own = {c: _key(tasks, objective(tasks, singles[c], labels, rows)) for c in ids}
    return sorted(ids, key=lambda c: (-own[c], c))


def greedy_path(tasks: Sequence[str], order: Sequence[str], singles, soup_of: SoupOf, labels,
                rows=None) -> SoupPath:
    """The greedy soup over ``order`` (best-first), scored on ``rows`` (None: all dev rows)."""
    tasks = list(tasks)
    first = order[0]
    cur = objective(tasks, singles[first], labels, rows)
    members = [first]
    steps = [Step(1, first, cur, cur, True, "best own score: starts the soup")]
    for i, cid in enumerate(order[1:], 2):
        own = objective(tasks, singles[cid], labels, rows)
        s = objective(tasks, soup_of(tuple(members + [cid])), labels, rows)
        k, ck = _key(tasks, s), _key(tasks, cur)
        if k >= ck:
            reason = "ties (kept: >=)" if k == ck else f"improves by {fmt_change(s - cur)}"
            members.append(cid)
            cur = s
            steps.append(Step(i, cid, own, s, True, reason))
        else:
            steps.append(Step(i, cid, own, s, False, f"lowers by {fmt_change(s - cur)}"))
    return SoupPath("greedy", tasks, members, cur, steps)


def uniform_path(tasks: Sequence[str], order: Sequence[str], singles, soup_of: SoupOf, labels,
                 rows=None) -> SoupPath:
    """Every candidate of the group averaged with equal weight: one step."""
    tasks = list(tasks)
    members = list(order)
    s = (objective(tasks, singles[members[0]], labels, rows) if len(members) == 1
         else objective(tasks, soup_of(tuple(members)), labels, rows))
    steps = [Step(i, cid, objective(tasks, singles[cid], labels, rows), s, True, "uniform: every member")
             for i, cid in enumerate(members, 1)]
    return SoupPath("uniform", tasks, members, s, steps)


PATHS = {"greedy": greedy_path, "uniform": uniform_path}


def soup_path(recipe: str, tasks: Sequence[str], singles, soup_of: SoupOf, labels, rows=None) -> SoupPath:
    """The recipe's soup: candidates ordered best-first on ``rows``, then the recipe's path."""
    order = best_first(tasks, singles, labels, rows)
    return PATHS[check_recipe(recipe)](tasks, order, singles, soup_of, labels, rows)
