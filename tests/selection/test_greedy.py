"""Greedy selection: hand-worked trajectories on all three tasks, max_size and tie rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
from selection_cases import PARA, PARA_Y, STRICT, STRICT_Y, col, inp, traj

from ensemble.selection import select


def test_para_greedy_trajectory_by_hand():
    sel = select(inp("para", PARA, PARA_Y), mode="greedy", repeats=0)
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
    sel = select(inp("para", PARA, PARA_Y), mode="greedy", max_size=2, repeats=0)
    assert sel.members == ["A", "D"]
    assert [(s.candidate, s.accepted, s.reason, s.ensemble_score) for s in sel.trajectory[2:]] == [
        ("B", False, "max size reached", None),
        ("C", False, "max size reached", None),
    ]
    assert sel.ensemble_dev_score == 0.75
    one = select(inp("para", PARA, PARA_Y), mode="greedy", max_size=1, repeats=0)
    assert one.members == ["A"] and one.in_sample_gain == 0.0


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
    sel = select(inp("sst", SST, [0, 1, 2, 3]), mode="greedy", repeats=0)
    assert [r.candidate for r in sel.order] == ["Q", "P", "R"]
    assert [r.tie_break for r in sel.order] == [None, "secondary loss", "secondary loss"]
    assert traj(sel) == [
        (1, "Q", 0.75, 0.75, None, True, "best own score: starts the ensemble"),
        (2, "P", 0.5, 0.75, 0.0, True, "ties (kept: >=)"),
        (3, "R", 0.5, 0.5, -0.25, False, "lowers by 0.2500"),
    ]
    assert sel.weights == {"Q": 1, "P": 1}
    assert sel.ensemble_dev_score == 0.75


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
    sel = select(inp("sts", preds, [0.0, 2.0, 4.0, 6.0]), mode="greedy", repeats=0)
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


def test_equal_everything_breaks_by_content_hash_then_id_and_ensemble_tie_is_accepted():
    p = col(0.875, 0.375, 0.125, 0.125)
    sel = select(inp("para", {"b": p, "a": p.copy(), "c": col(0.125, 0.875, 0.125, 0.875)}, PARA_Y), mode="greedy", repeats=0)
    assert [r.candidate for r in sel.order] == ["a", "b", "c"]
    assert [r.tie_break for r in sel.order] == ["content hash", "content hash", None]
    assert traj(sel)[1] == (2, "b", 0.75, 0.75, 0.0, True, "ties (kept: >=)")
    # c (own .5): (a+b+c)/3 = .625 .542 .125 .375 -> 1 1 0 0
    assert traj(sel)[2] == (3, "c", 0.5, 1.0, 0.25, True, "improves by 0.2500")
    assert sel.members == ["a", "b", "c"]


def test_equal_own_score_breaks_by_secondary_loss_not_id():
    # "a" and "z" both 3/4 right; "z" is more confident where right: lower log-loss -> first
    a = col(0.625, 0.375, 0.375, 0.375)
    z = col(0.875, 0.375, 0.125, 0.125)
    sel = select(inp("para", {"a": a, "z": z}, PARA_Y), mode="greedy", repeats=0)
    assert [r.candidate for r in sel.order] == ["z", "a"]
    assert sel.order[0].secondary_loss < sel.order[1].secondary_loss
    assert sel.best_single[0] == "z"


def test_greedy_strict_by_hand():
    # worked in selection_cases (STRICT): greedy keeps the tie A+D, strict does not and takes B
    assert select(inp("para", STRICT, STRICT_Y), mode="greedy", repeats=0).weights == {"A": 1, "D": 1, "B": 1}
    sel = select(inp("para", STRICT, STRICT_Y), mode="greedy-strict", repeats=0)
    assert sel.members == ["A", "B"] and sel.weights == {"A": 1, "B": 1} and sel.ensemble_dev_score == 1.0
    assert [(s.candidate, s.accepted, s.reason) for s in sel.trajectory] == [
        ("A", True, "best own score: starts the ensemble"), ("D", False, "ties (not kept: strict >)"),
        ("B", True, "improves by 0.2500")]
    assert sel.mode == "greedy-strict" and sel.steps is None
