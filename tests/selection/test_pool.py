"""The scorer: vectorised and single trial scores equal metrics.score of the plain average."""
from __future__ import annotations

import numpy as np
import pytest

from ensemble import metrics
from ensemble.selection.pool import Pool


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
    pool = Pool(task, [f"c{i:02d}" for i in range(m)], T, y)
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


def test_from_aligned_lays_sst_rows_out_in_label_order():
    preds = {"b": np.eye(5)[[3, 0, 1]], "a": np.eye(5)[[3, 1, 1]]}
    pool = Pool.from_aligned("sst", preds, [3, 0, 1])
    assert pool.ids == ["a", "b"]
    assert pool.y.tolist() == [0, 1, 3] and pool.rows.tolist() == [1, 2, 0]
    assert pool.own_scores().tolist() == [2 / 3, 1.0]
    assert pool.ranking() == [1, 0]
