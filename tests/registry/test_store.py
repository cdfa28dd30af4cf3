"""The checkpoint registry: concurrent writers, add, remove, atomic update and recovery
of interrupted swaps."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ensemble.registry.candidate import MANIFEST
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.predfile import read_predictions, write_predictions
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from fixtures_torch import (  # noqa: F401
    copy_registry, sample_data, saved_model_dir, tiny_base, torch_one_thread, trained,
)
from registry_files import crafted_copy, make_pred_dir, staging_empty, tree, victim_beside

REPO = Path(__file__).resolve().parents[2]


# -- concurrent writers ------------------------------------------------------------------------------
WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    root, kind, src, data, name, ready, go = sys.argv[1:]
    from ensemble.registry.store import Registry
    from ensemble.registry.register import register_model, register_predictions
    if kind == "model":
        import torch
        torch.set_num_threads(1)
        from ensemble.modeling import model, infer  # noqa: F401  (imports done before the start signal)
    Path(ready).touch()
    t0 = time.time()
    while not Path(go).exists():
        if time.time() - t0 > 120:
            sys.exit("no start signal")
        time.sleep(0.005)
    reg = Registry(root)
    if kind == "model":
        c = register_model(reg, Path(src), Path(data), name=name, device="cpu")
    else:
        c = register_predictions(reg, Path(src), name, Path(data))
    print(c.id)
""")


def test_concurrent_registrations_all_land(saved_model_dir, sample_data, tmp_path):
    root = tmp_path / "reg"
    Registry(root)
    jobs = []
    for i in range(4):
        kind = "model" if i == 0 else "predictions"
        src = saved_model_dir if kind == "model" else make_pred_dir(sample_data, tmp_path / f"p{i}", seed=i)
        jobs.append((kind, src, f"w{i}", tmp_path / f"ready{i}"))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), kind, str(src), str(sample_data), name,
                               str(ready), str(go)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for kind, src, name, ready in jobs]
    try:
        deadline = time.time() + 120
        while not all(r.exists() for *_, r in jobs):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            assert time.time() < deadline
            time.sleep(0.01)
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * 4, outs
    reg = Registry(root)
    cands = reg.candidates()
    assert sorted(c.name for c in cands) == ["w0", "w1", "w2", "w3"]
    assert sorted(c.id for c in cands) == sorted(o.strip() for o, _ in outs)
    assert reg.get("w0").kind == "model"
    assert reg.verify()[1] == [] and staging_empty(root)


# -- remove and update -------------------------------------------------------------------------------
def test_remove_deletes(trained, tmp_path):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    c = reg.candidates()[0]
    others = [x.id for x in reg.candidates() if x.id != c.id]
    gone = reg.remove(c.id[:6])
    assert gone.id == c.id and not c.path.exists()
    assert [x.id for x in reg.candidates()] == others
    with pytest.raises(EnsembleError, match="no candidate"):
        reg.get(c.id)
    assert not list((root / ".trash").iterdir())


def _rewrite_sts_dev(stage, manifest, fail=False):
    p = stage / "predictions" / "sts-dev.csv"
    ids, values = read_predictions(p, "sts")
    write_predictions(p, "sts", ids, values + 1.0)        # a new file, as builds must (never in place)
    if fail:
        raise RuntimeError("build failed")
    manifest["note"] = "shifted"
    return manifest


def test_update_swaps_in_a_complete_new_folder(trained, tmp_path):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    c = reg.candidates()[0]
    _, old = c.predictions("sts", "dev")
    new = reg.update(c.id, _rewrite_sts_dev)
    assert new.id == c.id and new.manifest["note"] == "shifted"
    again = reg.get(c.id)
    assert again.manifest["note"] == "shifted"
    np.testing.assert_array_equal(again.predictions("sts", "dev")[1], old + 1.0)
    assert reg.verify()[1] == []
    assert not list((root / ".trash").iterdir()) and staging_empty(root)


def test_update_failure_leaves_old_candidate_intact(trained, tmp_path):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    c = reg.candidates()[0]
    before = tree(root)
    with pytest.raises(RuntimeError, match="build failed"):
        reg.update(c.id, lambda stage, m: _rewrite_sts_dev(stage, m, fail=True))
    assert tree(root) == before
    assert reg.verify()[1] == [] and staging_empty(root)


def test_recover_waits_for_a_swap_in_progress(trained, tmp_path):
    """Opening a registry while another writer is between the two renames of a swap must not
    'recover' the half-swapped candidate under that writer's feet."""
    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    c = reg.candidates()[0]
    stage = root / ".staging" / "newcopy"
    shutil.copytree(c.path, stage)
    opened = threading.Event()
    errors = []

    def open_registry():
        try:
            Registry(root)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        opened.set()
    with reg.lock():                                   # what _swap holds
        live = root / "candidates" / c.id
        trash = root / ".trash" / f"{c.id}.abcd1234"
        marker = root / ".trash" / f"{c.id}.abcd1234.restore"
        marker.touch()
        os.rename(live, trash)
        t = threading.Thread(target=open_registry)
        t.start()
        assert not opened.wait(0.5)                    # it waits for the lock...
        os.rename(stage, live)                         # ...so the swap completes
        marker.unlink()
        shutil.rmtree(trash)
    t.join(10)
    assert opened.is_set() and not errors
    assert reg.verify()[1] == [] and [x.id for x in reg.candidates()] == [x.id for x in Registry(root).candidates()]


def test_recover_restores_an_interrupted_swap(trained, tmp_path):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    c = Registry(root).candidates()[0]
    trash = root / ".trash" / f"{c.id}.deadbeef"
    (root / ".trash" / f"{c.id}.deadbeef.restore").touch()
    os.rename(c.path, trash)
    reg = Registry(root)                               # a crash between the renames: put it back
    assert c.id in [x.id for x in reg.candidates()]
    assert list((root / ".trash").iterdir()) == [] and reg.verify()[1] == []
    assert (c.path / MANIFEST).is_file()


def test_add_failure_after_writing_leaves_nothing(tmp_path):
    reg = Registry(tmp_path / "reg")

    def build(stage):
        (stage / "predictions").mkdir()
        (stage / "predictions" / "x.csv").write_text("id,score\n")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        reg.add(build)
    assert reg.candidates() == [] and list((tmp_path / "reg" / ".staging").iterdir()) == []
    assert reg.verify() == ([], [])


# -- made by the first write, never by a reader ------------------------------------------------
def test_readers_never_create_a_registry(tmp_path):
    root = tmp_path / "chekpoints"
    reg = Registry(root)
    no_registry = (f"{root}: no registry here (expected a folder made by `ensemble train` or "
                   "`ensemble register`)")
    for read in (reg.candidates, reg.verify, reg.load_ensemble, lambda: reg.get("abc"), lambda: reg.remove("abc")):
        with pytest.raises(EnsembleError) as e:
            read()
        assert str(e.value) == no_registry
    assert not root.exists() and not reg.exists
    (tmp_path / "plain").mkdir()                          # an existing folder that is no registry
    with pytest.raises(EnsembleError, match="no registry here"):
        Registry(tmp_path / "plain").candidates()


def test_the_first_write_creates_the_registry(sample_data, tmp_path):
    reg = Registry(tmp_path / "a" / "reg")
    c = reg.add(lambda stage: {"name": "x"})
    assert reg.exists and [x.id for x in reg.candidates()] == [c.id]
    assert sorted(p.name for p in reg.root.iterdir()) == [".staging", ".trash", "candidates", "ensembles"]
    ens = Registry(tmp_path / "b")
    ens.save_ensemble("e", {"name": "e"})
    assert (ens.ensembles_dir / "e.json").is_file() and ens.candidates() == []
    with pytest.raises(EnsembleError, match="e.json: tasks: missing"):
        ens.load_ensemble()   # a document without tasks is refused where it is read


def test_ensembles_naming_lists_the_saved_ensembles_with_a_member(tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.save_ensemble("empty", {"name": "empty"})       # makes the registry (save refuses absent members)
    (reg.ensembles_dir / "a.json").write_text(json.dumps({"tasks": {"sst": {"members": ["c1"], "weights": {"c1": 1}}}}))
    (reg.ensembles_dir / "b.json").write_text(json.dumps({"tasks": {"sst": {"members": ["c2"], "weights": {"c2": 1}},
                                                                    "sts": {"members": ["c1"], "weights": {"c1": 2}}}}))
    (reg.ensembles_dir / "broken.json").write_text("{not json")
    assert reg.ensembles_naming("c1") == ["a", "b"]
    assert reg.ensembles_naming("c2") == ["b"] and reg.ensembles_naming("c3") == []


# -- a candidate's paths come from its folder, never from its manifest's id --------------------------
def _with_crafted(tmp_path):
    """A registry with one import and a folder ``evil`` copied in whose manifest says
    ``"id": "../../victim"``; ``<registry>/../victim`` holds a file."""
    reg = Registry(tmp_path / "reg")
    c = register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / "p", tasks=("sts",)), "ext", SAMPLE)
    crafted_copy(c.path, reg.candidates_dir / "evil", "../../victim")
    return reg, victim_beside(reg.root)


NOT_PLAIN = r"evil/candidate\.json: manifest id '\.\./\.\./victim' is not a plain name \(folder 'evil'\)"


@pytest.mark.parametrize("action", ["remove", "update", "update_manifest"])
def test_an_id_out_of_the_registry_never_reaches_a_folder(tmp_path, action):
    reg, victim = _with_crafted(tmp_path)
    before = tree(reg.root)
    call = {"remove": lambda ref: reg.remove(ref),
            "update": lambda ref: reg.update(ref, lambda stage, m: m),
            "update_manifest": lambda ref: reg.update_manifest(ref, lambda m: m.update(note="x"))}[action]
    with pytest.raises(EnsembleError, match=r"no candidate '\.\./\.\./victim'"):
        call("../../victim")                  # never a folder: the damaged folder is evil
    assert tree(reg.root) == before
    if action == "remove":                    # a damaged folder named by its folder name goes, alone
        assert reg.remove("evil").path == reg.candidates_dir / "evil"
        assert not (reg.candidates_dir / "evil").exists() and reg.verify()[1] == []
    else:
        with pytest.raises(EnsembleError, match=NOT_PLAIN):
            call("evil")
        assert tree(reg.root) == before
    assert (victim / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in reg.root.parent.iterdir()) == ["p", "reg", "victim"]


def test_reading_checks_each_manifest_id_against_its_folder(tmp_path):
    reg = Registry(tmp_path / "reg")
    c = register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / "p", tasks=("sts",)), "ext", SAMPLE)
    crafted_copy(c.path, reg.candidates_dir / "renamed", c.id)
    # a damaged folder is left out of the reading (it used to stop every read) and refused by name
    assert [x.id for x in reg.candidates()] == [c.id] and reg.get(c.id).id == c.id
    assert [(p.candidate, p.message) for p in reg.scan()[1]] == [
        ("renamed", f"manifest id '{c.id}' differs from its folder name 'renamed'")]
    with pytest.raises(EnsembleError, match=rf"renamed/candidate\.json: manifest id '{c.id}' differs from its "
                                            r"folder name 'renamed'; run `ensemble verify` \(`ensemble remove "
                                            r"renamed` deletes the folder\)"):
        reg.get("renamed")
    shutil.rmtree(reg.candidates_dir / "renamed")
    (reg.candidates_dir / "linked").symlink_to(c.path)
    with pytest.raises(EnsembleError, match=r"linked: candidate folder is a symlink to .* \(inside the registry\): "
                                            r"refused; run `ensemble verify`"):
        reg.get("linked")
    assert reg.remove("linked").path.name == "linked"          # the link goes, never its target
    assert c.path.is_dir() and reg.verify()[1] == [] and [x.id for x in reg.candidates()] == [c.id]


# -- recovery: dead writers' stages, killed atomic writes' temp files -------------------------------
HOLD_STAGE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ensemble.registry.store import Registry
    with Registry(sys.argv[1])._stage() as stage:
        (stage / "half-written").write_text("x")
        Path(sys.argv[2]).write_text(str(stage))
        time.sleep(600)                                      # killed by the test long before
""")


def test_a_live_writers_stage_is_never_touched_and_a_dead_ones_goes_at_once(tmp_path):
    root = tmp_path / "reg"
    Registry(root).ensure()
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", HOLD_STAGE, str(root), str(ready)], env=env, cwd=REPO)
    try:
        deadline = time.time() + 120
        while not ready.exists() or not ready.read_text():
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.01)
        stage = Path(ready.read_text())
        Registry(root)                                      # another process opens the registry
        assert (stage / "half-written").read_text() == "x"  # the owner holds its lock: untouched
    finally:
        p.kill()
        p.wait()
    Registry(root)                                          # the owner is gone: its stage too, no age to wait
    assert not stage.exists() and staging_empty(root)


def test_a_stage_without_an_owners_lock_waits_a_day(tmp_path):
    root = tmp_path / "reg"
    Registry(root).ensure()
    young, old = root / ".staging" / "young", root / ".staging" / "old"
    for d in (young, old):
        d.mkdir()
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    Registry(root)
    assert young.is_dir() and not old.exists()


def test_opening_removes_the_temp_files_of_killed_atomic_writes(tmp_path):
    reg = Registry(tmp_path / "reg")
    c = register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / "p", tasks=("sts",)), "ext", SAMPLE)
    reg.save_ensemble("e", {"name": "e"})
    left = [c.path / ".candidate.json.k7_x0q2a.tmp", c.path / "predictions" / ".sts-dev.csv.abcdefgh.tmp",
            reg.ensembles_dir / ".e.json.a1b2c3d4.tmp"]
    for p in left:
        p.write_text("half")
    (c.path / ".notes").write_text("mine")                  # not a temp file of ours: kept (verify names it)
    Registry(reg.root)
    assert [p.exists() for p in left] == [False, False, False]
    assert [(p.file, p.message) for p in reg.verify()[1]] == [(".notes", "extra file not in the manifest")]


# -- select racing remove ----------------------------------------------------------------------------
@pytest.fixture
def imports(tmp_path):
    reg = Registry(tmp_path / "reg")
    for i in range(2):
        register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / f"p{i}", seed=i), f"ext{i}", SAMPLE)
    return reg


def test_saving_an_ensemble_whose_member_was_removed_meanwhile_is_refused(imports, monkeypatch):
    from ensemble import workflow
    real = workflow.ensemble_doc

    def doc_then_remove(*args):        # a `remove` lands between select's reading and its saving
        doc = real(*args)
        imports.remove(doc["tasks"]["sst"]["members"][0])
        return doc
    monkeypatch.setattr(workflow, "ensemble_doc", doc_then_remove)
    with pytest.raises(EnsembleError, match=r"ensemble mine not saved: member \w+ \(sst\) is no longer in the "
                                            r"registry.*run `ensemble select` again"):
        workflow.select(imports, SAMPLE, mode="greedy", repeats=0, name="mine")
    assert imports.ensemble_names() == []


def test_saving_an_ensemble_whose_member_predictions_changed_is_refused(imports):
    c = imports.candidates()[0]
    sha = c.manifest["files"]["predictions/sst-dev.csv"]["sha256"]
    doc = {"name": "x", "tasks": {"sst": {"weights": {c.id: 1}, "prediction_sha256": {c.id: {"dev": "0" * 64}}}}}
    with pytest.raises(EnsembleError, match=rf"member {c.id}'s sst dev predictions changed \(sha256 {sha}, "
                                            rf"selected with {'0' * 64}\)"):
        imports.save_ensemble("x", doc)
    doc["tasks"]["sst"]["prediction_sha256"][c.id]["dev"] = sha
    imports.save_ensemble("x", doc)
    assert imports.ensemble_names() == ["x"]


def test_remove_of_a_member_of_saved_ensembles_is_refused_unless_allowed(imports):
    from ensemble import workflow
    for name in ("first", "second"):
        workflow.select(imports, SAMPLE, mode="greedy", repeats=0, name=name)
    member = imports.load_ensemble("first")["tasks"]["sst"]["members"][0]
    with pytest.raises(EnsembleError, match=rf"candidate {member} is a member of the saved ensembles first, "
                                            r"second: not removed"):
        imports.remove(member)
    with pytest.raises(EnsembleError, match=r"member of the saved ensemble second: not removed"):
        imports.remove(member, allow=["first"])             # a second ensemble the user was not told of
    assert imports.remove(member, allow=["first", "second"]).id == member
    assert member not in [c.id for c in imports.candidates()]


# -- one damaged candidate.json ----------------------------------------------------------------------
def test_one_damaged_manifest_leaves_the_others_usable(imports):
    bad, good = imports.candidates()
    (bad.path / MANIFEST).write_text("{not json")
    assert [c.id for c in imports.candidates()] == [good.id] and imports.get(good.id).id == good.id
    assert [(p.candidate, p.file) for p in imports.scan()[1]] == [(bad.id, MANIFEST)]
    with pytest.raises(EnsembleError, match=rf"{bad.id}/candidate\.json: not valid JSON .*`ensemble remove "
                                            rf"{bad.id}` deletes the folder"):
        imports.get(bad.id)
    assert [(p.candidate, p.file) for p in imports.verify()[1]] == [(bad.id, MANIFEST)]
    from ensemble import workflow
    report = workflow.select(imports, SAMPLE, mode="greedy", repeats=0, save=False)
    assert report.notes[0].startswith(f"candidate folder {bad.id} is damaged (candidate.json: not valid JSON")
    assert imports.remove(bad.id).id == bad.id and not bad.path.exists()
    assert imports.verify()[1] == [] and [c.id for c in imports.candidates()] == [good.id]


def test_a_saved_ensemble_is_named_never_reached_by_a_path(tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.ensure()
    (tmp_path / "x.json").write_text('{"name": "x", "tasks": {"sst": {"weights": {"a": 1}}}}')
    with pytest.raises(EnsembleError, match=r"ensemble name '\.\./\.\./x': expected a plain file name"):
        reg.load_ensemble("../../x")
