"""Two real processes on one unfinished run: the run is owned by the process training it (an
``flock`` in its folder, :func:`ensemble.registry.runs.run_lock`). A second ``train --resume`` is
refused naming the owner; a second ``ensemble run`` of the same grid waits for it and then skips the
configuration; neither ever removes a candidate the other registered. The first process is held in
place by ``ENSEMBLE_STOP_AT`` (SIGSTOP at a fault point, locks held) and continued with SIGCONT:
no sleeps."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.runs import read_runs, run_owner
from ensemble.registry.store import Registry
from fixtures_torch import tiny_base  # noqa: F401
from kill_helpers import REPO, killed_at, stored

pytestmark = pytest.mark.slow   # real `ensemble train` and `ensemble run` processes

BATCHES_PER_EPOCH = 18


def train_args(base: Path, registry: Path, *extra: str) -> list[str]:
    return ["train", "--data", SAMPLE, "--base", base, "--epochs", "3", "--batch-size", "8", "--lr", "1e-3",
            "--seed", "2", "--device", "cpu", "--precision", "fp32", "--registry", registry, *extra]


def start_stopped(point: str, *args) -> subprocess.Popen:
    """``python -m ensemble ARGS`` started and run until it stops itself at ``point``."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200",
               ENSEMBLE_STOP_AT=point)
    env.pop("ENSEMBLE_FAULT_AT", None)
    p = subprocess.Popen([sys.executable, "-m", "ensemble", *map(str, args)], env=env, cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status = os.waitpid(p.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"not stopped at {point}: {p.stderr.read()}"
    return p


def go_on(p: subprocess.Popen) -> str:
    os.kill(p.pid, signal.SIGCONT)
    err = p.stderr.read()
    assert p.wait(timeout=300) == 0, err
    return err


def plain(*args, **extra_env) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    env.pop("ENSEMBLE_FAULT_AT", None)
    env.pop("ENSEMBLE_STOP_AT", None)
    return subprocess.Popen([sys.executable, "-m", "ensemble", *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_second_resume_is_refused_naming_the_owner(tiny_base, tmp_path):
    root = tmp_path / "reg"
    killed_at(f"train.step#{BATCHES_PER_EPOCH + 9}", *train_args(tiny_base, root))   # an unfinished run
    (record,) = read_runs(root)
    owner = start_stopped("train.step#3", *train_args(tiny_base, root, "--resume"))   # resuming it, held
    try:
        assert run_owner(root, record["run_id"]) == f"process {owner.pid}"
        before = stored(root)
        second = plain(*train_args(tiny_base, root, "--resume"))
        err = " ".join(second.stderr.read().split())
        assert second.wait(timeout=300) == 1, err
        assert f"run {record['run_id']} is being trained by process {owner.pid}" in err
        assert stored(root) == before                      # the owner's candidates untouched
    finally:
        if owner.poll() is None:
            go_on(owner)
    (done,) = read_runs(root)
    assert done["status"] == "complete" and sorted(done["candidates"]) == sorted(c.id for c in Registry(root).candidates())
    assert run_owner(root, record["run_id"]) is None          # released at exit
    assert Registry(root).verify()[1] == []


def test_two_runs_of_one_grid_wait_and_keep_each_others_candidates(tiny_base, tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(f'[defaults]\nbase = "{tiny_base}"\nepochs = 2\nbatch_size = 8\nlr = 1e-3\nprecision = "fp32"\n'
                    '[[runs]]\nseed = 2\n')
    root = tmp_path / "reg"

    def args(n: int) -> list:
        return ["run", "--grid", grid, "--data", SAMPLE, "--registry", root, "--device", "cpu",
                "--out", tmp_path / f"out{n}", "--submissions", tmp_path / f"subs{n}"]

    first = start_stopped(f"train.step#{BATCHES_PER_EPOCH + 4}", *args(1))   # epoch 1 registered, epoch 2 going
    try:
        (record,) = read_runs(root)
        kept = stored(root)
        assert kept                                             # epoch 1's candidate
        second = plain(*args(2))
        said = ""
        for line in second.stderr:                              # until it says it waits (EOF today: it went on)
            said += line
            if f"waiting for process {first.pid}" in line:
                break
        assert f"waiting for process {first.pid}, which is training its run {record['run_id']}" in said, said
        assert stored(root) == kept                             # nothing of the first run removed
    finally:
        if first.poll() is None:
            go_on(first)
    rest = second.stderr.read()
    assert second.wait(timeout=300) == 0, said + rest
    assert "already in the registry" in " ".join(rest.split())
    (done,) = read_runs(root)                                   # one run, finished, all its candidates there
    assert done["run_id"] == record["run_id"] and done["status"] == "complete"
    assert sorted(done["candidates"]) == sorted(c.id for c in Registry(root).candidates())
    assert Registry(root).verify()[1] == []
