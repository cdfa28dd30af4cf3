"""The check of a folder of leaderboard files against the input files."""
from __future__ import annotations
from pathlib import Path

import pytest
from conftest import TINY_IDS
from asserts import raises
from leaderboard_cases import interrupted_write, edit, preds, tiny_outputs  # noqa: F401 (fixture)

from ensemble.data import PACKAGE_SAMPLE
from ensemble.files import file_sha256
from ensemble.leaderboard.write import write_leaderboard
from ensemble.tasks import TASKS
from ensemble.leaderboard.validate import (STAMP_NAME, Problem, StampCheck, check_folder, check_stamp, format_problems,
                               made_from_sample, report, validate_dir)


def test_valid_folder_has_no_problems(preds, tiny_data):
    assert validate_dir(preds, tiny_data) == []
    assert format_problems([]) == "no problems"


def test_rows_in_any_order_are_valid(tmp_path, tiny_data):
    shuffled = {k: (ids[::-1], vals[::-1]) for k, (ids, vals) in tiny_outputs().items()}
    write_leaderboard(tmp_path / "p", shuffled)
    assert validate_dir(tmp_path / "p", tiny_data) == []


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



# --------------------------------------------------------------------------- report and stamp


def test_report_counts_problems_per_file(preds, tiny_data):
    edit(preds, "sst-dev-output.csv", "id \t Predicted_Sentiment \nsstd1 , 3 \nsstd2 , 7 \n")
    problems, found = check_folder(preds, tiny_data, None, ("dev", "test"))
    text = report(problems, found)
    assert "sst-dev-output.csv:3: value" in text
    assert text.splitlines()[-1] == "2 problems: sst-dev-output.csv 2"
    assert report([], found) == "no problems"


def test_report_of_files_from_other_data_is_one_line_and_a_summary(preds, tiny_data):
    for (task, split), ids in TINY_IDS.items():
        name = TASKS[task].output_name(split)
        rows = "".join(f"x{i} , 1.0 \n" if task == "para" else f"x{i} , 1 \n" for i in ids)
        edit(preds, name, TASKS[task].output_header + "\n" + rows)
    problems, found = check_folder(preds, tiny_data, None, ("dev", "test"))
    assert all(c.rows and not c.matched for c in found.values())
    lines = report(problems, found).splitlines()
    assert lines[0] == "no id matches: were these made from other data?"
    assert len(lines) == 2 and lines[1].startswith(f"{len(problems)} problems: sst-dev-output.csv ")


def test_report_folds_one_foreign_file_into_one_line(preds, tiny_data):
    edit(preds, "sts-dev-output.csv", "id \t Predicted_Similiary \nzz1 , 1.0 \nzz2 , 2.0 \n")
    problems, found = check_folder(preds, tiny_data, None, ("dev", "test"))
    lines = report(problems, found).splitlines()
    assert lines == [f"{preds / 'sts-dev-output.csv'}: no id matches sts-dev.csv: were these made from other data?",
                     "3 problems: sts-dev-output.csv 3"]


def _stamped(preds: Path) -> None:
    write_leaderboard(preds, tiny_outputs(), stamp={"ensemble": "A"})


def test_check_stamp_matches_and_tells_changed_files(preds, tiny_data):
    found = check_folder(preds, tiny_data, None, ("dev", "test"))[1]
    assert check_stamp(preds, found) == StampCheck(None, [])          # no stamp: nothing to say
    _stamped(preds)
    found = check_folder(preds, tiny_data, None, ("dev", "test"))[1]
    assert check_stamp(preds, found).stamp["ensemble"] == "A" and check_stamp(preds, found).mismatches == []
    edit(preds, "sst-dev-output.csv", "id \t Predicted_Sentiment \nsstd1 , 3 \nsstd2 , 0 \nsstd3 , 3 \n")
    found = check_folder(preds, tiny_data, None, ("dev", "test"))[1]
    assert check_stamp(preds, found).mismatches == [
        "sst-dev-output.csv: changed after `ensemble predict` wrote it (sha256 differs from its stamp)"]
    assert validate_dir(preds, tiny_data) == []   # the stamp is not a leaderboard file


def test_check_stamp_of_an_unreadable_stamp(preds, tiny_data):
    (preds / STAMP_NAME).write_text("{not json")
    found = check_folder(preds, tiny_data, None, ("dev", "test"))[1]
    check = check_stamp(preds, found)
    assert check.stamp is None and check.mismatches[0].startswith(f"{preds / STAMP_NAME}: not valid JSON")


@pytest.mark.parametrize("doc, message", [
    ({"format": "ensemble-leaderboard-stamp", "files": "x"}, "files: expected an object, got 'x'"),
    ({"format": "ensemble-leaderboard-stamp", "files": {}, "state": "done"}, "state: expected 'writing' or 'complete'"),
    ({"format": "ensemble-leaderboard-stamp", "files": {}, "replacing": []}, "replacing: expected an object, got []"),
    ({"format": "ensemble-leaderboard-stamp", "files": {}, "replacing": {"files": 5}},
     "replacing.files: expected an object, got 5"),
    ({"format": "ensemble-leaderboard-stamp", "files": {}, "data": {"a": 5}}, "data.a: expected a string, got 5"),
    ({"format": "other", "files": {}}, "format: expected 'ensemble-leaderboard-stamp'"),
    ([], "(the document): expected an object"),
])
def test_check_stamp_names_the_damaged_field(preds, tiny_data, doc, message):
    import json

    (preds / STAMP_NAME).write_text(json.dumps(doc))
    found = check_folder(preds, tiny_data, None, ("dev", "test"))[1]
    check = check_stamp(preds, found)
    assert check.stamp is None and check.mismatches[0].startswith(f"{preds / STAMP_NAME}: {message}"), check


def test_a_deeply_nested_stamp_is_named(preds, tiny_data):
    (preds / STAMP_NAME).write_text("[" * 100_000 + "]" * 100_000)
    found = check_folder(preds, tiny_data, None, ("dev", "test"))[1]
    assert check_stamp(preds, found).mismatches[0].startswith(f"{preds / STAMP_NAME}: nested deeper than")


def test_made_from_sample(tmp_path):
    name = "sts-dev.csv"
    assert made_from_sample({"data": {name: file_sha256(PACKAGE_SAMPLE / name)}})
    assert not made_from_sample({"data": {name: "0" * 64}})
    assert not made_from_sample(None) and not made_from_sample({"data": {}})


def test_a_missing_folder_is_no_such_folder(tmp_path, tiny_data):
    raises([str(tmp_path / "nope"), "no such folder"], validate_dir, tmp_path / "nope", tiny_data)


def test_check_stamp_of_an_interrupted_write_names_each_files_version(preds, tiny_data, monkeypatch):
    _stamped(preds)
    new = {k: (ids, vals * 0 + vals.max()) for k, (ids, vals) in tiny_outputs().items()}   # every file changes
    interrupted_write(preds, new, {"ensemble": "B"}, monkeypatch, steps=3)           # stamp, sst dev, sst test
    found = check_folder(preds, tiny_data, None, ("dev", "test"))[1]
    check = check_stamp(preds, found)
    assert check.incomplete and check.stamp["ensemble"] == "B"
    assert check.mismatches == [
        f"{preds}: an `ensemble predict` was interrupted while replacing these files (ensemble B over A); "
        "the folder may mix the two:",
        "para-dev-output.csv: the previous version (A)", "para-test-output.csv: the previous version (A)",
        "sst-dev-output.csv: the new version (B)", "sst-test-output.csv: the new version (B)",
        "sts-dev-output.csv: the previous version (A)", "sts-test-output.csv: the previous version (A)",
        f"run `ensemble predict --out {preds}` again to write all of them"]
    assert validate_dir(preds, tiny_data) == []              # each file alone is valid: only the stamp tells
