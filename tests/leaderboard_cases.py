"""Shared cases of the leaderboard tests: the tiny outputs, their exact bytes and a folder of them.

Import the ``preds`` fixture by name into a test module (``from leaderboard_cases import preds``).
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_IDS

from ensemble.leaderboard.write import write_leaderboard

NOW = datetime(2024, 3, 1, 12, 34, 56)


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


def edit(preds: Path, name: str, text: str) -> Path:
    p = preds / name
    p.write_bytes(text.encode("utf-8"))
    return p


def interrupted_write(folder: Path, outputs: dict, stamp: dict, monkeypatch, steps: int = 2) -> None:
    """What a kill leaves: ``write_leaderboard`` stopped dead (no rollback) after ``steps`` renames
    (the writing stamp, then the first files)."""
    import ensemble.leaderboard.write as lb

    class Killed(BaseException):
        pass
    passages = []

    def fault_point(name):
        passages.append(name)
        if len(passages) > steps:
            raise Killed
    monkeypatch.setattr(lb, "fault_point", fault_point)
    monkeypatch.setattr(lb, "_roll_back", lambda replaced, backups: [])
    try:
        write_leaderboard(folder, outputs, stamp=stamp)
    except Killed:
        pass
    monkeypatch.undo()
