"""The unrounded prediction CSV: exact round trip, every refusal with file and line."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ensemble.predfile import (
    STS_BOUND,
    align_predictions,
    check_ids,
    header_for,
    prediction_file_name,
    read_predictions,
    write_predictions,
)
from asserts import raises


def put(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def test_names_and_headers():
    assert prediction_file_name("sst", "dev") == "sst-dev.csv"
    assert prediction_file_name("para", "test") == "para-test.csv"
    assert header_for("sst") == "id,p0,p1,p2,p3,p4"
    assert header_for("para") == "id,prob"
    assert header_for("sts") == "id,score"
    raises(["unknown task 'x'"], header_for, "x")


def test_round_trip_exact_to_the_bit(tmp_path):
    rng = np.random.default_rng(7)
    n = 300
    ids = [f"{i:025x}" for i in rng.permutation(10_000)[:n]]
    p = rng.random((n, 5)) ** 3
    p[0] = [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]
    p[1] = [5e-324, 0, 0, 0, 1]            # a subnormal
    p /= p.sum(axis=1, keepdims=True)
    write_predictions(tmp_path / "sst-dev.csv", "sst", ids, p)
    ids2, p2 = read_predictions(tmp_path / "sst-dev.csv", "sst")
    assert ids2 == ids
    assert p2.dtype == np.float64 and p2.shape == (n, 5)
    assert np.array_equal(bits(p2), bits(p))

    s = np.concatenate([rng.normal(size=n - 4) * 10.0 ** rng.integers(-12, 5, n - 4),
                        [-0.0, STS_BOUND, -1e-300, 0.1 + 0.2]]).reshape(-1, 1)
    write_predictions(tmp_path / "sts-test.csv", "sts", ids, s)
    _, s2 = read_predictions(tmp_path / "sts-test.csv", "sts")
    assert np.array_equal(bits(s2), bits(s))

    q = rng.random(n)  # 1-D accepted for single-column tasks
    write_predictions(tmp_path / "para-dev.csv", "para", ids, q)
    _, q2 = read_predictions(tmp_path / "para-dev.csv", "para")
    assert q2.shape == (n, 1) and np.array_equal(bits(q2[:, 0]), bits(q))


def test_written_text_is_the_documented_format(tmp_path):
    write_predictions(tmp_path / "para-dev.csv", "para", ["a1", "b2"], np.array([[0.1], [1.0]]))
    assert (tmp_path / "para-dev.csv").read_bytes() == b"id,prob\na1,0.1\nb2,1.0\n"
    write_predictions(tmp_path / "sst-dev.csv", "sst", ["x"], np.array([[0.5, 0.25, 0.25, 0.0, 0.0]]))
    assert (tmp_path / "sst-dev.csv").read_bytes() == b"id,p0,p1,p2,p3,p4\nx,0.5,0.25,0.25,0.0,0.0\n"


def test_reads_foreign_files_crlf_and_no_final_newline(tmp_path):
    p = put(tmp_path, "sts-dev.csv", "id,score\r\na,1.5\r\nb,-2e-3")
    ids, v = read_predictions(p, "sts")
    assert ids == ["a", "b"] and v[:, 0].tolist() == [1.5, -0.002]


def test_empty_prediction_file_with_header_reads(tmp_path):
    p = put(tmp_path, "para-dev.csv", "id,prob\n")
    ids, v = read_predictions(p, "para")
    assert ids == [] and v.shape == (0, 1)


@pytest.mark.parametrize("task,header", [
    ("sst", "id,p0,p1,p2,p3"),
    ("sst", "id,p1,p2,p3,p4,p5"),
    ("para", "ID,prob"),
    ("para", "id, prob"),
    ("para", "id,score"),
    ("sts", "id\tscore"),
])
def test_bad_header(tmp_path, task, header):
    p = put(tmp_path, f"{task}-dev.csv", header + "\n")
    raises([f"{p}:1:", repr(header), f"expected exactly {header_for(task)!r}"], read_predictions, p, task)


def test_empty_file_and_missing_file(tmp_path):
    p = put(tmp_path, "sts-dev.csv", "")
    raises([f"{p}:1:", "empty file"], read_predictions, p, "sts")
    raises([str(tmp_path / "nope.csv"), "not found"], read_predictions, tmp_path / "nope.csv", "sts")


def test_wrong_column_count(tmp_path):
    p = put(tmp_path, "sst-dev.csv", "id,p0,p1,p2,p3,p4\na,0.2,0.2,0.2,0.2,0.2\nb,0.5,0.5\n")
    raises([f"{p}:3:", "3 comma-separated fields", "expected 6"], read_predictions, p, "sst")


def test_blank_line_in_the_middle(tmp_path):
    p = put(tmp_path, "para-dev.csv", "id,prob\na,0.5\n\nb,0.5\n")
    raises([f"{p}:3:", "empty line"], read_predictions, p, "para")


def test_not_a_number(tmp_path):
    p = put(tmp_path, "sst-dev.csv", "id,p0,p1,p2,p3,p4\na,0.2,0.2,0.2,0.2,0.2\nb,0.2,0.2,x,0.2,0.2\n")
    raises([f"{p}:3:", "column 'p2'", "'x'", "expected a number"], read_predictions, p, "sst")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_nan_and_inf(tmp_path, value):
    p = put(tmp_path, "sts-dev.csv", f"id,score\na,1.0\nb,2.0\nc,{value}\n")
    raises([f"{p}:4:", "column 'score'", "expected a finite number"], read_predictions, p, "sts")


@pytest.mark.parametrize("task,row,why", [
    ("para", "b,1.5", "expected a probability in [0, 1]"),
    ("para", "b,-0.1", "expected a probability in [0, 1]"),
    ("sst", "b,1.2,-0.2,0,0,0", "expected a probability in [0, 1]"),
    ("sst", "b,0.2,0.2,0.2,0.2,0.1", "sum to"),
    ("sst", "b,0.2,0.2,0.2,0.2,0.2011", "expected 1 within 0.001"),
])
def test_out_of_range(tmp_path, task, row, why):
    first = "a,0.5" if task == "para" else "a,0.2,0.2,0.2,0.2,0.2"
    p = put(tmp_path, f"{task}-dev.csv", f"{header_for(task)}\n{first}\n{row}\n")
    raises([f"{p}:3:", why], read_predictions, p, task)


def test_sum_within_tolerance_accepted(tmp_path):
    p = put(tmp_path, "sst-dev.csv", "id,p0,p1,p2,p3,p4\na,0.2,0.2,0.2,0.2,0.2009\n")
    assert read_predictions(p, "sst")[1].shape == (1, 5)


def test_duplicate_and_empty_ids(tmp_path):
    p = put(tmp_path, "para-dev.csv", "id,prob\na,0.5\nb,0.5\na,0.1\n")
    raises([f"{p}:4:", "id 'a'", "repeats line 2"], read_predictions, p, "para")
    p = put(tmp_path, "para-test.csv", "id,prob\na,0.5\n,0.5\n")
    raises([f"{p}:3:", "'id' is empty"], read_predictions, p, "para")


def test_check_ids_missing_extra_and_repeated(tmp_path):
    path = tmp_path / "sst-dev.csv"
    expected = [f"id{i}" for i in range(20)]
    check_ids(path, list(reversed(expected)), expected)  # order does not matter
    msg = raises([str(path), "8 missing ids: id0, id1, id2, id3, id4, ... (3 more)"],
                 check_ids, path, expected[8:], expected)
    assert "extra id" not in msg
    msg = raises([str(path), "1 extra id not in the input: zz"], check_ids, path, expected + ["zz"], expected)
    assert "missing id" not in msg
    raises(["1 missing id: id0", "2 extra ids not in the input: x, y"],
           check_ids, path, expected[1:] + ["x", "y"], expected)
    raises(["1 repeated id: id3"], check_ids, path, expected + ["id3"], expected)


def test_align_predictions_joins_by_id(tmp_path):
    v = np.array([[0.1], [0.2], [0.3]])
    out = align_predictions(tmp_path / "p.csv", ["c", "a", "b"], v, ["a", "b", "c"])
    assert out[:, 0].tolist() == [0.2, 0.3, 0.1]
    raises(["1 missing id: d"], align_predictions, tmp_path / "p.csv", ["c", "a", "b"], v, ["a", "b", "c", "d"])


@pytest.mark.parametrize("task,ids,values,parts", [
    ("para", ["a", "b"], np.array([[0.5]]), ["1 prediction rows", "2 ids"]),
    ("sst", ["a"], np.array([[0.5, 0.5]]), ["shape (1, 2)", "expected (n, 5)"]),
    ("para", ["a,b"], np.array([[0.5]]), [":2:", "comma"]),
    ("para", ["a", "a"], np.array([[0.5], [0.5]]), [":3:", "repeats line 2"]),
    ("sts", ["a", "b"], np.array([[0.5], [np.nan]]), [":3:", "finite"]),
    ("para", ["a"], np.array([[1.01]]), [":2:", "[0, 1]"]),
    ("sst", ["a"], np.array([[0.5, 0.4, 0, 0, 0]]), [":2:", "sum to"]),
])
def test_write_refuses_what_read_would_refuse(tmp_path, task, ids, values, parts):
    p = tmp_path / f"{task}-dev.csv"
    raises([str(p), *parts], write_predictions, p, task, ids, values)
    assert not p.exists() and os.listdir(tmp_path) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "para-dev.csv"
    write_predictions(p, "para", ["a"], np.array([[0.25]]))
    old = p.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_predictions(p, "para", ["a"], np.array([[0.75]]))
    assert p.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["para-dev.csv"]  # no temp file left behind
    monkeypatch.undo()
    write_predictions(p, "para", ["a"], np.array([[0.75]]))
    assert p.read_bytes() == b"id,prob\na,0.75\n"
    assert sorted(os.listdir(tmp_path)) == ["para-dev.csv"]


def test_write_creates_parent_folders(tmp_path):
    p = tmp_path / "reg" / "m1" / "sts-test.csv"
    write_predictions(p, "sts", ["a"], np.array([[3.0]]))
    assert read_predictions(p, "sts")[1][0, 0] == 3.0


def test_20k_rows_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    n = 20_000
    ids = [f"{i:025x}" for i in range(n)]
    v = rng.random((n, 5))
    v /= v.sum(axis=1, keepdims=True)
    p = tmp_path / "sst-test.csv"
    write_predictions(p, "sst", ids, v)
    ids2, v2 = read_predictions(p, "sst")
    assert ids2 == ids and np.array_equal(bits(v2), bits(v))


def test_a_value_wrapped_in_control_separators_reads_as_its_number(tmp_path):
    """str.strip() removes \\x1c-\\x1f but float() does not: the value read is the stripped one (found by
    the property test of imported prediction files)."""
    f = tmp_path / "sts-dev.csv"
    f.write_text("id,score\na1,\x1c2.5\x1f\n")
    ids, values = read_predictions(f, "sts")
    assert ids == ["a1"] and values.tolist() == [[2.5]]
