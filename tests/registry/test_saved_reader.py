"""The saved ensemble reader: a whole document passes; a hand-edited one is refused naming the file
and the field (issue 13: weight "abc", unknown task, no tasks, negative weights ...)."""
from __future__ import annotations

import copy
import json

import pytest

from ensemble.registry.saved import check_ensemble_doc, check_ensemble_name, read_ensemble_file
from ensemble.errors import EnsembleError

GOOD = {"name": "e", "mode": "caruana", "created": "2026-01-01T00:00:00+00:00", "sample": True,
        "tasks": {"sst": {"members": ["a1", "b2"], "weights": {"a1": 2, "b2": 1}, "dev_score": 0.5,
                          "prediction_sha256": {"a1": {"dev": "x", "test": "y"}, "b2": {"dev": "z"}}},
                  "sts": {"weights": {"a1": 1.0}, "dev_score": None}},
        "summary": [{"system": "s"}]}


def edited(**changes):
    doc = copy.deepcopy(GOOD)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = doc
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return doc


def test_a_whole_document_passes(tmp_path):
    f = tmp_path / "e.json"
    f.write_text(json.dumps(GOOD))
    assert read_ensemble_file(f) == GOOD


@pytest.mark.parametrize("doc, field, message", [
    (edited(tasks__sst__weights__a1="abc"), "tasks.sst.weights.a1", "is 'abc'; expected a finite number > 0"),
    (edited(tasks__sst__weights__a1=-1), "tasks.sst.weights.a1", "is -1; expected a finite number > 0"),
    (edited(tasks__sst__weights__a1=0), "tasks.sst.weights.a1", "is 0; expected a finite number > 0"),
    (edited(tasks__sst__weights__a1=True), "tasks.sst.weights.a1", "is True"),
    (edited(tasks__sst__weights={}), "tasks.sst.weights", "is {}; expected an object of member id -> weight"),
    (edited(tasks__sst__weights={"../x": 1}), "tasks.sst.weights", "is '../x'; expected member ids that are plain"),
    (edited(tasks__bogus={"weights": {"a1": 1}}), "tasks", "is 'bogus'; expected task names among sst, para, sts"),
    (edited(tasks=KeyError), "tasks", "is None; expected an object"),
    (edited(tasks=[1]), "tasks", "is [1]"),
    (edited(tasks={}), "tasks", "is {}"),
    (edited(tasks__sst="x"), "tasks.sst", "is 'x'; expected an object with members and weights"),
    (edited(tasks__sst__members="a1"), "tasks.sst.members", "is 'a1'; expected a list of plain candidate ids"),
    (edited(tasks__sst__dev_score="high"), "tasks.sst.dev_score", "is 'high'; expected a finite number or null"),
    (edited(tasks__sst__prediction_sha256={"a1": "x"}), "tasks.sst.prediction_sha256.a1", "is 'x'"),
    (edited(tasks__sst__selected=5), "tasks.sst.selected.weights", "is 5; expected an object of member id -> weight"),
    (edited(tasks__sst__selected={"weights": {"a1": "x"}}), "tasks.sst.selected.weights.a1", "is 'x'"),
    (edited(name=5), "name", "is 5; expected the ensemble's name"),
    (edited(name=KeyError), "name", "is None; expected the ensemble's name"),
    (edited(mode=5), "mode", "is 5; expected a string"),
    (edited(summary="x"), "summary", "is 'x'; expected a list of objects"),
    ([1, 2], "(the document)", "is 'list'; expected a JSON object"),
])
def test_hand_edits_are_refused_naming_the_field(tmp_path, doc, field, message):
    f = tmp_path / "e.json"
    with pytest.raises(EnsembleError) as e:
        check_ensemble_doc(f, doc)
    assert str(e.value).startswith(f"{f}: field {field} {message}"), str(e.value)


@pytest.mark.parametrize("raw", [b"{bad", b"\xff\xfe", b""])
def test_not_json(tmp_path, raw):
    f = tmp_path / "e.json"
    f.write_bytes(raw)
    with pytest.raises(EnsembleError, match=f"{f}: not valid JSON"):
        read_ensemble_file(f)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "a..b", "a\\b", 5, None])
def test_names_that_cannot_name_a_saved_file_are_refused(name):
    with pytest.raises(EnsembleError, match="expected a plain file name"):
        check_ensemble_name(name)


def test_plain_names_pass():
    assert check_ensemble_name("best-v2_final") == "best-v2_final"
