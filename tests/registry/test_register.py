"""Putting candidates into the registry: model folders, imported predictions, refresh of stale
caches, refusal of pickles and symlinks, and train_into (training epochs into candidates)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble.registry import register as register_mod
from ensemble.training import finetune as train_mod
from ensemble.data import read_split
from ensemble.errors import EnsembleError
from ensemble.files import file_sha256
from ensemble.modeling.infer import predict_split
from ensemble.metrics import score
from ensemble.modeling.model import WEIGHTS_FILE, load_model, outputs_to_predictions
from ensemble.predfile import read_predictions
from ensemble.registry.keeper import train_into
from ensemble.registry.register import refresh, register_model, register_predictions
from ensemble.registry.store import Registry
from ensemble.tasks import TASKS
from ensemble.training.finetune import TrainConfig
from fixtures_torch import (  # noqa: F401
    ALL_TASKS, build_model, copy_data, copy_registry, sample_data, saved_model_dir, tiny_base, torch_one_thread,
    trained,
)
from registry_files import flip_last_byte, make_pred_dir, staging_empty, tamper_refusal, tree
from safetensors import safe_open


# -- register_model ----------------------------------------------------------------------------
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


# -- register_predictions ----------------------------------------------------------------------
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
    assert not reg.exists   # nothing written: no registry made


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
    assert not reg.exists


def test_register_predictions_refuses_symlink_leaving_folder(sample_data, tmp_path):
    pdir = make_pred_dir(sample_data, tmp_path / "preds")
    outside = make_pred_dir(sample_data, tmp_path / "outside", tasks=("sts",), splits=("dev",))
    (pdir / "sts-dev.csv").unlink()
    (pdir / "sts-dev.csv").symlink_to(outside / "sts-dev.csv")
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match="leaves"):
        register_predictions(reg, pdir, "bad", sample_data)
    assert not reg.exists


# -- stale caches and refresh ------------------------------------------------------------------
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


def test_refresh_refuses_weights_changed_after_they_were_stored(trained, tmp_path):
    """A flipped byte in the weights is refused before they are loaded, never re-hashed: verify
    still reports the file afterwards."""
    reg = Registry(copy_registry(trained["registry"], tmp_path / "reg"))
    c = reg.candidates()[0]
    w = c.path / "model" / WEIGHTS_FILE
    old, new = flip_last_byte(w)
    with pytest.raises(EnsembleError) as e:
        refresh(reg, trained["data"], [c.id], device="cpu", force=True)
    assert str(e.value) == tamper_refusal(w, old, new)
    assert reg.get(c.id).manifest["files"][f"model/{WEIGHTS_FILE}"]["sha256"] == old
    assert [(p.candidate, p.file, p.message) for p in reg.verify()[1]] == [
        (c.id, f"model/{WEIGHTS_FILE}", "sha256 mismatch (content changed)")]
    assert staging_empty(reg.root)


def test_stale_missing_file_and_imported_predictions(sample_data, tmp_path):
    data = copy_data(tmp_path / "data")
    reg = Registry(tmp_path / "reg")
    c = register_predictions(reg, make_pred_dir(data, tmp_path / "preds", tasks=("sts",)), "ext", data)
    (data / "sts-test-student.csv").unlink()
    assert c.stale(data) == ["sts-test (sts-test-student.csv missing)"]
    with pytest.raises(EnsembleError, match="holds imported predictions only"):
        refresh(reg, data, device="cpu")


# -- pickles and symlinks refused on registration ----------------------------------------------
def test_register_model_refuses_pickle(saved_model_dir, sample_data, tmp_path):
    m = shutil.copytree(saved_model_dir, tmp_path / "m")
    (m / "pytorch_model.bin").write_bytes(b"\x80\x04junk")
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError, match="safetensors") as e:
        register_model(reg, m, sample_data, device="cpu")
    assert "pytorch_model.bin" in str(e.value) and "pickle" in str(e.value)
    assert not reg.exists


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


# -- train_into: training epochs into candidates -----------------------------------------------
def test_train_registers_the_best_epochs(trained):
    res, reg = trained["result"], Registry(trained["registry"])
    cands = {c.id: c for c in reg.candidates()}
    assert sorted(cands) == sorted(res.candidates) and cands
    assert len(res.epochs) == 2
    # per task, the first epoch with the highest dev score holds it
    holder_epoch = {}
    for t in ALL_TASKS:
        scores = [e.dev[t] for e in res.epochs]
        holder_epoch[t] = 1 + int(np.argmax(scores))
    by_epoch = {c.manifest["training"]["epoch"]: c for c in cands.values()}
    assert set(by_epoch) == set(holder_epoch.values())      # exactly the epochs best for some task
    for epoch, c in by_epoch.items():
        tr = c.manifest["training"]
        assert sorted(tr["best_for"]) == sorted(t for t in ALL_TASKS if holder_epoch[t] == epoch)
        assert tr["run_complete"] is True and tr["run_id"] == res.run_id
        assert res.epochs[epoch - 1].candidate == c.id
        for t in ALL_TASKS:
            assert c.dev_metric(t) == pytest.approx(res.epochs[epoch - 1].dev[t], abs=1e-12)


def test_training_a_configuration_again_removes_only_candidates_of_its_own_run(trained, tmp_path):
    """The keeper's removal of superseded epochs never reaches another run, even of the same configuration."""
    reg = Registry(copy_registry(trained["registry"], tmp_path / "reg"))
    first = sorted(trained["result"].candidates)
    again = train_into(reg, trained["config"], trained["data"], device="cpu", again=True)
    assert again.run_id != trained["result"].run_id
    assert sorted(c.id for c in reg.candidates()) == sorted(first + again.candidates)
    assert reg.verify()[1] == []


def test_train_manifest_contents(trained, tiny_base):
    cfg, res, data = trained["config"], trained["result"], trained["data"]
    reg = Registry(trained["registry"])
    model = build_model(tiny_base, "multi")[0]
    for c in reg.candidates():
        m = c.manifest
        assert m["kind"] == "model" and m["architecture"] == "multi" and m["tasks"] == list(ALL_TASKS)
        assert m["parameters"] == res.parameters == model.num_parameters()
        assert m["training"]["config"] == cfg.to_dict()
        assert m["training"]["fingerprint"] == cfg.fingerprint(m["training"]["data"])
        files = sorted(p.name for p in data.glob("*.csv"))
        assert len(files) == 9 and sorted(m["training"]["data"]) == files
        for name, digest in m["training"]["data"].items():
            assert digest == file_sha256(data / name)
        assert m["name"] == f"multi-sst+para+sts-s{cfg.seed}-e{m['training']['epoch']}"
        # weights are safetensors, listed and hashed in the manifest; no pickle anywhere
        w = c.model_dir / WEIGHTS_FILE
        assert m["files"][f"model/{WEIGHTS_FILE}"]["sha256"] == file_sha256(w)
        with safe_open(str(w), framework="pt") as f:
            assert set(f.keys()) == set(model.state_dict())
        assert not [p for p in c.path.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
        for t in ALL_TASKS:
            assert c.has_predictions(t, "dev") and c.has_predictions(t, "test")
            assert set(m["metrics"][t]) == {"dev"}
    assert reg.verify()[1] == []


def single_forward(model, tok, task, ex):
    args = (ex.text_a, ex.text_b) if TASKS[task].pair else (ex.text_a,)
    enc = tok(*args, return_tensors="pt", truncation=True, max_length=64)
    with torch.no_grad():
        y = model(task, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    return outputs_to_predictions(task, y).double().numpy()[0]


def test_train_round_trip_predictions_match_direct_forward(trained):
    """train -> register -> load_model: cached predictions equal unbatched forward passes."""
    data, reg = trained["data"], Registry(trained["registry"])
    for c in reg.candidates():
        model, tok = load_model(c.model_dir)
        for t in ALL_TASKS:
            for s in ("dev", "test"):
                split = read_split(data, t, s)
                ids, cached = c.predictions(t, s)
                assert sorted(ids) == sorted(split.ids)
                row = dict(zip(ids, cached))
                for ex in split.examples:
                    np.testing.assert_allclose(row[ex.id], single_forward(model, tok, t, ex), rtol=0, atol=1e-5)
                if s == "dev":
                    order = [ids.index(i) for i in split.ids]
                    assert c.dev_metric(t) == pytest.approx(score(t, cached[order], split.labels), abs=1e-12)


def test_train_removes_superseded_candidates(tiny_base, tmp_path, monkeypatch):
    """Scripted dev scores: epoch 1 best for all, epoch 2 for sst and para, epoch 3 for sts ->
    epoch 1's candidate is removed; epochs 2 and 3 stay."""
    scripted = {1: {"sst": .5, "para": .5, "sts": .5}, 2: {"sst": .6, "para": .6, "sts": .4},
                3: {"sst": .6, "para": .5, "sts": .7}}
    calls = []

    def fake_score(task, preds, labels):
        calls.append(task)
        return scripted[1 + (len(calls) - 1) // 3][task]
    monkeypatch.setattr(train_mod, "score", fake_score)
    data = copy_data(tmp_path / "data")
    reg = Registry(tmp_path / "reg")
    res = train_into(reg, TrainConfig(base=str(tiny_base), epochs=3, batch_size=16, lr=1e-3, limit=8), data, device="cpu")
    assert [e.best_for for e in res.epochs] == [list(ALL_TASKS), ["sst", "para"], ["sts"]]
    cands = reg.candidates()
    assert sorted(c.manifest["training"]["epoch"] for c in cands) == [2, 3]
    assert sorted(c.id for c in cands) == sorted(res.candidates)
    best = {c.manifest["training"]["epoch"]: sorted(c.manifest["training"]["best_for"]) for c in cands}
    assert best == {2: ["para", "sst"], 3: ["sts"]}
    assert not list((tmp_path / "reg" / ".trash").iterdir())


# -- interrupted registration ------------------------------------------------------------------
def write_once_then_fail(monkeypatch):
    real = register_mod.write_predictions
    written = []

    def flaky(path, *a, **k):
        if written:
            raise KeyboardInterrupt("simulated interruption")
        real(path, *a, **k)
        written.append(Path(path))
    monkeypatch.setattr(register_mod, "write_predictions", flaky)
    return written


def test_interrupted_register_model_leaves_registry_as_it_was(trained, saved_model_dir, tmp_path, monkeypatch):
    root = shutil.copytree(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    before = tree(root)
    written = write_once_then_fail(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        register_model(reg, saved_model_dir, trained["data"], device="cpu")
    assert len(written) == 1 and ".staging" in written[0].parts      # a file was written before the failure
    assert tree(root) == before
    assert list((root / ".staging").iterdir()) == []
    assert Registry(root).verify()[1] == []


def test_interrupted_training_registration_leaves_registry_empty(tiny_base, tmp_path, monkeypatch):
    written = write_once_then_fail(monkeypatch)
    reg = Registry(tmp_path / "reg")
    data = copy_data(tmp_path / "data")
    with pytest.raises(KeyboardInterrupt):
        train_into(reg, TrainConfig(base=str(tiny_base), epochs=1, batch_size=16, limit=8), data, device="cpu")
    assert len(written) == 1
    assert reg.candidates() == []
    assert list((tmp_path / "reg" / "candidates").iterdir()) == []
    assert list((tmp_path / "reg" / ".staging").iterdir()) == []


# -- the same content twice ----------------------------------------------------------------------
def test_the_same_predictions_twice_are_refused_unless_forced(sample_data, tmp_path):
    pdir = make_pred_dir(sample_data, tmp_path / "preds")
    reg = Registry(tmp_path / "reg")
    first = register_predictions(reg, pdir, "starter", sample_data)
    again = shutil.copytree(pdir, tmp_path / "again")   # the same files from another folder
    with pytest.raises(EnsembleError) as e:
        register_predictions(reg, again, "starter", sample_data)
    assert str(e.value) == (f"--predictions {again}: already registered as candidate {first.id} (starter), same "
                            "content (sha256); nothing added (`ensemble register --again` adds a second copy)")
    assert [c.id for c in reg.candidates()] == [first.id] and staging_empty(reg.root)
    other = make_pred_dir(sample_data, tmp_path / "other", seed=1)
    assert register_predictions(reg, other, "other", sample_data).id != first.id
    second = register_predictions(reg, pdir, "starter", sample_data, force=True)
    assert len(reg.candidates()) == 3 and second.id != first.id


def test_the_same_model_twice_is_refused_before_inference_unless_forced(saved_model_dir, sample_data, tmp_path,
                                                                         monkeypatch):
    reg = Registry(tmp_path / "reg")
    first = register_model(reg, saved_model_dir, sample_data, name="tiny", device="cpu")
    monkeypatch.setattr(register_mod, "predict_into", lambda *a, **k: pytest.fail("inference ran"))
    with pytest.raises(EnsembleError, match=f"{saved_model_dir}: already registered as candidate {first.id} "
                                            r"\(tiny\), same content"):
        register_model(reg, saved_model_dir, sample_data, device="cpu")
    monkeypatch.undo()
    assert register_model(reg, saved_model_dir, sample_data, device="cpu", force=True).id != first.id


def test_a_complete_configuration_is_skipped_naming_its_candidates(trained, tmp_path):
    """Same fingerprint, already complete: nothing trained, the candidates named; a run killed after
    marking its candidates but before its record said so gets its record closed and checkpoint removed."""
    from ensemble.registry.runs import read_runs, write_run

    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg = Registry(root)
    (record,) = read_runs(root)
    write_run(root, {**record, "status": "running", "finished": None})
    (root / "runs" / record["run_id"] / "checkpoint").mkdir()
    notes = []

    class Notes(register_mod.Progress):
        def note(self, text):
            notes.append(text)
    res = train_into(reg, trained["config"], trained["data"], device="cpu", progress=Notes())
    ids = sorted(trained["result"].candidates)
    assert res.status == "skipped" and sorted(res.candidates) == ids and res.epochs == []
    assert notes == [f"{trained['config'].run_name}: already complete in the registry ({', '.join(ids)}); skipped "
                     "(`--again` trains it anyway; for a new seed change --seed)"]
    assert sorted(c.id for c in reg.candidates()) == ids
    (closed,) = read_runs(root)
    assert closed["status"] == "complete" and closed["candidates"] == ids
    assert not (root / "runs" / record["run_id"] / "checkpoint").exists()


def test_the_record_holds_every_epoch_and_on_epoch_gets_each_entry(trained):
    from ensemble.registry.runs import read_runs

    (record,) = read_runs(trained["registry"])
    res = trained["result"]
    assert record["run_id"] == res.run_id and record["status"] == "complete"
    assert record["epochs"] == [e.entry() for e in res.epochs] and record["candidates"] == sorted(res.candidates)
    assert record["fingerprint"] == trained["config"].fingerprint(record["data"])
    assert record["config"] == trained["config"].to_dict() and record["device"] == "cpu"
