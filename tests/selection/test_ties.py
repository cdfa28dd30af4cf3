"""Ties follow the candidates' content, not their registration: the same candidates registered
under reversed ids (two of them identical, two others equal in score and loss but not in content)
select the same members by content in every mode."""
from __future__ import annotations

import numpy as np
import pytest

from ensemble.bench.selection import synthetic_problem
from ensemble.selection import MODES, TaskInput, content_hash, select


def _by_content(sel, preds):
    h = {c: content_hash(preds[c][1]) for c in preds}
    return [h[c] for c in sel.members], sorted((h[c], w) for c, w in sel.weights.items())


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("task", ["sst", "para"])
def test_reversed_ids_select_the_same_content(task, mode):
    _, T, y = synthetic_problem(task, 5, 40, seed=3)
    rows = [f"r{i:02d}" for i in range(40)]
    swap = np.arange(40)
    same = np.flatnonzero(np.asarray(y) == np.asarray(y)[0])
    swap[same] = same[::-1]             # rows swapped among equal labels: same score and loss, other content
    contents = [T[i].T for i in range(5)] + [T[0].T.copy(), T[1].T[swap]]
    m = len(contents)
    ids = [f"id{i}" for i in range(m)]
    first = {ids[i]: (rows, contents[i]) for i in range(m)}
    second = {ids[m - 1 - i]: (rows, contents[i]) for i in range(m)}      # reversed ids
    kw = dict(mode=mode, steps=8, bags=4, repeats=1, folds=2)
    a = select(TaskInput(task, rows, y, first), **kw)
    b = select(TaskInput(task, rows, y, second), **kw)
    assert _by_content(a, first) == _by_content(b, second)
    assert a.heldout.fold_gains == b.heldout.fold_gains
    ha = [content_hash(first[r.candidate][1]) for r in a.order]
    assert ha == [content_hash(second[r.candidate][1]) for r in b.order]


@pytest.mark.parametrize("seed", range(4))
def test_row_order_does_not_change_the_content_order(seed):
    """Two candidates equal in score and loss but not in content are ordered by the hash of their
    rows in id order: feeding the rows in another order must not change which one ranks first."""
    _, T, y = synthetic_problem("para", 4, 30, seed=1)
    y = np.asarray(y)
    rows = [f"r{i:02d}" for i in range(30)]
    swap = np.arange(30)
    same = np.flatnonzero(y == y[0])
    swap[same] = same[::-1]                      # rows swapped among equal labels: same score and loss
    cands = {f"c{i}": (rows, T[i].T) for i in range(4)}
    cands["twin"] = (rows, T[0].T[swap])
    perm = np.random.default_rng(seed).permutation(30)
    shuffled = {c: ([rows[j] for j in perm], p[perm]) for c, (_, p) in cands.items()}
    a = select(TaskInput("para", rows, y, cands), mode="greedy", repeats=0)
    b = select(TaskInput("para", [rows[j] for j in perm], y[perm], shuffled), mode="greedy", repeats=0)
    assert [r.candidate for r in a.order] == [r.candidate for r in b.order] and a.weights == b.weights
    assert {r.candidate: r.tie_break for r in a.order}["twin"] is not None     # the tie is really there
