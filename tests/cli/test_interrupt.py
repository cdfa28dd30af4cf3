"""Ctrl-C: one line saying what was stopped and how to go on, exit 130; rerunning an interrupted
``train`` continues its run instead of training a duplicate."""
from __future__ import annotations

from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry import keeper
from ensemble.registry.store import Registry


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_train_interrupted_says_how_to_go_on_and_a_rerun_resumes(tmp_path, tiny_base_dir, monkeypatch):
    args = ("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "2", "--limit", "8", "--tasks", "sst",
            "--device", "cpu", "--registry", tmp_path / "reg")
    real = keeper.EpochKeeper.committed

    def commit_then_stop(self, run, result):
        real(self, run, result)
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(keeper.EpochKeeper, "committed", commit_then_stop)
        r = _run(*args)
    assert r.exit_code == 130
    assert ("error: interrupted: `root train` was stopped; rerun the same command to continue from the last "
            "finished epoch") in r.stderr
    (run_id,) = [p.name for p in (tmp_path / "reg" / "runs").iterdir()]
    r = _run(*args)
    assert r.exit_code == 0, r.output
    assert f"resuming run {run_id} after epoch 1 of 2 (`--again` trains a new run instead)" in r.stderr
    assert [p.name for p in (tmp_path / "reg" / "runs").iterdir()] == [run_id]   # no duplicate run
    assert {c.run_id for c in Registry(tmp_path / "reg").candidates()} == {run_id}


def test_any_command_interrupted_exits_130_with_a_line(tmp_path, monkeypatch, registry_with_imports):
    def stop(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(Registry, "scan", stop)
    r = _run("list", "--registry", registry_with_imports, "--json")
    assert r.exit_code == 130
    assert r.stderr.startswith("error: interrupted: `root list` was stopped; what was being written is removed")
    assert '"exit_code": 130' in r.stdout
