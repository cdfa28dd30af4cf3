"""``ensemble run --engine ray`` on a real two-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``: a head and a worker node, one CPU each, all on 127.0.0.1), tiny models.

One cluster for the module (Ray takes seconds to start), shut down by its fixture. Every worker
runs :mod:`ray_guard`: any file operation under the driver's folder (registry, data, base) fails
and is logged, so an empty log proves the workers never read or wrote them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE
from ensemble.progress import Progress
from ensemble.scale.driver import RayOptions
from ensemble.registry.keeper import train_into
from ensemble.registry.store import Registry
from ensemble import runner
from tiny import make_tiny_base

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ray = pytest.importorskip("ray")
from ray_cluster import guarded_cluster  # noqa: E402

ENV = {"COLUMNS": None, "LINES": None, "TTY_COMPATIBLE": None, "FORCE_COLOR": None}


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    driver = tmp_path_factory.mktemp("ray-driver")        # all the driver's folders: no worker may touch them
    log = tmp_path_factory.mktemp("ray-guard") / "touched.log"
    log.write_text("")
    shutil.copytree(PACKAGE_SAMPLE, driver / "data")
    base = make_tiny_base(driver / "base")
    with guarded_cluster(driver, log) as (cluster, worker):
        yield SimpleNamespace(cluster=cluster, worker=worker, driver=driver, log=log, data=driver / "data", base=base)


def grid_file(cl, name: str, runs: str, grid: str = "") -> Path:
    p = cl.driver / f"{name}.toml"
    p.write_text(f'[defaults]\nbase = "{cl.base}"\nepochs = 1\nbatch_size = 8\nlr = 3e-3\n{grid}\n{runs}')
    return p


def invoke(*args):
    r = CliRunner().invoke(app, [str(a) for a in args], env=ENV, catch_exceptions=False)
    return r, json.loads(r.stdout[r.stdout.index("{"):]) if "{" in r.stdout else None


def by_fingerprint(reg: Registry) -> dict[str, set[str]]:
    runs: dict[str, set[str]] = {}
    for c in reg.candidates():
        runs.setdefault(c.manifest["training"]["fingerprint"], set()).add(c.manifest["training"]["run_id"])
    return runs


def test_the_guard_stops_and_logs_a_worker_that_reads_the_drivers_folder(cl):
    secret = cl.data / "ids-sst-dev.csv"

    @ray.remote(num_cpus=0)
    def peek(path):
        return Path(path).read_bytes()

    with pytest.raises(ray.exceptions.RayTaskError, match="ray_guard: a worker touched the driver's folder"):
        ray.get(peek.remote(str(secret)))
    assert f"open {secret}" in cl.log.read_text()
    cl.log.write_text("")


def test_a_grid_lands_complete_verifies_skips_on_rerun_and_matches_local_training(cl, tmp_path):
    grid = grid_file(cl, "four", '[[runs]]\narchitecture = "multi"\n[[runs]]\narchitecture = "cerberus"\ntask_layers = 1\n',
                     "[grid]\nseed = [0, 1]\n")
    reg = cl.driver / "reg"
    args = ("run", "--grid", grid, "--engine", "ray", "--address", cl.cluster.address, "--data", cl.data,
            "--registry", reg, "--out", tmp_path / "out", "--submissions", tmp_path / "subs", "--json")
    r, res = invoke(*args)
    assert r.exit_code == 0, r.output
    summary = res["grid"]
    names = ["multi-sst+para+sts-s0", "cerberus-1-sst+para+sts-s0", "multi-sst+para+sts-s1", "cerberus-1-sst+para+sts-s1"]
    assert sorted(summary["done"]) == sorted(names) and summary["failed"] == [] and summary["retried"] == []
    assert {row["node"].split()[0] for row in summary["runs"]} == {"127.0.0.1"}
    assert len({row["node"] for row in summary["runs"]}) == 2            # both nodes trained
    assert Path(res["submission"]).is_file()
    assert cl.log.read_text() == ""                                     # no worker touched the driver's folders
    r, _ = invoke("verify", "--registry", reg)
    assert r.exit_code == 0, r.output
    registry = Registry(reg)
    assert all(len(ids) == 1 for ids in by_fingerprint(registry).values()) and len(by_fingerprint(registry)) == 4
    assert all(c.manifest["training"]["run_complete"] for c in registry.candidates())
    records = sorted(p.parent.name for p in (reg / "runs").glob("*/record.json"))
    assert records == sorted({c.manifest["training"]["run_id"] for c in registry.candidates()})   # each run's record shipped back
    # rerun: every run skipped, nothing trained, the registry unchanged
    before = sorted(p.name for p in (reg / "candidates").iterdir())
    r, res2 = invoke(*args)
    assert r.exit_code == 0, r.output
    assert res2["trained"] == [] and sorted(res2["skipped"]) == sorted(names)
    assert sorted(p.name for p in (reg / "candidates").iterdir()) == before
    # the same configuration and seed trained here, on the CPU: the same weights and predictions
    cfg = runner.grid_configs(cl.data, None, None, grid)[0][0]
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = train_into(Registry(tmp_path / "local"), cfg, cl.data, device="cpu")
    finally:
        torch.set_num_threads(old)
    here = Registry(tmp_path / "local").get(local.candidates[0])
    mine = here.manifest
    fp = mine["training"]["fingerprint"]
    (there,) = [c for c in registry.candidates() if c.manifest["training"]["fingerprint"] == fp]
    theirs = there.manifest
    weights = "model/model.safetensors"   # its header's metadata order varies from process to process: tensors compared
    assert ({k: v["sha256"] for k, v in mine["files"].items() if k != weights}
            == {k: v["sha256"] for k, v in theirs["files"].items() if k != weights})
    a, b = load_file(here.path / weights), load_file(there.path / weights)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert mine["metrics"] == theirs["metrics"] and mine["predictions"] == theirs["predictions"]


def test_a_run_that_raises_is_reported_and_the_others_land(cl, tmp_path):
    broken = cl.driver / "broken-base"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    grid = grid_file(cl, "raises", f'[[runs]]\nseed = 5\n[[runs]]\nseed = 6\n[[runs]]\nseed = 7\nbase = "{broken}"\n')
    reg = cl.driver / "reg-raises"
    r, res = invoke("run", "--grid", grid, "--engine", "ray", "--data", cl.data, "--registry", reg,
                    "--out", tmp_path / "out", "--submissions", tmp_path / "subs", "--json")
    assert r.exit_code == 1
    (failed,) = res["failed"]
    assert failed["name"] == "multi-sst+para+sts-s7" and "\n" not in failed["error"] and failed["error"]
    assert sorted(res["grid"]["done"]) == ["multi-sst+para+sts-s5", "multi-sst+para+sts-s6"]
    assert res["selection"] is None
    assert "1 run failed: multi-sst+para+sts-s7 (" in r.stderr and "Run the same command again" in r.stderr
    assert len(by_fingerprint(Registry(reg))) == 2 and Registry(reg).verify()[1] == []
    assert cl.log.read_text() == ""


def test_a_node_removed_mid_run_has_its_run_retried_elsewhere_and_registered_once(cl):
    grid = grid_file(cl, "death", "[[runs]]\nseed = 8\nepochs = 12\n[[runs]]\nseed = 9\nepochs = 12\n")
    configs, _, data_dir, _ = runner.grid_configs(cl.data, None, None, grid)
    reg = Registry(cl.driver / "reg-death")
    killed: list[str] = []

    class KillOnFirstEpoch(Progress):
        def event(self, ev):
            row, entry = ev.get("row"), ev.get("entry")
            if ev["kind"] == "grid" and ev["change"] == "epoch" and entry["epoch"] == 1 \
                    and row["node_id"] == cl.worker.node_id and not killed:
                cl.cluster.remove_node(cl.worker, allow_graceful=False)
                killed.append(row["name"])

    summary = runner.train_ray(reg, configs, data_dir, RayOptions(max_retries=2), KillOnFirstEpoch())
    assert len(killed) == 1
    assert summary["retried"] == killed and summary["failed"] == []
    assert sorted(summary["done"]) == ["multi-sst+para+sts-s8", "multi-sst+para+sts-s9"]   # mid-run: epoch 1 of 12
    (row,) = [r for r in summary["runs"] if r["name"] == killed[0]]
    assert row["attempts"] == 2 and row["node_id"] != cl.worker.node_id
    runs = by_fingerprint(reg)
    assert len(runs) == 2 and all(len(ids) == 1 for ids in runs.values())   # one candidate set per run
    assert reg.verify()[1] == []
    assert cl.log.read_text() == ""
