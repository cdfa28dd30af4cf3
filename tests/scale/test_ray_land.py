"""The driver's side of shipping, without Ray: a run's candidates as a worker ships them (every
file as bytes) land through the registry's atomic add, byte for byte, complete; a file damaged in
transit, or one too many, lands nothing of the run."""
from __future__ import annotations

import json

import pytest

from ensemble.errors import EnsembleError
from ensemble.scale.driver import first_line, land
from ensemble.scale.worker import read_files, write_files
from ensemble.registry.store import Registry
from fixtures_torch import tiny_base, torch_one_thread, trained  # noqa: F401


def shipped_from(trained) -> dict:
    reg = Registry(trained["registry"])
    return {"candidates": [{"id": cid, "files": read_files(reg.candidates_dir / cid)}
                           for cid in trained["result"].candidates], "record": None}


def test_shipped_candidates_land_as_they_were_complete_and_verified(trained, tmp_path):
    shipped = shipped_from(trained)
    reg = Registry(tmp_path / "reg")
    ids = land(reg, shipped, "the-run")
    assert ids == trained["result"].candidates
    src = Registry(trained["registry"])
    for cid in ids:
        assert reg.get(cid).manifest == src.get(cid).manifest
        assert read_files(reg.candidates_dir / cid) == read_files(src.candidates_dir / cid)
        assert reg.get(cid).manifest["training"]["run_complete"] is True
    assert reg.verify()[1] == []


@pytest.mark.parametrize("damage", ["flip", "extra", "id"])
def test_a_damaged_shipment_lands_nothing_of_the_run(trained, tmp_path, damage):
    shipped = shipped_from(trained)
    files = shipped["candidates"][-1]["files"]
    if damage == "flip":
        rel = "predictions/sst-dev.csv"
        files[rel] = files[rel][:-2] + bytes([files[rel][-2] ^ 1]) + files[rel][-1:]
        expected = f"{rel}: sha256 differs from its manifest's (damaged in transit); nothing of the run registered"
    elif damage == "extra":
        files["model/stray.bin"] = b"x"
        expected = "its files or id differ from its manifest's; nothing of the run registered"
    else:
        manifest = json.loads(files["candidate.json"])
        files["candidate.json"] = json.dumps({**manifest, "id": "someoneelse"}).encode()
        expected = "its manifest's seal does not match its content (changed in transit); nothing of the run registered"
    reg = Registry(tmp_path / "reg")
    with pytest.raises(EnsembleError) as e:
        land(reg, shipped, "the-run")
    assert str(e.value).startswith(f"run the-run: shipped candidate {shipped['candidates'][-1]['id']}: ")
    assert expected in str(e.value)
    assert not reg.exists or reg.candidates() == []


def test_shipped_files_never_leave_their_folder(tmp_path):
    for bad in ("../up.txt", "/abs.txt", "a/../../b"):
        with pytest.raises(EnsembleError, match="expected a plain relative path"):
            write_files(tmp_path / "w", {bad: b"x"})
    assert not (tmp_path / "up.txt").exists()


def test_a_failed_runs_error_is_its_causes_first_line():
    class Wrapped(Exception):
        def __init__(self, cause):
            super().__init__("Ray's wrapping, with a traceback\n...")
            self.cause = cause
    assert first_line(Wrapped(OSError("no config.json\nin /tmp/x"))) == "OSError: no config.json"
    assert first_line(Wrapped(EnsembleError("--base x: no such folder\nmore"))) == "--base x: no such folder"
    assert first_line(ValueError("plain")) == "ValueError: plain"
