"""One candidate folder: verification against its manifest (through ``Registry.verify``), and its
stored files checked against their records when they are used or the manifest is sealed again."""
from __future__ import annotations

import pytest

from ensemble.registry.candidate import MANIFEST, Candidate
from ensemble.registry.manifest import PredictionRecord, StoredFile, shape_problem
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from fixtures_torch import copy_registry, tiny_base, torch_one_thread, trained  # noqa: F401
from registry_files import crafted_copy, flip_last_byte, make_pred_dir, tamper_refusal


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


def _two_imports(tmp_path):
    reg = Registry(tmp_path / "reg")
    for i in range(2):
        register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / f"p{i}", tasks=("sts",), seed=i), f"ext{i}", SAMPLE)
    return reg, reg.candidates()


def test_verify_names_each_folder_whose_identity_is_wrong(tmp_path):
    """A manifest id that is not a plain name, one that differs from its folder, two folders with
    one id, and a candidate folder that is a symlink out of the registry: each a problem."""
    reg, (a, b) = _two_imports(tmp_path)
    crafted_copy(a.path, reg.candidates_dir / "evil", "../../victim")
    crafted_copy(a.path, reg.candidates_dir / "renamed", a.id)
    outside = crafted_copy(b.path, tmp_path / "outside", "linked")
    (reg.candidates_dir / "linked").symlink_to(outside)
    checked, problems = reg.verify()
    assert sorted((p.candidate, p.file, p.message) for p in problems) == sorted([
        ("evil", MANIFEST, "manifest id '../../victim' is not a plain name (folder 'evil')"),
        ("renamed", MANIFEST, f"manifest id {a.id!r} differs from its folder name 'renamed'"),
        ("renamed", MANIFEST, f"manifest id {a.id!r} is also the id in folder(s) {a.id!r}"),
        (a.id, MANIFEST, f"manifest id {a.id!r} is also the id in folder(s) 'renamed'"),
        ("linked", ".", f"candidate folder is a symlink to {outside.resolve()} (out of the registry): refused"),
    ])
    assert sorted(c.id for c in checked) == sorted([a.id, b.id, "evil", "renamed"])


def test_an_update_refuses_to_rehash_a_file_changed_after_it_was_stored(tmp_path):
    """A file the update keeps (hard-linked unchanged) must still match its old record: the
    tampered file is refused, the candidate left as it was and verify still reports it."""
    reg, (a, _) = _two_imports(tmp_path)
    f = a.path / "predictions" / "sts-test.csv"
    old, new = flip_last_byte(f)
    with pytest.raises(EnsembleError) as e:
        reg.update(a.id, lambda stage, manifest: manifest)
    assert str(e.value) == tamper_refusal(tmp_path / "reg" / "candidates" / a.id / "predictions" / "sts-test.csv",
                                          old, new)
    assert reg.get(a.id).manifest["files"]["predictions/sts-test.csv"]["sha256"] == old
    assert [(p.candidate, p.file, p.message) for p in reg.verify()[1]] == [
        (a.id, "predictions/sts-test.csv", "sha256 mismatch (content changed)")]



# -- the manifest's fields, read through the candidate's accessors ----------------------------------
SST_DEV, SST_TEST, STS_DEV = "a" * 64, "b" * 64, "c" * 64


def _worked_manifest() -> dict:
    """A trained candidate's manifest written out by hand: sst dev and test, sts dev only, no para."""
    def entry(task, split, rows):
        return {"file": f"predictions/{task}-{split}.csv", "data_file": f"ids-{task}-{split}.csv",
                "data_sha256": f"{task}-{split}-data", "rows": rows}
    return {
        "id": "c0ffee", "name": "multi-lr3e-05-e2", "kind": "model", "architecture": "multi",
        "tasks": ["sst", "para", "sts"], "parameters": 110_106_629, "created": "2026-01-02T03:04:05+00:00",
        "model": {"base": "bert-base-uncased", "tasks": ["sst", "para", "sts"]},
        "training": {"config": {"lr": 3e-05, "seed": 4}, "run_id": "r17", "epoch": 2, "fingerprint": "fp9",
                     "run_complete": True, "base_provenance": {"steps": 500}},
        "metrics": {"sst": {"dev": 0.512, "test": None}, "sts": {"dev": 0.87}},
        "predictions": {"sst": {"dev": entry("sst", "dev", 1101), "test": entry("sst", "test", 2210)},
                        "sts": {"dev": entry("sts", "dev", 864)}},
        "files": {"predictions/sst-dev.csv": {"sha256": SST_DEV, "size": 30000},
                  "predictions/sst-test.csv": {"sha256": SST_TEST, "size": 60000},
                  "predictions/sts-dev.csv": {"sha256": STS_DEV, "size": 20000},
                  "model/model.safetensors": {"sha256": "d" * 64, "size": 440}},
    }


def test_the_accessors_read_each_field_of_a_manifest_worked_by_hand(tmp_path):
    manifest = _worked_manifest()
    assert shape_problem(manifest) is None   # a manifest every reader accepts
    c = Candidate(tmp_path / "c0ffee", manifest)
    assert (c.id, c.recorded_id, c.name, c.kind, c.architecture) == (
        "c0ffee", "c0ffee", "multi-lr3e-05-e2", "model", "multi")
    assert (c.tasks, c.parameters, c.created) == (["sst", "para", "sts"], 110_106_629, "2026-01-02T03:04:05+00:00")
    assert c.model_config == {"base": "bert-base-uncased", "tasks": ["sst", "para", "sts"]}
    assert c.base == "bert-base-uncased"
    assert c.training == manifest["training"] and c.training_config == {"lr": 3e-05, "seed": 4}
    assert (c.run_id, c.epoch, c.fingerprint, c.run_complete, c.base_provenance) == (
        "r17", 2, "fp9", True, {"steps": 500})
    assert (c.dev_metric("sst"), c.dev_metric("sts")) == (0.512, 0.87)
    assert (c.metric("sst", "test"), c.metric("sts", "test")) == (None, None)
    assert c.files["predictions/sts-dev.csv"] == StoredFile(STS_DEV, 20000) and len(c.files) == 4
    assert (c.stored_sha256("model/model.safetensors"), c.stored_sha256("model/absent.json")) == ("d" * 64, None)
    assert (c.prediction_splits("sst"), c.prediction_splits("sts")) == (["dev", "test"], ["dev"])
    assert [c.prediction_sha256(t, s) for t, s in (("sst", "dev"), ("sst", "test"), ("sts", "dev"))] == [
        SST_DEV, SST_TEST, STS_DEV]
    assert c.prediction_record("sts", "dev") == PredictionRecord(
        "sts", "dev", "predictions/sts-dev.csv", "ids-sts-dev.csv", "sts-dev-data", 864)
    assert [(r.task, r.split, r.rows) for r in c.prediction_records()] == [("sst", "dev", 1101), ("sst", "test", 2210),
                                                                          ("sts", "dev", 864)]


def test_a_task_or_split_without_predictions_reads_as_none_or_empty(tmp_path):
    c = Candidate(tmp_path / "c0ffee", _worked_manifest())
    for task, split in (("para", "dev"), ("para", "test"), ("sts", "test")):
        assert not c.has_predictions(task, split)
        assert (c.prediction_record(task, split), c.prediction_sha256(task, split)) == (None, None)
    assert c.prediction_splits("para") == [] and c.dev_metric("para") is None
    with pytest.raises(EnsembleError, match="candidate c0ffee has no sts test predictions"):
        c.predictions("sts", "test")


def test_a_manifest_without_training_or_model_reads_as_absent(tmp_path):
    """Imported predictions (no model, no run) and a folder made by hand with its id alone."""
    imported = {k: v for k, v in _worked_manifest().items() if k not in ("model", "training")}
    c = Candidate(tmp_path / "ext", {**imported, "id": "ext", "kind": "predictions"})
    assert (c.kind, c.model_config, c.base, c.training, c.training_config) == ("predictions", None, None, None, {})
    assert (c.run_id, c.epoch, c.fingerprint, c.run_complete, c.base_provenance) == (None, None, None, False, None)
    bare = Candidate(tmp_path / "bare", {"id": "bare"})
    assert (bare.name, bare.kind, bare.tasks, bare.architecture, bare.parameters, bare.created) == (
        "bare", "model", [], None, None, None)
    assert (bare.files, bare.prediction_records(), bare.prediction_splits("sst")) == ({}, [], [])
