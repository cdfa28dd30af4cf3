"""A candidate manifest's fields (checked on every read) and its seal (checked by verify)."""
from __future__ import annotations

import pytest

from ensemble.registry.manifest import SEAL, seal_of, seal_problem, shape_problem

ENTRY = {"file": "predictions/sst-dev.csv", "data_file": "ids-sst-dev.csv", "data_sha256": "d", "rows": 3}
GOOD = {"id": "a1", "name": "x", "kind": "predictions", "tasks": ["sst"],
        "files": {"predictions/sst-dev.csv": {"sha256": "s", "size": 10}},
        "predictions": {"sst": {"dev": ENTRY}}, "metrics": {"sst": {"dev": 0.5}}}


def test_a_whole_manifest_and_a_minimal_one_pass():
    assert shape_problem(GOOD) is None
    assert shape_problem({"id": "a1"}) is None


@pytest.mark.parametrize("change, message", [
    ({"files": []}, "files: expected an object, got []"),
    ({"files": {"../x": {"sha256": "s", "size": 1}}}, "files: path '../x' is not a plain relative path"),
    ({"files": {"/etc/passwd": {"sha256": "s", "size": 1}}}, "files: path '/etc/passwd' is not a plain relative path"),
    ({"files": {"a": {"sha256": "s"}}}, "files.a.size: missing"),
    ({"predictions": "x"}, "predictions: expected an object, got 'x'"),
    ({"predictions": {"nli": {}}}, "predictions.nli (a key): expected 'sst', 'para' or 'sts'"),
    ({"predictions": {"sst": {"dev": "x"}}}, "predictions.sst.dev: expected an object, got 'x'"),
    ({"predictions": {"sst": {"train": ENTRY}}}, "predictions.sst.train (a key): expected 'dev' or 'test'"),
    ({"predictions": {"sst": {"dev": {**ENTRY, "file": "../../../etc/passwd"}}}},
     "predictions.sst.dev.file: expected 'predictions/sst-dev.csv', got '../../../etc/passwd'"),
    ({"predictions": {"sst": {"dev": {**ENTRY, "file": 5}}}}, "predictions.sst.dev.file: expected a string, got 5"),
    ({"predictions": {"sst": {"test": {**ENTRY, "file": "predictions/sst-test.csv"}}}},
     "predictions.sst.test.file: 'predictions/sst-test.csv' is not among the manifest's files"),
    ({"predictions": {"sst": {"dev": {**ENTRY, "rows": -1}}}}, "predictions.sst.dev.rows: expected a number >= 0, got -1"),
    ({"metrics": []}, "metrics: expected an object, got []"),
    ({"metrics": {"sst": 0.5}}, "metrics.sst: expected an object, got 0.5"),
    ({"metrics": {"sst": {"dev": float("nan")}}}, "metrics.sst.dev: expected a finite number or null, got nan"),
    ({"metrics": {"sst": {"dev": "0.9"}}}, "metrics.sst.dev: expected a finite number or null, got '0.9'"),
    ({"metrics": {"sst": {"loss": float("inf")}}}, "metrics.sst.loss: expected a finite number or null, got inf"),
    ({"tasks": "sst"}, "tasks: expected a list, got 'sst'"),
    ({"tasks": ["nli"]}, "tasks[0]: expected 'sst', 'para' or 'sts', got 'nli'"),
    ({"name": 5}, "name: expected a string, got 5"),
    # issue 26: fields a valid seal does not make whole
    ({"model": "bert"}, "model: expected an object, got 'bert'"),
    ({"model": {"base": 5}}, "model.base: expected a string, got 5"),
    ({"parameters": "110M"}, "parameters: expected an integer, got '110M'"),
    ({"parameters": True}, "parameters: expected an integer, got True"),
    ({"training": {"config": "lr=1"}}, "training.config: expected an object, got 'lr=1'"),
    ({"training": {"epoch": "3"}}, "training.epoch: expected an integer, got '3'"),
    ({"training": {"run_complete": "yes"}}, "training.run_complete: expected true or false, got 'yes'"),
])
def test_damaged_fields_are_named(change, message):
    problem = shape_problem({**GOOD, **change})
    assert problem is not None and problem.startswith(message) and "\n" not in problem, problem


def test_the_seal_covers_every_field_but_itself():
    m = {**GOOD}
    m[SEAL] = seal_of(m)
    assert seal_problem(m) is None
    assert seal_of({**m, SEAL: "other"}) == m[SEAL]
    assert "edited after it was written" in seal_problem({**m, "metrics": {"sst": {"dev": 0.99}}})
    assert "has no seal" in seal_problem(GOOD)
    assert seal_problem({**GOOD, "format": "ensemble-candidate/1"}) is None   # written before seals
