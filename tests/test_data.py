"""The course-file readers: every quirk, every malformed-row error, and the real files."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from ensemble import data
from ensemble.data import Example, read_file, read_split
from ensemble.files import file_sha256
from ensemble.tasks import SPLITS, TASKS
from asserts import raises

SST_HEADER = "\tid\tsentence\tsentiment\n"
PAIR_HEADER = "\tid\tsentence1\tsentence2\t{label}\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def quora(tmp_path: Path, rows: str, name: str = "quora-dev.csv") -> Path:
    return write(tmp_path, name, PAIR_HEADER.format(label="is_duplicate") + rows)


def sts(tmp_path: Path, rows: str, name: str = "sts-dev.csv") -> Path:
    return write(tmp_path, name, PAIR_HEADER.format(label="similarity") + rows)


def sst(tmp_path: Path, rows: str, name: str = "ids-sst-dev.csv") -> Path:
    return write(tmp_path, name, SST_HEADER + rows)


# --------------------------------------------------------------------------- quirks


def test_sst_leading_index_column_labels_and_preprocessing(tmp_path):
    p = sst(tmp_path, "0\tAbC1\t It 's A Lovely FILM .  \t3\n7\tdef2\t Bad .\t0.0\n")
    s = read_file(p, "sst")
    assert s.examples == [
        Example("abc1", "it 's a lovely film .", None, 3),
        Example("def2", "bad .", None, 0),
    ]
    assert s.labelled and s.skipped_empty == 0
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [3, 0]
    assert type(s.examples[1].label) is int  # "0.0" -> 0, an int


def test_sst_test_file_second_index_column(tmp_path):
    p = write(tmp_path, "ids-sst-test-student.csv",
              "0\t\tid\tsentence\n1\t0.0\tid-one\t You 'll Love It .\n2\t1.0\tid-two\t Meh .\n")
    s = read_file(p, "sst")
    assert s.split == "test"
    assert s.ids == ["id-one", "id-two"]
    assert [e.text_a for e in s.examples] == ["you 'll love it .", "meh ."]
    assert [e.label for e in s.examples] == [None, None]
    assert not s.labelled
    raises(["ids-sst-test-student.csv", "no labels"], lambda: s.labels)


def test_columns_found_by_name_not_position(tmp_path):
    p = write(tmp_path, "odd.csv", "sentiment\tsentence\textra\tid\n2.0\t Text .\tx\tq1\n")
    s = read_file(p, "sst")
    assert s.examples == [Example("q1", "text .", None, 2)]
    assert s.split == "odd"


def test_pair_preprocessing_is_the_courses():
    s = "What's UP? Yes,it.Is   so'"
    assert data.preprocess_pair(s) == "what 's up ? yes ,it .is so '"
    expected = " ".join(
        s.lower().replace(".", " .").replace("?", " ?").replace(",", " ,").replace("'", " '").split()
    )
    assert data.preprocess_pair(s) == expected
    assert data.preprocess_single("  Hello World .  ") == "hello world ."


def test_quora_doubled_quotes_and_float_labels(tmp_path):
    p = quora(tmp_path,
              '1\tq1\t"""What does """"the"""" mean?"""\tIt\'s a word, right?\t1.0\n'
              '2\tq2\tA.\t"B ""quoted"" text"\t0.0\n')
    s = read_file(p, "para")
    assert s.examples[0] == Example("q1", '"what does ""the"" mean ?"', "it 's a word , right ?", 1)
    assert s.examples[1] == Example("q2", "a .", 'b "quoted" text', 0)
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [1, 0]
    # Same text as the course's own reader (csv.DictReader, delimiter tab) gives.
    with open(p) as fp:
        course = [(data.preprocess_pair(r["sentence1"]), data.preprocess_pair(r["sentence2"]),
                   int(float(r["is_duplicate"])), r["id"].lower().strip())
                  for r in csv.DictReader(fp, delimiter="\t")]
    assert course == [(e.text_a, e.text_b, e.label, e.id) for e in s.examples]


def test_quora_empty_label_rows_skipped_and_counted(tmp_path):
    p = quora(tmp_path,
              "1\tq1\tA?\tB?\t1.0\n"
              '2\tq2\t"""Unfinished?"\t\t\n'
              "3\tq3\tC?\tD?\t \n"
              "4\tq4\tE?\tF?\t0.0\n")
    s = read_file(p, "para")
    assert s.ids == ["q1", "q4"]
    assert s.skipped_empty == 2
    assert s.skipped == [(3, "q2"), (4, "q3")]
    assert len(s) == 2


@pytest.mark.parametrize("task,maker,row", [
    ("sst", sst, "0\ta\t x .\t\n"),
    ("sts", sts, "0\ta\tx\ty\t\n"),
])
def test_empty_label_is_an_error_outside_quora(tmp_path, task, maker, row):
    p = maker(tmp_path, "9\tok\t" + ("fine .\t1\n" if task == "sst" else "x\ty\t1.0\n") + row)
    raises([f"{p}:3:", "label", "empty"], read_file, p, task)


def test_sts_labels_float(tmp_path):
    p = sts(tmp_path, "0\ta\tOne.\tTwo.\t4.6\n1\tb\tx\ty\t0\n2\tc\tx\ty\t5.0\n")
    s = read_file(p, "sts")
    assert s.labels.dtype == np.float64
    assert s.labels.tolist() == [4.6, 0.0, 5.0]
    assert s.examples[0] == Example("a", "one .", "two .", 4.6)


def test_labelled_detection_and_forcing(tmp_path):
    test = write(tmp_path, "sts-test-student.csv", "\tid\tsentence1\tsentence2\n0\ta\tx\ty\n")
    dev = sts(tmp_path, "0\ta\tx\ty\t3.0\n")
    assert not read_file(test, "sts").labelled
    assert read_file(dev, "sts").labelled
    assert read_file(dev, "sts", labelled=False).examples[0].label is None
    raises([f"{test}:1:", "no label column", "'similarity'"], read_file, test, "sts", labelled=True)


def test_empty_labelled_file_knows_it_is_labelled(tmp_path):
    s = read_file(sst(tmp_path, ""), "sst")
    assert len(s) == 0 and s.labelled and s.labels.dtype == np.int64


def test_multiline_quoted_field_keeps_line_numbers(tmp_path):
    # Row 1 spans lines 2-3; the bad row is on line 4 as an editor shows it.
    p = sts(tmp_path, '0\ta\t"two\nlines"\ty\t1.0\n1\tb\tx\ty\tbad\n')
    raises([f"{p}:4:", "'bad'", "not a number"], read_file, p, "sts")


def test_sha256_and_helpers(tmp_path):
    p = sst(tmp_path, "0\ta\t x\t1\n1\tb\t y\t2\n")
    s = read_file(p, "sst")
    assert s.sha256 == hashlib.sha256(p.read_bytes()).hexdigest() == file_sha256(p)
    assert s.by_id()["b"] == Example("b", "y", None, 2)
    assert s.ids == ["a", "b"] and len(s) == 2
    raises([str(tmp_path / "nope.csv")], file_sha256, tmp_path / "nope.csv")


def test_utf8_bom_tolerated(tmp_path):
    p = tmp_path / "ids-sst-dev.csv"
    p.write_bytes(b"\xef\xbb\xbf" + (SST_HEADER + "0\ta\t x\t1\n").encode())
    assert read_file(p, "sst").ids == ["a"]


# --------------------------------------------------------------------------- errors


def test_read_split_missing_file_names_path_and_expected_names(tmp_path):
    msg = raises([str(tmp_path / "quora-dev.csv"), "ids-sst-train.csv", "sts-test-student.csv"],
                 read_split, tmp_path, "para", "dev")
    assert "quora-test-student.csv" in msg


def test_read_split_unknown_task_and_split(tmp_path):
    raises(["unknown task 'nli'"], read_split, tmp_path, "nli", "dev")
    raises(["unknown split 'val'"], read_split, tmp_path, "sst", "val")


def test_read_file_missing(tmp_path):
    raises([str(tmp_path / "x.csv"), "not found"], read_file, tmp_path / "x.csv", "sst")


def test_wrong_column_count(tmp_path):
    p = sst(tmp_path, "0\ta\t x\t1\n1\tb\t y\n")
    raises([f"{p}:3:", "3 tab-separated fields", "expected 4"], read_file, p, "sst")
    p = sst(tmp_path, "0\ta\t x\t1\textra\n", name="b.csv")
    raises([f"{p}:2:", "5 tab-separated fields", "expected 4"], read_file, p, "sst")


def test_blank_line_is_an_error(tmp_path):
    p = sst(tmp_path, "0\ta\t x\t1\n\n1\tb\t y\t2\n")
    raises([f"{p}:3:", "empty line"], read_file, p, "sst")


@pytest.mark.parametrize("task,label,why", [
    ("sst", "three", "not a number"),
    ("sst", "nan", "not a number"),
    ("sst", "3.5", "not a whole number"),
    ("sst", "5", "out of range"),
    ("sst", "-1", "out of range"),
    ("para", "2.0", "out of range"),
    ("para", "0.5", "not a whole number"),
    ("para", "yes", "not a number"),
    ("sts", "5.1", "out of range"),
    ("sts", "-0.2", "out of range"),
    ("sts", "inf", "not a number"),
    ("sts", "1_0", "not a number"),
])
def test_bad_label(tmp_path, task, label, why):
    if task == "sst":
        p = sst(tmp_path, f"0\tok\t fine\t1\n1\tbad\t x\t{label}\n")
    elif task == "para":
        p = quora(tmp_path, f"0\tok\tx\ty\t1.0\n1\tbad\tx\ty\t{label}\n")
    else:
        p = sts(tmp_path, f"0\tok\tx\ty\t1.0\n1\tbad\tx\ty\t{label}\n")
    raises([f"{p}:3:", repr(label), why, TASKS[task].label_column, "expected"], read_file, p, task)


def test_duplicate_id(tmp_path):
    p = sst(tmp_path, "0\ta\t x\t1\n1\tb\t y\t2\n2\ta\t z\t3\n")
    raises([f"{p}:4:", "id 'a'", "repeats line 2"], read_file, p, "sst")


def test_duplicate_id_after_lowercasing(tmp_path):
    p = quora(tmp_path, "0\tAB\tx\ty\t1.0\n1\tab \tx\ty\t0.0\n")
    raises([f"{p}:3:", "id 'ab'", "repeats line 2"], read_file, p, "para")


def test_empty_id(tmp_path):
    p = sts(tmp_path, "0\ta\tx\ty\t1.0\n1\t \tx\ty\t2.0\n")
    raises([f"{p}:3:", "'id' is empty"], read_file, p, "sts")


def test_header_missing_column(tmp_path):
    p = write(tmp_path, "quora-dev.csv", "\tid\tquestion1\tquestion2\tis_duplicate\n0\ta\tx\ty\t1.0\n")
    raises([f"{p}:1:", "'sentence1'", "'sentence2'", "is this a para file"], read_file, p, "para")
    # an SST file read as sts
    p = sst(tmp_path, "0\ta\t x\t1\n")
    raises([f"{p}:1:", "'sentence1'"], read_file, p, "sts")


def test_header_duplicate_column(tmp_path):
    p = write(tmp_path, "ids-sst-dev.csv", "\tid\tsentence\tsentence\tsentiment\n0\ta\tx\ty\t1\n")
    raises([f"{p}:1:", "'sentence' 2 times"], read_file, p, "sst")


def test_empty_file(tmp_path):
    p = write(tmp_path, "ids-sst-dev.csv", "")
    raises([f"{p}:1:", "empty file"], read_file, p, "sst")


def test_not_utf8(tmp_path):
    p = tmp_path / "ids-sst-dev.csv"
    p.write_bytes(SST_HEADER.encode() + b"0\ta\t ok\t1\n1\tb\t caf\xe9\t1\n")
    raises([f"{p}:3:", "UTF-8"], read_file, p, "sst")


def test_tiny_data_fixture_reads(tiny_data):
    for task in TASKS:
        for split in SPLITS:
            s = read_split(tiny_data, task, split)
            assert s.labelled == (split != "test")
    para = read_split(tiny_data, "para", "dev")
    assert para.ids == ["qd1", "qd2", "qd4"] and para.skipped == [(4, "qd3")]


# --------------------------------------------------------------------------- real data

REAL_COUNTS = {
    # (task, split): (examples, skipped rows with an empty label)
    ("sst", "train"): (7544, 0), ("sst", "dev"): (1101, 0), ("sst", "test"): (1000, 0),
    ("para", "train"): (14213, 1), ("para", "dev"): (2999, 1), ("para", "test"): (3000, 0),
    ("sts", "train"): (5240, 0), ("sts", "dev"): (863, 0), ("sts", "test"): (800, 0),
}


def course_reader(path: Path, task: str, split: str) -> list[tuple]:
    """The course's ``load_multitask_data`` loops, as written in its datasets.py."""
    out = []
    with open(path, "r") as fp:
        for record in csv.DictReader(fp, delimiter="\t"):
            sent_id = record["id"].lower().strip()
            if task == "sst":
                sent = record["sentence"].lower().strip()
                label = None if split == "test" else int(record["sentiment"].strip())
                out.append((sent, None, label, sent_id))
                continue
            a = data.preprocess_pair(record["sentence1"])
            b = data.preprocess_pair(record["sentence2"])
            if split == "test":
                out.append((a, b, None, sent_id))
            elif task == "para":
                try:
                    out.append((a, b, int(float(record["is_duplicate"])), sent_id))
                except Exception:
                    pass
            else:
                out.append((a, b, float(record["similarity"]), sent_id))
    return out


def test_real_files_counts_and_course_equivalence(shared_data):
    for (task, split), (n, skipped) in REAL_COUNTS.items():
        s = read_split(shared_data, task, split)
        assert (len(s), s.skipped_empty) == (n, skipped), (task, split)
        assert s.labelled == (split != "test")
        assert s.sha256 == file_sha256(shared_data / TASKS[task].file_name(split))
        ours = [(e.text_a, e.text_b, e.label, e.id) for e in s.examples]
        assert ours == course_reader(s.path, task, split), (task, split)
        if s.labelled:
            y = s.labels
            assert y.min() >= TASKS[task].label_min and y.max() <= TASKS[task].label_max
            if task != "sts":
                assert set(np.unique(y).tolist()) == set(range(int(TASKS[task].label_max) + 1))


def test_a_huge_label_is_quoted_cut(tmp_path):
    f = tmp_path / "ids-sst-dev.csv"
    f.write_text("\tid\tsentence\tsentiment\n0\ta\tgood\t" + "9" * 100_000 + "x\n")
    msg = raises([f"{f}:2:", "label 'sentiment' is '999", "... (100,003 characters)"], read_file, f, "sst")
    assert len(msg) < 600


def test_a_header_only_dev_file_is_refused(tmp_path):
    (tmp_path / "ids-sst-dev.csv").write_text("\tid\tsentence\tsentiment\n")
    raises([f"{tmp_path / 'ids-sst-dev.csv'}: no example rows after the header", "dev file of task 'sst'"],
           read_split, tmp_path, "sst", "dev")


def test_a_header_only_test_file_reads_as_no_rows(tmp_path):
    (tmp_path / "ids-sst-test-student.csv").write_text("\tid\tsentence\n")
    assert len(read_split(tmp_path, "sst", "test")) == 0


def test_load_splits_refuses_a_missing_test_file(tmp_path):
    import shutil

    from ensemble.data import PACKAGE_SAMPLE, load_splits
    from ensemble.errors import EnsembleError

    data = shutil.copytree(PACKAGE_SAMPLE, tmp_path / "data")
    (data / "sts-test-student.csv").unlink()
    assert set(load_splits(data, ["sst"], ("train", "dev", "test"))) == {("sst", "train"), ("sst", "dev"), ("sst", "test")}
    with pytest.raises(EnsembleError, match=r"sts-test-student.csv: input file not found for task 'sts', split 'test'"):
        load_splits(data, ["sst", "sts"], ("dev", "test"))
