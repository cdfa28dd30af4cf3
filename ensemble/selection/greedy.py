"""Greedy selection: ``greedy`` (the SerBERTus report's method) and ``greedy-strict``.

Candidates come best-first (own dev score; ties by secondary loss, then content hash and id). The
first is the ensemble; each next candidate joins (weight 1) only if the equal-weight average with
it scores ``>=`` the current ensemble (``greedy-strict``: strictly ``>``, so a tie is not
admitted). ``max_size`` bounds the number of members; once reached, the rest are recorded as
"max size reached".
"""
from __future__ import annotations

from .checks import Budget
from .keys import fmt_change, score_key
from .pool import Pool
from .results import Picked, Step


def _verdict(key: float, cur_key: float, change: float, strict: bool) -> tuple[str, bool]:
    if key > cur_key:
        return f"improves by {fmt_change(change)}", True
    if key == cur_key:
        return ("ties (not kept: strict >)", False) if strict else ("ties (kept: >=)", True)
    return f"lowers by {fmt_change(change)}", False


def greedy(pool: Pool, order: list[int], budget: Budget, strict: bool = False) -> Picked:
    """Greedy selection over ``order`` (pool indices, best-first); ``strict``: join only on a strict
    improvement (``greedy-strict``)."""
    own = pool.own_scores()
    st = pool.empty_state()
    members: list[int] = []
    traj: list[Step] = []
    cur = cur_key = None
    for step, i in enumerate(order, 1):
        cid, own_i = pool.ids[i], float(own[i])
        if step == 1:
            pool.add(st, i)
            members.append(i)
            cur, cur_key = own_i, score_key(pool.task, own_i)
            traj.append(Step(step, cid, own_i, own_i, None, True, "best own score: starts the ensemble"))
            continue
        if budget.max_size is not None and len(members) >= budget.max_size:
            traj.append(Step(step, cid, own_i, None, None, False, "max size reached"))
            continue
        s = pool.score_with(st, i)
        key = score_key(pool.task, s)
        change = 0.0 if key == cur_key else s - cur
        reason, ok = _verdict(key, cur_key, change, strict)
        traj.append(Step(step, cid, own_i, s, change, ok, reason))
        if ok:
            pool.add(st, i)
            members.append(i)
            cur, cur_key = s, key
    ids = [pool.ids[i] for i in members]
    return Picked(ids, {cid: 1 for cid in ids}, traj, cur)
