"""validate and submit, end to end: register predictions -> select -> predict -> validate -> submit."""
from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile

import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.data import read_split
from ensemble.leaderboard.validate import STAMP_NAME


def test_import_select_predict_validate_submit(tmp_path, registry_with_imports, invoke):
    reg = registry_with_imports
    listed = json.loads(invoke("list", "--registry", reg, "--json").output)
    assert sorted(c["name"] for c in listed) == ["ext0", "ext1", "ext2"]
    assert all(c["kind"] == "predictions" for c in listed)

    r = invoke("select", "--data", SAMPLE, "--registry", reg, "--mode", "greedy", "--repeats", "4", "--json")
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
        [f"{t}-{s}-output.csv" for t in ("sst", "para", "sts") for s in ("dev", "test")] + [STAMP_NAME])
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


# --------------------------------------------------------------------------- what made the files


def _two_ensembles(tmp_path, reg, invoke):
    """Select A, predict into predictions/; select B, predict into other/: the folders and B's latest."""
    for name, extra in (("A", ()), ("B", ("--max-size", "1"))):
        r = invoke("select", "--data", SAMPLE, "--registry", reg, "--repeats", "2", "--mode", "caruana", "--name", name, *extra)
        assert r.exit_code == 0, r.output
    out_a, out_b = tmp_path / "predictions", tmp_path / "other"
    for out, name in ((out_a, "A"), (out_b, "B")):
        r = invoke("predict", "--data", SAMPLE, "--registry", reg, "--out", out, "--ensemble", name)
        assert r.exit_code == 0, r.output
    return out_a, out_b


def _manifest(zip_path) -> dict:
    with zipfile.ZipFile(zip_path) as z:
        return json.loads(z.read("MANIFEST.json"))


def _only_zip(folder):
    zips = sorted(folder.glob("*.zip"))
    assert len(zips) == 1, zips
    return zips[0]


def test_submit_names_the_ensemble_that_wrote_the_files(tmp_path, registry_with_imports, invoke):
    out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)   # B is the latest saved
    stamp = json.loads((out_a / STAMP_NAME).read_text())
    assert stamp["ensemble"] == "A" and set(stamp["files"]) == {p.name for p in out_a.glob("*.csv")}
    assert set(stamp["data"]) == {"ids-sst-dev.csv", "ids-sst-test-student.csv", "quora-dev.csv",
                                  "quora-test-student.csv", "sts-dev.csv", "sts-test-student.csv"}
    r = invoke("submit", "--predictions", out_a, "--out", tmp_path / "subs", "--data", SAMPLE,
               "--registry", registry_with_imports, "-m", "greedy A")
    assert r.exit_code == 0, r.output
    assert "SAMPLE DATA" in r.output and "(ensemble A)" in r.output
    manifest = _manifest(_only_zip(tmp_path / "subs"))
    assert manifest["ensemble"]["name"] == "A" and manifest["ensemble"]["verified"] is True
    assert manifest["message"] == "greedy A"
    assert manifest["ensemble"]["tasks"]["sst"]["prediction_sha256"] == stamp["tasks"]["sst"]["prediction_sha256"]


def test_submit_refuses_files_changed_after_predict_unless_forced(tmp_path, registry_with_imports, invoke):
    out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)
    p = out_a / "sts-dev-output.csv"
    lines = p.read_text().splitlines(keepends=True)
    p.write_text(lines[0] + "".join(reversed(lines[1:])))   # still valid, but not what predict wrote
    subs = tmp_path / "subs"
    r = invoke("submit", "--predictions", out_a, "--out", subs, "--data", SAMPLE)
    assert r.exit_code == 1 and "sts-dev-output.csv: changed after `ensemble predict`" in r.output
    assert "--force" in r.output and not subs.exists()
    r = invoke("submit", "--predictions", out_a, "--out", subs, "--data", SAMPLE, "--force")
    assert r.exit_code == 0, r.output
    assert "unverified" in r.output
    ens = _manifest(_only_zip(subs))["ensemble"]
    assert ens["name"] == "A" and ens["verified"] is False and "sts-dev-output.csv" in ens["stamp_mismatches"][0]


def test_submit_of_hand_made_files_says_unknown(tmp_path, registry_with_imports, invoke):
    out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)
    (out_a / STAMP_NAME).unlink()
    r = invoke("submit", "--predictions", out_a, "--out", tmp_path / "subs", "--data", SAMPLE,
               "--registry", registry_with_imports)
    assert r.exit_code == 0, r.output
    assert "no stamp" in r.output
    assert _manifest(_only_zip(tmp_path / "subs"))["ensemble"]["name"] == "unknown (no stamp)"


def test_submit_reports_every_problem_and_a_missing_folder(tmp_path, invoke):
    bad = tmp_path / "bad"
    bad.mkdir()
    for task, split in (("sst", "dev"), ("sst", "test"), ("para", "dev"), ("para", "test"), ("sts", "dev"),
                        ("sts", "test")):
        first = read_split(SAMPLE, task, split).ids[0]
        (bad / f"{task}-{split}-output.csv").write_text(f"id , x\n{first} , bad \n")   # 3 problems each
    r = invoke("submit", "--predictions", bad, "--out", tmp_path / "subs", "--data", SAMPLE)
    assert r.exit_code == 1
    assert "18 problems: sst-dev-output.csv 3, sst-test-output.csv 3, para-dev-output.csv 3" in r.output
    assert r.output.count(":1: header") == 6
    r = invoke("submit", "--predictions", tmp_path / "nope", "--out", tmp_path / "subs", "--data", SAMPLE)
    assert r.exit_code == 1 and "nope: no such folder" in r.output and "cannot score" not in r.output


def test_validate_warns_of_files_made_from_the_sample(tmp_path, registry_with_imports, invoke):
    out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)
    assert "SAMPLE DATA" in invoke("validate", out_a, "--data", SAMPLE).output
    copy = tmp_path / "course"
    shutil.copytree(SAMPLE, copy)      # not the package's folder: only the stamp knows
    r = invoke("validate", out_a, "--data", copy)
    assert r.exit_code == 0 and "SAMPLE DATA" in r.output
    r = invoke("submit", "--predictions", out_a, "--out", tmp_path / "subs", "--data", copy)
    assert r.exit_code == 0 and "SAMPLE DATA" in r.output
    assert _manifest(_only_zip(tmp_path / "subs"))["ensemble"]["sample_data"] is True


def test_validate_of_files_from_other_data_is_one_line_and_a_summary(tmp_path, registry_with_imports, invoke):
    out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)
    other = tmp_path / "other-data"
    other.mkdir()
    for f in SAMPLE.glob("*.csv"):   # the same files with every id changed
        lines = f.read_text().split("\n")
        k = lines[0].split("\t").index("id")
        rows = [r.split("\t") for r in lines[1:]]
        other.joinpath(f.name).write_text("\n".join(
            [lines[0]] + ["\t".join(c[:k] + ["x" + c[k]] + c[k + 1:]) if len(c) > k else "\t".join(c) for c in rows]))
    r = invoke("validate", out_a, "--data", other)
    assert r.exit_code == 1
    problems = [line for line in r.output.splitlines() if "is not in" in line or "without a row" in line]
    assert problems == [] and "no id matches: were these made from other data?" in r.output
    assert "problems: sst-dev-output.csv " in r.output and len(r.output.splitlines()) < 12


def test_validate_json_says_what_it_checked(tmp_path, registry_with_imports, invoke):
    out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)
    (out_a / "sts-test-output.csv").unlink()
    r = invoke("validate", out_a, "--data", SAMPLE, "--json")
    assert r.exit_code == 1
    doc = json.loads(r.output[r.output.index("{"):])
    assert doc["folder"] == str(out_a) and doc["data"] == str(SAMPLE) and doc["valid"] is False
    files = {f["file"]: f for f in doc["files"]}
    assert files["sst-dev-output.csv"] == {"file": "sst-dev-output.csv", "data_file": "ids-sst-dev.csv",
                                           "found": True, "rows": len(read_split(SAMPLE, "sst", "dev")),
                                           "problems": 0}
    assert files["sts-test-output.csv"]["found"] is False and files["sts-test-output.csv"]["problems"] == 1
    assert len(doc["problems"]) == 1 and doc["stamp"] == {"ensemble": "A", "matches": True, "mismatches": []}


def test_submissions_lists_past_zips_and_damaged_ones(tmp_path, registry_with_imports, invoke):
    out_a, out_b = _two_ensembles(tmp_path, registry_with_imports, invoke)
    subs = tmp_path / "subs"
    for out, msg in ((out_a, "first: A"), (out_b, "second: B")):
        assert invoke("submit", "--predictions", out, "--out", subs, "--data", SAMPLE, "-m", msg).exit_code == 0
    (subs / "submission-20990101-000000.zip").write_bytes(b"PK\x03\x04 cut short")
    rows = json.loads(invoke("submissions", "--out", subs, "--json").output)
    assert [(r["ensemble"], r["message"]) for r in rows[:2]] == [("A", "first: A"), ("B", "second: B")]
    assert all(isinstance(r["mean_dev"], float) and r["created"] for r in rows[:2])
    assert rows[2]["damaged"] and rows[2]["file"] == "submission-20990101-000000.zip"
    r = invoke("submissions", "--out", subs)
    assert r.exit_code == 0 and "first: A" in r.output and "damaged" in r.output
    r = invoke("submissions", "--out", tmp_path / "none")   # nothing submitted yet: no error (issue 27)
    assert r.exit_code == 0 and "no submissions yet" in r.output


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_predict_and_submit_keep_the_umask(tmp_path, registry_with_imports, invoke, mask, expected):
    old = os.umask(mask)
    try:
        out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)
        assert invoke("submit", "--predictions", out_a, "--out", tmp_path / "subs", "--data", SAMPLE).exit_code == 0
    finally:
        os.umask(old)
    written = [*out_a.iterdir(), _only_zip(tmp_path / "subs"), registry_with_imports / "ensembles" / "A.json"]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: expected for p in written}


def test_submit_json_names_the_zip_and_the_stamped_ensemble(tmp_path, registry_with_imports, invoke):
    out_a, _ = _two_ensembles(tmp_path, registry_with_imports, invoke)
    r = invoke("submit", "--predictions", out_a, "--out", tmp_path / "subs", "--data", SAMPLE,
               "--registry", registry_with_imports, "-m", "json please", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ensemble"]["name"] == "A" and doc["message"] == "json please"
    assert _manifest(doc["submission"])["ensemble"]["name"] == "A"
    assert doc["mean_dev"] == pytest.approx(sum(doc["dev_scores"].values()) / 3)


def test_validate_refuses_files_that_are_not_what_predict_wrote(tmp_path, registry_with_imports, invoke):
    out_a, out_b = _two_ensembles(tmp_path, registry_with_imports, invoke)
    shutil.copy(out_b / "sts-dev-output.csv", out_a / "sts-dev-output.csv")     # a mix of A and B
    r = invoke("validate", out_a, "--data", SAMPLE)
    text = " ".join(r.output.split())
    assert r.exit_code == 1 and "stamp: sts-dev-output.csv: changed after `ensemble predict` wrote it" in text
    assert f"run it again, or delete {out_a / STAMP_NAME} if they were changed on purpose" in text
    assert json.loads(invoke("validate", out_a, "--data", SAMPLE, "--json").output)["valid"] is False
    (out_a / STAMP_NAME).unlink()
    assert invoke("validate", out_a, "--data", SAMPLE).exit_code == 0           # hand-made files: no stamp to match
