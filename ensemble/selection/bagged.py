"""Bagged ensemble selection (Caruana, Munson and Niculescu-Mizil 2006, "Getting the most out of
ensemble selection", ICDM, section 2.3).

``bags`` times, a random subset of ``round(fraction * m)`` of the ``m`` candidates (at least one)
is drawn: bag ``b`` takes the first places of ``default_rng([seed, b]).permutation(m)`` over the
pool's order (content hash, then id: registration does not matter). :func:`.caruana.caruana` runs
on each bag (``steps``; ``max_size`` bounds each bag's distinct members) and the bag's weights are
normalised to sum 1; the ensemble's weights are the mean of these vectors over the bags (floats
summing to 1), members in the pool's order. A bag drawn again (small libraries have few distinct
bags) reuses its selection: caruana is deterministic, so the result is the same.
"""
from __future__ import annotations

import numpy as np

from .. import metrics
from .caruana import caruana
from .checks import Budget
from .pool import Pool
from .results import Picked, Step


def bag_columns(m: int, budget: Budget, bag: int) -> np.ndarray:
    """The pool positions (ascending) of bag ``bag``."""
    size = max(1, int(round(budget.fraction * m)))
    return np.sort(np.random.default_rng([budget.seed, bag]).permutation(m)[:size])


def bagged(pool: Pool, order: list[int], budget: Budget) -> Picked:
    """Bagged selection (see the module doc); ``order`` ranks the whole pool best-first."""
    total = np.zeros(pool.m)
    chosen = np.zeros(pool.m, dtype=np.int64)
    rank = {j: r for r, j in enumerate(order)}
    done: dict[tuple[int, ...], tuple[Pool, Picked]] = {}   # a bag drawn again selects the same: run once
    for b in range(budget.bags):
        cols = bag_columns(pool.m, budget, b)
        key = tuple(int(c) for c in cols)
        if key not in done:
            sub = pool.take_candidates(cols)
            sub_order = sorted(range(len(cols)), key=lambda i: rank[int(cols[i])])
            done[key] = (sub, caruana(sub, sub_order, budget))
        sub, picked = done[key]
        weight = float(sum(picked.weights.values()))
        for i, c in enumerate(cols):
            w = picked.weights.get(sub.ids[i], 0)
            total[c] += w / weight
            chosen[c] += w > 0
    members = [int(j) for j in np.flatnonzero(total > 0)]
    weights = {pool.ids[j]: float(total[j] / budget.bags) for j in members}
    score = metrics.score(pool.task, pool.ensemble(weights), pool.y)
    own = pool.own_scores()
    traj = [Step(r, pool.ids[j], float(own[j]), None, None, True,
                 f"in {int(chosen[j])} of {budget.bags} bags; weight {weights[pool.ids[j]]:.4f}")
            for r, j in enumerate(members, 1)]
    return Picked([pool.ids[j] for j in members], weights, traj, float(score))


def note(budget: Budget, trajectory: list[Step]) -> str:
    """The selection note that says how the bags were drawn."""
    return (f"bagged: {budget.bags} bags of {budget.fraction:g} of the library (seed {budget.seed}), caruana "
            f"({budget.steps} steps) on each, weights = mean of the bags' normalised weights; "
            f"{len(trajectory)} distinct members")
