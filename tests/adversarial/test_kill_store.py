"""kill -9 at each named write point of predict, submit, and the registry's add, update, remove,
update_manifest and ensemble save (ensemble.files.fault_point, in a subprocess): afterwards the
registry verifies clean with nothing it stored lost, its .staging/.trash and temp files are gone
once it is opened, and a leaderboard folder is the old complete set, the new complete set, or
refused by `validate` and `submit` (even --force)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ensemble import workflow
from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from ensemble.leaderboard.submission import checked_files, ensemble_record, list_submissions
from ensemble.leaderboard.validate import OUTPUT_SPLITS, STAMP_NAME, check_folder, check_stamp
from kill_helpers import housekeeping, killed_at, run_at, stored
from registry_files import make_pred_dir

SIX = sorted(f"{t}-{s}-output.csv" for t in ("sst", "para", "sts") for s in OUTPUT_SPLITS)
STEPS = 8   # predict's renames: the writing stamp, the six files, the final stamp


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A registry of three imports over the sample with ensembles A and B, and A's and B's folders."""
    root = tmp_path_factory.mktemp("kill")
    reg = Registry(root / "reg")
    for i in range(3):
        register_predictions(reg, make_pred_dir(SAMPLE, root / f"p{i}", seed=i), f"ext{i}", SAMPLE)
    workflow.select(reg, SAMPLE, mode="greedy", name="A", repeats=0)
    workflow.select(reg, SAMPLE, mode="caruana", max_size=1, name="B", repeats=0)
    for name in ("A", "B"):
        workflow.predict(reg, SAMPLE, root / f"ref-{name}", name)
    assert _six(root / "ref-A") != _six(root / "ref-B")
    return root


@pytest.fixture
def work(base, tmp_path) -> Path:
    """A fresh copy of the base: registry ``reg``, ``out`` holding A's complete folder."""
    shutil.copytree(base, tmp_path / "w", symlinks=True)
    shutil.copytree(tmp_path / "w" / "ref-A", tmp_path / "w" / "out")
    return tmp_path / "w"


def _six(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in SIX if (folder / n).exists()}


def _assert_registry_clean(root: Path, before: dict[str, bytes], changed: tuple[str, ...] = ()) -> None:
    """Opened again: verify finds nothing, nothing is left in .staging/.trash, and every stored
    file outside the candidates in ``changed`` is byte for byte as it was."""
    reg = Registry(root)
    assert reg.verify()[1] == [] and housekeeping(root) == []
    after = stored(root)
    keep = {k: v for k, v in before.items() if not any(k.startswith(f"candidates/{c}/") for c in changed)}
    assert {k: after.get(k) for k in keep} == keep


def _leaderboard_state(w: Path) -> str:
    """"A" or "B" when the folder is that ensemble's complete set (byte for byte), else "refused"
    after checking that validate exits 1 and submit refuses even with --force."""
    out = w / "out"
    problems, found = check_folder(out, SAMPLE, None, OUTPUT_SPLITS)
    check = check_stamp(out, found)
    if not problems and not check.mismatches:
        name = check.stamp["ensemble"]
        assert _six(out) == _six(w / f"ref-{name}")
        return name
    r = CliRunner().invoke(app, ["validate", str(out), "--data", str(SAMPLE)])
    assert r.exit_code == 1 and "run `ensemble predict --out" in " ".join(r.output.split())
    with pytest.raises(EnsembleError, match="refusing to build a submission"):
        ensemble_record(out, checked_files(out, SAMPLE), False, force=True)
    return "refused"


# -- predict ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(1, STEPS + 1))
def test_predict_killed_at_each_rename(work, n):
    before = stored(work / "reg")
    killed_at(f"leaderboard.swap#{n}", "predict", "--data", SAMPLE, "--registry", work / "reg", "--out",
              work / "out", "--ensemble", "B")
    assert _leaderboard_state(work) == ("A" if n == 1 else "refused")
    _assert_registry_clean(work / "reg", before)
    r = run_at(None, "predict", "--data", SAMPLE, "--registry", work / "reg", "--out", work / "out", "--ensemble", "B")
    assert r.returncode == 0, r.stderr
    assert _leaderboard_state(work) == "B"
    assert sorted(p.name for p in (work / "out").iterdir()) == sorted([*SIX, STAMP_NAME])   # leftovers gone


def test_predict_has_exactly_that_many_renames(work):
    r = run_at(f"leaderboard.swap#{STEPS + 1}", "predict", "--data", SAMPLE, "--registry", work / "reg",
               "--out", work / "out", "--ensemble", "B")
    assert r.returncode == 0, r.stderr
    assert _leaderboard_state(work) == "B"


# -- submit ----------------------------------------------------------------------------------------
def test_submit_killed_while_publishing(work):
    subs = work / "subs"
    args = ("submit", "--predictions", work / "out", "--out", subs, "--data", SAMPLE, "--registry", work / "reg")
    assert run_at(None, *args).returncode == 0
    first = {p.name: p.read_bytes() for p in subs.iterdir()}
    killed_at("submission.publish", *args)
    assert {p.name: p.read_bytes() for p in subs.iterdir() if p.name in first} == first     # nothing lost
    assert run_at(None, *args).returncode == 0
    names = sorted(p.name for p in subs.iterdir())
    assert len(names) == 2 and all(n.endswith(".zip") and not n.startswith(".") for n in names)  # temp file gone
    assert [row["damaged"] for row in list_submissions(subs)] == [None, None]


# -- the registry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["atomic-write#1", "atomic-write#7", "registry.add.rename"])
def test_register_killed(work, point):
    root = work / "reg"
    before = stored(root)
    killed_at(point, "register", "--predictions", work / "p0", "--name", "again", "--data", SAMPLE,
              "--registry", root, "--again")
    assert any((root / ".staging").iterdir())           # the dead writer's stage is still there...
    _assert_registry_clean(root, before)                # ...until the registry is opened
    assert stored(root) == before


UPDATE = """
import sys
from pathlib import Path
from ensemble.predfile import read_predictions, write_predictions
from ensemble.registry.store import Registry
def build(stage, manifest):
    p = stage / "predictions" / "sts-dev.csv"
    ids, values = read_predictions(p, "sts")
    p.unlink()
    write_predictions(p, "sts", ids, values + 1.0)
    manifest["note"] = "shifted"
    return manifest
Registry(sys.argv[1]).update(sys.argv[2], build)
"""


@pytest.mark.parametrize("point", ["atomic-write#1", "atomic-write#2", "registry.swap", "registry.swap.in"])
def test_update_killed(work, point):
    root = work / "reg"
    cid = Registry(root).candidates()[0].id
    before = stored(root)
    killed_at(point, root, cid, code=UPDATE)
    _assert_registry_clean(root, before)
    assert stored(root) == before                        # the old candidate, whole (put back after a swap)
    r = run_at(None, root, cid, code=UPDATE)
    assert r.returncode == 0, r.stderr
    assert Registry(root).get(cid).manifest["note"] == "shifted"
    _assert_registry_clean(root, before, changed=(cid,))


@pytest.mark.parametrize("point", ["registry.remove", "registry.remove.trash"])
def test_remove_killed(work, point):
    root = work / "reg"
    cid = Registry(root).candidates()[0].id
    before = stored(root)
    killed_at(point, "remove", cid, "--registry", root, "--yes")
    _assert_registry_clean(root, before, changed=(cid,))
    gone = not (root / "candidates" / cid).exists()
    assert gone == (point == "registry.remove.trash")       # before its rename nothing happened
    if not gone:
        assert stored(root) == before


UPDATE_MANIFEST = """
import sys
from ensemble.registry.store import Registry
Registry(sys.argv[1]).update_manifest(sys.argv[2], lambda m: m.update(note="edited"))
"""


def test_update_manifest_killed_at_its_replace(work):
    root = work / "reg"
    cid = Registry(root).candidates()[0].id
    before = stored(root)
    killed_at("atomic-write", root, cid, code=UPDATE_MANIFEST)
    assert [p.name for p in (root / "candidates" / cid).iterdir() if p.name.endswith(".tmp")]   # left by the kill
    _assert_registry_clean(root, before)
    assert stored(root) == before


@pytest.mark.parametrize("point", ["registry.ensemble", "atomic-write"])
def test_select_killed_while_saving(work, point):
    root = work / "reg"
    before = stored(root)
    killed_at(point, "select", "--data", SAMPLE, "--registry", root, "--name", "A", "--mode", "greedy", "--repeats", "0")
    _assert_registry_clean(root, before)
    assert stored(root) == before and json.loads((root / "ensembles" / "A.json").read_text())["name"] == "A"


TRAIN_KILLED_AT_MARK = """
import os, sys
import torch
torch.set_num_threads(1)
from ensemble.registry.store import Registry
real = Registry.update_manifest
def update_manifest(self, ref, edit):
    os.environ["ENSEMBLE_FAULT_AT"] = "atomic-write"    # the next atomic write is this one's replace
    return real(self, ref, edit)
Registry.update_manifest = update_manifest
from ensemble.cli import main
sys.argv = ["ensemble", *sys.argv[1:]]
main()
"""


def test_train_killed_at_update_manifests_replace(tmp_path, tiny_base_dir):
    """The issue's case: `train` killed at the replace of candidate.json when it marks its run
    complete left `.candidate.json.<random>.tmp` in the live folder and `verify` failed for ever."""
    root = tmp_path / "reg"
    r = run_at(None, "train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--tasks", "sst",
               "--registry", root, code=TRAIN_KILLED_AT_MARK)
    assert r.returncode == -9, r.stderr
    cid = next(p.name for p in (root / "candidates").iterdir())
    assert [p.name for p in (root / "candidates" / cid).iterdir() if p.name.endswith(".tmp")]   # the leftover
    manifest = json.loads((root / "candidates" / cid / "candidate.json").read_text())
    before = {k: v for k, v in stored(root).items() if not k.endswith(".tmp")}
    _assert_registry_clean(root, before)                            # opened: the temp file is gone
    assert json.loads((root / "candidates" / cid / "candidate.json").read_text()) == manifest   # the old manifest
