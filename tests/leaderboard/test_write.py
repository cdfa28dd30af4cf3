"""Leaderboard files byte for byte, all-or-nothing writes, and dev scoring."""
from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_IDS
from asserts import raises
from leaderboard_cases import EXPECTED_BYTES, NOW, preds, snapshot, tiny_outputs  # noqa: F401 (fixture)

from ensemble.data import read_split
from ensemble.leaderboard.write import leaderboard_bytes, score_dir, write_leaderboard
from ensemble.leaderboard.submission import make_submission
from ensemble.tasks import TASKS
from ensemble.leaderboard.validate import STAMP_NAME, check_folder, check_stamp, validate_dir


# --------------------------------------------------------------------------- bytes


def test_the_six_files_byte_for_byte(tmp_path, tiny_data):
    paths = write_leaderboard(tmp_path / "out", tiny_outputs())
    assert [p.name for p in paths] == [f"{t}-{s}-output.csv" for t, s in TINY_IDS]
    assert snapshot(tmp_path / "out") == EXPECTED_BYTES  # and nothing else in the folder
    for (task, split), (ids, vals) in tiny_outputs().items():
        assert leaderboard_bytes(task, ids, vals) == EXPECTED_BYTES[f"{task}-{split}-output.csv"]


def test_a_stamp_is_written_after_the_files_with_their_sha256(tmp_path, tiny_data):
    out = tmp_path / "out"
    write_leaderboard(out, tiny_outputs(), stamp={"ensemble": "A", "data": {"ids-sst-dev.csv": "abc"}})
    stamp = json.loads((out / STAMP_NAME).read_text())
    assert stamp["format"] == "ensemble-leaderboard-stamp" and stamp["ensemble"] == "A"
    assert stamp["data"] == {"ids-sst-dev.csv": "abc"}
    assert stamp["files"] == {n: hashlib.sha256(b).hexdigest() for n, b in EXPECTED_BYTES.items()}
    assert {p.name for p in out.iterdir()} == set(EXPECTED_BYTES) | {STAMP_NAME}


def test_no_stamp_when_a_write_fails(tmp_path, tiny_data):
    bad = {**tiny_outputs(), ("sts", "dev"): (TINY_IDS[("sts", "dev")], np.array([[np.nan]] * 3))}
    raises(["finite"], write_leaderboard, tmp_path / "out", bad, stamp={"ensemble": "A"})
    assert not (tmp_path / "out" / STAMP_NAME).exists()


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

    monkeypatch.setattr(os, "fsync", fsync)
    raises([str(preds), "No space left on device", "untouched"], write_leaderboard, preds, _new_outputs())
    monkeypatch.undo()
    assert snapshot(preds) == old
    _no_leftovers(preds)


def failing_replace(monkeypatch, fails) -> list:
    """Make ``os.replace`` raise an I/O error on each call ``n`` (1-based) with ``fails(n)``;
    returns the list of targets it was called with."""
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if fails(len(calls)):
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_replace_failing_once_rolls_back(preds, monkeypatch):
    old = snapshot(preds)
    calls = failing_replace(monkeypatch, lambda n: n == 3)
    raises(["I/O error", "untouched"], write_leaderboard, preds, _new_outputs())
    monkeypatch.undo()
    # the writing stamp, the first file, the second fails; the first is put back, the stamp removed
    assert [Path(c).name for c in calls] == [STAMP_NAME, "sst-dev-output.csv", "sst-test-output.csv",
                                             "sst-dev-output.csv"]
    assert snapshot(preds) == old
    _no_leftovers(preds)


def test_replace_failing_after_the_first_leaves_the_others_old_and_the_folder_refused(preds, monkeypatch, tiny_data):
    old = snapshot(preds)
    failing_replace(monkeypatch, lambda n: n > 2)      # the stamp and the first file go in, nothing after
    msg = raises(["I/O error", "sst-dev-output.csv", "previous version kept at", "incomplete",
                  "run `ensemble predict` again"], write_leaderboard, preds, _new_outputs())
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
    # the writing stamp stays: the mix is refused, naming each file's version
    check = check_stamp(preds, check_folder(preds, tiny_data, None, ("dev", "test"))[1])
    assert check.incomplete and check.mismatches[1:3] == [
        "para-dev-output.csv: the previous version (previous)", "para-test-output.csv: the previous version (previous)"]
    assert "sst-dev-output.csv: the new version (new)" in check.mismatches
    write_leaderboard(preds, _new_outputs())           # the next write cleans the leftovers
    assert sorted(os.listdir(preds)) == sorted(EXPECTED_BYTES)


def test_failed_first_write_leaves_no_files(tmp_path, monkeypatch):
    failing_replace(monkeypatch, lambda n: n == 2)
    out = tmp_path / "fresh"
    raises(["I/O error"], write_leaderboard, out, tiny_outputs())
    monkeypatch.undo()
    assert os.listdir(out) == []


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


# --------------------------------------------------------------------------- one folder, one writer at a time


def test_two_writers_of_one_folder_take_turns(preds):
    import threading
    from ensemble.leaderboard.write import dir_lock
    done = threading.Event()
    errors = []

    def write():
        try:
            write_leaderboard(preds, _new_outputs(), stamp={"ensemble": "B"})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        done.set()
    with dir_lock(preds):                                  # another predict is writing this folder
        t = threading.Thread(target=write)
        t.start()
        assert not done.wait(0.5)                          # this one waits for it...
        assert snapshot(preds) == EXPECTED_BYTES           # ...and has changed nothing yet
    t.join(10)
    assert done.is_set() and not errors
    assert json.loads((preds / STAMP_NAME).read_text())["ensemble"] == "B"


def test_the_next_write_removes_its_own_leftovers_only(preds):
    mine = [".sst-dev-output.csv.ab12cd_9.tmp", ".sts-test-output.csv.4242.deadbeef.bak",
            f".{STAMP_NAME}.zzzzzzzz.tmp"]
    others = [".keep-me", "notes.txt", ".sst-dev-output.csv.bak"]
    for name in mine + others:
        (preds / name).write_text("x")
    write_leaderboard(preds, tiny_outputs())
    assert sorted(os.listdir(preds)) == sorted([*EXPECTED_BYTES, *others])


def test_the_stamp_says_writing_while_the_files_are_replaced(preds, monkeypatch):
    write_leaderboard(preds, tiny_outputs(), stamp={"ensemble": "A"})
    old = {n: hashlib.sha256(b).hexdigest() for n, b in EXPECTED_BYTES.items()}
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name != STAMP_NAME:
            seen.append((Path(dst).name, json.loads((preds / STAMP_NAME).read_text())))
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    write_leaderboard(preds, _new_outputs(), stamp={"ensemble": "B"})
    monkeypatch.undo()
    new = {t.name: hashlib.sha256(leaderboard_bytes(k[0], *v)).hexdigest()
           for k, v in _new_outputs().items() for t in [preds / TASKS[k[0]].output_name(k[1])]}
    assert [name for name, _ in seen] == list(EXPECTED_BYTES)   # each file replaced under the writing stamp
    for _, stamp in seen:
        assert stamp["state"] == "writing" and stamp["ensemble"] == "B" and stamp["files"] == new
        assert stamp["replacing"] == {"ensemble": "A", "files": old}
    final = json.loads((preds / STAMP_NAME).read_text())
    assert final["state"] == "complete" and final["files"] == new and "replacing" not in final


def test_where_a_folder_cannot_be_locked_a_hidden_lock_file_is(preds, monkeypatch):
    import fcntl as fcntl_mod
    from ensemble.leaderboard.write import LOCK_FILE
    real = fcntl_mod.flock

    def flock(fd, op):                                     # as on NFS: no lock on a folder opened to read
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(9, "Bad file descriptor")
        return real(fd, op)
    monkeypatch.setattr(fcntl_mod, "flock", flock)
    write_leaderboard(preds, _new_outputs())
    monkeypatch.undo()
    assert sorted(os.listdir(preds)) == sorted([*EXPECTED_BYTES, LOCK_FILE])
    assert snapshot(preds)["sts-dev-output.csv"] == leaderboard_bytes("sts", *_new_outputs()[("sts", "dev")])
