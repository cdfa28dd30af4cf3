"""Leaderboard files byte for byte, the folder check, dev scoring and the submission zip."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_IDS

from ensemble import writer
from ensemble.data import read_split
from ensemble.errors import EnsembleError
from ensemble.tasks import TASKS
from ensemble.writer import (
    Problem,
    format_problems,
    leaderboard_bytes,
    make_submission,
    score_dir,
    validate_dir,
    write_leaderboard,
)

NOW = datetime(2024, 3, 1, 12, 34, 56)


def raises(parts: list[str], fn, *args, **kwargs) -> str:
    with pytest.raises(EnsembleError) as ei:
        fn(*args, **kwargs)
    msg = str(ei.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# A hand-made case covering the rounding boundaries.
TINY_VALUES = {
    ("sst", "dev"): np.array([
        [0.1, 0.2, 0.3, 0.4, 0.0],      # -> 3
        [0.2, 0.2, 0.2, 0.2, 0.2],      # five-way tie -> lowest class 0
        [0.0, 0.0, 0.5, 0.0, 0.5],      # tie between 2 and 4 -> 2
    ]),
    ("sst", "test"): np.array([[0, 0, 0, 0, 1.0], [0, 1.0, 0, 0, 0]]),
    ("para", "dev"): np.array([[0.5], [0.5000001], [0.4999999]]),   # 0.0, 1.0, 0.0
    ("para", "test"): np.array([[1.0], [-0.0]]),                     # 1.0, 0.0 (not -0.0)
    ("sts", "dev"): np.array([[5.7], [-0.3], [1e-05]]),              # raw, not clipped
    ("sts", "test"): np.array([[0.1 + 0.2], [3.0]]),
}

EXPECTED_BYTES = {
    "sst-dev-output.csv": b"id \t Predicted_Sentiment \nsstd1 , 3 \nsstd2 , 0 \nsstd3 , 2 \n",
    "sst-test-output.csv": b"id \t Predicted_Sentiment \nsstt1 , 4 \nsstt2 , 1 \n",
    "para-dev-output.csv": b"id \t Predicted_Is_Paraphrase \nqd1 , 0.0 \nqd2 , 1.0 \nqd4 , 0.0 \n",
    "para-test-output.csv": b"id \t Predicted_Is_Paraphrase \nqt1 , 1.0 \nqt2 , 0.0 \n",
    "sts-dev-output.csv": b"id \t Predicted_Similiary \nsd1 , 5.7 \nsd2 , -0.3 \nsd3 , 1e-05 \n",
    "sts-test-output.csv": b"id \t Predicted_Similiary \nst1 , 0.30000000000000004 \nst2 , 3.0 \n",
}


def tiny_outputs() -> dict:
    return {key: (TINY_IDS[key], TINY_VALUES[key]) for key in TINY_IDS}


@pytest.fixture
def preds(tmp_path, tiny_data) -> Path:
    """A valid folder of the six leaderboard files for ``tiny_data``."""
    out = tmp_path / "predictions"
    write_leaderboard(out, tiny_outputs())
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- bytes


def test_the_six_files_byte_for_byte(tmp_path, tiny_data):
    paths = write_leaderboard(tmp_path / "out", tiny_outputs())
    assert [p.name for p in paths] == [f"{t}-{s}-output.csv" for t, s in TINY_IDS]
    assert snapshot(tmp_path / "out") == EXPECTED_BYTES  # and nothing else in the folder
    for (task, split), (ids, vals) in tiny_outputs().items():
        assert leaderboard_bytes(task, ids, vals) == EXPECTED_BYTES[f"{task}-{split}-output.csv"]


def test_para_rounding_boundaries():
    vals = np.array([[0.0], [0.4999999], [0.5], [0.5000001], [1.0], [0.75]])
    ids = [f"r{i}" for i in range(len(vals))]
    rows = leaderboard_bytes("para", ids, vals).decode().splitlines()[1:]
    assert [r.split(" , ")[1] for r in rows] == ["0.0 ", "0.0 ", "0.0 ", "1.0 ", "1.0 ", "1.0 "]


def test_sst_ties_go_to_the_lowest_class():
    vals = np.array([[0.0, 0.5, 0.0, 0.5, 0.0], [0.25, 0.0, 0.25, 0.25, 0.25], [0, 0, 0, 0.5, 0.5]])
    assert leaderboard_bytes("sst", ["a", "b", "c"], vals) == (
        b"id \t Predicted_Sentiment \na , 1 \nb , 0 \nc , 3 \n"
    )


def test_sts_not_clipped_and_str_float():
    vals = np.array([[7.25], [-1.5], [2.0000000000000004], [123456789.0]])
    assert leaderboard_bytes("sts", list("abcd"), vals) == (
        b"id \t Predicted_Similiary \na , 7.25 \nb , -1.5 \nc , 2.0000000000000004 \nd , 123456789.0 \n"
    )


def test_rows_follow_the_given_id_order():
    out = leaderboard_bytes("para", ["z", "a", "m"], np.array([[1.0], [0.0], [1.0]]))
    assert out == b"id \t Predicted_Is_Paraphrase \nz , 1.0 \na , 0.0 \nm , 1.0 \n"


@pytest.mark.parametrize("task,ids,vals,parts", [
    ("para", ["a", "a"], [[0.1], [0.2]], ["'a'", "twice"]),
    ("para", ["a b"], [[0.1]], ["'a b'", "whitespace"]),
    ("sst", ["a,b"], [[1, 0, 0, 0, 0]], ["'a,b'", "comma"]),
    ("para", [""], [[0.1]], ["''", "empty"]),
    ("sts", ["a", "b"], [[1.0], [np.nan]], ["'b'", "finite"]),
    ("sst", ["a"], [[np.inf, 0, 0, 0, 0]], ["'a'", "finite"]),
    ("para", ["a"], [[1.5]], ["'a'", "[0, 1]"]),
    ("para", ["a"], [[0.1], [0.2]], ["1 ids for 2 prediction rows"]),
    ("sst", ["a"], [[0.1]], ["shape (1, 1)", "expected (n, 5)"]),
    ("nli", ["a"], [[0.1]], ["unknown task 'nli'"]),
])
def test_leaderboard_bytes_refuses(task, ids, vals, parts):
    raises(parts, leaderboard_bytes, task, ids, np.array(vals, dtype=float))


def test_write_leaderboard_refuses_unknown_split_before_writing(tmp_path):
    raises(["unknown leaderboard split 'train'"], write_leaderboard, tmp_path / "o",
           {("sst", "train"): (["a"], np.ones((1, 5)) / 5)})
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- interrupted writes


def _new_outputs() -> dict:
    """Different values from ``tiny_outputs``: every file's bytes change."""
    out = {}
    for key, (ids, vals) in tiny_outputs().items():
        if key[0] == "sst":
            out[key] = (ids, np.eye(5)[[4] * len(ids)])
        elif key[0] == "para":
            out[key] = (ids, np.full((len(ids), 1), 0.9))
        else:
            out[key] = (ids, np.full((len(ids), 1), 9.5))
    return out


def _no_leftovers(folder: Path) -> None:
    left = [n for n in os.listdir(folder) if n.startswith(".")]
    assert left == [], left


def test_invalid_values_change_nothing(preds):
    old = snapshot(preds)
    bad = _new_outputs()
    bad[("sts", "test")] = (TINY_IDS[("sts", "test")], np.array([[1.0], [np.nan]]))
    raises(["finite"], write_leaderboard, preds, bad)
    assert snapshot(preds) == old


def test_crash_while_staging_leaves_old_files(preds, monkeypatch):
    old = snapshot(preds)
    real_fsync = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(writer.os, "fsync", fsync)
    raises([str(preds), "No space left on device", "untouched"], write_leaderboard, preds, _new_outputs())
    monkeypatch.undo()
    assert snapshot(preds) == old
    _no_leftovers(preds)


def test_replace_failing_once_rolls_back(preds, monkeypatch):
    old = snapshot(preds)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", replace)
    raises(["I/O error", "untouched"], write_leaderboard, preds, _new_outputs())
    monkeypatch.undo()
    assert len(calls) == 3  # two replaces, then the rollback of the first
    assert snapshot(preds) == old
    _no_leftovers(preds)


def test_replace_failing_after_the_first_leaves_the_others_old(preds, monkeypatch):
    old = snapshot(preds)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", replace)
    msg = raises(["I/O error", "sst-dev-output.csv", "previous version kept at"],
                 write_leaderboard, preds, _new_outputs())
    monkeypatch.undo()
    now = snapshot(preds)
    first = "sst-dev-output.csv"
    assert now[first] == leaderboard_bytes("sst", *_new_outputs()[("sst", "dev")])
    for name in EXPECTED_BYTES:
        if name != first:
            assert now[name] == old[name], name
    # the one replaced file's previous bytes are kept where the message says
    bak = [n for n in now if n.endswith(".bak")]
    assert len(bak) == 1 and bak[0] in msg and now[bak[0]] == old[first]
    assert not [n for n in now if n.endswith(".tmp")]


def test_failed_first_write_leaves_no_files(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", replace)
    out = tmp_path / "fresh"
    raises(["I/O error"], write_leaderboard, out, tiny_outputs())
    monkeypatch.undo()
    assert os.listdir(out) == []


# --------------------------------------------------------------------------- validation


def test_valid_folder_has_no_problems(preds, tiny_data):
    assert validate_dir(preds, tiny_data) == []
    assert format_problems([]) == "no problems"


def test_rows_in_any_order_are_valid(tmp_path, tiny_data):
    shuffled = {k: (ids[::-1], vals[::-1]) for k, (ids, vals) in tiny_outputs().items()}
    write_leaderboard(tmp_path / "p", shuffled)
    assert validate_dir(tmp_path / "p", tiny_data) == []


def edit(preds: Path, name: str, text: str) -> Path:
    p = preds / name
    p.write_bytes(text.encode("utf-8"))
    return p


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def test_missing_file(preds, tiny_data):
    (preds / "sts-test-output.csv").unlink()
    p = only(validate_dir(preds, tiny_data))
    assert p.file == str(preds / "sts-test-output.csv") and p.line is None
    assert "missing" in p.message and "sts-test-student.csv" in p.message


def test_tasks_and_splits_subset(preds, tiny_data):
    (preds / "sts-test-output.csv").unlink()
    assert validate_dir(preds, tiny_data, tasks=["sst", "para"]) == []
    assert validate_dir(preds, tiny_data, splits=("dev",)) == []
    assert len(validate_dir(preds, tiny_data, tasks=["sts"], splits=("test",))) == 1


@pytest.mark.parametrize("header", [
    "id \t Predicted_Similarity \n",     # the right spelling is wrong here: the course writes "Similiary"
    "id \t Predicted_Similiary\n",
    "id\tPredicted_Similiary\n",
    "id , Predicted_Similiary \n",
])
def test_header_must_be_exact(preds, tiny_data, header):
    edit(preds, "sts-dev-output.csv", header + "sd1 , 1.0 \nsd2 , 2.0 \nsd3 , 3.0 \n")
    p = only(validate_dir(preds, tiny_data))
    assert (p.line, p.file.endswith("sts-dev-output.csv")) == (1, True)
    assert repr(header) in p.message and "'id \\t Predicted_Similiary \\n'" in p.message


@pytest.mark.parametrize("row", ["sstd2,0", "sstd2 , 0", "sstd2 ,0 ", "sstd2, 0 ", "sstd2  , 0 ", "sstd2 , 0 , 1 ",
                                 "sstd2\t0"])
def test_row_separators_must_be_exact(preds, tiny_data, row):
    edit(preds, "sst-dev-output.csv", f"id \t Predicted_Sentiment \nsstd1 , 3 \n{row}\nsstd3 , 2 \n")
    problems = validate_dir(preds, tiny_data)
    assert [(p.line, p.column) for p in problems] == [(3, None), (None, "id")]
    assert "expected '<id> , <value> '" in problems[0].message and repr(row) in problems[0].message
    assert "sstd2" in problems[1].message and "without a row" in problems[1].message


def test_crlf_line_ends(preds, tiny_data):
    edit(preds, "para-test-output.csv", "id \t Predicted_Is_Paraphrase \nqt1 , 1.0 \r\nqt2 , 0.0 \n")
    problems = validate_dir(preds, tiny_data)
    assert (problems[0].line, "'\\r\\n'" in problems[0].message) == (2, True)


def test_last_line_without_newline(preds, tiny_data):
    edit(preds, "para-test-output.csv", "id \t Predicted_Is_Paraphrase \nqt1 , 1.0 \nqt2 , 0.0 ")
    p = only(validate_dir(preds, tiny_data))
    assert p.line == 3 and "no newline" in p.message


def test_blank_line(preds, tiny_data):
    edit(preds, "para-test-output.csv", "id \t Predicted_Is_Paraphrase \nqt1 , 1.0 \n\nqt2 , 0.0 \n")
    p = only(validate_dir(preds, tiny_data))
    assert p.line == 3 and "empty line" in p.message


def test_empty_file(preds, tiny_data):
    edit(preds, "sts-test-output.csv", "")
    p = only(validate_dir(preds, tiny_data))
    assert p.line == 1 and "empty file" in p.message


def test_not_utf8(preds, tiny_data):
    (preds / "sts-test-output.csv").write_bytes(b"id \t Predicted_Similiary \nst1 , 1.0 \nst\xff2 , 1.0 \n")
    p = only(validate_dir(preds, tiny_data))
    assert p.line == 3 and "UTF-8" in p.message


def test_missing_ids_listed(preds, tiny_data):
    edit(preds, "sst-dev-output.csv", "id \t Predicted_Sentiment \nsstd2 , 0 \n")
    p = only(validate_dir(preds, tiny_data))
    assert (p.line, p.column) == (None, "id")
    assert "2 ids of ids-sst-dev.csv without a row: sstd1, sstd3" in p.message


def test_extra_id_with_its_line(preds, tiny_data):
    edit(preds, "sst-test-output.csv", "id \t Predicted_Sentiment \nsstt1 , 4 \nnope , 1 \nsstt2 , 1 \n")
    p = only(validate_dir(preds, tiny_data))
    assert (p.line, p.column) == (3, "id")
    assert "'nope' is not in ids-sst-test-student.csv" in p.message


def test_duplicate_id_with_its_line(preds, tiny_data):
    edit(preds, "sst-test-output.csv", "id \t Predicted_Sentiment \nsstt1 , 4 \nsstt2 , 1 \nsstt1 , 4 \n")
    p = only(validate_dir(preds, tiny_data))
    assert (p.line, p.column) == (4, "id") and "repeats line 2" in p.message


def test_skipped_quora_row_id_is_tolerated(preds, tiny_data):
    # qd3 has an empty label in quora-dev.csv: the course's loader skips it, so no row is
    # required, but a row for it is not an error either.
    edit(preds, "para-dev-output.csv",
         "id \t Predicted_Is_Paraphrase \nqd1 , 0.0 \nqd2 , 1.0 \nqd3 , 1.0 \nqd4 , 0.0 \n")
    assert validate_dir(preds, tiny_data) == []


@pytest.mark.parametrize("name,value,ok", [
    ("sst-test-output.csv", "3.0", True),
    ("sst-test-output.csv", "0", True),
    ("sst-test-output.csv", "3.5", False),
    ("sst-test-output.csv", "5", False),
    ("sst-test-output.csv", "-1", False),
    ("sst-test-output.csv", "three", False),
    ("para-test-output.csv", "1", True),
    ("para-test-output.csv", "0.0", True),
    ("para-test-output.csv", "0.5", False),
    ("para-test-output.csv", "2.0", False),
    ("para-test-output.csv", "0.73", False),
    ("sts-test-output.csv", "-0.3", True),
    ("sts-test-output.csv", "1e-05", True),
    ("sts-test-output.csv", "17", True),
    ("sts-test-output.csv", "nan", False),
    ("sts-test-output.csv", "inf", False),
    ("sts-test-output.csv", "1.2.3", False),
])
def test_values(preds, tiny_data, name, value, ok):
    task = name.split("-")[0]
    ids = TINY_IDS[(task, "test")]
    header = TASKS[task].output_header
    edit(preds, name, f"{header}\n{ids[0]} , {value} \n{ids[1]} , 1 \n")
    problems = validate_dir(preds, tiny_data)
    if ok:
        assert problems == []
    else:
        p = only(problems)
        assert (p.line, p.column) == (2, "value") and repr(value) in p.message and "expected" in p.message


def test_missing_input_file_is_an_error(preds, tmp_path):
    raises(["input file not found", "ids-sst-dev.csv"], validate_dir, preds, tmp_path / "no-data")


def test_format_problems_groups_and_truncates():
    problems = [Problem("a.csv", i, "id", f"bad {i}") for i in range(2, 16)] + [Problem("b.csv", None, None, "missing")]
    text = format_problems(problems, per_file=3)
    assert text.splitlines() == [
        "a.csv:2: id: bad 2",
        "a.csv:3: id: bad 3",
        "a.csv:4: id: bad 4",
        "a.csv: ... and 11 more problems",
        "b.csv: missing",
    ]


# --------------------------------------------------------------------------- scoring


def test_score_dir_from_rounded_files(preds, tiny_data):
    scores = score_dir(preds, tiny_data)
    assert set(scores) == {"sst", "para", "sts"}
    assert scores["sst"] == pytest.approx(2 / 3)   # labels 4,0,2 vs 3,0,2
    assert scores["para"] == pytest.approx(1 / 3)  # labels 1,0,0 vs 0.0,1.0,0.0: only qd4 right
    expected_sts = np.corrcoef([5.7, -0.3, 1e-05], [5.0, 1.2, 0.0])[0, 1]
    assert scores["sts"] == pytest.approx(expected_sts, abs=1e-12)


def test_score_dir_joins_by_id(preds, tiny_data, tmp_path):
    before = score_dir(preds, tiny_data)
    for name in ("sst-dev-output.csv", "para-dev-output.csv", "sts-dev-output.csv"):
        lines = (preds / name).read_text().splitlines(keepends=True)
        (preds / name).write_text(lines[0] + "".join(reversed(lines[1:])))
    assert score_dir(preds, tiny_data) == before


def test_score_dir_refuses_broken_dev_file(preds, tiny_data):
    (preds / "sts-dev-output.csv").unlink()
    raises(["cannot score", "sts-dev-output.csv", "missing"], score_dir, preds, tiny_data)
    assert score_dir(preds, tiny_data, tasks=["sst"])["sst"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- submission


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


# --------------------------------------------------------------------------- real data


def test_real_data_files_pass_the_check_and_the_courses_reading(shared_data, tmp_path):
    rng = np.random.default_rng(3)
    outputs = {}
    for task in TASKS:
        for split in ("dev", "test"):
            s = read_split(shared_data, task, split)
            n = len(s)
            if task == "sst":
                v = rng.dirichlet(np.ones(5), size=n)
            elif task == "para":
                v = rng.random((n, 1))
            else:
                v = rng.normal(2.5, 1.5, size=(n, 1))
            order = rng.permutation(n)  # any row order: joined by id
            outputs[(task, split)] = ([s.ids[i] for i in order], v[order])
    out = tmp_path / "predictions"
    write_leaderboard(out, outputs)
    assert validate_dir(out, shared_data) == []

    for (task, split), (ids, v) in outputs.items():
        # what the course's own loader yields as ids for the input file
        with open(shared_data / TASKS[task].file_name(split)) as fp:
            course_ids = [r["id"].lower().strip() for r in csv.DictReader(fp, delimiter="\t")]
        with open(out / TASKS[task].output_name(split)) as fp:
            lines = fp.readlines()
        assert lines[0] == TASKS[task].output_header + "\n"
        got = {}
        for line in lines[1:]:
            pid, value = line.split(",")
            got[pid.strip()] = float(value.strip())
        if task == "para" and split == "dev":
            skipped = {i for _, i in read_split(shared_data, task, split).skipped}
            course_ids = [i for i in course_ids if i not in skipped]
        assert sorted(got) == sorted(course_ids)
        expect = dict(zip(ids, v[:, 0] if task != "sst" else np.argmax(v, axis=1).astype(float)))
        if task == "para":
            expect = {k: float(np.round(x)) for k, x in expect.items()}
        assert got == expect


def test_real_dev_scores_of_perfect_predictions(shared_data, tmp_path):
    outputs = {}
    for task in TASKS:
        for split in ("dev", "test"):
            s = read_split(shared_data, task, split)
            if split == "dev":
                y = s.labels
                v = np.eye(5)[y] if task == "sst" else y.astype(float).reshape(-1, 1)
            else:
                v = np.full((len(s), TASKS[task].n_outputs), 0.2 if task == "sst" else 1.0)
            outputs[(task, split)] = (s.ids, v)
    write_leaderboard(tmp_path / "p", outputs)
    scores = score_dir(tmp_path / "p", shared_data)
    assert scores["sst"] == 1.0 and scores["para"] == 1.0
    assert scores["sts"] == pytest.approx(1.0, abs=1e-12)
    z = make_submission(tmp_path / "p", tmp_path / "s", shared_data, {}, float(np.mean(list(scores.values()))), now=NOW)
    assert z.name == "submission-20240301-123456-dev1.0000.zip"
