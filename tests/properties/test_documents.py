"""Every JSON document the tool reads (issue 26), for any JSON value at any nesting, near-valid
edits and arbitrary bytes: the reader ends in the checked document or in one EnsembleError of one
line naming the file, never another exception. A document the reader passes is one its consumers
can use (the attributes or fields they read are there, of their types)."""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensemble.errors import EnsembleError
from ensemble.registry.runs import RUN_FORMAT, epoch_line, read_run
from ensemble.registry.saved import members_in_order, read_ensemble_file
from ensemble.leaderboard.submission import list_submissions
from ensemble.leaderboard.validate import STAMP_NAME, read_stamp
from ensemble.scale.grid import load_grid
from property_strategies import PROPERTY, any_bytes, hostile_json

WORK = Path(tempfile.mkdtemp(prefix="ensemble-documents-"))


@pytest.fixture(scope="module", autouse=True)
def _clean():
    yield
    shutil.rmtree(WORK, ignore_errors=True)


def refused_naming(fn, path):
    try:
        return fn()
    except EnsembleError as e:
        assert str(path) in str(e) and "\n" not in str(e), str(e)
        return None


EPOCH = {"epoch": 1, "train_loss": {"sst": 0.5}, "dev": {"sst": 0.4}, "seconds": 1.0, "tokens": 10, "lr": 0.001,
         "tokens_per_second": 10.0, "candidate": "c1", "best_for": ["sst"]}
RUN = {"format": RUN_FORMAT, "run_id": "r1", "status": "running", "config": {"lr": 1e-5}, "epochs": [EPOCH]}


@PROPERTY
@given(hostile_json(RUN))
def test_run_records(raw):
    path = WORK / "runs" / "r1" / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    record = refused_naming(lambda: read_run(path), path)
    if record is not None:
        for e in record["epochs"]:
            epoch_line(e, list(e["dev"]), 3)   # what `show RUN` prints


ENSEMBLE = {"name": "e", "mode": "caruana", "tasks": {"sst": {
    "members": ["a1"], "weights": {"a1": 1}, "dev_score": 0.5, "settings": {"steps": 5},
    "interval": {"estimate": 0.1, "low": 0.0, "high": 0.2, "level": 0.95}, "selected": {"weights": {"a1": 1}}}},
    "summary": [{"system": "s", "dev": {"sst": 0.5}}]}


@PROPERTY
@given(hostile_json(ENSEMBLE))
def test_saved_ensembles(raw):
    path = WORK / "e.json"
    path.write_bytes(raw)
    doc = refused_naming(lambda: read_ensemble_file(path), path)
    if doc is not None:
        for task, entry in doc["tasks"].items():
            assert all(w > 0 for w in members_in_order(doc, task).values())
            held = entry.get("interval") or {}
            if held.get("estimate") is not None:
                assert held["low"] + held["high"] == held["low"] + held["high"]   # numbers, as analyze adds them


LOOP = {"epoch": 1, "step": 3, "best": {"sst": 0.4}, "best_mean": 0.4, "since_best": 0, "stopped": False,
        "epochs": [EPOCH]}
CHECKPOINT = {"loop": LOOP, "optimizer_scalars": {"0": {"step": 3}}, "scaler": {},
              "rng": {"python": [3, [0] * 624 + [624], None], "numpy": ["MT19937", 624, 0, 0.0]}}


@PROPERTY
@given(hostile_json(CHECKPOINT))
def test_resume_checkpoint_states(raw):
    from ensemble.training import checkpoint as ckpt

    folder = WORK / "checkpoint"
    folder.mkdir(exist_ok=True)
    (folder / ckpt.STATE).write_bytes(raw)
    loop = refused_naming(lambda: ckpt.read_loop(folder), folder / ckpt.STATE)
    if loop is not None:
        assert loop.epoch == len(loop.epochs) and isinstance(loop.stopped, bool)


PRETRAIN = {"step": 4, "settings": {"seed": 0}, "losses": [1.5], "resumed": [], "seconds": 2.0,
            "perplexity_before": None, "head": "pretrained", "head_missing_keys": [], "optimizer_scalars": {}}


@PROPERTY
@given(hostile_json(PRETRAIN))
def test_pretraining_checkpoint_states(raw):
    from ensemble.training.mlm_checkpoint import read_state

    folder = WORK / "pretrain"
    folder.mkdir(exist_ok=True)
    (folder / "state.json").write_bytes(raw)
    state = refused_naming(lambda: read_state(folder), folder / "state.json")
    if state is not None:
        assert state.step >= 0 and all(isinstance(x, float) for x in state.losses)


STAMP = {"format": "ensemble-leaderboard-stamp", "state": "complete", "files": {"sst-dev-output.csv": "ab"},
         "data": {"ids-sst-dev.csv": "cd"}, "ensemble": "e", "replacing": {"ensemble": None, "files": {}}}


@PROPERTY
@given(hostile_json(STAMP))
def test_predict_stamps(raw):
    folder = WORK / "preds"
    folder.mkdir(exist_ok=True)
    (folder / STAMP_NAME).write_bytes(raw)
    check = read_stamp(folder)   # never raises: an unreadable stamp is a mismatch naming it
    if check.stamp is None:
        assert len(check.mismatches) == 1 and str(folder / STAMP_NAME) in check.mismatches[0]
        assert "\n" not in check.mismatches[0]
    else:
        assert isinstance(check.stamp["files"], dict)


SUBMISSION = {"format": "cs224n-multitask-leaderboard-submission", "created": "2024-03-01T00:00:00", "message": "m",
              "mean_dev": 0.5, "ensemble": {"name": "e", "verified": True},
              "predictions": {"predictions/sst-dev-output.csv": {"sha256": "ab", "rows": 3, "bytes": 10}}}


@PROPERTY
@given(hostile_json(SUBMISSION))
def test_submission_manifests(raw):
    folder = WORK / "subs"
    folder.mkdir(exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MANIFEST.json", raw)
    (folder / "s.zip").write_bytes(buf.getvalue())
    [row] = list_submissions(folder)
    if row["damaged"] is None:
        assert row["message"] is None or isinstance(row["message"], str)
        assert row["mean_dev"] is None or isinstance(row["mean_dev"], float)
    else:
        assert "\n" not in row["damaged"]


GRID = b'[defaults]\nlr = 1e-5\nepochs = 2\n\n[grid]\nseed = [0, 1]\n\n[[runs]]\nsmart_weight = 1.0\n'


DEEP_TOML = st.builds(lambda n, table: GRID + (b"[[runs]]\nseed = " + (b"{a = " * n + b"1" + b"}" * n if table
                                                                    else b"[" * n + b"1" + b"]" * n) + b"\n"),
                      st.sampled_from([1, 33, 500, 5000]), st.booleans())


@PROPERTY
@given(st.one_of(any_bytes(GRID), DEEP_TOML, st.sampled_from([f"[defaults]\n{k} = {v}\n".encode() for k in (
    "lr", "weight_decay", "smart_weight", "smart_sigma", "warmup", "max_grad_norm") for v in ("inf", "-inf", "nan")])))
def test_grid_files(raw):
    path = WORK / "g.toml"
    path.write_bytes(raw)
    grid = refused_naming(lambda: load_grid(path), path)
    if grid is not None:
        assert all(c.lr > 0 for c in grid.configs)
