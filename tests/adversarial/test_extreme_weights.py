"""Extreme weights in a saved ensemble (hand-edited): a weight beyond 1e9 (``1e308``) is refused by the saved
ensemble's typed model, naming the field; tiny ones (``5e-324``) are divided by the largest, in float64, so ``predict`` writes what the same ratios
would (never every SST row as class 0); and ``validate`` and ``submit`` refuse leaderboard files
whose dev score is far below the dev score their ensemble recorded."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ensemble import workflow
from ensemble.cli.app import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.leaderboard.submission import checked_files, ensemble_record
from ensemble.leaderboard.validate import STAMP_NAME
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from registry_files import make_pred_dir


@pytest.fixture
def saved(tmp_path):
    """A registry of three imported candidates and a bagged-free greedy ensemble "mine" of them."""
    reg = Registry(tmp_path / "reg")
    for i in range(3):
        register_predictions(reg, make_pred_dir(SAMPLE, tmp_path / f"p{i}", seed=i), f"ext{i}", SAMPLE)
    workflow.select(reg, SAMPLE, mode="greedy", name="mine", repeats=0)
    return reg


def with_weights(reg: Registry, name: str, scale: float) -> None:
    """Every weight of the saved ensemble multiplied by ``scale`` (same ratios), as a hand edit."""
    path = reg.ensembles_dir / f"{name}.json"
    doc = json.loads(path.read_text())
    for entry in doc["tasks"].values():
        entry["weights"] = {cid: float(w) * scale for cid, w in entry["weights"].items()}
    path.write_text(json.dumps(doc))


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


def test_a_weight_beyond_a_billion_is_refused_naming_it(saved, tmp_path):
    with_weights(saved, "mine", 1e308)
    with pytest.raises(EnsembleError, match=r"mine.json: tasks\.\w+\.weights\.\w+: expected a number <= 1000000000.0"):
        workflow.predict(saved, SAMPLE, tmp_path / "edited", "mine")
    assert not (tmp_path / "edited").exists()


@pytest.mark.parametrize("scale", [5e-324, 1e-300])
def test_extreme_weights_write_what_their_ratios_would(saved, tmp_path, scale):
    plain = workflow.predict(saved, SAMPLE, tmp_path / "plain", "mine")
    with_weights(saved, "mine", scale)
    edited = workflow.predict(saved, SAMPLE, tmp_path / "edited", "mine")
    assert edited["dev_scores"] == pytest.approx(plain["dev_scores"])
    assert files(tmp_path / "edited") == files(tmp_path / "plain")
    sst = (tmp_path / "edited" / "sst-dev-output.csv").read_text().splitlines()[1:]
    assert {line.split(",")[1].strip() for line in sst} != {"0"}          # not every row class 0


def test_validate_and_submit_refuse_files_far_below_the_recorded_score(saved, tmp_path):
    out = tmp_path / "out"
    workflow.predict(saved, SAMPLE, out, "mine")
    stamp = json.loads((out / STAMP_NAME).read_text())
    stamp["tasks"]["sst"]["dev_score"] = 0.99        # what the ensemble recorded: far above these files
    (out / STAMP_NAME).write_text(json.dumps(stamp))
    r = CliRunner().invoke(app, ["validate", str(out), "--data", str(SAMPLE)])
    said = " ".join(r.output.split())
    assert r.exit_code == 1, r.output
    assert "sst-dev-output.csv: scores" in said and "far below the 0.9900 that ensemble mine recorded for sst" in said
    with pytest.raises(EnsembleError, match="far below"):
        ensemble_record(out, checked_files(out, SAMPLE), sample=True)
