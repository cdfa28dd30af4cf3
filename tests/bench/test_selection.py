"""bench select: the fast selection equals the plain re-averaging reference, and the bench runs."""
from __future__ import annotations

import json

import pytest

from ensemble.bench.selection import bench_select, reference_select, synthetic_problem
from ensemble.selection import EnsembleSelector
from ensemble.selection.pool import Pool


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
@pytest.mark.parametrize("mode", ["greedy", "caruana"])
def test_fast_selection_equals_plain_reaveraging(task, mode):
    ids, T, y = synthetic_problem(task, 25, 400, seed=1)
    pool = Pool(task, ids, T, y)
    est = EnsembleSelector(task, mode, None, 12).fit_pool(pool)
    members, weights = reference_select(task, {c: T[i].T for i, c in enumerate(ids)}, y, mode, None, 12)
    assert est.members_ == members and est.weights_ == weights
    assert len(members) > 1


def test_bench_select_runs_and_compares_with_plain():
    out = bench_select(candidates=12, rows=200, mode="both", steps=6)
    assert set(out["results"]) == {f"{t}/{m}" for t in ("sst", "para", "sts") for m in ("greedy", "caruana")}
    assert all(r["identical"] is True and r["plain_on_prefix"] is None for r in out["results"].values())
    assert isinstance(out["target_met"], bool)
    json.dumps(out)
    tight = bench_select(candidates=12, rows=200, task="para", mode="caruana", steps=6, plain_budget_s=1e-9)
    r = tight["results"]["para/caruana"]
    assert r["plain_s"] is None and r["plain_on_prefix"]["candidates"] < 12 and r["identical"] is True
