"""``ensemble bench grid`` on this machine at its smallest: the local engine against one Ray worker
(a local Ray instance on 127.0.0.1, started and shut down by the bench itself)."""
from __future__ import annotations

import pytest

from ensemble.data import PACKAGE_SAMPLE

ray = pytest.importorskip("ray")


def test_bench_grid_reports_every_system_with_one_set_of_keys(tmp_path, monkeypatch):
    from ensemble.bench.grid import bench_grid

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))   # the bench's folder under this test's
    result = bench_grid(PACKAGE_SAMPLE, runs=2, epochs=1, workers=(1,), hidden=32)
    local, one = result["rows"]
    assert list(local) == list(one)
    assert local["system"] == "local engine" and one["system"] == "Ray, 1 worker" and one["workers"] == 1
    assert local["speed_up"] == 1.0 and one["speed_up"] == local["wall_seconds"] / one["wall_seconds"]
    assert one["runs_per_hour"] == 2 / one["wall_seconds"] * 3600
    assert one["failed"] == [] and one["same_predictions_as_local"] is True and local["same_predictions_as_local"]
    assert one["overhead_per_run_seconds"] == pytest.approx(one["wall_seconds"] / 2 - one["training_seconds_per_run"])   # (1 x wall - sum) / 2
    assert result["targets"] == {}                       # the 1.6x target needs 2 workers
    assert result["grid"]["configs"] == ["multi-sst+para+sts-s0", "cerberus-1-sst+para+sts-s1"]
    assert not ray.is_initialized() and list(tmp_path.iterdir()) == []
