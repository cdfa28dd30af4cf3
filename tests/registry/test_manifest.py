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
    ({"files": []}, "field files is []; expected an object"),
    ({"files": {"../x": {"sha256": "s", "size": 1}}}, "path '../x' is not a plain relative path"),
    ({"files": {"/etc/passwd": {"sha256": "s", "size": 1}}}, "path '/etc/passwd' is not a plain relative path"),
    ({"files": {"a": {"sha256": "s"}}}, "field files.a is {'sha256': 's'}; expected"),
    ({"predictions": "x"}, "field predictions is 'x'; expected an object"),
    ({"predictions": {"nli": {}}}, "field predictions.nli is {}; expected a known task's splits"),
    ({"predictions": {"sst": {"dev": "x"}}}, "field predictions.sst.dev is 'x'; expected a dev or test entry"),
    ({"predictions": {"sst": {"train": ENTRY}}}, "field predictions.sst.train"),
    ({"predictions": {"sst": {"dev": {**ENTRY, "file": "../../../etc/passwd"}}}},
     "field predictions.sst.dev.file is '../../../etc/passwd'; expected 'predictions/sst-dev.csv'"),
    ({"predictions": {"sst": {"dev": {**ENTRY, "file": 5}}}}, ".file is 5; expected 'predictions/sst-dev.csv'"),
    ({"predictions": {"sst": {"test": {**ENTRY, "file": "predictions/sst-test.csv"}}}},
     "'predictions/sst-test.csv' is not among the manifest's files"),
    ({"predictions": {"sst": {"dev": {**ENTRY, "rows": -1}}}}, ".rows is -1; expected a row count"),
    ({"metrics": []}, "field metrics is []; expected an object"),
    ({"metrics": {"sst": 0.5}}, "field metrics.sst is 0.5; expected an object"),
    ({"metrics": {"sst": {"dev": float("nan")}}}, "field metrics.sst.dev is nan; expected a finite number or null"),
    ({"metrics": {"sst": {"dev": "0.9"}}}, "field metrics.sst.dev is '0.9'"),
    ({"metrics": {"sst": {"loss": float("inf")}}}, "field metrics.sst.loss is inf"),
    ({"tasks": "sst"}, "field tasks is 'sst'; expected a list of task names"),
    ({"tasks": ["nli"]}, "field tasks is ['nli']"),
    ({"name": 5}, "field name is 5; expected a string"),
])
def test_damaged_fields_are_named(change, message):
    problem = shape_problem({**GOOD, **change})
    assert problem is not None and message in problem, problem


def test_the_seal_covers_every_field_but_itself():
    m = {**GOOD}
    m[SEAL] = seal_of(m)
    assert seal_problem(m) is None
    assert seal_of({**m, SEAL: "other"}) == m[SEAL]
    assert "edited after it was written" in seal_problem({**m, "metrics": {"sst": {"dev": 0.99}}})
    assert "has no seal" in seal_problem(GOOD)
    assert seal_problem({**GOOD, "format": "ensemble-candidate/1"}) is None   # written before seals
