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


@pytest.mark.parametrize("doc, message", [
    (edited(tasks__sst__weights__a1="abc"), "tasks.sst.weights.a1: expected a number, got 'abc'"),
    (edited(tasks__sst__weights__a1=-1), "tasks.sst.weights.a1: expected a number > 0.0, got -1"),
    (edited(tasks__sst__weights__a1=0), "tasks.sst.weights.a1: expected a number > 0.0, got 0"),
    (edited(tasks__sst__weights__a1=True), "tasks.sst.weights.a1: expected a number, got True"),
    (edited(tasks__sst__weights__a1=float("inf")), "tasks.sst.weights.a1: expected a finite number, got inf"),
    (edited(tasks__sst__weights={}), "tasks.sst.weights: expected at least 1 entries, got {}"),
    (edited(tasks__sst__weights={"../x": 1}), "tasks.sst.weights: expected a plain candidate id, got '../x'"),
    (edited(tasks__bogus={"weights": {"a1": 1}}), "tasks.bogus (a key): expected 'sst', 'para' or 'sts', got 'bogus'"),
    (edited(tasks=KeyError), "tasks: missing (a required field)"),
    (edited(tasks=[1]), "tasks: expected an object, got [1]"),
    (edited(tasks={}), "tasks: expected at least 1 entries, got {}"),
    (edited(tasks__sst="x"), "tasks.sst: expected an object, got 'x'"),
    (edited(tasks__sst__members="a1"), "tasks.sst.members: expected a list, got 'a1'"),
    (edited(tasks__sst__dev_score="high"), "tasks.sst.dev_score: expected a number, got 'high'"),
    (edited(tasks__sst__prediction_sha256={"a1": "x"}), "tasks.sst.prediction_sha256.a1: expected an object, got 'x'"),
    (edited(tasks__sst__selected=5), "tasks.sst.selected: expected an object, got 5"),
    (edited(tasks__sst__selected={"weights": {"a1": "x"}}), "tasks.sst.selected.weights.a1: expected a number, got 'x'"),
    (edited(name=5), "name: expected a string, got 5"),
    (edited(name=KeyError), "name: missing (a required field)"),
    (edited(mode=5), "mode: expected a string, got 5"),
    (edited(summary="x"), "summary: expected a list, got 'x'"),
    ([1, 2], "(the document): expected an object, got [1, 2]"),
    # issue 26: nested fields the hand-written reader did not check
    (edited(tasks__sst__interval=[1, 2]), "tasks.sst.interval: expected an object, got [1, 2]"),
    (edited(tasks__sst__interval={"estimate": "0.1"}), "tasks.sst.interval.estimate: expected a number, got '0.1'"),
    (edited(tasks__sst__interval={"estimate": 0.1}), "tasks.sst.interval: an estimate needs its low and high bounds"),
    (edited(tasks__sst__settings="fast"), "tasks.sst.settings: expected an object, got 'fast'"),
    (edited(tasks__sst__settings={"bogus": 1}), "tasks.sst.settings.bogus: unknown field (holding 1)"),
    (edited(tasks__sst__settings={"steps": 0}), "tasks.sst.settings.steps: expected a number >= 1, got 0"),
    (edited(summary=[{"dev": {}}]), "summary[0].system: missing (a required field)"),
    (edited(bogus=1), "bogus: unknown field (holding 1)"),
])
def test_hand_edits_are_refused_naming_the_field(tmp_path, doc, message):
    f = tmp_path / "e.json"
    with pytest.raises(EnsembleError) as e:
        check_ensemble_doc(f, doc)
    assert str(e.value).startswith(f"{f}: {message}"), str(e.value)
    assert "\n" not in str(e.value)


def test_fields_of_newer_versions_are_kept_under_a_task_only(tmp_path):
    """``tasks.<task>`` may carry fields a newer version writes (e.g. each system's estimate);
    they are returned as written. Anywhere else an unknown key is refused (above)."""
    doc = edited(tasks__sst__estimates={"ensemble": 0.5})
    assert check_ensemble_doc(tmp_path / "e.json", doc) is doc


def test_deep_nesting_is_refused_before_parsing(tmp_path):
    f = tmp_path / "e.json"
    f.write_text('{"name": "e", "tasks": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(EnsembleError, match=f"{f}: nested deeper than 32 levels"):
        read_ensemble_file(f)


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
