"""Caruana et al. (2004): forward selection with replacement.

For ``steps`` steps over all candidates, each step adds the candidate whose addition maximises
the dev score of the weighted average (ties: lower secondary loss of the resulting ensemble, then
the pool's order: content hash of the predictions, then id). The shortest prefix of the steps that reaches the best dev score is kept; weights
are the counts. ``max_size`` bounds the number of *distinct* members: once that many are in, only
current members can be added again.
"""
from __future__ import annotations

import numpy as np

from .checks import Budget
from .keys import fmt_change, loss_key, score_key, score_keys
from .pool import Pool, State
from .results import Picked, Step


def _best(pool: Pool, st: State, elig: np.ndarray) -> tuple[int, str | None, float]:
    """The candidate among ``elig`` whose addition scores best: (index, tie note, score)."""
    s_all = pool.scores_with(st, elig)
    k_all = score_keys(pool.task, s_all)
    tied = elig[k_all == k_all.max()]
    if len(tied) == 1:
        best, tie_note = int(tied[0]), None
    else:
        cand = sorted((loss_key(pool.loss_with(st, int(j))), int(j)) for j in tied)
        best = cand[0][1]
        by = "content hash" if cand[0][0] == cand[1][0] else "secondary loss"
        tie_note = f"{by} among {len(tied)} tied"
    return best, tie_note, float(s_all[np.flatnonzero(elig == best)[0]])


def _reason(task: str, sc: float, cur: float, weight: int) -> tuple[float, str]:
    key, cur_key = score_key(task, sc), score_key(task, cur)
    change = 0.0 if key == cur_key else sc - cur
    if key > cur_key:
        reason = f"improves by {fmt_change(change)}"
    elif key == cur_key:
        reason = "ties"
    else:
        reason = f"lowers by {fmt_change(change)} (best available)"
    if weight > 1:
        reason += f"; weight now {weight}"
    return change, reason


def caruana(pool: Pool, order: list[int], budget: Budget) -> Picked:
    """Caruana selection for ``budget.steps`` steps, starting from ``order[0]``."""
    own = pool.own_scores()
    st = pool.empty_state()
    all_idx = np.arange(pool.m)
    counts: dict[int, int] = {}
    first: list[int] = []          # members in order of first addition
    picks: list[int] = []
    traj: list[Step] = []
    scores: list[float] = []
    for t in range(1, budget.steps + 1):
        full = budget.max_size is not None and len(counts) >= budget.max_size
        elig = np.array(sorted(counts), dtype=np.int64) if full else all_idx
        if t == 1:
            best, tie_note, sc = order[0], None, float(own[order[0]])
        else:
            best, tie_note, sc = _best(pool, st, elig)
        pool.add(st, best)
        if best not in counts:
            first.append(best)
        counts[best] = counts.get(best, 0) + 1
        picks.append(best)
        if t == 1:
            change, reason = None, "best single: starts the ensemble"
        else:
            change, reason = _reason(pool.task, sc, scores[-1], counts[best])
        traj.append(Step(t, pool.ids[best], float(own[best]), sc, change, True, reason, tie_note))
        scores.append(sc)
    return _keep_best_prefix(pool, traj, picks, first, scores)


def _keep_best_prefix(pool: Pool, traj: list[Step], picks: list[int], first: list[int],
                      scores: list[float]) -> Picked:
    keys = [score_key(pool.task, s) for s in scores]
    keep = keys.index(max(keys)) + 1       # shortest prefix reaching the best score
    for s in traj[keep:]:
        s.accepted = False
        s.reason += f"; dropped: after the best prefix (step {keep})"
    kept: dict[int, int] = {}
    for j in picks[:keep]:
        kept[j] = kept.get(j, 0) + 1
    members = [pool.ids[j] for j in first if j in kept]
    weights = {pool.ids[j]: kept[j] for j in first if j in kept}
    return Picked(members, weights, traj, scores[keep - 1])


def note(budget: Budget, trajectory: list[Step]) -> str:
    """The selection note that says how many steps were kept."""
    kept = sum(s.accepted for s in trajectory)
    return (f"caruana: {budget.steps} steps with replacement, kept the first {kept} (shortest prefix reaching the "
            f"best dev score); max_size bounds distinct members")
