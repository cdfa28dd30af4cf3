"""validate and submit, end to end: register predictions -> select -> predict -> validate -> submit."""
from __future__ import annotations

import json
import zipfile

from ensemble.data import PACKAGE_SAMPLE as SAMPLE


def test_import_select_predict_validate_submit(tmp_path, registry_with_imports, invoke):
    reg = registry_with_imports
    listed = json.loads(invoke("list", "--registry", reg, "--json").output)
    assert sorted(c["name"] for c in listed) == ["ext0", "ext1", "ext2"]
    assert all(c["kind"] == "predictions" for c in listed)

    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "4", "--json")
    assert r.exit_code == 0, r.output
    sel = json.loads(r.output[r.output.index("{"):])
    assert set(sel["tasks"]) == {"sst", "para", "sts"}
    doc = json.loads((reg / "ensembles" / "ensemble-greedy.json").read_text())
    for task, entry in doc["tasks"].items():
        assert set(entry["weights"]) == set(entry["prediction_sha256"])

    out = tmp_path / "predictions"
    r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{t}-{s}-output.csv" for t in ("sst", "para", "sts") for s in ("dev", "test"))
    assert invoke("validate", out, "--data", SAMPLE).exit_code == 0

    subs = tmp_path / "subs"
    assert invoke("submit", "--predictions", out, "--out", subs, "--data", SAMPLE, "--registry", reg).exit_code == 0
    assert invoke("submit", "--predictions", out, "--out", subs, "--data", SAMPLE, "--registry", reg).exit_code == 0
    zips = sorted(subs.glob("*.zip"))
    assert len(zips) == 2   # never overwrites
    with zipfile.ZipFile(zips[0]) as z:
        manifest = json.loads(z.read("MANIFEST.json"))
        assert z.read("predictions/sts-dev-output.csv") == (out / "sts-dev-output.csv").read_bytes()
    assert manifest["ensemble"]["name"] == "ensemble-greedy"
    assert manifest["ensemble"]["sample_data"] is True


def test_validate_reports_problems_and_exits_1(tmp_path, invoke):
    out = tmp_path / "bad"
    out.mkdir()
    (out / "sst-dev-output.csv").write_text("id \t Predicted_Sentiment \nnot-an-id , 7 \n")
    r = invoke("validate", out, "--data", SAMPLE)
    assert r.exit_code == 1
    assert "sst-dev-output.csv" in r.output
    assert "para-test-output.csv" in r.output   # missing file reported too
