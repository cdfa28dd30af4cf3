"""A grid's runs (and so their candidates) are named by the values the grid varies, shown as
columns in ``run --dry-run``; the presets' names, and every fingerprint, stay as they were."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.scale.grid import load_grid, load_preset
from ensemble.training.config import TrainConfig

GRID = """
[defaults]
base = "minilm"
epochs = 1
[grid]
lr = [1e-5, 2e-5]
layer_decay = [0.9, 0.95]
"""


def test_the_values_a_grid_varies_name_its_runs(tmp_path):
    (tmp_path / "g.toml").write_text(GRID)
    names = [c.run_name for c in load_grid(tmp_path / "g.toml").configs]
    assert names == ["multi-sst+para+sts-lr1e-05-ld0.9-s0", "multi-sst+para+sts-lr1e-05-ld0.95-s0",
                     "multi-sst+para+sts-lr2e-05-ld0.9-s0", "multi-sst+para+sts-lr2e-05-ld0.95-s0"]


def test_preset_names_and_fingerprints_are_unchanged():
    assert [c.run_name for c in load_preset("quick").configs] == [
        "multi-sst+para+sts-s0", "cerberus-2-sst+para+sts-s0", "multi-sst+para+sts-smart10-s1", "triple-sst+para+sts-s2"]
    cfg = TrainConfig(base="minilm", lr=2e-5)
    named = TrainConfig(base="minilm", lr=2e-5, varies=("lr",))
    assert named.run_name == "multi-sst+para+sts-lr2e-05-s0" and cfg.run_name == "multi-sst+para+sts-s0"
    assert named.fingerprint({"x": "1"}) == cfg.fingerprint({"x": "1"})
    assert TrainConfig(**named.to_dict()).run_name == named.run_name   # a Ray worker's copy names the same


def test_dry_run_shows_the_varied_values_as_columns(tmp_path):
    (tmp_path / "g.toml").write_text(GRID)
    r = CliRunner().invoke(app, ["run", "--grid", str(tmp_path / "g.toml"), "--dry-run", "--registry",
                                 str(tmp_path / "reg")], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    header = next(line for line in r.stdout.splitlines() if "fingerprint" in line)
    assert header.split("┃")[2].strip() == "lr" and "decay" in header
    row = next(line for line in r.stdout.splitlines() if "lr2e-05-ld0.95" in line)
    assert [c.strip() for c in row.split("│")[2:4]] == ["2e-05", "0.95"]
    r = CliRunner().invoke(app, ["run", "--grid", str(tmp_path / "g.toml"), "--dry-run", "--json", "--registry",
                                 str(tmp_path / "reg")])
    assert json.loads(r.stdout)["runs"][0]["config"]["varies"] == ["lr", "layer_decay"]
