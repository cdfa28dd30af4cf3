"""train, pretrain and run on the packaged sample with a tiny model."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE


@pytest.mark.slow
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
        sel = res["selection"]["tasks"][task]        # mode auto: the system its estimates chose
        assert entry["system"] == ("best single" if sel["chosen"] == "single" else "ensemble")
        assert entry["reason"] and entry["interval"]["df"] == 4 and entry["chosen"] == sel["chosen"]
        assert info["tasks"][task]["system"] == entry["system"] and info["tasks"][task]["reason"] == entry["reason"]
    assert doc["mode"] == "auto" and info["name"] == "run-quick" and info["system"] == "auto"
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


def test_train_prints_a_line_per_epoch_keeps_the_record_and_skips_a_finished_configuration(tmp_path, tiny_base_dir,
                                                                                         invoke):
    """Piped: one permanent line per epoch as it ends; the run's record in the registry, shown by
    `show` (a candidate's run, or the run by its id; --json carries it); the same configuration
    again is skipped naming its candidates, --again trains it anyway."""
    reg = tmp_path / "reg"
    args = ["train", "--data", SAMPLE, "--base", tiny_base_dir, "--tasks", "sst,sts", "--epochs", "2",
            "--batch-size", "16", "--limit", "16", "--schedule", "cosine", "--warmup", "0.25", "--registry", reg]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/2", "2/2"]
    assert all(" loss sst " in ln and " dev sst " in ln and " tokens/s " in ln for ln in lines), lines
    (record,) = [json.loads(p.read_text()) for p in (reg / "runs").glob("*/record.json")]
    assert record["status"] == "complete" and record["format"] == "ensemble-run/1"
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    entry = record["epochs"][0]
    assert sorted(entry) == ["best_for", "candidate", "dev", "epoch", "lr", "seconds", "tokens", "tokens_per_second",
                             "train_loss"]
    assert sorted(entry["train_loss"]) == ["sst", "sts"]
    # 2 steps an epoch (one batch per task), 4 in all, 1 warm-up: the epochs' last steps 1 and 3 run at
    # 1e-5 x 1 and 1e-5 x (1 + cos(2 pi / 3)) / 2 = 2.5e-6
    assert [e["lr"] for e in record["epochs"]] == pytest.approx([1e-5, 2.5e-6], rel=1e-12)
    assert not (reg / "runs" / record["run_id"] / "checkpoint").exists()
    cand = record["candidates"][0]
    shown = invoke("show", cand, "--registry", reg)
    assert shown.exit_code == 0 and f"run {record['run_id']}: {record['name']}" in shown.output
    assert "tokens/s" in shown.output and "2.5e-06" in shown.output
    as_json = json.loads(invoke("show", cand, "--registry", reg, "--json").stdout)
    assert as_json["run"] == record and as_json["id"] == cand
    assert json.loads(invoke("show", record["run_id"], "--registry", reg, "--json").stdout) == record
    again = invoke(*args)
    assert again.exit_code == 0
    assert (f"already complete in the registry ({', '.join(record['candidates'])}); skipped"
            in " ".join(again.output.split()))
    assert len(list((reg / "runs").iterdir())) == 1
    assert invoke(*args, "--again").exit_code == 0
    assert len(list((reg / "runs").iterdir())) == 2


def test_train_fp16_on_a_cpu_is_an_error(tmp_path, tiny_base_dir, invoke):
    r = invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--tasks", "sst", "--epochs", "1", "--device", "cpu",
               "--precision", "fp16", "--registry", tmp_path / "reg")
    assert r.exit_code == 1 and "error: --precision fp16 needs a CUDA device; on a CPU use fp32 or bf16" in r.output
    assert not (tmp_path / "reg").exists()


def test_every_train_config_field_is_a_train_option_of_the_same_name():
    """A grid file's keys are TrainConfig's field names; each is `train --<field with dashes>`."""
    from dataclasses import fields

    from typer.main import get_command

    from ensemble.cli import app
    from ensemble.training.config import TrainConfig   # lazy: torch, only this test

    train = get_command(app).commands["train"]
    options = {o for p in train.params for o in p.opts}
    assert [f.name for f in fields(TrainConfig) if f"--{f.name.replace('_', '-')}" not in options
            and f.name != "varies"] == []   # varies: what a grid varies (the run's name), set by the grid, no option


@pytest.mark.parametrize("command, config", [("train", "TrainConfig"), ("pretrain", "PretrainConfig")])
def test_every_default_is_the_configs(command, config):
    """Each option of train and pretrain that is a config field shows the config's own default (a command
    that declared its own default beside the config's would fail here)."""
    from dataclasses import fields

    from typer.main import get_command

    from ensemble.cli import app
    from ensemble.training import config as config_mod

    cls = getattr(config_mod, config)
    params = {p.name: p for p in get_command(app).commands[command].params}
    shown = {f.name: params[f.name].default for f in fields(cls) if "help" in f.metadata}
    expected = {f.name: ",".join(f.default) if f.name == "tasks" else f.default
                for f in fields(cls) if "help" in f.metadata}
    assert shown == expected and len(shown) >= (25 if command == "train" else 9)
    assert {f.name: f.default for f in fields(cls)} == {f.name: getattr(cls(), f.name) for f in fields(cls)}


def test_run_and_select_default_to_the_selection_default():
    from typer.main import get_command

    from ensemble.cli import app
    from ensemble.selection import DEFAULT_MODE

    commands = get_command(app).commands
    for name in ("select", "run"):
        mode = {p.name: p for p in commands[name].params}["mode"].default
        assert getattr(mode, "value", mode) == DEFAULT_MODE, name
