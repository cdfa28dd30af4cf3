"""train, pretrain and run on the packaged sample with a tiny model."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ensemble.data import PACKAGE_SAMPLE as SAMPLE


def test_run_on_sample_with_tiny_model_resumes(tmp_path, monkeypatch, tiny_base_dir, invoke):
    """`ensemble run` end to end on the packaged sample; a second run skips every finished configuration."""
    monkeypatch.chdir(tmp_path)
    r = invoke("run", "--base", tiny_base_dir, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    assert res["sample"] is True
    assert len(res["trained"]) == 4 and res["skipped"] == []
    assert Path(res["submission"]).exists()
    assert invoke("validate", "predictions").exit_code == 0
    # per task the better system by the held-out estimate, its reason kept in the zip's manifest
    with zipfile.ZipFile(res["submission"]) as z:
        manifest = json.loads(z.read("MANIFEST.json"))
    info = manifest["ensemble"]
    doc = json.loads((tmp_path / "checkpoints" / "ensembles" / "run-quick.json").read_text())
    for task, entry in doc["tasks"].items():
        sel = res["selection"]["tasks"][task]
        expected, alone = sel["heldout"]["estimate"], list(sel["weights"]) == [sel["best_single"]["id"]]
        assert entry["system"] == ("best single" if expected is not None and expected <= 0 and not alone else "ensemble")
        assert entry["reason"] and entry["interval"]["df"] == 4
        assert info["tasks"][task]["system"] == entry["system"] and info["tasks"][task]["reason"] == entry["reason"]
    assert doc["mode"] == "caruana" and info["name"] == "run-quick" and info["system"] == "auto"
    assert info["verified"] is True and info["sample_data"] is True   # from predict's stamp, as `submit` records
    n_cands = len(list((tmp_path / "checkpoints" / "candidates").iterdir()))
    assert n_cands >= 4
    r2 = invoke("run", "--base", tiny_base_dir, "--json")
    res2 = json.loads(r2.output[r2.output.index("{"):])
    assert res2["trained"] == [] and len(res2["skipped"]) == 4
    assert len(list((tmp_path / "checkpoints" / "candidates").iterdir())) == n_cands
    assert len(list((tmp_path / "submissions").glob("*.zip"))) == 2


def test_pretrain_then_train_from_it_shows_provenance(tmp_path, tiny_base_dir, invoke):
    """`ensemble pretrain` writes an encoder that `ensemble train --base` takes; `list` shows where it came from."""
    out = tmp_path / "adapted"
    r = invoke("pretrain", "--data", SAMPLE, "--base", tiny_base_dir, "--tasks", "sst", "--steps", "3",
               "--batch-size", "8", "--checkpoint-every", "2", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    prov = json.loads((out / "ensemble_pretrain.json").read_text())
    assert prov["steps"] == 3 and "ids-sst-train.csv" in prov["data"]
    reg = tmp_path / "reg"
    r = invoke("train", "--data", SAMPLE, "--base", out, "--tasks", "sst", "--epochs", "1", "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads(invoke("list", "--registry", reg, "--json").output)
    assert listed[0]["base_provenance"]["steps"] == 3
