"""Issue 26 through the command line: a damaged document (a run record, a saved ensemble, a sealed
manifest, a submission zip's manifest, a grid file) gives one clear line naming the file and the
field and exit 1 (or, where a listing goes on without it, a note naming both), never "failed
unexpectedly", and nothing stored changes."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.registry.manifest import SEAL, seal_of


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}   # the empty lock file


def refused(r, *parts: str) -> str:
    assert r.exit_code == 1, r.output
    assert "unexpectedly" not in r.output and "Traceback" not in r.output, r.output
    for p in parts:
        assert p in r.output, (p, r.output)
    return r.output


EPOCH = {"epoch": 1, "train_loss": {"sst": 0.5}, "dev": {"sst": 0.4}, "seconds": 1.0, "tokens": 10, "lr": 0.001,
         "tokens_per_second": 10.0, "candidate": None, "best_for": []}
RECORD = {"format": "ensemble-run/1", "run_id": "r1", "name": "x", "status": "complete", "config": {"lr": 1e-5},
          "epochs": [EPOCH], "candidates": []}


@pytest.mark.parametrize("edit, field", [
    ({"config": "lr=1"}, "config: expected an object, got 'lr=1'"),
    ({"epochs": [{**EPOCH, "dev": {"sst": "fast"}}]}, "epochs[0].dev.sst: expected a number, got 'fast'"),
    ({"epochs": [{k: v for k, v in EPOCH.items() if k != "dev"}]}, "epochs[0].dev: missing"),
    ({"epochs": {"1": EPOCH}}, "epochs: expected a list"),
    ({"epochs": [{**EPOCH, "dev": {"sst": 0.4, "para": 0.3}}]}, "epochs[0].dev: tasks ['para', 'sst'], expected"),
    ({"config": {"lr": "[" * 3000 + "]" * 3000}}, None),
])
def test_a_damaged_run_record(invoke, registry_with_imports, edit, field):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0").exit_code == 0
    path = reg / "runs" / "r1" / "record.json"
    path.parent.mkdir(parents=True)
    text = json.dumps({**RECORD, **edit})
    if field is None:   # nesting beyond Python's recursion limit
        text, field = text.replace('"' + "[" * 3000 + "]" * 3000 + '"', "[" * 3000 + "]" * 3000), "nested deeper than"
    path.write_text(text)
    before = snapshot(reg)
    refused(invoke("show", "r1", "--registry", reg), f"{path}: {field}")
    r = invoke("report", "--registry", reg, "--data", SAMPLE, "--out", reg.parent / "r.html")   # set aside, never blocking
    assert r.exit_code == 0 and f"set aside 1 damaged run record ({path})" in " ".join(r.output.split())
    v = invoke("verify", "--registry", reg)
    assert v.exit_code == 1 and field in " ".join(v.output.split())
    assert snapshot(reg) == before


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.update(interval=[1, 2]), "tasks.sst.interval: expected an object, got [1, 2]"),
    (lambda t: t.update(interval={"estimate": "0.1", "low": 0, "high": 1}),
     "tasks.sst.interval.estimate: expected a number, got '0.1'"),
    (lambda t: t.update(settings="fast"), "tasks.sst.settings: expected an object, got 'fast'"),
    (lambda t: t.update(settings={"bogus": 1}), "tasks.sst.settings.bogus: unknown field"),
])
def test_a_saved_ensemble_with_a_damaged_nested_field(invoke, registry_with_imports, edit, field):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "e").exit_code == 0
    f = reg / "ensembles" / "e.json"
    doc = json.loads(f.read_text())
    edit(doc["tasks"]["sst"])
    f.write_text(json.dumps(doc))
    before = snapshot(reg)
    refused(invoke("ensembles", "show", "e", "--registry", reg), f"{f}: {field}")
    refused(invoke("analyze", "--ensemble", "e", "--data", SAMPLE, "--registry", reg), f"{f}: {field}")
    assert snapshot(reg) == before


def test_a_summary_row_without_its_system(invoke, registry_with_imports):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "e").exit_code == 0
    f = reg / "ensembles" / "e.json"
    doc = json.loads(f.read_text())
    doc["summary"][0].pop("system")
    f.write_text(json.dumps(doc))
    refused(invoke("ensembles", "show", "e", "--registry", reg), f"{f}: summary[0].system: missing")


@pytest.mark.parametrize("edit, field", [
    ({"model": "bert"}, "model: expected an object, got 'bert'"),
    ({"parameters": "110M"}, "parameters: expected an integer, got '110M'"),
])
def test_a_resealed_manifest_with_a_damaged_field(invoke, registry_with_imports, edit, field):
    """The seal is a plain sha256 anyone can recompute: a valid seal does not make the fields whole."""
    reg = registry_with_imports
    m = next((reg / "candidates").glob("*/candidate.json"))
    manifest = {**json.loads(m.read_text()), **edit}
    manifest[SEAL] = seal_of(manifest)
    m.write_text(json.dumps(manifest))
    before = snapshot(reg)
    r = invoke("list", "--registry", reg)
    assert r.exit_code == 0 and "unexpectedly" not in r.output and field in r.output.replace("\n", ""), r.output
    refused(invoke("show", m.parent.name, "--registry", reg), f"candidate.json: {field}")
    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0", "--name", "x")   # left out, named
    assert r.exit_code == 0 and "unexpectedly" not in r.output and field in r.output.replace("\n", ""), r.output
    assert {k: v for k, v in snapshot(reg).items() if not k.startswith("ensembles")} == before


def test_a_submission_zip_with_a_damaged_manifest(invoke, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("MANIFEST.json", json.dumps({"format": "cs224n-multitask-leaderboard-submission", "message": 5}))
    (tmp_path / "s.zip").write_bytes(buf.getvalue())
    r = invoke("submissions", "--out", tmp_path, "--json")
    assert r.exit_code == 0 and "unexpectedly" not in r.output, r.output
    assert json.loads(r.stdout)[0]["damaged"] == "MANIFEST.json: message: expected a string, got 5"


@pytest.mark.parametrize("text, field", [
    ("[defaults]\nlr = inf\n", "[defaults]: lr = inf: expected a finite number"),
    ("[grid]\nsmart_sigma = [nan]\n", "[grid]: smart_sigma = nan: expected a finite number"),
    ("[grid]\nseed = " + "[" * 3000 + "]" * 3000 + "\n", "nested deeper than 32 levels"),
])
def test_a_grid_file_is_checked_before_any_run(invoke, tmp_path, text, field):
    g = tmp_path / "g.toml"
    g.write_text(text)
    refused(invoke("run", "--grid", g, "--data", SAMPLE, "--registry", tmp_path / "reg", "--dry-run"), f"{g}: {field}")
    assert not (tmp_path / "reg").exists()


def test_a_report_file_name_too_long_for_the_filesystem(invoke, registry_with_imports):
    reg = registry_with_imports
    assert invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "0").exit_code == 0
    out = reg.parent / ("r" * 300 + ".html")
    refused(invoke("report", "--registry", reg, "--data", SAMPLE, "--out", out), "a file name of 305 bytes")


@pytest.mark.parametrize("edit, field", [
    ({"files": "x"}, "files: expected an object, got 'x'"),
    ({"files": {"../../etc/passwd": "ab"}}, "files: '../../etc/passwd' is not a course file's plain name"),
    ({"data": 5}, "data: expected a string, got 5"),
    ({"sample": "yes"}, "sample: expected true or false, got 'yes'"),
    ({"bogus": 1}, "bogus: unknown field"),
])
def test_a_damaged_registry_record(invoke, registry_with_imports, edit, field):
    reg = registry_with_imports
    path = reg / "registry.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    before = snapshot(reg)
    refused(invoke("select", "--registry", reg, "--repeats", "0"), f"{path}: {field}")
    assert snapshot(reg) == before
