"""select: deterministic, JSON-safe, free of the candidates' order, parameter totals."""
from __future__ import annotations

import json

from ensemble.bench.selection import synthetic_problem
from ensemble.selection import TaskInput, select


def test_deterministic_json_safe_and_candidate_order_free():
    ids, T, y = synthetic_problem("sts", 10, 80, seed=5)
    rows = [f"t{i}" for i in range(80)]
    cands = {c: (rows, T[i].T) for i, c in enumerate(ids)}
    params = {c: 110_000_000 for c in ids}
    a = select(TaskInput("sts", rows, y, cands, params), mode="caruana", steps=10, repeats=3, seed=1)
    b = select(TaskInput("sts", rows, y, dict(reversed(list(cands.items()))), params),
               mode="caruana", steps=10, repeats=3, seed=1)
    da = a.to_dict()
    assert da == b.to_dict()
    assert json.loads(json.dumps(da)) == da
    assert da["best_single"] == {"id": a.best_single[0], "score": a.best_single[1]}
    assert a.params_total == 110_000_000 * len(a.members)
    assert set(da) >= {"task", "mode", "members", "weights", "trajectory", "best_single", "ensemble_dev_score",
                       "in_sample_gain", "heldout_gain_mean", "heldout_gain_ci", "heldout", "rejected", "notes"}
