"""Inputs: candidates joined to dev rows by id, rejection of non-finite candidates, input errors."""
from __future__ import annotations

import numpy as np
import pytest
from selection_cases import IDS4, PARA, PARA_Y, col, inp, traj

from ensemble.errors import EnsembleError
from ensemble.selection import TaskInput, select


def test_candidate_rows_are_joined_by_id_not_position():
    order = [2, 0, 3, 1]
    shuffled = {c: ([IDS4[i] for i in order], p[order]) for c, p in PARA.items()}
    a = select(inp("para", PARA, PARA_Y), mode="greedy", repeats=3)
    b = select(TaskInput("para", IDS4, np.array(PARA_Y), shuffled), mode="greedy", repeats=3)
    assert b.to_dict() == a.to_dict()
    # dev rows themselves in another order: same selection and same cross-fit halves
    # (equal up to float rounding of means taken in another row order)
    c = select(TaskInput("para", [IDS4[i] for i in order], np.array(PARA_Y)[order],
                         {k: (list(IDS4), p) for k, p in PARA.items()}), mode="greedy", repeats=3)
    assert traj(c) == traj(a) and c.weights == a.weights
    assert [r.secondary_loss for r in c.order[:3]] == pytest.approx([r.secondary_loss for r in a.order[:3]], rel=1e-14)
    assert c.heldout.to_dict() == a.heldout.to_dict()


def test_non_finite_candidate_is_rejected_not_raised():
    preds = dict(PARA)
    preds["E"] = col(0.5, np.nan, 0.25, np.inf)
    sel = select(inp("para", preds, PARA_Y), mode="greedy", repeats=0)
    assert [c for c, _ in sel.rejected] == ["E"]
    assert "non-finite predictions in 2 of 4 dev rows" in sel.rejected[0][1] and "'r2'" in sel.rejected[0][1]
    assert sel.members == ["A", "D", "B"] and sel.n_candidates == 4
    with pytest.raises(EnsembleError, match="no usable candidate for task para"):
        select(inp("para", {"E": preds["E"]}, PARA_Y), mode="greedy", repeats=0)


def test_id_mismatch_names_the_candidates_and_what_differs():
    cands = {
        "good": (IDS4, PARA["A"]),
        "short": (IDS4[:3], PARA["B"][:3]),
        "extra": (IDS4 + ["zz"], np.vstack([PARA["C"], [[0.5]]])),
        "dup": (["r1", "r1", "r3", "r4"], PARA["D"]),
    }
    with pytest.raises(EnsembleError) as e:
        select(TaskInput("para", IDS4, np.array(PARA_Y), cands), mode="greedy", repeats=0)
    msg = str(e.value)
    assert "3 candidate(s)" in msg and "'good'" not in msg
    assert "'short' (3 rows for 4 dev rows): 1 dev ids missing (e.g. 'r4')" in msg
    assert "'extra' (5 rows for 4 dev rows): 1 ids not in dev (e.g. 'zz')" in msg
    assert "'dup'" in msg and "1 duplicated ids (e.g. 'r1')" in msg and "(e.g. 'r2')" in msg


def test_empty_and_bad_inputs():
    with pytest.raises(EnsembleError, match="no candidate has dev predictions for task sts"):
        select(TaskInput("sts", IDS4, np.zeros(4), {}), mode="greedy")
    with pytest.raises(EnsembleError, match="shape"):
        select(inp("sst", {"a": np.zeros((4, 3))}, [0, 1, 2, 3]))
    with pytest.raises(EnsembleError, match="mode"):
        select(inp("para", PARA, PARA_Y), mode="bagging")
    with pytest.raises(EnsembleError, match="max_size"):
        select(inp("para", PARA, PARA_Y), mode="greedy", max_size=0)
    with pytest.raises(EnsembleError, match="labels must be 0 or 1"):
        select(inp("para", PARA, [1, 2, 0, 0]))


def test_rows_without_label_are_left_out():
    y = np.array([1, 1, 0, 0, np.nan])
    ids = IDS4 + ["r5"]
    preds = {c: (ids, np.vstack([p, [[0.5]]])) for c, p in PARA.items()}
    sel = select(TaskInput("para", ids, y, preds), mode="greedy", repeats=0)
    assert sel.n_rows == 4 and sel.members == ["A", "D", "B"]
    assert any("without a label" in n and "'r5'" in n for n in sel.notes)
