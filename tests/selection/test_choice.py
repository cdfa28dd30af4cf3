"""``--mode auto``: the choice by estimate (ties to the simpler, the best single as a system), its
words, and the nested cross-fit computed as the guide says (docs/guides/choosing-a-system.md)."""
from __future__ import annotations

import numpy as np
import pytest

from ensemble import metrics
from ensemble.bench.selection import synthetic_problem
from ensemble.selection import MODES, SYSTEM_ORDER, EnsembleSelector, TaskInput, choose, kfold_splits, select
from ensemble.selection.choice import reason
from ensemble.selection.interval import nb_interval
from ensemble.selection.pool import Pool


def test_the_best_estimate_wins():
    est = {"greedy": 0.0078, "greedy-strict": 0.0070, "caruana": 0.0020, "bagged": 0.0077}
    assert choose(est) == "greedy"
    assert reason("greedy", est) == ("greedy: held-out +0.0078 against single 0, greedy-strict +0.0070, "
                                     "caruana +0.0020, bagged +0.0077")
    assert choose({**est, "caruana": 0.0079}) == "caruana"


def test_a_tie_goes_to_the_simpler():
    assert SYSTEM_ORDER == ("single", "greedy", "greedy-strict", "caruana", "bagged")
    est = {"greedy": 0.01, "greedy-strict": 0.01, "caruana": 0.01, "bagged": 0.01}
    assert choose(est) == "greedy"
    assert choose({"bagged": 0.02, "caruana": 0.02, "greedy": 0.01}) == "caruana"
    # equal to 12 decimals is a tie (float rounding of equal means)
    assert choose({"greedy": 0.1 + 0.2 - 0.3, "caruana": 0.0}) == "single"
    assert reason("greedy", {"greedy": 0.01, "caruana": 0.01}).endswith("(tie with caruana: the simpler is kept)")


def test_nothing_beats_the_single_model():
    assert choose({"greedy": -0.001, "greedy-strict": 0.0, "caruana": -0.005, "bagged": -0.02}) == "single"
    assert choose({"greedy": -0.001, "caruana": -0.005}, with_single=False) == "greedy"
    assert choose({"greedy": None, "caruana": 0.001}) == "caruana"       # not estimated: never chosen


def _twins_input(n=40):
    """Two identical candidates: every ensemble is the best single one, every estimate 0."""
    y = np.array([0.0, 1.0] * (n // 2))
    p = np.where(y == 1, 0.75, 0.25)
    p[::7] = 1 - p[::7]
    ids = [f"r{i:02d}" for i in range(n)]
    return TaskInput("para", ids, y, {"a": (ids, p[:, None]), "b": (ids, p[:, None].copy())})


def test_auto_on_twins_keeps_the_single_model():
    sel = select(_twins_input(), mode="auto", folds=2, repeats=1, bags=2, steps=5)
    assert sel.mode == "auto" and sel.chosen == "single" and sel.ensemble_mode == "greedy"
    assert {s: v["estimate"] for s, v in sel.systems.items()} == {s: 0.0 for s in SYSTEM_ORDER}
    assert sel.choice_reason.startswith("single: held-out 0 against greedy 0, greedy-strict 0, caruana 0, bagged 0")
    assert sel.heldout.estimate == 0.0 and all(f.system == "single" for f in sel.heldout.per_fold)


def _problem(seed=3):
    ids_c, T, y = synthetic_problem("para", 6, 120, seed)
    rows = [f"r{i:03d}" for i in range(len(y))]
    return TaskInput("para", rows, y, {c: (rows, T[i].T) for i, c in enumerate(ids_c)})


def _by_hand(inp, folds, repeats, seed, steps, bags):
    """The guide's recipe, step by step, from the selector and the splits alone."""
    pool = Pool.from_aligned(inp.task, {c: p for c, (_, p) in inp.candidates.items()}, inp.dev_labels)
    ids = list(inp.dev_ids)                       # from_aligned keeps para rows in order
    sel = lambda md: EnsembleSelector("para", md, None, steps, bags, seed=seed)

    def fold_gain(md, sub_rows, out_rows):
        sub = pool.take_rows(sub_rows)
        e = sel(md).fit_pool(sub)
        y = pool.y[out_rows]
        return (metrics.score("para", pool.ensemble(e.weights_, out_rows), y)
                - metrics.score("para", pool.single(e.best_single_, out_rows), y))

    def cross_fit(rows, reps):
        sub_ids = [ids[i] for i in rows]
        return {md: np.mean([fold_gain(md, np.setdiff1d(rows, rows[out]), rows[out])
                             for rep in kfold_splits(sub_ids, folds, reps, seed) for out in rep])
                for md in MODES}

    gains = []
    for rep in kfold_splits(ids, folds, repeats, seed):
        for out in rep:
            train = np.setdiff1d(np.arange(pool.n), out)
            pick = choose(cross_fit(train, 1))      # the inner cross-fit sees the outer training rows only
            gains.append(0.0 if pick == "single" else fold_gain(pick, train, out))
    return gains


def test_the_nested_estimate_is_computed_as_documented_and_differs_from_the_un_nested_one():
    inp = _problem(2)                   # here bagged's +0.0375 wins the choice; choosing that way nets -0.0125
    kw = dict(folds=3, repeats=2, seed=1, steps=8, bags=3)
    sel = select(inp, mode="auto", **kw)
    gains = _by_hand(inp, kw["folds"], kw["repeats"], kw["seed"], kw["steps"], kw["bags"])
    assert sel.heldout.fold_gains == pytest.approx(gains, abs=1e-12)
    mean, low, high, _ = nb_interval(gains, 3, 0.95)
    assert (sel.heldout_gain_mean, *sel.heldout_gain_ci) == pytest.approx((mean, low, high), abs=1e-12)
    assert sel.chosen == "bagged" and sel.systems["bagged"]["estimate"] == pytest.approx(0.0375)
    assert sel.heldout_gain_mean == pytest.approx(-0.0125)      # the un-nested estimate was optimistic
    assert len({f.system for f in sel.heldout.per_fold}) > 1       # the inner choices differ by fold


def test_auto_keeps_the_fixed_modes_selections():
    inp = _problem()
    sel = select(inp, mode="auto", folds=3, repeats=1, steps=8, bags=3)
    fixed = select(inp, mode=sel.ensemble_mode, folds=3, repeats=1, steps=8, bags=3)
    assert sel.weights == fixed.weights and sel.members == fixed.members
    assert sel.systems[sel.ensemble_mode]["estimate"] == fixed.heldout_gain_mean


def test_auto_without_an_estimate_falls_back_to_greedy():
    sel = select(_problem(), mode="auto", repeats=0, steps=8, bags=3)
    assert sel.chosen == "greedy" and sel.ensemble_mode == "greedy" and sel.heldout is None
    assert any("no held-out estimate" in n for n in sel.notes)
