"""The door for candidates made anywhere (issue 24): ``ensemble.log_candidate`` without torch, the
course's leaderboard files and submission zips as vote candidates, the Quora row with an empty
label, and a registry that remembers the data its candidates were made from."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, softmax
from typer.testing import CliRunner

import ensemble
from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE, read_split
from ensemble.errors import EnsembleError
from ensemble.leaderboard.write import leaderboard_bytes
from ensemble.predfile import write_predictions
from ensemble.registry.home import RECORD
from ensemble.registry.logged import checked_outputs
from ensemble.registry.store import Registry
from ensemble.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
PIPED_ENV = {"COLUMNS": "200", "LINES": None, "TTY_COMPATIBLE": None, "FORCE_COLOR": None,
             "ENSEMBLE_REGISTRY": None, "ENSEMBLE_DATA": None}
EMPTY_LABEL_ID = "0e1f2a3b4c5d6e7f8091a2b3c"


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env={**PIPED_ENV, **(env or {})}, catch_exceptions=False)


def outputs_for(data: Path, seed: int = 0, tasks=("sst", "para", "sts")) -> dict:
    """Random logits / scores for every dev and test id of ``data``, rows shuffled."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in tasks:
        for s in ("dev", "test"):
            ids = read_split(data, t, s).ids
            order = rng.permutation(len(ids))
            v = rng.normal(size=(len(ids), 5)) if t == "sst" else rng.normal(size=len(ids)) * (2 if t == "sts" else 1)
            out.setdefault(t, {})[s] = ([ids[i] for i in order], v)
    return out


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (to see that nothing changed)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def other_data(tmp_path: Path) -> Path:
    """A copy of the sample whose Quora dev file also holds a row with an empty label (as the course's does)."""
    d = tmp_path / "data"
    shutil.copytree(PACKAGE_SAMPLE, d)
    with open(d / "quora-dev.csv", "a") as f:
        f.write(f"999\t{EMPTY_LABEL_ID}\tIs this a question?\tIs that a question?\t\n")
    return d


# -- the Python API -----------------------------------------------------------------------------
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_log_candidate_works_where_torch_and_transformers_cannot_be_imported(tmp_path):
    script = BLOCK + f"""
import numpy as np, ensemble
from ensemble.data import PACKAGE_SAMPLE, read_split
out = {{t: {{s: (read_split(PACKAGE_SAMPLE, t, s).ids, np.zeros((len(read_split(PACKAGE_SAMPLE, t, s)), 5) if t == 'sst' else len(read_split(PACKAGE_SAMPLE, t, s))))
        for s in ('dev', 'test')}} for t in ('sst', 'para', 'sts')}}
cid = ensemble.log_candidate('plain', out, registry={str(tmp_path / 'reg')!r}, data=PACKAGE_SAMPLE)
try:
    import torch
except ImportError:
    print('torch blocked')
print('id', cid, 'torch' in sys.modules, 'transformers' in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert "torch blocked" in r.stdout
    cid = r.stdout.split("id ")[1].split()[0]
    assert r.stdout.strip().endswith("False False")
    assert [c.id for c in Registry(tmp_path / "reg").candidates()] == [cid]


def test_logits_and_their_probabilities_are_the_same_candidate(tmp_path):
    out = outputs_for(PACKAGE_SAMPLE)
    a = Registry(tmp_path / "a")
    ca = a.get(ensemble.log_candidate("m", out, registry=a.root, data=PACKAGE_SAMPLE))
    probs = {t: {s: (ids, softmax(v, axis=1) if t == "sst" else expit(v) if t == "para" else v)
                 for s, (ids, v) in by.items()} for t, by in out.items()}
    b = Registry(tmp_path / "b")
    cb = b.get(ensemble.log_candidate("m", probs, registry=b.root, data=PACKAGE_SAMPLE, kind="probabilities"))
    assert tree(ca.path / "predictions") == tree(cb.path / "predictions")
    assert ca.manifest["metrics"] == cb.manifest["metrics"]
    sp = read_split(PACKAGE_SAMPLE, "sst", "dev")
    assert ca.dev_metric("sst") == pytest.approx(np.mean(np.argmax(
        np.array([dict(zip(out["sst"]["dev"][0], out["sst"]["dev"][1]))[i] for i in sp.ids]), 1) == sp.labels))
    before = tree(a.root)
    with pytest.raises(EnsembleError, match=f"already registered as candidate {ca.id}.*again=True"):
        ensemble.log_candidate("m-probs", probs, registry=a.root, data=PACKAGE_SAMPLE, kind="probabilities")
    assert tree(a.root) == before


def _broken(kind: str, out: dict) -> tuple[dict, str]:
    ids, v = out["sst"]["dev"]
    ids, v = list(ids), v.copy()
    if kind == "wrong id":
        ids[4] = "f" * 25
        return {"sst": {"dev": (ids, v)}}, r"sst dev, row 4: id 'f{25}' is not in .*ids-sst-dev.csv; expected one of the 24 ids"
    if kind == "missing row":
        gone = ids[7]
        return ({"sst": {"dev": (ids[:7] + ids[8:], np.delete(v, 7, axis=0))}},
                rf"sst dev: 1 id of .*ids-sst-dev.csv without a row: {gone}; expected one row for each of its 24 ids")
    if kind == "nan":
        v[5, 1] = np.nan
        return {"sst": {"dev": (ids, v)}}, rf"sst dev, row 5 \(id {ids[5]}\) column 1: value nan; expected a finite logit"
    return {"sst": {"dev": (ids, v[:, :4])}}, r"sst dev: values have shape \(24, 4\); expected \(n, 5\): 5 logits per row"


@pytest.mark.parametrize("kind", ["wrong id", "missing row", "nan", "wrong width"])
def test_bad_outputs_are_refused_by_task_split_row_and_expected_value(tmp_path, kind):
    reg = Registry(tmp_path / "reg")
    ensemble.log_candidate("good", outputs_for(PACKAGE_SAMPLE), registry=reg.root, data=PACKAGE_SAMPLE)
    before = tree(reg.root)
    bad, message = _broken(kind, outputs_for(PACKAGE_SAMPLE, seed=1))
    with pytest.raises(EnsembleError, match=message):
        ensemble.log_candidate("bad", bad, registry=reg.root, data=PACKAGE_SAMPLE)
    assert tree(reg.root) == before


def test_more_splits_under_a_name_only_when_asked(tmp_path):
    reg = Registry(tmp_path / "reg")
    out = outputs_for(PACKAGE_SAMPLE)
    cid = ensemble.log_candidate("grow", {"sst": out["sst"]}, registry=reg.root, data=PACKAGE_SAMPLE)
    before = tree(reg.root)
    with pytest.raises(EnsembleError, match="a candidate named 'grow' is already in .*pass add=True"):
        ensemble.log_candidate("grow", {"para": out["para"]}, registry=reg.root)
    assert tree(reg.root) == before
    assert ensemble.log_candidate("grow", {"para": out["para"]}, registry=reg.root, add=True) == cid
    c = reg.get(cid)
    assert c.tasks == ["sst", "para"] and c.has_predictions("para", "test") and c.dev_metric("para") is not None
    with pytest.raises(EnsembleError, match="already holds sst dev, sst test"):
        ensemble.log_candidate("grow", {"sst": out["sst"]}, registry=reg.root, add=True)


def test_the_environment_sets_the_registry_and_data(tmp_path, monkeypatch):
    data = other_data(tmp_path)
    monkeypatch.setenv("ENSEMBLE_REGISTRY", str(tmp_path / "env-reg"))
    monkeypatch.setenv("ENSEMBLE_DATA", str(data))
    cid = ensemble.log_candidate("env", outputs_for(data))
    assert json.loads((tmp_path / "env-reg" / RECORD).read_text())["data"] == str(data.resolve())
    r = invoke("list", "--quiet", env={"ENSEMBLE_REGISTRY": str(tmp_path / "env-reg")})
    assert r.exit_code == 0 and r.stdout.split() == [cid]
    r = invoke("select", "--repeats", "0", env={"ENSEMBLE_REGISTRY": str(tmp_path / "env-reg"),
                                                 "ENSEMBLE_DATA": str(PACKAGE_SAMPLE)})
    assert r.exit_code == 1 and "did you mean --data" in r.stderr
    for command in ("select", "predict", "register", "train", "list", "analyze", "submit"):
        text = invoke(command, "--help").stdout
        assert "ENSEMBLE_REGISTRY" in text, command
        if command != "list":
            assert "ENSEMBLE_DATA" in text, command


# -- the Quora row with an empty label ------------------------------------------------------------
def test_the_row_the_reader_drops_is_counted_and_accepted(tmp_path, capsys):
    data = other_data(tmp_path)
    assert [i for _, i in read_split(data, "para", "dev").skipped] == [EMPTY_LABEL_ID]
    pred = tmp_path / "preds"
    pred.mkdir()
    ids = read_split(data, "para", "dev").ids + [EMPTY_LABEL_ID]
    (pred / "para-dev.csv").write_text("id,prob\n" + "".join(f"{i},0.25\n" for i in ids))
    r = invoke("register", "--predictions", pred, "--name", "all-rows", "--data", data, "--registry", tmp_path / "reg")
    assert r.exit_code == 0, r.stderr
    assert f"para-dev: 1 row dropped ({EMPTY_LABEL_ID}): the course's reader skips it for an empty label" in \
        " ".join(r.stderr.split())
    c = Registry(tmp_path / "reg").candidates()[0]
    assert EMPTY_LABEL_ID not in c.predictions("para", "dev")[0] and c.manifest["predictions"]["para"]["dev"]["rows"] == 24
    out = {"para": {"dev": (ids, np.zeros(len(ids)))}}
    c2 = ensemble.log_candidate("api-all-rows", out, registry=tmp_path / "reg")
    assert f"para-dev: 1 row dropped ({EMPTY_LABEL_ID})" in capsys.readouterr().err
    assert (Registry(tmp_path / "reg").get(c2).manifest["source"]["dropped_rows"] == {"para-dev": [EMPTY_LABEL_ID]})


# -- leaderboard files and submission zips --------------------------------------------------------
def _leaderboard_folder(folder: Path, out: dict) -> Path:
    """The six leaderboard files of ``out`` (logits / scores) as the course writes them."""
    folder.mkdir(parents=True)
    for t, by in out.items():
        for s, (ids, v) in by.items():
            unrounded = softmax(v, axis=1) if t == "sst" else expit(v) if t == "para" else v
            (folder / TASKS[t].output_name(s)).write_bytes(leaderboard_bytes(t, ids, unrounded))
    return folder


def test_leaderboard_files_and_a_submission_zip_register_as_vote_candidates(tmp_path):
    reg = tmp_path / "reg"
    folder = _leaderboard_folder(tmp_path / "sub1" / "predictions", outputs_for(PACKAGE_SAMPLE, seed=1))
    second = _leaderboard_folder(tmp_path / "sub2" / "predictions", outputs_for(PACKAGE_SAMPLE, seed=2))
    zpath = tmp_path / "submission-2.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(second.iterdir()):
            z.write(p, f"predictions/{p.name}")
        z.writestr("multitask_classifier.py", "# the student's code\n")
    r1 = invoke("register", "--predictions", folder.parent, "--name", "past-1", "--registry", reg, "--data", PACKAGE_SAMPLE)
    r2 = invoke("register", "--predictions", zpath, "--name", "past-2", "--registry", reg, "--data", PACKAGE_SAMPLE)
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.stderr + r2.stderr
    assert "registered as hard labels" in " ".join(r1.stderr.split())
    cands = Registry(reg).candidates()
    assert sorted(c.kind for c in cands) == ["labels", "labels"]
    sst = dict(zip(*cands[0].predictions("sst", "dev")))
    assert all(sorted(row) == [0, 0, 0, 0, 1] for row in sst.values())   # one-hot: a vote
    listed = invoke("list", "--registry", reg, "--columns", "name,arch,kind").stdout
    assert "leaderboard labels (vote)" in listed and "labels" in listed
    sel = invoke("select", "--registry", reg, "--repeats", "0", "--mode", "greedy")
    assert sel.exit_code == 0, sel.stderr
    assert "(vote)" in sel.stdout and "hard labels from leaderboard files (vote)" in " ".join(sel.stderr.split())
    doc = Registry(reg).load_ensemble("ensemble-greedy")
    members = {cid for t in doc["tasks"].values() for cid in t["members"]}
    assert members and members <= {c.id for c in cands}
    analysis = invoke("analyze", "--registry", reg, "--ensemble", "ensemble-greedy", "--task", "sst")
    assert analysis.exit_code == 0 and "(vote: hard labels)" in " ".join(analysis.stdout.split())
    out = tmp_path / "predictions"
    assert invoke("predict", "--registry", reg, "--out", out).exit_code == 0   # the votes' ensemble writes the files
    again = invoke("register", "--predictions", folder.parent, "--name", "past-1b", "--registry", reg)
    assert again.exit_code == 1 and "same content" in again.stderr


def test_unrounded_files_beside_leaderboard_files_are_the_ones_registered(tmp_path):
    out = outputs_for(PACKAGE_SAMPLE, tasks=("sst",))
    folder = _leaderboard_folder(tmp_path / "both", out)
    probs = checked_outputs(out, PACKAGE_SAMPLE, "logits")[1]
    for (t, s), (ids, v) in probs.items():
        write_predictions(folder / f"{t}-{s}.csv", t, ids, v)
    r = invoke("register", "--predictions", folder, "--name", "rich", "--registry", tmp_path / "reg", "--data", PACKAGE_SAMPLE)
    assert r.exit_code == 0, r.stderr
    assert [c.kind for c in Registry(tmp_path / "reg").candidates()] == ["predictions"]


def test_unrounded_predictions_under_a_leaderboard_name_say_how_to_register_them(tmp_path):
    folder = tmp_path / "lb"
    folder.mkdir()
    ids, v = checked_outputs(outputs_for(PACKAGE_SAMPLE, tasks=("sst",)), PACKAGE_SAMPLE, "logits")[1][("sst", "dev")]
    write_predictions(folder / "sst-dev-output.csv", "sst", ids, v)
    r = invoke("register", "--predictions", folder, "--name", "x", "--registry", tmp_path / "reg", "--data", PACKAGE_SAMPLE)
    assert r.exit_code == 1
    assert "its header 'id,p0,p1,p2,p3,p4' is that of unrounded predictions: named sst-dev.csv it registers" in \
        " ".join(r.stderr.split())


def test_a_leaderboard_file_under_the_import_name_says_what_it_is(tmp_path):
    folder = _leaderboard_folder(tmp_path / "lb", outputs_for(PACKAGE_SAMPLE, tasks=("sst",)))
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    shutil.copy(folder / "sst-dev-output.csv", renamed / "sst-dev.csv")
    r = invoke("register", "--predictions", renamed, "--name", "x", "--registry", tmp_path / "reg", "--data", PACKAGE_SAMPLE)
    text = " ".join(r.stderr.split())
    assert r.exit_code == 1
    assert "a leaderboard file (hard labels), not unrounded predictions" in text and "sst-dev-output.csv" in text
    assert "ensemble.log_candidate" in text
    assert not (tmp_path / "reg" / "candidates").exists() or not any((tmp_path / "reg" / "candidates").iterdir())


# -- a registry that remembers its data -----------------------------------------------------------
def test_forgetting_data_uses_the_recorded_folder_and_other_data_is_one_clear_line(tmp_path, monkeypatch):
    data = other_data(tmp_path)
    reg = tmp_path / "reg"
    ensemble.log_candidate("a", outputs_for(data, 1), registry=reg, data=data)
    ensemble.log_candidate("b", outputs_for(data, 2), registry=reg, data=data)
    monkeypatch.chdir(tmp_path / "data")   # no ./data here: the old default was the packaged sample
    r = invoke("select", "--registry", reg, "--repeats", "0")
    assert r.exit_code == 0, r.stderr
    assert "SAMPLE" not in r.stdout + r.stderr and "stale" not in r.stdout + r.stderr
    before = tree(reg)
    r = invoke("select", "--registry", reg, "--data", PACKAGE_SAMPLE, "--name", "other")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 1
    assert " ".join(r.stderr.split()).startswith(f"error: these candidates were made from {data.resolve()}; you passed "
                                                 f"--data {PACKAGE_SAMPLE}, whose quora-dev.csv differs: did you mean "
                                                 f"--data {data.resolve()}?")
    assert len(lines) <= 3   # one message (wrapped at most by the terminal width)
    for refresh in (["register", "--refresh", "--yes"], ["predict", "--out", tmp_path / "p"]):
        r = invoke(*refresh, "--registry", reg, "--data", PACKAGE_SAMPLE)
        assert r.exit_code == 1 and "--refresh --data" not in r.stderr
    assert tree(reg) == before


def test_an_unrecorded_registry_never_falls_back_to_the_sample_silently(tmp_path, monkeypatch):
    data = other_data(tmp_path)
    reg = tmp_path / "reg"
    ensemble.log_candidate("a", outputs_for(data, 1), registry=reg, data=data)
    (reg / RECORD).unlink()   # a registry from before the record
    monkeypatch.chdir(tmp_path / "data")
    r = invoke("select", "--registry", reg)
    assert r.exit_code == 1
    assert "were not made from the packaged sample, and no --data was given" in " ".join(r.stderr.split())


def test_no_message_advises_refreshing_towards_other_data():
    for path in (REPO / "ensemble").rglob("*.py"):
        assert "--refresh --data" not in path.read_text(), path


def test_a_registry_from_before_the_record_is_not_claimed_by_other_data(tmp_path):
    data = other_data(tmp_path)
    reg = tmp_path / "reg"
    ensemble.log_candidate("a", outputs_for(data, 1), registry=reg, data=data)
    (reg / RECORD).unlink()
    ensemble.log_candidate("b", outputs_for(PACKAGE_SAMPLE, 2), registry=reg, data=PACKAGE_SAMPLE)
    assert not (reg / RECORD).exists()   # its candidates come from two data sets: neither is recorded
    fresh = tmp_path / "fresh"
    ensemble.log_candidate("c", outputs_for(PACKAGE_SAMPLE, 3), registry=fresh, data=PACKAGE_SAMPLE)
    assert json.loads((fresh / RECORD).read_text())["sample"] is True
