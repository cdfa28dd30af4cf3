"""The checkpoint registry: registering models and imported predictions, stale caches and refresh,
verify, pickle and symlink refusal, concurrent writers, remove and atomic update."""
from __future__ import annotations

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

from ensemble.data import read_split
from ensemble.errors import EnsembleError
from ensemble.infer import predict_split
from ensemble.metrics import score
from ensemble.model import load_model
from ensemble.predfile import read_predictions, write_predictions
from ensemble.register import refresh, register_model, register_predictions
from ensemble.registry import MANIFEST, Registry
from ensemble.tasks import TASKS
from fixtures_torch import (  # noqa: F401
    ALL_TASKS, copy_data, copy_registry, sample_data, saved_model_dir, tiny_base, torch_one_thread, trained,
)

REPO = Path(__file__).resolve().parents[1]


def tree(root: Path):
    """Every path under the registry's candidates folder with its bytes."""
    return sorted((p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() else None)
                  for p in (root / "candidates").rglob("*"))


def staging_empty(root: Path) -> bool:
    return not list((root / ".staging").iterdir())


def fake_values(task, n, rng):
    if TASKS[task].kind == "classes":
        x = rng.random((n, 5)) + 0.01
        return x / x.sum(axis=1, keepdims=True)
    if TASKS[task].kind == "binary":
        return rng.random((n, 1))
    return rng.random((n, 1)) * 5


def make_pred_dir(data: Path, dst: Path, tasks=ALL_TASKS, splits=("dev", "test"), seed=0, shuffle=True):
    """Valid import files <task>-<split>.csv for the data's ids (rows shuffled: joined by id)."""
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        for s in splits:
            ids = read_split(data, t, s).ids
            order = rng.permutation(len(ids)) if shuffle else np.arange(len(ids))
            write_predictions(dst / f"{t}-{s}.csv", t, [ids[i] for i in order], fake_values(t, len(ids), rng))
    return dst


# -- register_model ------------------------------------------------------------------------------
def test_register_model_folder(saved_model_dir, sample_data, tmp_path):
    reg = Registry(tmp_path / "reg")
    c = register_model(reg, saved_model_dir, sample_data, name="tiny", device="cpu")
    assert [x.id for x in reg.candidates()] == [c.id]
    m = c.manifest
    assert m["name"] == "tiny" and m["kind"] == "model" and m["architecture"] == "multi"
    model, tok = load_model(saved_model_dir)
    assert m["parameters"] == model.num_parameters()
    for t in ALL_TASKS:
        assert set(m["predictions"][t]) == {"dev", "test"}
        assert set(m["metrics"][t]) == {"dev"}
        for s in ("dev", "test"):
            split = read_split(sample_data, t, s)
            ids, cached = c.predictions(t, s)
            assert ids == split.ids and m["predictions"][t][s]["rows"] == len(ids)
            assert m["predictions"][t][s]["data_file"] == TASKS[t].file_name(s)
            direct_ids, direct = predict_split(model, tok, split)
            assert direct_ids == ids
            np.testing.assert_array_equal(cached, direct)       # written with repr: read back bit for bit
            if s == "dev":
                assert m["metrics"][t]["dev"] == score(t, cached, split.labels)
    assert reg.verify()[1] == []
    # the model folder was copied, not linked: the candidate stands alone
    assert (c.model_dir / "model.safetensors").stat().st_ino != (saved_model_dir / "model.safetensors").stat().st_ino


def test_register_exported_candidate(trained, tmp_path):
    src = Registry(trained["registry"]).candidates()[0]
    export = shutil.copytree(src.path, tmp_path / "exported")
    reg = Registry(tmp_path / "reg")
    c = register_model(reg, export, trained["data"], device="cpu")
    m = c.manifest
    assert m["name"] == src.name and m["training"] == src.manifest["training"]
    assert m["source"]["previous_id"] == src.id and c.id != src.id
    for t in ALL_TASKS:
        for s in ("dev", "test"):
            ids0, v0 = src.predictions(t, s)
            ids1, v1 = c.predictions(t, s)
            assert ids0 == ids1
            np.testing.assert_allclose(v1, v0, rtol=0, atol=1e-7)
        assert m["metrics"][t]["dev"] == pytest.approx(src.dev_metric(t), abs=1e-9)
    assert reg.verify()[1] == []


def test_register_model_rejects_non_model_folder(tmp_path, sample_data):
    (tmp_path / "empty").mkdir()
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match="neither a candidate folder"):
        register_model(reg, tmp_path / "empty", sample_data)
    with pytest.raises(EnsembleError, match="expected a candidate folder or a model folder"):
        register_model(reg, tmp_path / "nothing", sample_data)


# -- register_predictions ------------------------------------------------------------------------
def test_register_predictions_joins_by_id(sample_data, tmp_path):
    pdir = make_pred_dir(sample_data, tmp_path / "preds")
    reg = Registry(tmp_path / "reg")
    c = register_predictions(reg, pdir, "external", sample_data, parameters=123)
    m = c.manifest
    assert m["kind"] == "predictions" and m["name"] == "external" and m["parameters"] == 123
    assert m["tasks"] == list(ALL_TASKS)
    for t in ALL_TASKS:
        assert set(m["predictions"][t]) == {"dev", "test"} and set(m["metrics"][t]) == {"dev"}
        split = read_split(sample_data, t, "dev")
        ids, values = read_predictions(pdir / f"{t}-dev.csv", t)
        by_id = dict(zip(ids, values))
        aligned = np.array([by_id[i] for i in split.ids])
        assert m["metrics"][t]["dev"] == pytest.approx(score(t, aligned, split.labels), abs=1e-12)
        cids, cvals = c.predictions(t, "dev")
        assert cids == ids
        np.testing.assert_array_equal(cvals, values)
    assert reg.verify()[1] == []


def test_register_predictions_subset_of_tasks(sample_data, tmp_path):
    pdir = make_pred_dir(sample_data, tmp_path / "preds", tasks=("sts",), splits=("dev",))
    c = register_predictions(Registry(tmp_path / "reg"), pdir, "sts-only", sample_data)
    assert c.tasks == ["sts"] and c.has_predictions("sts", "dev") and not c.has_predictions("sts", "test")


def _lines(p: Path):
    return p.read_text().splitlines(keepends=True)


def _edit(p: Path, fn):
    lines = _lines(p)
    fn(lines)
    p.write_text("".join(lines))


BAD_CASES = {
    # case: (file, edit, message pieces; {f} is the file's path)
    "missing-id": ("sst-dev.csv", lambda ls: ls.pop(3), ["{f}: ids do not match the input", "1 missing id: {id3}"]),
    "extra-id": ("para-dev.csv", lambda ls: ls.append("deadbeef0000,0.5\n"),
                 ["{f}: ids do not match the input", "1 extra id not in the input: deadbeef0000"]),
    "duplicate": ("sts-test.csv", lambda ls: ls.append(ls[2]), ["{f}:{last}: id {id2!r} repeats line 3"]),
    "nan": ("sts-dev.csv", lambda ls: ls.__setitem__(4, ls[4].split(",")[0] + ",nan\n"),
            ["{f}:5: column 'score' is nan; expected a finite number"]),
    "out-of-range": ("para-test.csv", lambda ls: ls.__setitem__(3, ls[3].split(",")[0] + ",1.5\n"),
                     ["{f}:4: column 'prob' is 1.5; expected a probability in [0, 1]"]),
    "sst-sum": ("sst-dev.csv", lambda ls: ls.__setitem__(2, ls[2].split(",")[0] + ",0.5,0.5,0.1,0.0,0.0\n"),
                ["{f}:3: probabilities p0,p1,p2,p3,p4 sum to", "expected 1 within 0.001"]),
    "not-a-number": ("para-dev.csv", lambda ls: ls.__setitem__(6, ls[6].split(",")[0] + ",abc\n"),
                     ["{f}:7: column 'prob' is 'abc'; expected a number"]),
    "bad-header": ("sts-dev.csv", lambda ls: ls.__setitem__(0, "id,similarity\n"),
                   ["{f}:1: header is 'id,similarity'; expected exactly 'id,score'"]),
    "field-count": ("sst-test.csv", lambda ls: ls.__setitem__(5, ls[5].rstrip("\n") + ",0\n"),
                    ["{f}:6: 7 comma-separated fields; expected 6"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_register_predictions_bad_input_names_file_and_line(sample_data, tmp_path, case):
    pdir = make_pred_dir(sample_data, tmp_path / "preds", shuffle=False)
    reg = Registry(tmp_path / "reg")
    name, edit, pieces = BAD_CASES[case]
    f = pdir / name
    ids = [ln.split(",")[0] for ln in _lines(f)]
    _edit(f, edit)
    with pytest.raises(EnsembleError) as e:
        register_predictions(reg, pdir, "bad", sample_data)
    msg = str(e.value)
    for piece in pieces:
        assert piece.format(f=f, id2=ids[2], id3=ids[3], last=len(_lines(f))) in msg, msg
    assert reg.candidates() == [] and staging_empty(tmp_path / "reg")


def test_register_predictions_missing_dev_file(sample_data, tmp_path):
    pdir = make_pred_dir(sample_data, tmp_path / "preds")
    (pdir / "sts-dev.csv").unlink()
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError) as e:
        register_predictions(reg, pdir, "bad", sample_data)
    assert str(pdir / "sts-test.csv") in str(e.value) and "sts-dev.csv" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EnsembleError, match="no prediction files"):
        register_predictions(reg, empty, "bad", sample_data)
    assert reg.candidates() == []


def test_register_predictions_refuses_symlink_leaving_folder(sample_data, tmp_path):
    pdir = make_pred_dir(sample_data, tmp_path / "preds")
    outside = make_pred_dir(sample_data, tmp_path / "outside", tasks=("sts",), splits=("dev",))
    (pdir / "sts-dev.csv").unlink()
    (pdir / "sts-dev.csv").symlink_to(outside / "sts-dev.csv")
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match="leaves"):
        register_predictions(reg, pdir, "bad", sample_data)
    assert reg.candidates() == []


# -- stale caches and refresh --------------------------------------------------------------------
def test_stale_detection_and_refresh(trained, tmp_path):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    data = copy_data(tmp_path / "data")
    reg = Registry(root)
    cands = reg.candidates()
    assert all(c.stale(data) == [] for c in cands)
    before = {c.id: c.predictions("sst", "dev") for c in cands}
    # change one byte of a sentence in the copy of the SST dev file
    f = data / "ids-sst-dev.csv"
    raw = bytearray(f.read_bytes())
    split0 = read_split(data, "sst", "dev")
    at = raw.index(b"triumph")
    raw[at + 2] = ord("o")                                  # triumph -> troumph
    f.write_bytes(bytes(raw))
    changed = [e for e in read_split(data, "sst", "dev").examples if "troumph" in e.text_a]
    assert len(changed) == 1 and split0.ids == read_split(data, "sst", "dev").ids
    for c in reg.candidates():
        assert c.stale(data) == ["sst-dev (ids-sst-dev.csv changed)"]
    done = refresh(reg, data, device="cpu")
    assert sorted(c.id for c, _ in done) == sorted(c.id for c in cands)
    assert all(stale == ["sst-dev (ids-sst-dev.csv changed)"] for _, stale in done)
    for c in reg.candidates():
        assert c.stale(data) == []
        assert c.manifest["training"] == next(x for x in cands if x.id == c.id).manifest["training"]
        model, tok = load_model(c.model_dir)
        ids, values = c.predictions("sst", "dev")
        direct_ids, direct = predict_split(model, tok, read_split(data, "sst", "dev"))
        assert ids == direct_ids
        np.testing.assert_array_equal(values, direct)
        row = ids.index(changed[0].id)
        assert not np.array_equal(values[row], before[c.id][1][row])     # really recomputed
        assert c.dev_metric("sst") == score("sst", values, read_split(data, "sst", "dev").labels)
    assert reg.verify()[1] == []
    assert refresh(reg, data, device="cpu") == []                         # nothing stale any more
    assert not list((root / ".trash").iterdir()) and staging_empty(root)


def test_stale_missing_file_and_imported_predictions(sample_data, tmp_path):
    data = copy_data(tmp_path / "data")
    reg = Registry(tmp_path / "reg")
    c = register_predictions(reg, make_pred_dir(data, tmp_path / "preds", tasks=("sts",)), "ext", data)
    (data / "sts-test-student.csv").unlink()
    assert c.stale(data) == ["sts-test (sts-test-student.csv missing)"]
    with pytest.raises(EnsembleError, match="holds imported predictions only"):
        refresh(reg, data, device="cpu")


# -- verify --------------------------------------------------------------------------------------
def test_verify_names_each_problem(trained, tmp_path):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    checked, problems = reg.verify()
    assert problems == [] and len(checked) == len(reg.candidates())
    c = reg.candidates()[0]
    p = c.path / "predictions" / "sst-dev.csv"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0x01                               # flipped bit, same size
    p.write_bytes(bytes(raw))
    w = c.path / "model" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])                      # truncated
    (c.path / "predictions" / "para-test.csv").unlink()      # missing
    (c.path / "model" / "notes.txt").write_text("hello")     # extra
    checked, problems = reg.verify()
    found = {(pr.candidate, pr.file): pr.message for pr in problems}
    assert set(found) == {(c.id, "predictions/sst-dev.csv"), (c.id, "model/model.safetensors"),
                          (c.id, "predictions/para-test.csv"), (c.id, "model/notes.txt")}
    assert found[(c.id, "predictions/sst-dev.csv")] == "sha256 mismatch (content changed)"
    assert found[(c.id, "model/model.safetensors")].startswith("size 100 bytes")
    assert found[(c.id, "predictions/para-test.csv")] == "missing"
    assert found[(c.id, "model/notes.txt")] == "extra file not in the manifest"
    assert all(str(pr).startswith(f"{c.id}: {pr.file}: ") for pr in problems)
    # only the damaged candidate is reported; verify of one ref checks just that one
    assert [x.id for x in reg.verify([c.id])[0]] == [c.id]


def test_verify_flags_pickles_and_symlinks(trained, tmp_path):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    c = reg.candidates()[0]
    (c.path / "model" / "pytorch_model.bin").write_bytes(b"x")
    (c.path / "predictions" / "link.csv").symlink_to(tmp_path)
    msgs = {pr.file: pr.message for pr in reg.verify([c.id])[1]}
    assert "pickle" in msgs["model/pytorch_model.bin"]
    assert msgs["predictions/link.csv"] == "symlink not in the manifest"


# -- pickles and symlinks refused on registration --------------------------------------------------
def test_register_model_refuses_pickle(saved_model_dir, sample_data, tmp_path):
    m = shutil.copytree(saved_model_dir, tmp_path / "m")
    (m / "pytorch_model.bin").write_bytes(b"\x80\x04junk")
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match="safetensors") as e:
        register_model(reg, m, sample_data, device="cpu")
    assert "pytorch_model.bin" in str(e.value) and "pickle" in str(e.value)
    assert reg.candidates() == []


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_register_model_refuses_symlink_leaving_folder(saved_model_dir, sample_data, tmp_path, kind):
    m = shutil.copytree(saved_model_dir, tmp_path / "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    target = outside / "secret.txt" if kind == "file" else outside
    (m / "extra").symlink_to(target)
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match="leaves") as e:
        register_model(reg, m, sample_data, device="cpu")
    assert "symlink" in str(e.value)
    assert reg.candidates() == [] and staging_empty(tmp_path / "reg")


# -- concurrent writers ------------------------------------------------------------------------------
WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    root, kind, src, data, name, ready, go = sys.argv[1:]
    from ensemble.registry import Registry
    from ensemble.register import register_model, register_predictions
    if kind == "model":
        import torch
        torch.set_num_threads(1)
        from ensemble import model, infer  # noqa: F401  (imports done before the start signal)
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
