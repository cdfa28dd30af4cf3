"""The Caruana working set of open rows changes no score."""
from __future__ import annotations

import numpy as np
import pytest

from ensemble import metrics
from ensemble.bench.selection import synthetic_problem
from ensemble.selection.pool import Pool


@pytest.mark.parametrize("task", ["sst", "para"])
def test_working_set_of_open_rows_is_exact(task):
    """Confident predictions lock most rows; the Caruana working set must not change any score."""
    ids, T, y = synthetic_problem(task, 15, 400, seed=8)
    pool = Pool(task, ids, T, y)
    st = pool.empty_state()
    rng = np.random.default_rng(0)
    members, engaged = [], False
    subset = np.array([1, 4, 9, 14])
    for _ in range(30):
        j = int(rng.integers(0, 15))
        pool.add(st, j)
        members.append(j)
        fast = pool.scores_with(st, np.arange(15))
        engaged |= st.work is not None
        for c in range(15):
            avg = (T[members].sum(axis=0) + T[c]) / (len(members) + 1)
            assert fast[c] == metrics.score(task, avg.T, y)
        assert np.array_equal(pool.scores_with(st, subset), fast[subset])
    assert engaged
