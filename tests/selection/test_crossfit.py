"""Cross-fitting: seeded, row-order-free halves and held-out scores on the other half."""
from __future__ import annotations

import numpy as np
import pytest
from selection_cases import col

from ensemble import metrics
from ensemble.bench.selection import synthetic_problem
from ensemble.selection import EnsembleSelector, TaskInput, cross_fit, crossfit_split, ensemble_predictions, select


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
    ids, T, y = synthetic_problem("para", 8, 200, seed=2)
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
    ids, T, y = synthetic_problem("sst", 6, 120, seed=4)
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
