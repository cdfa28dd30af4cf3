"""Shared fixtures.

``shared_data``: the real course files in ``../shared/data`` next to the repository (skips when
absent; never copied into the repo). ``tiny_data``: a folder of nine tiny files in the course's
formats, with every quirk of the real ones.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray (tests/scale/test_ray*.py) on Linux binds the machine's outward address unless this is set: with it,
# every node of a test's cluster is on 127.0.0.1 (and workers started by the tests inherit it).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Nine tiny course files, written byte for byte, quirks included: a leading unnamed index column,
# a second index column in the SST test file (header "0\t\tid\tsentence"), labels as ints and as
# floats, quoted fields with doubled quotes, and one Quora dev row with an empty label.
TINY_FILES: dict[str, str] = {
    "ids-sst-train.csv": (
        "\tid\tsentence\tsentiment\n"
        "0\tsst-tr-a\t A Fine Film .\t3\n"
        "1\tsst-tr-b\t Dull , DULL .\t1.0\n"
    ),
    "ids-sst-dev.csv": (
        "\tid\tsentence\tsentiment\n"
        "0\tsstd1\t Great fun .\t4\n"
        "1\tsstd2\t Awful .\t0\n"
        "2\tsstd3\t Fine .\t2\n"
    ),
    "ids-sst-test-student.csv": (
        "0\t\tid\tsentence\n"
        "1\t0.0\tsstt1\t You 'll Love It .\n"
        "2\t1.0\tsstt2\t Meh .\n"
    ),
    "quora-train.csv": (
        "\tid\tsentence1\tsentence2\tis_duplicate\n"
        "10\tqtr1\tHow do I cook?\tHow to cook?\t1.0\n"
        "11\tqtr2\tWhat is X?\tWho is Y?\t0.0\n"
    ),
    "quora-dev.csv": (
        "\tid\tsentence1\tsentence2\tis_duplicate\n"
        "20\tqd1\tWhy is the sky blue?\tWhat makes the sky blue?\t1.0\n"
        '21\tqd2\t"""What does """"the"""" mean?"""\tIt\'s a word, right?\t0.0\n'
        '22\tqd3\t"""An unfinished question?"\t\t\n'
        "23\tqd4\tIs it?\tIs it not?\t0.0\n"
    ),
    "quora-test-student.csv": (
        "\tid\tsentence1\tsentence2\n"
        "30\tqt1\tWhere?\tWhen?\n"
        "31\tqt2\tA.B?\tC,D?\n"
    ),
    "sts-train.csv": (
        "\tid\tsentence1\tsentence2\tsimilarity\n"
        "40\tstr1\tA man plays.\tA man is playing.\t4.6\n"
        "41\tstr2\tA cat.\tA dog.\t0.8\n"
    ),
    "sts-dev.csv": (
        "\tid\tsentence1\tsentence2\tsimilarity\n"
        "50\tsd1\tTwo dogs run.\tTwo dogs are running.\t5.0\n"
        '51\tsd2\t"He said ""no""."\tShe said yes.\t1.2\n'
        "52\tsd3\tRain.\tSun.\t0.0\n"
    ),
    "sts-test-student.csv": (
        "\tid\tsentence1\tsentence2\n"
        "60\tst1\tA bird flies.\tA plane flies.\n"
        "61\tst2\tHello.\tGoodbye.\n"
    ),
}

# Ids of the tiny leaderboard inputs, per (task, split), in file order (qd3 is skipped: empty label).
TINY_IDS: dict[tuple[str, str], list[str]] = {
    ("sst", "dev"): ["sstd1", "sstd2", "sstd3"],
    ("sst", "test"): ["sstt1", "sstt2"],
    ("para", "dev"): ["qd1", "qd2", "qd4"],
    ("para", "test"): ["qt1", "qt2"],
    ("sts", "dev"): ["sd1", "sd2", "sd3"],
    ("sts", "test"): ["st1", "st2"],
}


@pytest.fixture
def shared_data() -> Path:
    """The real course data folder ``../shared/data``; skips the test when it is absent."""
    if not (SHARED_DATA / "ids-sst-dev.csv").is_file():
        pytest.skip(f"real course data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A folder holding the nine tiny course files of ``TINY_FILES``."""
    d = tmp_path / "data"
    d.mkdir()
    for name, text in TINY_FILES.items():
        (d / name).write_bytes(text.encode("utf-8"))
    return d


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """A tiny random BertModel + fast tokenizer saved to a folder (usable as --base)."""
    from tiny import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("tiny-base"))
