"""`ensemble run`'s grid options without Ray: --dry-run, the options' checks, the missing-Ray message,
and the Ray engine's progress lines as a pipe or log gets them (the engine itself: tests/scale/test_ray.py)."""
from __future__ import annotations

import builtins
import json
import shutil
from dataclasses import replace

import pytest

from ensemble.cli.run import GridView
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.scale.grid import load_preset
from ensemble.runner import plan
from ensemble.registry.store import Registry


def test_dry_run_lists_the_runs_their_fingerprints_and_what_is_registered(tmp_path, invoke, tiny_base_dir):
    data = shutil.copytree(SAMPLE, tmp_path / "data")   # a copy: the packaged sample itself is trained longer
    grid = tmp_path / "g.toml"
    grid.write_text(f'[defaults]\nbase = "{tiny_base_dir}"\nepochs = 1\n[grid]\nseed = [0, 1]\n')
    reg = tmp_path / "reg"
    r = invoke("run", "--grid", grid, "--data", data, "--registry", reg, "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [x["name"] for x in doc["runs"]] == ["multi-sst+para+sts-s0", "multi-sst+para+sts-s1"]
    assert [x["status"] for x in doc["runs"]] == ["to train", "to train"] and doc["grid"] == "g"
    r = invoke("train", "--data", data, "--base", tiny_base_dir, "--epochs", "1", "--seed", "1", "--registry", reg,
               "--json")
    assert r.exit_code == 0, r.output
    doc2 = json.loads(invoke("run", "--grid", grid, "--data", data, "--registry", reg, "--dry-run", "--json").stdout)
    assert [x["status"] for x in doc2["runs"]] == ["to train", "registered"]
    assert [x["fingerprint"] for x in doc2["runs"]] == [x["fingerprint"] for x in doc["runs"]]
    assert doc2["runs"][1]["registered"] == [c.id for c in Registry(reg).candidates()]
    r = invoke("run", "--grid", grid, "--data", data, "--registry", reg, "--dry-run")
    assert r.exit_code == 0
    assert "g: 2 runs, 1 to train" in r.stdout and doc["runs"][0]["fingerprint"] in r.stdout
    assert not (tmp_path / "predictions").exists()


def test_the_paper_preset_dry_run_has_twelve_runs(tmp_path, invoke):
    r = invoke("run", "--preset", "paper", "--data", SAMPLE, "--registry", tmp_path / "reg", "--dry-run", "--json")
    doc = json.loads(r.stdout)
    assert len(doc["runs"]) == 12 and doc["sample"] is True
    assert all(x["config"]["epochs"] == 10 and x["config"]["limit"] is None for x in doc["runs"])
    configs = [replace(c, limit=None) for c in load_preset("paper").configs]   # the sample: all of it
    assert [x["fingerprint"] for x in doc["runs"]] == [x["fingerprint"] for x in plan(Registry(tmp_path / "r"), configs, SAMPLE)]


@pytest.mark.parametrize("args,message", [
    (("--grid", "x.toml", "--preset", "quick"), "--grid and --preset: expected one of them"),
    (("--address", "127.0.0.1:6379"), "--address applies to --engine ray only; add --engine ray"),
    (("--cpus-per-run", "2"), "--cpus-per-run applies to --engine ray only"),
    (("--engine", "ray", "--cpus-per-run", "0"), "--cpus-per-run 0: expected a number > 0 (fractions allowed)"),
    (("--engine", "ray", "--gpus-per-run", "-1"), "--gpus-per-run -1: expected a number >= 0"),
    (("--engine", "ray", "--max-retries", "-1"), "--max-retries -1: expected an integer >= 0"),
])
def test_option_errors(tmp_path, invoke, args, message):
    r = invoke("run", "--data", SAMPLE, "--registry", tmp_path / "reg", *args)
    assert r.exit_code == 1 and message in r.stderr
    assert not (tmp_path / "reg").exists()


def test_a_bad_grid_file_is_one_error_line(tmp_path, invoke):
    grid = tmp_path / "bad.toml"
    grid.write_text("[defaults]\nepoch = 3\n")
    r = invoke("run", "--grid", grid, "--data", SAMPLE, "--registry", tmp_path / "reg", "--dry-run")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: {grid}: [defaults]: unknown key 'epoch'; expected a `train` option:")


def test_without_ray_the_engine_says_what_to_install(tmp_path, invoke, monkeypatch):
    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    r = invoke("run", "--data", SAMPLE, "--registry", tmp_path / "reg", "--engine", "ray")
    assert r.exit_code == 1
    assert ('--engine ray: the ray package is not installed; install it with `pip install -e ".[ray]"`'
            in " ".join(r.stderr.split()))


def test_the_ray_progress_in_a_pipe_is_one_line_per_epoch_and_per_run(capsys):
    view = GridView(quiet=False)
    row = {"name": "multi-s0", "fingerprint": "f0", "status": "queued", "node": None, "epoch": 0, "epochs": 2,
           "best_dev": {}, "attempts": 0, "error": None, "candidates": []}
    view("queued", row, None)
    row.update(status="running", node="127.0.0.1 abcd1234", attempts=1)
    view("start", row, None)
    view("epoch", row, {"epoch": 1, "dev": {"sst": 0.25, "sts": 0.5}, "seconds": 1.25, "candidate": "c1"})
    row.update(attempts=2)
    view("retry", row, None)
    row.update(status="done", best_dev={"sst": 0.25, "sts": 0.5}, candidates=["c1"])
    view("done", row, None)
    row2 = {**row, "name": "triple-s1", "fingerprint": "f1", "status": "failed", "error": "OSError: no config"}
    view("failed", row2, None)
    view.stop()
    assert capsys.readouterr().err.splitlines() == [
        "multi-s0: started on 127.0.0.1 abcd1234",
        "multi-s0: epoch 1/2 on 127.0.0.1 abcd1234  sst dev acc 0.2500  sts dev pea 0.5000  1.2s  kept c1",
        "multi-s0: started on 127.0.0.1 abcd1234 (attempt 2: its worker or node died)",
        "multi-s0: done, registered c1; best dev sst 0.2500  sts 0.5000",
        "triple-s1: failed: OSError: no config",
    ]


def test_a_grid_file_on_the_local_engine_trains_selects_and_skips_on_rerun(tmp_path, invoke, tiny_base_dir):
    data = shutil.copytree(SAMPLE, tmp_path / "data")
    grid = tmp_path / "one.toml"
    grid.write_text(f'[defaults]\nbase = "{tiny_base_dir}"\nepochs = 1\nbatch_size = 16\n[[runs]]\nseed = 4\n')
    args = ("run", "--grid", grid, "--data", data, "--registry", tmp_path / "reg", "--out", tmp_path / "out",
            "--submissions", tmp_path / "subs", "--json")
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout[r.stdout.index("{"):])
    assert [t["config"]["seed"] for t in res["trained"]] == [4] and res["grid"] is None and res["failed"] == []
    assert res["selection"]["name"] == "run-one" and len(res["written"]) == 6
    out2 = invoke(*args).stdout
    res2 = json.loads(out2[out2.index("{"):])
    assert res2["trained"] == [] and res2["skipped"] == ["multi-sst+para+sts-s4"]
