"""Registry commands: remove asks, verify's exit code, register --refresh recomputes what training cached."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE

runner = CliRunner()


def test_remove_asks_unless_yes(tmp_path, registry_with_imports, invoke):
    reg = registry_with_imports
    cid = json.loads(invoke("list", "--registry", reg, "--json").output)[0]["id"]
    r = runner.invoke(app, ["remove", cid, "--registry", str(reg)], input="n\n")
    assert r.exit_code == 1 and "kept" in r.output
    assert len(json.loads(invoke("list", "--registry", reg, "--json").output)) == 3
    assert invoke("remove", cid, "--registry", reg, "--yes").exit_code == 0
    assert len(json.loads(invoke("list", "--registry", reg, "--json").output)) == 2


def test_verify_exit_code(tmp_path, registry_with_imports, invoke):
    reg = registry_with_imports
    assert invoke("verify", "--registry", reg).exit_code == 0
    victim = next((reg / "candidates").iterdir()) / "predictions" / "sst-dev.csv"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 1
    victim.write_bytes(bytes(data))
    r = invoke("verify", "--registry", reg)
    assert r.exit_code == 1
    assert "predictions/sst-dev.csv" in r.output and "sha256 mismatch" in r.output


def test_inference_uses_the_training_truncation(tmp_path, tiny_base_dir, invoke):
    """A model trained with --max-length N predicts with the same truncation when it is re-run later:
    `register --refresh --force` recomputes exactly the predictions cached at training time."""
    reg = tmp_path / "reg"
    r = invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--max-length", "6",
               "--registry", reg, "--json")
    assert r.exit_code == 0, r.output
    (cand,) = (reg / "candidates").iterdir()
    before = {p.name: p.read_bytes() for p in (cand / "predictions").iterdir()}
    r = invoke("register", "--refresh", "--force", "--data", SAMPLE, "--registry", reg)
    assert r.exit_code == 0, r.output
    after = {p.name: p.read_bytes() for p in (cand / "predictions").iterdir()}
    assert after == before
