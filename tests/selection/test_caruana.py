"""Caruana selection with replacement, by hand (the case is worked in selection_cases)."""
from __future__ import annotations

from selection_cases import CAR, CAR_Y, STRICT, STRICT_Y, inp

from ensemble.selection import select


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
    assert sel.steps == 4
    assert any(n.startswith("caruana: 4 steps with replacement, kept the first 3") for n in sel.notes)
    # greedy on the same data cannot weight A twice: (A+B)/2 ties at .75, C lowers
    assert select(inp("para", CAR, CAR_Y), mode="greedy", repeats=0).ensemble_dev_score == 0.75


def test_caruana_max_size_bounds_distinct_members():
    sel = select(inp("para", CAR, CAR_Y), mode="caruana", steps=5, max_size=1, repeats=0)
    assert [s.candidate for s in sel.trajectory] == ["B"] * 5       # only B may be re-added
    assert sel.weights == {"B": 1}                                   # all tie: the shortest prefix
    two = select(inp("para", CAR, CAR_Y), mode="caruana", steps=6, max_size=2, repeats=0)
    assert set(s.candidate for s in two.trajectory) == {"A", "B"}
    assert two.weights == {"B": 1, "A": 2}


def test_caruana_by_hand_on_the_strict_case():
    # worked in selection_cases (STRICT): A, then B reaches 1.0 at step 2, the kept prefix
    sel = select(inp("para", STRICT, STRICT_Y), mode="caruana", steps=5, repeats=0)
    assert sel.weights == {"A": 1, "B": 1} and sel.ensemble_dev_score == 1.0
    assert [s.accepted for s in sel.trajectory] == [True, True, False, False, False]
