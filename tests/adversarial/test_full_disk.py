"""A full disk (issue 13): each writing command, run on a small tmpfs filled to a few KiB, exits 1
with one message naming the path and saying the disk is full; every file the registry stored
before is byte-identical, `verify` passes once there is room, and no stage or temp file is left.
Skipped, with the reason, where no tmpfs can be mounted in a private namespace."""
from __future__ import annotations

import shutil

import pytest

from disk_helpers import full_disk_skip, on_full_disk
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.register import register_model, register_predictions
from ensemble.registry.store import Registry
from ensemble.workflow import predict, select
from fixtures_torch import saved_model_dir, tiny_base  # noqa: F401  (fixtures)
from registry_files import make_pred_dir

pytestmark = pytest.mark.skipif(full_disk_skip() is not None, reason=str(full_disk_skip()))
DISK_KB = 2048
S = str(SAMPLE)


@pytest.fixture(scope="module")
def stocked(tmp_path_factory, saved_model_dir):
    """A registry with an import and a model candidate, an ensemble of the import, its leaderboard
    folder, and an import folder to register."""
    root = tmp_path_factory.mktemp("stocked")
    reg = Registry(root / "reg")
    ext = register_predictions(reg, make_pred_dir(SAMPLE, root / "p0", seed=0), "ext", SAMPLE)
    model = register_model(reg, saved_model_dir, SAMPLE, device="cpu")
    make_pred_dir(SAMPLE, root / "p1", seed=1)
    return {"root": root, "reg": root / "reg", "model": model.id, "ext": ext.id}


def refused_cleanly(rec: dict, path_part: str) -> dict:
    run = rec["runs"][-1]
    assert run["returncode"] == 1, run
    assert "Traceback" not in run["stderr"] + run["stdout"] and "unexpectedly" not in run["stderr"], run["stderr"]
    assert "the disk is full" in run["stderr"] and path_part in run["stderr"], run["stderr"]
    assert rec["after"] == rec["before"], "a stored file changed"
    assert rec["verify"]["returncode"] == 0, rec["verify"]
    assert rec["left"] == []
    return run


@pytest.mark.parametrize("free_kb", [4, 16])
def test_register_predictions_on_a_full_disk(stocked, tmp_path, free_kb):
    rec = on_full_disk(tmp_path, DISK_KB, free_kb, {"reg": stocked["reg"], "p1": stocked["root"] / "p1"},
                       [["register", "--predictions", "{disk}/p1", "--name", "y", "--data", S, "--registry", "{disk}/reg"]])
    run = refused_cleanly(rec, "/disk/reg: the disk is full")
    assert "nothing was added to or changed in the registry" in run["stderr"]


def test_register_refresh_on_a_full_disk(stocked, tmp_path):
    rec = on_full_disk(tmp_path, DISK_KB, 4, {"reg": stocked["reg"]},
                       [["register", "--refresh", "--force", "-c", stocked["model"], "--data", S,
                         "--registry", "{disk}/reg", "--device", "cpu"]])
    refused_cleanly(rec, "/disk/reg: the disk is full")


def test_register_a_model_on_a_full_disk(stocked, saved_model_dir, tmp_path):
    rec = on_full_disk(tmp_path, DISK_KB, 40, {"reg": stocked["reg"]},
                       [["register", str(saved_model_dir), "--again", "--data", S, "--registry", "{disk}/reg",
                         "--device", "cpu"]])
    refused_cleanly(rec, "/disk/reg: the disk is full")


def test_predict_and_submit_on_a_full_disk(stocked, tmp_path):
    """predict would replace a complete leaderboard folder on the full disk: the old set stays whole
    (nothing else left in the folder); submit's zip cannot be written: no zip, no temp file."""
    reg = tmp_path / "work-reg"
    shutil.copytree(stocked["reg"], reg)
    select(Registry(reg), SAMPLE, mode="greedy", name="e", repeats=0)
    predict(Registry(reg), SAMPLE, tmp_path / "preds", "e")
    old = {p.name: p.read_bytes() for p in (tmp_path / "preds").iterdir()}
    rec = on_full_disk(tmp_path, DISK_KB, 4, {"reg": reg, "preds": tmp_path / "preds"},
                       [["predict", "--data", S, "--registry", "{disk}/reg", "--out", "{disk}/preds"],
                        ["submit", "--predictions", "{disk}/preds", "--data", S, "--registry", "{disk}/reg",
                         "--out", "{disk}/zips"]])
    for run in rec["runs"]:
        assert run["returncode"] == 1, run
        assert "the disk is full" in run["stderr"] or "(No space left on device)" in run["stderr"], run["stderr"]
        assert "Traceback" not in run["stderr"] and "unexpectedly" not in run["stderr"], run["stderr"]
    assert rec["after"] == rec["before"] and rec["verify"]["returncode"] == 0 and rec["left"] == []
    preds = {k: v for k, v in rec["disk_after"].items() if k.startswith("preds/")}
    assert preds == {k: v for k, v in rec["disk_before"].items() if k.startswith("preds/")}
    assert sorted(k.split("/", 1)[1] for k in preds) == sorted(old)   # the complete old set, and nothing else
    assert not any(k.startswith("zips/") and not k.endswith("/") for k in rec["disk_after"])


def test_train_on_a_full_disk(stocked, tiny_base, tmp_path):
    rec = on_full_disk(tmp_path, DISK_KB, 40, {"reg": stocked["reg"]},
                       [["train", "--data", S, "--base", str(tiny_base), "--epochs", "1", "--tasks", "sst",
                         "--registry", "{disk}/reg", "--device", "cpu"]])
    run = rec["runs"][-1]
    assert run["returncode"] == 1, run
    assert "Traceback" not in run["stderr"] and "unexpectedly" not in run["stderr"], run["stderr"]
    assert "the disk is full" in run["stderr"], run["stderr"]
    assert {k: v for k, v in rec["after"].items() if k in rec["before"]} == rec["before"]   # nothing stored lost
    assert rec["verify"]["returncode"] == 0 and rec["left"] == []
