"""kill -9 a real ``ensemble train`` (tiny random BERT, CPU, fp32) in the middle of an epoch, or in
the swap of its checkpoint, then ``train --resume``: the candidates' weights and prediction files
are byte for byte those of an uninterrupted run, the run's record is complete and its checkpoint
gone."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.store import Registry
from ensemble.registry.runs import read_runs
from fixtures_torch import tiny_base  # noqa: F401
from kill_helpers import housekeeping, killed_at, run_at

pytestmark = pytest.mark.slow   # real `ensemble train` processes, killed and resumed

BATCHES_PER_EPOCH = 18   # 48 training rows per task, batches of 8, three tasks


def train_args(base: Path, registry: Path, *extra: str) -> list[str]:
    return ["train", "--data", SAMPLE, "--base", base, "--epochs", "3", "--batch-size", "8", "--lr", "1e-3",
            "--seed", "2", "--device", "cpu", "--precision", "fp32", "--schedule", "linear", "--warmup", "0.1",
            "--registry", registry, *extra]


def by_epoch(root: Path) -> dict[int, dict[str, bytes]]:
    """Each candidate's weights and prediction files, keyed by its epoch."""
    out = {}
    for c in Registry(root).candidates():
        files = {"model.safetensors": (c.model_dir / "model.safetensors").read_bytes()}
        files.update({p.name: p.read_bytes() for p in sorted((c.path / "predictions").glob("*.csv"))})
        out[c.manifest["training"]["epoch"]] = files
    return out


@pytest.fixture(scope="module")
def uninterrupted(tiny_base, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plain") / "reg"
    r = run_at(None, *train_args(tiny_base, root))
    assert r.returncode == 0, r.stderr
    return root


@pytest.mark.parametrize("point", [f"train.step#{BATCHES_PER_EPOCH + 9}",   # epoch 2, its 9th batch
                                   "train.checkpoint.swap#2",                # epoch 2's checkpoint written aside
                                   "train.checkpoint.swap.in#2"])            # between the renames of epoch 2's
def test_killed_then_resumed_equals_uninterrupted(tiny_base, uninterrupted, tmp_path, point):
    root = tmp_path / "reg"
    killed = killed_at(point, *train_args(tiny_base, root))
    assert "epoch 1/3" in killed.stderr                                  # epoch 1's line came out before the kill
    (record,) = read_runs(root)
    assert record["status"] == "running" and [e["epoch"] for e in record["epochs"]] == [1]
    if "checkpoint" in point and read_runs(uninterrupted)[0]["epochs"][1]["candidate"]:
        # epoch 2 had registered its candidate when the kill came: an orphan that the resume removes
        assert 2 in {c.manifest["training"]["epoch"] for c in Registry(root).candidates()}
    r = run_at(None, *train_args(tiny_base, root, "--resume"))
    assert r.returncode == 0, r.stderr
    assert f"resuming run {record['run_id']} after epoch 1 of 3" in " ".join(r.stderr.split())
    assert by_epoch(root) == by_epoch(uninterrupted)                      # weights and predictions, bit for bit
    assert len(Registry(root).candidates()) == len(Registry(uninterrupted).candidates())   # no orphan of the kill
    (done,) = read_runs(root)
    plain = read_runs(uninterrupted)[0]
    assert done["run_id"] == record["run_id"] and done["status"] == "complete"
    assert [e["epoch"] for e in done["epochs"]] == [1, 2, 3]
    for a, b in zip(done["epochs"], plain["epochs"]):
        assert (a["train_loss"], a["dev"], a["lr"], a["best_for"]) == (b["train_loss"], b["dev"], b["lr"], b["best_for"])
    assert sorted(done["candidates"]) == sorted(c.id for c in Registry(root).candidates())
    assert not list((root / "runs" / record["run_id"]).glob("checkpoint*"))
    assert Registry(root).verify()[1] == [] and housekeeping(root) == []


def test_a_kill_in_the_first_epoch_resumes_from_the_start(tiny_base, uninterrupted, tmp_path):
    root = tmp_path / "reg"
    killed_at("train.step#5", *train_args(tiny_base, root))
    assert Registry(root).exists and Registry(root).candidates() == []   # `list` opens it: an empty registry
    r = run_at(None, *train_args(tiny_base, root, "--resume"))
    assert r.returncode == 0, r.stderr
    assert "completed no epoch; starting it again" in " ".join(r.stderr.split())
    assert by_epoch(root) == by_epoch(uninterrupted)


def test_weights_files_are_the_same_bytes_for_the_same_tensors(uninterrupted, tmp_path):
    """The comparison above is fair: a weights file is the same bytes exactly when its tensors are."""
    c = Registry(uninterrupted).candidates()[0]
    w = c.model_dir / "model.safetensors"
    header = json.loads(w.read_bytes()[8:8 + int.from_bytes(w.read_bytes()[:8], "little")])
    assert header["__metadata__"] == {"format": "pt"}
    copy = shutil.copy(w, tmp_path / "w.safetensors")
    assert load_file(copy).keys() == load_file(w).keys()
