"""``ensemble search --engine ray`` on a real two-node Ray cluster on this machine (a head and a
worker node, one CPU each, all on 127.0.0.1), tiny models: trials in parallel, the worker node
removed mid-trial, its trial retried on the head and landed once; the driver's folders never
touched by a worker (:mod:`ray_guard`)."""
from __future__ import annotations

import shutil

import pytest

from ensemble.data import PACKAGE_SAMPLE
from ensemble.registry.runs import read_runs
from ensemble.registry.store import Registry
from ensemble.scale.driver import RayOptions
from ensemble.search.space import load_space
from ensemble.search.study import check_searches, open_study
from ensemble.search.trials import SearchOptions
from tiny import make_tiny_base

ray = pytest.importorskip("ray")
pytest.importorskip("optuna")
from ray_cluster import guarded_cluster  # noqa: E402

from ensemble.search.distributed import search_ray  # noqa: E402



def test_a_search_on_two_nodes_survives_a_node_removed_mid_trial(tmp_path_factory):
    driver = tmp_path_factory.mktemp("ray-search-driver")
    log = tmp_path_factory.mktemp("ray-search-guard") / "touched.log"
    log.write_text("")
    shutil.copytree(PACKAGE_SAMPLE, driver / "data")
    base = make_tiny_base(driver / "base")
    space_file = driver / "tiny.toml"
    space_file.write_text(f'[defaults]\nbase = "{base}"\nepochs = 6\nbatch_size = 8\n'
                          '[space]\nlr = { uniform = [1e-3, 9e-3] }\n')
    with guarded_cluster(driver, log) as (cluster, worker):
        root = driver / "reg"
        killed: list[int] = []
        rows: dict[int, dict] = {}

        def on_event(kind, row):
            rows[row["number"]] = dict(row)
            if kind == "epoch" and row["epoch"] == 1 and row.get("node_id") == worker.node_id and not killed:
                cluster.remove_node(worker, allow_graceful=False)
                killed.append(row["number"])

        opts = SearchOptions(trials=3, sampler="random", seed=0, pruner="none")
        result = search_ray(Registry(root), load_space(space_file), driver / "data", opts,
                            RayOptions(max_retries=2), parallel=2, on_event=on_event)
    assert len(killed) == 1, rows
    assert rows[killed[0]]["attempts"] == 2 and rows[killed[0]]["node_id"] != worker.node_id
    study = open_study(root, "tiny", None, create=False)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert result["states"]["complete"] == 3
    runs = read_runs(root)
    assert sorted(r["search"]["trial"] for r in runs) == [0, 1, 2]       # one run per trial, landed once
    assert all(r["status"] == "complete" and len(r["epochs"]) == 6 for r in runs)
    reg = Registry(root)
    assert sorted(c.id for c in reg.candidates()) == sorted(c for r in runs for c in r["candidates"])
    assert reg.verify()[1] == [] and check_searches(root) == []
    assert log.read_text() == ""
