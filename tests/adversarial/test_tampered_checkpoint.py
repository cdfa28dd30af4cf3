"""A resume checkpoint read unchecked once made ``train --resume`` delete the run's own candidate
and rewrite another run's while ``verify`` said 0 problems. Now the checkpoint's epochs must be
its run's record's and each candidate it names must be of that run: ``verify`` names a checkpoint
that is not, and ``train --resume`` refuses it before changing anything."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ensemble.cli.app import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.register import register_predictions
from ensemble.registry.runs import read_runs
from ensemble.registry.store import Registry
from fixtures_torch import tiny_base  # noqa: F401
from kill_helpers import killed_at, run_at, stored
from registry_files import make_pred_dir

pytestmark = pytest.mark.slow   # real `ensemble train` processes

BATCHES_PER_EPOCH = 18


def train_args(base, registry, *extra):
    return ["train", "--data", SAMPLE, "--base", base, "--epochs", "3", "--batch-size", "8", "--lr", "1e-3",
            "--seed", "2", "--device", "cpu", "--precision", "fp32", "--registry", registry, *extra]


def test_a_checkpoint_naming_another_runs_candidate_is_refused(tiny_base, tmp_path):
    root = tmp_path / "reg"
    killed_at(f"train.step#{BATCHES_PER_EPOCH + 9}", *train_args(tiny_base, root))   # epoch 1 done
    (record,) = read_runs(root)
    (own,) = Registry(root).candidates()
    other = register_predictions(Registry(root), make_pred_dir(SAMPLE, tmp_path / "p"), "other", SAMPLE)
    state = root / "runs" / record["run_id"] / "checkpoint" / "state.json"
    doc = json.loads(state.read_text())
    doc["loop"]["epochs"][0]["candidate"] = other.id          # tampered: another run's candidate, best for all
    state.write_text(json.dumps(doc))
    before = stored(root)

    r = CliRunner().invoke(app, ["verify", "--registry", str(root)])
    said = " ".join(r.output.split())
    assert r.exit_code == 1, r.output
    assert f"names candidate {other.id} as best for sst" in said and "not of run " + record["run_id"] in said

    resumed = run_at(None, *train_args(tiny_base, root, "--resume"))
    err = " ".join(resumed.stderr.split())
    assert resumed.returncode == 1, err
    assert f"refusing to resume run {record['run_id']} from a checkpoint that is not its own" in err
    assert stored(root) == before                                # own candidate kept, the other's untouched
    assert {c.id for c in Registry(root).candidates()} == {own.id, other.id}
