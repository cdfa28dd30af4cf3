"""ensemble.selection.verdict: the words beside each task's held-out interval."""
from __future__ import annotations

import numpy as np

from ensemble.selection import TaskInput, select, verdict

IDS = [f"r{i}" for i in range(10)]


def selection():
    y = np.array([1, 0] * 5)
    p = {"a": (IDS, np.where(y == 1, 0.8, 0.3).reshape(-1, 1)), "b": (IDS, np.full((10, 1), 0.6))}
    return select(TaskInput("para", IDS, y, p), mode="greedy", folds=2, repeats=1)


def with_interval(estimate, low, high):
    sel = selection()
    sel.heldout.estimate, sel.heldout.low, sel.heldout.high = estimate, low, high
    return sel


def test_the_three_verdicts_and_no_estimate():
    assert verdict(with_interval(-0.01, -0.03, 0.01)) == (
        False, "not expected to beat the best single candidate: held-out gain -0.0100, 95% interval "
               "[-0.0300, +0.0100]")
    assert verdict(with_interval(0.0, 0.0, 0.0))[0] is False           # no gain is not a gain
    assert verdict(with_interval(0.02, 0.005, 0.035)) == (
        True, "expected to beat the best single candidate: held-out gain +0.0200, 95% interval [+0.0050, +0.0350]")
    assert verdict(with_interval(0.02, -0.01, 0.05)) == (
        True, "expected to beat the best single candidate, but not surely: held-out gain +0.0200, 95% interval "
              "[-0.0100, +0.0500] includes 0")
    sel = selection()
    sel.heldout = None
    assert verdict(sel) == (None, "held-out gain not estimated (too few dev rows or --repeats 0)")


def test_an_ensemble_of_the_best_single_candidate_alone_says_so():
    sel = selection()
    sel.weights = {sel.best_single[0]: 1}
    assert verdict(sel) == (None, "the ensemble is the best single candidate itself")
