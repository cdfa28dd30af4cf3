"""Tampering with a stored candidate's manifest (issue 13): a crafted prediction entry, edited
metrics, fields of the wrong type. `verify` names each; the reads leave that candidate out (a
note, never a traceback); and no rewrite of the candidate erases the evidence."""
from __future__ import annotations

import json

import pytest

from ensemble import workflow
from ensemble.registry.candidate import MANIFEST
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from registry_files import make_pred_dir


@pytest.fixture
def two(tmp_path):
    reg = Registry(tmp_path / "reg")
    a = register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / "pa", seed=0), "a", SAMPLE)
    b = register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / "pb", seed=1), "b", SAMPLE)
    return reg, a, b


def edit(cand, fn):
    f = cand.path / MANIFEST
    m = json.loads(f.read_text())
    fn(m)
    f.write_text(json.dumps(m))


def _entry(path):
    def fn(m):
        m["predictions"]["sst"]["dev"]["file"] = path
    return fn


TAMPERED = {   # case: (the edit, what verify says)
    "entry ../../../etc/passwd": (_entry("../../../etc/passwd"), ".file: expected 'predictions/sst-dev.csv', got '../../../etc/passwd'"),
    "entry /etc/passwd": (_entry("/etc/passwd"), ".file: expected 'predictions/sst-dev.csv', got '/etc/passwd'"),
    "entry to another file": (_entry("predictions/sts-dev.csv"), "expected 'predictions/sst-dev.csv'"),
    "entry a number": (_entry(5), ".file: expected a string, got 5"),
    "files a list": (lambda m: m.update(files=[]), "files: expected an object, got []"),
    "predictions a string": (lambda m: m.update(predictions="x"), "predictions: expected an object, got 'x'"),
    "metrics a list": (lambda m: m.update(metrics=[]), "metrics: expected an object, got []"),
    "dev metric NaN": (lambda m: m["metrics"]["sst"].update(dev=float("nan")), "metrics.sst.dev: expected a finite number or null, got nan"),
    "tasks a string": (lambda m: m.update(tasks="sst"), "tasks: expected a list, got 'sst'"),
    "name a number": (lambda m: m.update(name=5), "name: expected a string, got 5"),
    "edited dev metric": (lambda m: m["metrics"]["sst"].update(dev=0.99), "manifest edited after it was written"),
    "edited name": (lambda m: m.update(name="best"), "manifest edited after it was written"),
    "seal removed": (lambda m: m.pop("seal"), "manifest has no seal"),
    "data file a number": (lambda m: m["predictions"]["sst"]["dev"].update(data_file=5), "data_file: expected a string, got 5"),
    "data file a path": (lambda m: m["predictions"]["sst"]["dev"].update(data_file="../x.csv"), "data_file: expected a course file's plain name, got '../x.csv'"),
}


@pytest.mark.parametrize("case", TAMPERED, ids=list(TAMPERED))
def test_verify_names_the_tampered_manifest(two, case):
    reg, a, b = two
    fn, message = TAMPERED[case]
    edit(a, fn)
    _, problems = reg.verify()
    assert [(p.candidate, p.file) for p in problems] == [(a.id, MANIFEST)], problems
    assert message in problems[0].message, problems[0].message


@pytest.mark.parametrize("case", [c for c in TAMPERED if "seal" not in TAMPERED[c][1]
                                  and "edited" not in TAMPERED[c][1]])
def test_reads_leave_the_damaged_candidate_out(two, tmp_path, case):
    reg, a, b = two
    edit(a, TAMPERED[case][0])
    assert [c.id for c in reg.candidates()] == [b.id]
    workflow.select(reg, SAMPLE, mode="greedy", name="e", repeats=0)
    assert {cid for t in reg.load_ensemble("e")["tasks"].values() for cid in t["weights"]} == {b.id}
    with pytest.raises(EnsembleError, match=f"candidate.json: .*`ensemble remove {a.id}` deletes the folder"):
        reg.get(a.id)
    reg.remove(a.id)
    assert not a.path.exists() and reg.verify()[1] == []


def test_a_select_made_before_the_tampering_is_refused_by_predict(two, tmp_path):
    reg, a, b = two
    workflow.select(reg, SAMPLE, mode="greedy", name="e", repeats=0)
    for c in (a, b):
        edit(c, _entry("../../../etc/passwd"))
    with pytest.raises(EnsembleError, match="ensemble e: member folder .* is damaged \\(predictions.sst.dev.file: expected 'predictions/sst-dev.csv', got '../../../etc/passwd'"):
        workflow.predict(reg, SAMPLE, tmp_path / "out", "e")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("rewrite", ["update_manifest", "update"])
def test_rewrites_refuse_an_edited_manifest(two, rewrite):
    reg, a, _ = two
    edit(a, TAMPERED["edited dev metric"][0])
    before = (a.path / MANIFEST).read_bytes()
    with pytest.raises(EnsembleError, match="manifest edited after it was written.*refused to rewrite it"):
        if rewrite == "update_manifest":
            reg.update_manifest(a.id, lambda m: m.update(note="x"))
        else:
            reg.update(a.id, lambda stage, m: m)
    assert (a.path / MANIFEST).read_bytes() == before
    assert "manifest edited" in reg.verify()[1][0].message


def test_a_removed_seal_is_not_resealed_by_a_rewrite(two):
    """Deleting the seal as well as editing a metric must not get the forged metric sealed."""
    reg, a, _ = two
    edit(a, lambda m: (m["metrics"]["sst"].update(dev=0.99), m.pop("seal")))
    before = (a.path / MANIFEST).read_bytes()
    with pytest.raises(EnsembleError, match="manifest has no seal.*refused to rewrite it"):
        reg.update_manifest(a.id, lambda m: m.update(note="x"))
    assert (a.path / MANIFEST).read_bytes() == before and "no seal" in reg.verify()[1][0].message


def test_the_writer_never_stores_a_manifest_the_readers_refuse(two):
    reg, _, _ = two
    n = len(reg.candidates())
    with pytest.raises(EnsembleError, match=r"candidate.json: name: expected a string, got 5; .*not stored"):
        reg.add(lambda stage: {"name": 5})
    assert len(reg.candidates()) == n and reg.verify()[1] == []


def test_a_manifest_from_before_seals_passes_and_is_sealed_by_a_rewrite(two):
    reg, a, _ = two
    edit(a, lambda m: (m.pop("seal"), m.update(format="ensemble-candidate/1")))
    assert reg.verify()[1] == []
    reg.update_manifest(a.id, lambda m: m.update(note="x"))
    assert reg.verify()[1] == []
