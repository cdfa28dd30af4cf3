"""One candidate folder: verification against its manifest (through ``Registry.verify``), and its
stored files checked against their records when they are used or the manifest is sealed again."""
from __future__ import annotations

import pytest

from ensemble.registry.candidate import MANIFEST
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

