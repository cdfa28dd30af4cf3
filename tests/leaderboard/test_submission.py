"""The submission zip: contents, manifest, source listing, never overwriting."""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from asserts import raises
from conftest import TINY_IDS
from leaderboard_cases import interrupted_write, EXPECTED_BYTES, NOW, edit, preds, tiny_outputs  # noqa: F401 (fixture)

from ensemble.leaderboard.write import write_leaderboard
from ensemble.leaderboard.submission import UNSTAMPED, checked_files, ensemble_record, list_submissions, make_submission
from ensemble.tasks import TASKS


def zips(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".zip"))


def test_make_submission_contents(preds, tiny_data, tmp_path):
    info = {"sst": ["m1", "m3"], "para": ["m2"], "sts": ["m1"]}
    z = make_submission(preds, tmp_path / "subs", tiny_data, info, 0.78123, now=NOW)
    assert z == tmp_path / "subs" / "submission-20240301-123456-dev0.7812.zip"
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        assert sorted(names) == sorted([f"predictions/{n}" for n in EXPECTED_BYTES] + ["MANIFEST.json"])
        for n, b in EXPECTED_BYTES.items():
            assert zf.read(f"predictions/{n}") == b
        manifest = json.loads(zf.read("MANIFEST.json"))
    assert manifest["ensemble"] == info
    assert manifest["mean_dev"] == 0.78123
    assert manifest["created"] == "2024-03-01T12:34:56"
    assert manifest["tool_version"] and manifest["tool"] == "ensemble"
    assert manifest["code_files"] == []
    for n, b in EXPECTED_BYTES.items():
        entry = manifest["predictions"][f"predictions/{n}"]
        assert entry["sha256"] == hashlib.sha256(b).hexdigest()
        assert entry["rows"] == b.count(b"\n") - 1
    assert [n for n in os.listdir(tmp_path / "subs")] == [z.name]  # no temp file left


def test_make_submission_never_overwrites(preds, tiny_data, tmp_path):
    out = tmp_path / "subs"
    a = make_submission(preds, out, tiny_data, {}, 0.5, now=NOW)
    first = a.read_bytes()
    b = make_submission(preds, out, tiny_data, {"second": True}, 0.5, now=NOW)
    c = make_submission(preds, out, tiny_data, {}, 0.5, now=NOW)
    assert [a.name, b.name, c.name] == [
        "submission-20240301-123456-dev0.5000.zip",
        "submission-20240301-123456-dev0.5000-2.zip",
        "submission-20240301-123456-dev0.5000-3.zip",
    ]
    assert a.read_bytes() == first
    assert zips(out) == sorted([a.name, b.name, c.name]) and len(os.listdir(out)) == 3
    with zipfile.ZipFile(b) as zf:
        assert json.loads(zf.read("MANIFEST.json"))["ensemble"] == {"second": True}


def test_make_submission_without_dev_score(preds, tiny_data, tmp_path):
    z = make_submission(preds, tmp_path, tiny_data, {}, None, now=NOW)
    assert z.name == "submission-20240301-123456.zip"
    raises(["mean dev score is nan"], make_submission, preds, tmp_path, tiny_data, {}, float("nan"), now=NOW)


def test_make_submission_refuses_a_broken_folder(preds, tiny_data, tmp_path):
    edit(preds, "sst-dev-output.csv", "id \t Predicted_Sentiment \nsstd1 , 3 \nsstd2 , 7 \n")
    out = tmp_path / "subs"
    msg = raises(["refusing", "sst-dev-output.csv:3: value", "'7'", "sstd3"],
                 make_submission, preds, out, tiny_data, {}, 0.5, now=NOW)
    assert "2 problems" in msg
    assert not out.exists() or zips(out) == []


def test_make_submission_includes_source(preds, tiny_data, tmp_path):
    src = tmp_path / "proj"
    for rel in ["pyproject.toml", "README.md", "ensemble/__init__.py", "ensemble/cli.py", "tests/test_x.py",
                "notes.txt", "ensemble/data.csv",
                ".venv/lib/site.py", "checkpoints/m1/model.py", "predictions/x.py", "submissions/y.py",
                ".git/hooks/pre-commit.py", "ensemble/__pycache__/cli.cpython-311.py", "ensemble.egg-info/README"]:
        f = src / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"# {rel}\n")
    z = make_submission(preds, tmp_path / "subs", tiny_data, {}, 0.5, include_source=src, now=NOW)
    with zipfile.ZipFile(z) as zf:
        code = sorted(n for n in zf.namelist() if n.startswith("code/"))
        assert zf.read("code/ensemble/cli.py") == b"# ensemble/cli.py\n"
        manifest = json.loads(zf.read("MANIFEST.json"))
    assert code == ["code/README.md", "code/ensemble/__init__.py", "code/ensemble/cli.py",
                    "code/pyproject.toml", "code/tests/test_x.py"]
    assert sorted(manifest["code_files"]) == code
    raises(["source folder not found"], make_submission, preds, tmp_path / "subs", tiny_data, {}, 0.5,
           include_source=tmp_path / "nope", now=NOW)



def test_make_submission_without_hard_links_still_never_overwrites(preds, tiny_data, tmp_path, monkeypatch):
    real_link = os.link

    def link(src, dst):
        if str(dst).endswith(".zip"):
            raise OSError(1, "Operation not permitted")
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    out = tmp_path / "subs"
    a = make_submission(preds, out, tiny_data, {}, 0.5, now=NOW)
    first = a.read_bytes()
    b = make_submission(preds, out, tiny_data, {"second": True}, 0.5, now=NOW)
    monkeypatch.undo()
    assert [a.name, b.name] == ["submission-20240301-123456-dev0.5000.zip", "submission-20240301-123456-dev0.5000-2.zip"]
    assert a.read_bytes() == first and sorted(os.listdir(out)) == sorted([a.name, b.name])  # no temp file left
    with zipfile.ZipFile(b) as zf:
        assert json.loads(zf.read("MANIFEST.json"))["ensemble"] == {"second": True}


# --------------------------------------------------------------------------- what made the files


def test_every_problem_of_a_broken_folder_is_reported(preds, tiny_data):
    for (task, split), ids in TINY_IDS.items():   # a header, a value and missing ids in each file: 18
        edit(preds, TASKS[task].output_name(split), f"id , x\n{ids[0]} , bad \n")
    msg = raises(["refusing", "18 problems: sst-dev-output.csv 3, sst-test-output.csv 3"], checked_files,
                 preds, tiny_data)
    for name in EXPECTED_BYTES:
        assert f"{name}:1: header" in msg


def test_a_missing_folder_is_no_such_folder(tmp_path, tiny_data):
    raises([str(tmp_path / "nope"), "no such folder"], checked_files, tmp_path / "nope", tiny_data)


def _stamp(preds):
    write_leaderboard(preds, tiny_outputs(), stamp={"ensemble": "A", "ensemble_created": "t0",
                                                    "tasks": {"sst": {"weights": {"m1": 1}}}})


def test_the_record_names_the_ensemble_of_the_stamp(preds, tiny_data):
    _stamp(preds)
    record = ensemble_record(preds, checked_files(preds, tiny_data), sample=False)
    assert record["name"] == "A" and record["verified"] is True and record["sample_data"] is False
    assert record["tasks"] == {"sst": {"weights": {"m1": 1}}} and record["created"] == "t0"
    raises(["written by ensemble A", "not B"], ensemble_record, preds, checked_files(preds, tiny_data), False,
           claimed={"name": "B"})


def test_files_changed_after_predict_are_refused_unless_forced(preds, tiny_data):
    _stamp(preds)
    edit(preds, "sts-dev-output.csv", EXPECTED_BYTES["sts-dev-output.csv"].decode().replace("5.7", "5.8"))
    found = checked_files(preds, tiny_data)
    raises(["do not match the stamp", "sts-dev-output.csv: changed after", "--force"], ensemble_record,
           preds, found, False)
    record = ensemble_record(preds, found, False, force=True)
    assert record["name"] == "A" and record["verified"] is False
    assert record["stamp_mismatches"] == ["sts-dev-output.csv: changed after `ensemble predict` wrote it "
                                          "(sha256 differs from its stamp)"]


def test_a_folder_without_stamp_is_unknown(preds, tiny_data):
    found = checked_files(preds, tiny_data)
    assert ensemble_record(preds, found, True) == {"name": UNSTAMPED, "verified": False, "sample_data": True}
    claimed = ensemble_record(preds, found, False, claimed={"name": "B", "created": "t1", "tasks": {}})
    assert claimed["name"] == "B" and claimed["verified"] is False and claimed["named_by"] == "--ensemble (no stamp)"


def test_message_and_the_list_of_submissions(preds, tiny_data, tmp_path):
    out = tmp_path / "subs"
    a = make_submission(preds, out, tiny_data, {"name": "A", "verified": True}, 0.5, now=NOW, message="first")
    with zipfile.ZipFile(a) as zf:
        assert json.loads(zf.read("MANIFEST.json"))["message"] == "first"
    (out / "submission-20990101-000000.zip").write_bytes(b"not a zip")
    with zipfile.ZipFile(out / "submission-20990102-000000.zip", "w") as zf:
        zf.writestr("predictions/x.csv", "x")
    rows = list_submissions(out)
    assert rows[0] == {"file": a.name, "created": "2024-03-01T12:34:56", "message": "first", "ensemble": "A",
                       "verified": True, "mean_dev": 0.5, "sample_data": None, "damaged": None}
    assert rows[1]["damaged"].startswith("not a readable zip") and rows[2]["damaged"] == "no MANIFEST.json"
    assert list_submissions(tmp_path / "none") == []   # nothing submitted yet (issue 27)
    (tmp_path / "afile").write_text("x")
    raises(["not a folder"], list_submissions, tmp_path / "afile")


def test_an_interrupted_folder_is_refused_even_forced(preds, tiny_data, monkeypatch):
    _stamp(preds)
    new = {k: (ids, vals * 0 + vals.max()) for k, (ids, vals) in tiny_outputs().items()}   # every file changes
    interrupted_write(preds, new, {"ensemble": "B"}, monkeypatch, steps=2)
    found = checked_files(preds, tiny_data)                   # every file valid on its own
    for force in (False, True):
        raises(["refusing to build a submission", "interrupted while replacing", "sst-dev-output.csv: the new "
                "version (B)", "sts-test-output.csv: the previous version (A)", "run `ensemble predict --out",
                "--force does not apply"], ensemble_record, preds, found, False, force=force)


def _zip_with_manifest(path: Path, payload: bytes, method: int = zipfile.ZIP_DEFLATED, flags: int = 0) -> None:
    info = zipfile.ZipInfo("MANIFEST.json", date_time=(2024, 3, 1, 0, 0, 0))
    info.compress_type = method
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, payload)
    if flags:   # set the flag in the local header and in the central directory (offsets 6 and 8)
        raw = bytearray(path.read_bytes())
        local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
        raw[local + 6] |= flags
        raw[central + 8] |= flags
        path.write_bytes(bytes(raw))


GOOD_MANIFEST = {"format": "cs224n-multitask-leaderboard-submission", "created": "2024-03-01T12:34:56",
                 "message": "m", "mean_dev": 0.5, "ensemble": {"name": "A"}}


@pytest.mark.parametrize("case, damaged", [
    ("encrypted", "member 'MANIFEST.json' is encrypted"),
    ("bzip2", "member 'MANIFEST.json': compression method 12 is not supported"),
    ("message a number", "MANIFEST.json: message: expected a string, got 5"),
    ("message a list", "MANIFEST.json: message: expected a string, got ['a']"),
    ("mean_dev a string", "MANIFEST.json: mean_dev: expected a number, got 'high'"),
    ("ensemble a string", "MANIFEST.json: ensemble: expected an object, got 'A'"),
    ("deeply nested", "MANIFEST.json: nested deeper than"),
    ("unknown key", "MANIFEST.json: bogus: unknown field"),
])
def test_a_damaged_zip_is_listed_as_damaged_naming_the_field(tmp_path, case, damaged):
    path = tmp_path / "submission-20240301-000000.zip"
    doc = {**GOOD_MANIFEST, **{"message a number": {"message": 5}, "message a list": {"message": ["a"]},
                               "mean_dev a string": {"mean_dev": "high"}, "ensemble a string": {"ensemble": "A"},
                               "unknown key": {"bogus": 1}}.get(case, {})}
    payload = ("[" * 100_000 + "]" * 100_000).encode() if case == "deeply nested" else json.dumps(doc).encode()
    _zip_with_manifest(path, payload, zipfile.ZIP_BZIP2 if case == "bzip2" else zipfile.ZIP_DEFLATED,
                       1 if case == "encrypted" else 0)
    _zip_with_manifest(tmp_path / "submission-20240302-000000.zip", json.dumps(GOOD_MANIFEST).encode())
    rows = list_submissions(tmp_path)
    assert rows[0]["damaged"].startswith(damaged) and "\n" not in rows[0]["damaged"], rows[0]
    assert rows[1]["damaged"] is None and rows[1]["message"] == "m"
