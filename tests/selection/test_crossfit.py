"""Cross-fitting: seeded, row-order-free K folds, held-out scores on each fold, and the
Nadeau-Bengio interval computed the documented way."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from selection_cases import col

from ensemble import metrics
from ensemble.bench.selection import synthetic_problem
from ensemble.selection import (EnsembleSelector, TaskInput, cross_fit, ensemble_predictions, kfold_splits,
                                nb_interval, select)


def test_kfold_splits_disjoint_covering_seeded_and_row_order_free():
    ids = [f"id{i:03d}" for i in range(101)]
    reps = kfold_splits(ids, 5, 2, seed=0)
    assert len(reps) == 2 and all(len(rep) == 5 for rep in reps)
    for rep in reps:
        assert sorted(np.concatenate(rep)) == list(range(101))
        assert sorted(len(f) for f in rep) == [20, 20, 20, 20, 21]
    assert all(np.array_equal(a, b) for a, b in zip(reps[0], kfold_splits(ids, 5, 2, seed=0)[0]))
    assert not np.array_equal(reps[0][0], reps[1][0])
    assert not np.array_equal(reps[0][0], kfold_splits(ids, 5, 1, seed=1)[0][0])
    shuffled = [ids[i] for i in np.random.default_rng(5).permutation(len(ids))]
    for a, b in zip(reps[0], kfold_splits(shuffled, 5, 1, seed=0)[0]):
        assert {ids[i] for i in a} == {shuffled[i] for i in b}


def test_kfold_splits_by_hand():
    # rows in id order: c(2) a(0) b(1) -> by_id = [1, 2, 0]; permuted by default_rng([3, 0]), dealt round robin
    ids = ["b", "c", "a"]
    perm = np.random.default_rng([3, 0]).permutation(3)
    by_id = np.array([2, 0, 1])
    want = [sorted(by_id[perm][f::2]) for f in range(2)]
    assert [list(f) for f in kfold_splits(ids, 2, 1, 3)[0]] == want


def test_nb_interval_by_hand():
    # gains 0.1 0.2 0.3 with 3 folds: mean 0.2, var 0.01, se = sqrt(0.01 * (1/3 + 1/2)) = 0.0912871,
    # df = folds - 1 = 2: t(2, 0.975) = 4.302653
    mean, lo, hi, df = nb_interval([0.1, 0.2, 0.3], 3, 0.95)
    assert df == 2 and math.isclose(mean, 0.2)
    assert math.isclose(hi - mean, 4.302653 * 0.0912871, rel_tol=1e-5)
    assert math.isclose(mean - lo, hi - mean)


def test_cross_fit_the_documented_way():
    rng = np.random.default_rng(5)
    n = 30
    y = rng.uniform(0, 5, n)
    shared = rng.normal(0, 1, n)
    preds = {f"c{i}": (y + shared + rng.normal(0, 1 + 0.3 * i, n))[:, None] for i in range(4)}
    ids = [f"row{(7 * i) % n:03d}" for i in range(n)]       # not in id order
    cf = cross_fit("sts", preds, y, ids, "greedy", seed=2, folds=3, repeats=2)
    order = np.argsort(ids)
    gains = []
    for r in range(2):
        perm = order[np.random.default_rng([2, r]).permutation(n)]
        for f in range(3):
            test = np.sort(perm[f::3])
            train = np.setdiff1d(np.arange(n), test)
            sel = EnsembleSelector("sts", "greedy").fit({c: p[train] for c, p in preds.items()}, y[train])
            ens = np.mean([preds[c][test] for c in sel.weights_], axis=0)
            gains.append(metrics.pearson(ens[:, 0], y[test]) - metrics.pearson(preds[sel.best_single_][test, 0], y[test]))
    g = np.array(gains)
    half = stats.t.ppf(0.975, 2) * math.sqrt(g.var(ddof=1) * (1 / 6 + 1 / 2))
    assert np.allclose(cf.fold_gains, g)
    assert math.isclose(cf.estimate, g.mean())
    assert math.isclose(cf.low, g.mean() - half) and math.isclose(cf.high, g.mean() + half)
    assert (cf.folds, cf.repeats, cf.df, cf.level) == (3, 2, 2, 0.95)
    assert "Nadeau-Bengio" in cf.method


def test_cross_fit_reports_heldout_gain():
    ids, T, y = synthetic_problem("para", 8, 200, seed=2)
    preds = {c: T[i].T for i, c in enumerate(ids)}
    rows = [f"q{i}" for i in range(200)]
    cf = cross_fit("para", preds, y, rows, mode="greedy", repeats=3, seed=3)
    assert len(cf.per_fold) == 15 and [f.fold for f in cf.per_fold[:5]] == [0, 1, 2, 3, 4]
    assert cf.estimate == pytest.approx(np.mean(cf.fold_gains))
    for f in cf.per_fold:
        assert f.n_select + f.n_heldout == 200 and f.n_heldout == 40
        assert f.heldout_gain == pytest.approx(f.heldout_ensemble_score - f.heldout_single_score)
    assert cf.low <= cf.estimate <= cf.high
    full = EnsembleSelector("para", "greedy").fit(preds, y)
    assert cf.in_sample_gain == pytest.approx(
        metrics.score("para", full.predict(preds), y) - metrics.score("para", preds[full.best_single_], y))
    assert cross_fit("para", preds, y, rows, mode="greedy", repeats=3, seed=3).to_dict() == cf.to_dict()
    assert cross_fit("para", preds, y, rows, mode="greedy", repeats=3, seed=4).to_dict() != cf.to_dict()


def test_cross_fit_heldout_scores_use_the_fold():
    ids, T, y = synthetic_problem("sst", 6, 120, seed=4)
    preds = {c: T[i].T for i, c in enumerate(ids)}
    rows = [f"s{i}" for i in range(120)]
    cf = cross_fit("sst", preds, y, rows, mode="greedy", repeats=2, seed=0)
    splits = kfold_splits(rows, 5, 2, 0)
    for f in cf.per_fold:
        held = splits[f.repeat][f.fold]
        ens = ensemble_predictions({c: preds[c][held] for c in f.weights}, f.weights)
        assert f.heldout_ensemble_score == metrics.score("sst", ens, y[held])
        assert f.heldout_single_score == metrics.score("sst", preds[f.best_single][held], y[held])


def test_cross_fit_identical_candidates_gain_nothing():
    p = col(0.875, 0.375, 0.125, 0.625, 0.75, 0.25, 0.5, 0.625, 0.5, 0.25)
    y = [1, 1, 0, 0, 1, 0, 1, 1, 0, 0]
    ids = [f"x{i}" for i in range(10)]
    sel = select(TaskInput("para", ids, np.array(y), {"a": (ids, p), "b": (ids, p.copy())}), mode="greedy", repeats=4)
    assert sel.heldout_gain_mean == 0.0 and sel.heldout_gain_ci == (0.0, 0.0)
    assert len(sel.heldout.per_fold) == 20


def test_too_few_rows_for_the_folds_skip_the_estimate():
    p = col(0.875, 0.375, 0.125, 0.625)
    ids = ["a", "b", "c", "d"]
    sel = select(TaskInput("para", ids, np.array([1, 1, 0, 0]), {"a": (ids, p)}), mode="greedy", folds=5)
    assert sel.heldout_gain_mean is None and sel.heldout_gain_ci is None
    assert any("too few for 5 folds" in n for n in sel.notes)
