"""Pearson r from running sums: the metric's sums formula and the scorer's centred sums."""
from __future__ import annotations

import numpy as np
from scipy import stats

from ensemble import metrics
from ensemble.metrics import pearson_from_sums
from ensemble.selection.pearson import PearsonRun, PearsonSums


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


def test_running_sums_give_the_ensembles_r():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 60))
    y = X[0] + rng.standard_normal(60)
    sums = PearsonSums(X, y)
    assert np.allclose(sums.own(), [metrics.score("sts", x[:, None], y) for x in X], atol=1e-12, rtol=0)
    run = PearsonRun(60)
    members = []
    for j in (0, 3, 3):
        sums.add(run, j)
        members.append(j)
        every = sums.with_all(run, np.arange(5))
        for c in range(5):
            want = metrics.score("sts", (X[members].sum(axis=0) + X[c])[:, None], y)
            assert abs(every[c] - want) < 1e-12
            assert abs(sums.with_one(run, c) - want) < 1e-12
