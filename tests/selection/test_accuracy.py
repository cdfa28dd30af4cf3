"""Accuracy counting of trial ensembles and the exact row locks, by hand."""
from __future__ import annotations

import numpy as np

from ensemble.selection.accuracy import correct_counts, locked_rows


def test_argmax_takes_the_first_maximum_sorted_or_not():
    # one trial, rows: [.5 .5 0] label 0 -> ok (first max); label 1 -> wrong; [0 .25 .75] label 2 -> ok
    E = np.array([[[0.5, 0.5, 0.0], [0.5, 0.5, 0.25], [0.0, 0.0, 0.75]]])   # (c=1, k=3, u=3)
    assert correct_counts("classes", E, np.array([0, 1, 2])).tolist() == [2]       # label segments
    assert correct_counts("classes", E[:, :, [1, 0, 2]], np.array([1, 0, 2])).tolist() == [2]   # unsorted


def test_binary_rounds_half_to_even():
    E = np.array([[[0.5, 0.625, 0.375]], [[0.75, 0.25, 0.5]]])
    assert correct_counts("binary", E, np.array([0.0, 1.0, 0.0])).tolist() == [3, 1]


def test_locked_rows_are_the_rows_no_addition_can_change():
    # sum S of one member; candidates span [lo, hi] per row: row 0 stays 1 whatever is added,
    # row 1 can go either way
    S = np.array([[1.0, 0.5]])
    bounds = (np.array([[0.75, 0.0]]), np.array([[1.0, 1.0]]))
    locked, right = locked_rows("binary", S, 1, bounds, np.array([1.0, 0.0]))
    assert locked.tolist() == [True, False] and right.tolist() == [True, False]
