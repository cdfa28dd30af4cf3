"""Ensemble selection: hand-worked trajectories, tie rules, Caruana with replacement, running sums,
cross-fitting, id alignment and input errors.

Hand examples use probabilities that are multiples of 1/8, so every sum is exact in float64 and
the expected accuracies can be worked out on paper (comments show the work).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from ensemble import metrics
from ensemble.errors import EnsembleError
from ensemble.selector import (
    EnsembleSelector,
    TaskInput,
    _Pool,
    _plain_select,
    _synthetic,
    cross_fit,
    crossfit_split,
    ensemble_predictions,
    pearson_from_sums,
    score_on,
    select,
)

IDS4 = ["r1", "r2", "r3", "r4"]


def col(*v):
    return np.array(v, dtype=np.float64)[:, None]


def inp(task, preds, labels, ids=IDS4, params=None):
    return TaskInput(task, list(ids), np.asarray(labels), {c: (list(ids), p) for c, p in preds.items()},
                     params or {})


def traj(sel):
    return [(s.step, s.candidate, s.own_score, s.ensemble_score, s.change, s.accepted, s.reason)
            for s in sel.trajectory]


# --------------------------------------------------------------------------------------------
# para, greedy, by hand
#
# labels 1 1 0 0
#   A .875 .375 .125 .125 -> 1 0 0 0  acc .75  log-loss (3*-ln .875 - ln .375)/4 = 0.345
#   B .625 .750 .625 .250 -> 1 1 1 0  acc .75  log-loss 0.507
#   C .250 .125 .250 .625 -> 0 0 0 1  acc .25
#   D .500 .625 .125 .125 -> 0 1 0 0  acc .75  (0.5 rounds half to even: 0)  log-loss 0.358
# order: A, D, B (tied at .75: by log-loss), C
#   {A}            .75
#   +D: (A+D)/2  = .6875 .5 .125 .125 -> 1 0 0 0 = .75  ties, kept
#   +B: (A+D+B)/3 = .667 .583 .292 .167 -> 1 1 0 0 = 1.0 improves by .25
#   +C: sum 2.25 1.875 1.125 1.125 /4 -> 1 0 0 0 = .75 lowers by .25, rejected
PARA_Y = [1, 1, 0, 0]
PARA = {
    "A": col(0.875, 0.375, 0.125, 0.125),
    "B": col(0.625, 0.75, 0.625, 0.25),
    "C": col(0.25, 0.125, 0.25, 0.625),
    "D": col(0.5, 0.625, 0.125, 0.125),
}


def test_para_greedy_trajectory_by_hand():
    sel = select(inp("para", PARA, PARA_Y), repeats=0)
    assert [r.candidate for r in sel.order] == ["A", "D", "B", "C"]
    assert [r.tie_break for r in sel.order] == ["secondary loss", "secondary loss", "secondary loss", None]
    assert traj(sel) == [
        (1, "A", 0.75, 0.75, None, True, "best own score: starts the ensemble"),
        (2, "D", 0.75, 0.75, 0.0, True, "ties (kept: >=)"),
        (3, "B", 0.75, 1.0, 0.25, True, "improves by 0.2500"),
        (4, "C", 0.25, 0.75, -0.25, False, "lowers by 0.2500"),
    ]
    assert sel.members == ["A", "D", "B"]
    assert sel.weights == {"A": 1, "D": 1, "B": 1}
    assert sel.best_single == ("A", 0.75)
    assert sel.ensemble_dev_score == 1.0
    assert sel.in_sample_gain == 0.25
    assert sel.heldout_gain_mean is None and sel.heldout is None
    assert sel.order[0].secondary_loss == pytest.approx((-3 * math.log(0.875) - math.log(0.375)) / 4)


def test_greedy_max_size():
    sel = select(inp("para", PARA, PARA_Y), max_size=2, repeats=0)
    assert sel.members == ["A", "D"]
    assert [(s.candidate, s.accepted, s.reason, s.ensemble_score) for s in sel.trajectory[2:]] == [
        ("B", False, "max size reached", None),
        ("C", False, "max size reached", None),
    ]
    assert sel.ensemble_dev_score == 0.75
    one = select(inp("para", PARA, PARA_Y), max_size=1, repeats=0)
    assert one.members == ["A"] and one.in_sample_gain == 0.0


# --------------------------------------------------------------------------------------------
# sst, greedy, by hand (argmax takes the first maximum)
#
# labels 0 1 2 3
#   Q: [.25 .5 .25 0 0] -> 1 x | [0 .75 .25 0 0] -> 1 ok | [0 0 .5 .5 0] -> 2 ok (first max)
#      | [0 0 0 .5 .5] -> 3 ok                                                 acc .75
#   P: [.5 .25 .25 0 0] -> 0 ok | [.5 .25 .25 0 0] -> 0 x | [0 0 .75 .25 0] -> 2 ok
#      | [0 0 0 .25 .75] -> 4 x                                               acc .5
#   R: one-hot 1, 1, 2, 4 -> x ok ok x                                         acc .5
# own order: Q, then P before R (tied at .5; R puts 0 on two labels: larger log-loss)
#   {Q} .75; +P: (Q+P)/2 row0 [.375 .375 ..] -> 0 ok, row1 1 ok, row2 2 ok, row3 4 x = .75 ties, kept
#   +R: sums row0 [.75 1.75 .5 0 0] -> 1 x, row1 1 ok, row2 2 ok, row3 4 x = .5 lowers by .25
SST = {
    "Q": np.array([[.25, .5, .25, 0, 0], [0, .75, .25, 0, 0], [0, 0, .5, .5, 0], [0, 0, 0, .5, .5]]),
    "P": np.array([[.5, .25, .25, 0, 0], [.5, .25, .25, 0, 0], [0, 0, .75, .25, 0], [0, 0, 0, .25, .75]]),
    "R": np.array([[0, 1.0, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 1.0, 0, 0], [0, 0, 0, 0, 1.0]]),
}


def test_sst_greedy_trajectory_by_hand():
    sel = select(inp("sst", SST, [0, 1, 2, 3]), repeats=0)
    assert [r.candidate for r in sel.order] == ["Q", "P", "R"]
    assert [r.tie_break for r in sel.order] == [None, "secondary loss", "secondary loss"]
    assert traj(sel) == [
        (1, "Q", 0.75, 0.75, None, True, "best own score: starts the ensemble"),
        (2, "P", 0.5, 0.75, 0.0, True, "ties (kept: >=)"),
        (3, "R", 0.5, 0.5, -0.25, False, "lowers by 0.2500"),
    ]
    assert sel.weights == {"Q": 1, "P": 1}
    assert sel.ensemble_dev_score == 0.75


# --------------------------------------------------------------------------------------------
# sts, greedy, by hand
#
# labels y = 0 2 4 6 (centred -3 -1 1 3, |y|^2 = 20)
#   A = 0 4 2 6   centred -3 1 -1 3          r = 16/20 = .8          MSE 2
#   D = 2A + 1    r = .8 (ties A)                                     MSE 25 -> after A
#   B = 2 0 6 4   centred -1 -3 3 1          r = 12/20 = .6
#   C = 6 4 2 0   r = -1
#   {A} .8; +D: A+D = 3A+1 -> .8 ties, kept
#   +B: A+D+B = 3 13 13 23 centred -10 0 0 10: r = 60/sqrt(200*20) = 3/sqrt(10) improves
#   +C: 9 17 15 23 centred -7 1 -1 7: r = 40/sqrt(100*20) = 2/sqrt(5), lowers
def test_sts_greedy_trajectory_by_hand():
    A = col(0, 4, 2, 6)
    preds = {"A": A, "B": col(2, 0, 6, 4), "C": col(6, 4, 2, 0), "D": 2 * A + 1}
    sel = select(inp("sts", preds, [0.0, 2.0, 4.0, 6.0]), repeats=0)
    assert [r.candidate for r in sel.order] == ["A", "D", "B", "C"]
    assert [r.secondary_loss for r in sel.order[:2]] == [2.0, 25.0]
    assert [r.secondary_loss for r in sel.order[2:]] == [None, None]   # not tied: never needed
    t = sel.trajectory
    assert [(s.candidate, s.accepted) for s in t] == [("A", True), ("D", True), ("B", True), ("C", False)]
    assert [s.reason.split(" by ")[0] for s in t[1:]] == ["ties (kept: >=)", "improves", "lowers"]
    assert t[0].ensemble_score == pytest.approx(0.8, abs=1e-12)
    assert t[1].ensemble_score == pytest.approx(0.8, abs=1e-12) and t[1].change == 0.0
    assert t[2].ensemble_score == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    assert t[2].change == pytest.approx(3 / math.sqrt(10) - 0.8, abs=1e-12)
    assert t[3].ensemble_score == pytest.approx(2 / math.sqrt(5), abs=1e-12)
    assert t[3].own_score == pytest.approx(-1.0, abs=1e-12)
    assert sel.members == ["A", "D", "B"]
    assert sel.ensemble_dev_score == pytest.approx(3 / math.sqrt(10), abs=1e-12)


# --------------------------------------------------------------------------------------------
# ties


def test_equal_everything_breaks_by_id_and_ensemble_tie_is_accepted():
    p = col(0.875, 0.375, 0.125, 0.125)
    sel = select(inp("para", {"b": p, "a": p.copy(), "c": col(0.125, 0.875, 0.125, 0.875)}, PARA_Y), repeats=0)
    assert [r.candidate for r in sel.order] == ["a", "b", "c"]
    assert [r.tie_break for r in sel.order] == ["id", "id", None]
    assert traj(sel)[1] == (2, "b", 0.75, 0.75, 0.0, True, "ties (kept: >=)")
    # c (own .5): (a+b+c)/3 = .625 .542 .125 .375 -> 1 1 0 0
    assert traj(sel)[2] == (3, "c", 0.5, 1.0, 0.25, True, "improves by 0.2500")
    assert sel.members == ["a", "b", "c"]


def test_equal_own_score_breaks_by_secondary_loss_not_id():
    # "a" and "z" both 3/4 right; "z" is more confident where right: lower log-loss -> first
    a = col(0.625, 0.375, 0.375, 0.375)
    z = col(0.875, 0.375, 0.125, 0.125)
    sel = select(inp("para", {"a": a, "z": z}, PARA_Y), repeats=0)
    assert [r.candidate for r in sel.order] == ["z", "a"]
    assert sel.order[0].secondary_loss < sel.order[1].secondary_loss
    assert sel.best_single[0] == "z"


# --------------------------------------------------------------------------------------------
# caruana, by hand
#
# labels 1 1 0 0
#   A .875 .375 .125 .625 -> 1 0 0 1  acc .5
#   B 0    1    .25  .125 -> 0 1 0 0  acc .75
#   C 0    0    1    1    -> acc 0
# step 1: B (.75)
# step 2: +A: (A+B)/2 = .4375 .6875 .1875 .375 -> 0 1 0 0 = .75; +B: B again = .75; +C: 0 0 .625 .5625 -> 0
#         tie A/B at .75 -> log-loss: (A+B)/2 0.47 < B's (B gives 0 to a true label: 8.7) -> A
# step 3: +A: (2A+B)/3 = .583 .583 .167 .458 -> 1 1 0 0 = 1.0 improves; +B: (A+2B)/3 row 1 .29 -> .75
# step 4: +A: (3A+B)/4 = .656 .531 .156 .5 (half to even: 0) -> 1.0 ties
# best prefix: steps 1-3 -> weights B:1, A:2
CAR_Y = [1, 1, 0, 0]
CAR = {
    "A": col(0.875, 0.375, 0.125, 0.625),
    "B": col(0.0, 1.0, 0.25, 0.125),
    "C": col(0.0, 0.0, 1.0, 1.0),
}


def test_caruana_with_replacement_by_hand():
    sel = select(inp("para", CAR, CAR_Y), mode="caruana", steps=4, repeats=0)
    assert [(s.step, s.candidate, s.own_score, s.ensemble_score, s.change, s.accepted, s.reason, s.tie_break)
            for s in sel.trajectory] == [
        (1, "B", 0.75, 0.75, None, True, "best single: starts the ensemble", None),
        (2, "A", 0.5, 0.75, 0.0, True, "ties", "secondary loss among 2 tied"),
        (3, "A", 0.5, 1.0, 0.25, True, "improves by 0.2500; weight now 2", None),
        (4, "A", 0.5, 1.0, 0.0, False, "ties; weight now 3; dropped: after the best prefix (step 3)", None),
    ]
    assert sel.members == ["B", "A"]
    assert sel.weights == {"B": 1, "A": 2}
    assert sel.ensemble_dev_score == 1.0
    assert sel.best_single == ("B", 0.75)
    assert sel.in_sample_gain == 0.25
    # greedy on the same data cannot weight A twice: (A+B)/2 ties at .75, C lowers
    assert select(inp("para", CAR, CAR_Y), repeats=0).ensemble_dev_score == 0.75


def test_caruana_max_size_bounds_distinct_members():
    sel = select(inp("para", CAR, CAR_Y), mode="caruana", steps=5, max_size=1, repeats=0)
    assert [s.candidate for s in sel.trajectory] == ["B"] * 5       # only B may be re-added
    assert sel.weights == {"B": 1}                                   # all tie: the shortest prefix
    two = select(inp("para", CAR, CAR_Y), mode="caruana", steps=6, max_size=2, repeats=0)
    assert set(s.candidate for s in two.trajectory) == {"A", "B"}
    assert two.weights == {"B": 1, "A": 2}


# --------------------------------------------------------------------------------------------
# running sums and the fast scorer


def test_pearson_from_sums_matches_scipy():
    rng = np.random.default_rng(7)
    for n, shift, scale in [(5, 0.0, 1.0), (100, 3.0, 2.0), (5000, 2.5, 0.5), (20000, -1.0, 10.0)]:
        x = shift + scale * rng.standard_normal(n)
        y = 0.3 * x + rng.standard_normal(n) + 2.0
        r = pearson_from_sums(n, x.sum(), y.sum(), x @ x, y @ y, x @ y)
        assert abs(r - stats.pearsonr(x, y)[0]) < 1e-12
    # vectorised over candidates, constant input gives 0 like metrics.pearson
    X = rng.standard_normal((4, 50))
    y = rng.standard_normal(50)
    rs = pearson_from_sums(50, X.sum(1), y.sum(), (X * X).sum(1), y @ y, X @ y)
    assert np.allclose(rs, [stats.pearsonr(x, y)[0] for x in X], atol=1e-12, rtol=0)
    c = np.full(50, 0.1)
    assert pearson_from_sums(50, c.sum(), y.sum(), c @ c, y @ y, c @ y) == 0.0


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
def test_fast_scores_equal_plain_averaging(task):
    """Vectorised scores of (S + c)/(W + 1), row locking included, equal metrics.score of the average.

    Predictions on a coarse grid make exact ties (and 0.5 probabilities) frequent.
    """
    rng = np.random.default_rng(3)
    m, n = 12, 300
    k = 5 if task == "sst" else 1
    T = rng.integers(0, 9, size=(m, k, n)) / 8.0
    if task == "sst":
        T /= T.sum(axis=1, keepdims=True) + (T.sum(axis=1, keepdims=True) == 0)
        y = rng.integers(0, 5, n)
    elif task == "para":
        y = rng.integers(0, 2, n).astype(float)
    else:
        y = rng.uniform(0, 5, n)
        T = T * 4 + 0.3 * y
    pool = _Pool(task, [f"c{i:02d}" for i in range(m)], T, y)
    st = pool.empty_state()
    picks = [0, 3, 3, 7, 1, 5, 5, 5, 9, 2]
    for t, j in enumerate(picks):
        pool.add(st, j)
        members = picks[: t + 1]
        fast = pool.scores_with(st, np.arange(m))
        for c in range(m):
            avg = (T[members].sum(axis=0) + T[c]) / (len(members) + 1)
            want = metrics.score(task, avg.T, y)
            assert abs(fast[c] - want) < 1e-12, (t, c)
            assert abs(pool.score_with(st, c) - want) < 1e-12, (t, c)
    if task != "sts":   # the exact row locks did engage
        assert st.lock is not None and st.lock[0] is not None


@pytest.mark.parametrize("task", ["sst", "para"])
def test_working_set_of_open_rows_is_exact(task):
    """Confident predictions lock most rows; the Caruana working set must not change any score."""
    ids, T, y = _synthetic(task, 15, 400, seed=8)
    pool = _Pool(task, ids, T, y)
    st = pool.empty_state()
    rng = np.random.default_rng(0)
    members, engaged = [], False
    subset = np.array([1, 4, 9, 14])
    for _ in range(30):
        j = int(rng.integers(0, 15))
        pool.add(st, j)
        members.append(j)
        fast = pool.scores_with(st, np.arange(15))
        engaged |= st.work is not None
        for c in range(15):
            avg = (T[members].sum(axis=0) + T[c]) / (len(members) + 1)
            assert fast[c] == metrics.score(task, avg.T, y)
        assert np.array_equal(pool.scores_with(st, subset), fast[subset])
    assert engaged


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
@pytest.mark.parametrize("mode", ["greedy", "caruana"])
def test_fast_selection_equals_plain_reaveraging(task, mode):
    ids, T, y = _synthetic(task, 25, 400, seed=1)
    pool = _Pool(task, ids, T, y)
    est = EnsembleSelector(task, mode, None, 12)._fit_pool(pool)
    members, weights = _plain_select(task, {c: T[i].T for i, c in enumerate(ids)}, y, mode, None, 12)
    assert est.members_ == members and est.weights_ == weights
    assert len(members) > 1


# --------------------------------------------------------------------------------------------
# cross-fitting


def test_crossfit_split_disjoint_covering_seeded_and_row_order_free():
    ids = [f"id{i:03d}" for i in range(101)]
    a, b = crossfit_split(ids, seed=0, repeat=0)
    assert len(a) == 50 and len(b) == 51
    assert set(a).isdisjoint(b) and sorted(np.concatenate([a, b])) == list(range(101))
    a2, b2 = crossfit_split(ids, seed=0, repeat=0)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert not np.array_equal(a, crossfit_split(ids, seed=1, repeat=0)[0])
    assert not np.array_equal(a, crossfit_split(ids, seed=0, repeat=1)[0])
    rng = np.random.default_rng(5)
    shuffled = [ids[i] for i in rng.permutation(len(ids))]
    sa, sb = crossfit_split(shuffled, seed=0, repeat=0)
    assert {shuffled[i] for i in sa} == {ids[i] for i in a}
    assert {shuffled[i] for i in sb} == {ids[i] for i in b}


def test_cross_fit_reports_heldout_gain():
    ids, T, y = _synthetic("para", 8, 200, seed=2)
    preds = {c: T[i].T for i, c in enumerate(ids)}
    rows = [f"q{i}" for i in range(200)]
    cf = cross_fit("para", preds, y, rows, repeats=5, seed=3)
    assert len(cf.folds) == 10 and [f.fold for f in cf.folds[:2]] == ["a->b", "b->a"]
    gains = [f.heldout_gain for f in cf.folds]
    assert cf.heldout_gain_mean == pytest.approx(np.mean(gains))
    for f in cf.folds:
        assert f.n_select + f.n_heldout == 200
        assert f.heldout_gain == pytest.approx(f.heldout_ensemble_score - f.heldout_single_score)
    lo, hi = cf.heldout_gain_ci
    assert lo <= cf.heldout_gain_mean <= hi
    full = EnsembleSelector("para").fit(preds, y)
    assert cf.in_sample_gain == pytest.approx(
        metrics.score("para", full.predict(preds), y) - metrics.score("para", preds[full.best_single_], y))
    again = cross_fit("para", preds, y, rows, repeats=5, seed=3)
    assert again.to_dict() == cf.to_dict()
    assert cross_fit("para", preds, y, rows, repeats=5, seed=4).to_dict() != cf.to_dict()


def test_cross_fit_heldout_scores_use_the_other_half():
    ids, T, y = _synthetic("sst", 6, 120, seed=4)
    preds = {c: T[i].T for i, c in enumerate(ids)}
    rows = [f"s{i}" for i in range(120)]
    cf = cross_fit("sst", preds, y, rows, repeats=2, seed=0)
    for f in cf.folds:
        a, b = crossfit_split(rows, 0, f.repeat)
        held = b if f.fold == "a->b" else a
        ens = ensemble_predictions({c: preds[c][held] for c in f.weights}, f.weights)
        assert f.heldout_ensemble_score == metrics.score("sst", ens, y[held])
        assert f.heldout_single_score == metrics.score("sst", preds[f.best_single][held], y[held])


def test_cross_fit_identical_candidates_gain_nothing():
    p = col(0.875, 0.375, 0.125, 0.625, 0.75, 0.25, 0.5, 0.625)
    y = [1, 1, 0, 0, 1, 0, 1, 1]
    ids = [f"x{i}" for i in range(8)]
    sel = select(TaskInput("para", ids, np.array(y), {"a": (ids, p), "b": (ids, p.copy())}), repeats=4)
    assert sel.heldout_gain_mean == 0.0 and sel.heldout_gain_ci == (0.0, 0.0)
    assert len(sel.heldout.folds) == 8


# --------------------------------------------------------------------------------------------
# inputs: alignment by id, rejection, errors, determinism


def test_candidate_rows_are_joined_by_id_not_position():
    order = [2, 0, 3, 1]
    shuffled = {c: ([IDS4[i] for i in order], p[order]) for c, p in PARA.items()}
    a = select(inp("para", PARA, PARA_Y), repeats=3)
    b = select(TaskInput("para", IDS4, np.array(PARA_Y), shuffled), repeats=3)
    assert b.to_dict() == a.to_dict()
    # dev rows themselves in another order: same selection and same cross-fit halves
    # (equal up to float rounding of means taken in another row order)
    c = select(TaskInput("para", [IDS4[i] for i in order], np.array(PARA_Y)[order],
                         {k: (list(IDS4), p) for k, p in PARA.items()}), repeats=3)
    assert traj(c) == traj(a) and c.weights == a.weights
    assert [r.secondary_loss for r in c.order[:3]] == pytest.approx([r.secondary_loss for r in a.order[:3]], rel=1e-14)
    assert c.heldout.to_dict() == a.heldout.to_dict()


def test_non_finite_candidate_is_rejected_not_raised():
    preds = dict(PARA)
    preds["E"] = col(0.5, np.nan, 0.25, np.inf)
    sel = select(inp("para", preds, PARA_Y), repeats=0)
    assert [c for c, _ in sel.rejected] == ["E"]
    assert "non-finite predictions in 2 of 4 dev rows" in sel.rejected[0][1] and "'r2'" in sel.rejected[0][1]
    assert sel.members == ["A", "D", "B"] and sel.n_candidates == 4
    with pytest.raises(EnsembleError, match="no usable candidate for task para"):
        select(inp("para", {"E": preds["E"]}, PARA_Y), repeats=0)


def test_id_mismatch_names_the_candidates_and_what_differs():
    cands = {
        "good": (IDS4, PARA["A"]),
        "short": (IDS4[:3], PARA["B"][:3]),
        "extra": (IDS4 + ["zz"], np.vstack([PARA["C"], [[0.5]]])),
        "dup": (["r1", "r1", "r3", "r4"], PARA["D"]),
    }
    with pytest.raises(EnsembleError) as e:
        select(TaskInput("para", IDS4, np.array(PARA_Y), cands), repeats=0)
    msg = str(e.value)
    assert "3 candidate(s)" in msg and "'good'" not in msg
    assert "'short' (3 rows for 4 dev rows): 1 dev ids missing (e.g. 'r4')" in msg
    assert "'extra' (5 rows for 4 dev rows): 1 ids not in dev (e.g. 'zz')" in msg
    assert "'dup'" in msg and "1 duplicated ids (e.g. 'r1')" in msg and "(e.g. 'r2')" in msg


def test_empty_and_bad_inputs():
    with pytest.raises(EnsembleError, match="no candidate has dev predictions for task sts"):
        select(TaskInput("sts", IDS4, np.zeros(4), {}))
    with pytest.raises(EnsembleError, match="shape"):
        select(inp("sst", {"a": np.zeros((4, 3))}, [0, 1, 2, 3]))
    with pytest.raises(EnsembleError, match="mode"):
        select(inp("para", PARA, PARA_Y), mode="bagging")
    with pytest.raises(EnsembleError, match="max_size"):
        select(inp("para", PARA, PARA_Y), max_size=0)
    with pytest.raises(EnsembleError, match="labels must be 0 or 1"):
        select(inp("para", PARA, [1, 2, 0, 0]))


def test_rows_without_label_are_left_out():
    y = np.array([1, 1, 0, 0, np.nan])
    ids = IDS4 + ["r5"]
    preds = {c: (ids, np.vstack([p, [[0.5]]])) for c, p in PARA.items()}
    sel = select(TaskInput("para", ids, y, preds), repeats=0)
    assert sel.n_rows == 4 and sel.members == ["A", "D", "B"]
    assert any("without a label" in n and "'r5'" in n for n in sel.notes)


def test_deterministic_json_safe_and_candidate_order_free():
    ids, T, y = _synthetic("sts", 10, 80, seed=5)
    rows = [f"t{i}" for i in range(80)]
    cands = {c: (rows, T[i].T) for i, c in enumerate(ids)}
    params = {c: 110_000_000 for c in ids}
    a = select(TaskInput("sts", rows, y, cands, params), mode="caruana", steps=10, repeats=3, seed=1)
    b = select(TaskInput("sts", rows, y, dict(reversed(list(cands.items()))), params),
               mode="caruana", steps=10, repeats=3, seed=1)
    da = a.to_dict()
    assert da == b.to_dict()
    assert json.loads(json.dumps(da)) == da
    assert da["best_single"] == {"id": a.best_single[0], "score": a.best_single[1]}
    assert a.params_total == 110_000_000 * len(a.members)
    assert set(da) >= {"task", "mode", "members", "weights", "trajectory", "best_single", "ensemble_dev_score",
                       "in_sample_gain", "heldout_gain_mean", "heldout_gain_ci", "heldout", "rejected", "notes"}


def test_ensemble_predictions_and_score_on():
    p = {"a": col(1.0, 0.0), "b": col(0.25, 0.75)}
    assert np.array_equal(ensemble_predictions(p, {"a": 2, "b": 1}), col(0.75, 0.25))
    assert ensemble_predictions(p, {"a": 1}).dtype == np.float64
    assert score_on("para", p, [1, 0], {"a": 2, "b": 1}) == 1.0
    assert score_on("para", p, [1, 0], {"b": 1}) == 0.0
    with pytest.raises(EnsembleError, match="'c'"):
        ensemble_predictions(p, {"c": 1})
    with pytest.raises(EnsembleError, match="'c'"):
        score_on("para", p, [1, 0], {"a": 1, "c": 1})


def test_selector_estimator_api():
    est = EnsembleSelector("para")
    with pytest.raises(EnsembleError, match="not fitted"):
        est.predict(PARA)
    est.fit(PARA, PARA_Y)
    assert est.members_ == ["A", "D", "B"] and est.best_single_ == "A" and est.score_ == 1.0
    assert est.candidates_ == ["A", "B", "C", "D"]
    assert est.score(PARA, PARA_Y) == 1.0
    assert np.array_equal(est.predict(PARA), (PARA["A"] + PARA["D"] + PARA["B"]) / 3)


def test_bench_select_runs_and_compares_with_plain():
    from ensemble.selector import bench_select

    out = bench_select(candidates=12, rows=200, mode="both", steps=6)
    assert set(out["results"]) == {f"{t}/{m}" for t in ("sst", "para", "sts") for m in ("greedy", "caruana")}
    assert all(r["identical"] is True and r["plain_on_prefix"] is None for r in out["results"].values())
    assert isinstance(out["target_met"], bool)
    json.dumps(out)
    tight = bench_select(candidates=12, rows=200, task="para", mode="caruana", steps=6, plain_budget_s=1e-9)
    r = tight["results"]["para/caruana"]
    assert r["plain_s"] is None and r["plain_on_prefix"]["candidates"] < 12 and r["identical"] is True
