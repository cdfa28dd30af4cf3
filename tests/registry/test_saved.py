"""ensemble.registry.saved: the saved ensemble records, per task, the system chosen and why, the mode's
settings and the held-out interval; with system="auto" a task whose ensemble is not expected to
beat its best single candidate saves (and so predicts and submits) the best single candidate."""
from __future__ import annotations

import pytest

from ensemble import workflow
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.leaderboard.write import score_dir
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from ensemble.registry.saved import check_ensemble_doc, members_in_order
from registry_files import make_pred_dir


@pytest.fixture
def twins(tmp_path):
    """Two candidates with the same predictions: no ensemble of them can beat either, so every
    held-out gain is exactly 0 and the ensemble is 'not expected to beat the best single'."""
    reg = Registry(tmp_path / "reg")
    folder = make_pred_dir(SAMPLE, tmp_path / "p", seed=3)
    register_predictions(reg, folder, "twin-a", SAMPLE)
    register_predictions(reg, folder, "twin-b", SAMPLE, force=True)
    return reg


def test_auto_saves_the_best_single_candidate_with_its_reason(twins, tmp_path):
    report = workflow.select(twins, SAMPLE, name="auto", system="auto", mode="greedy")   # greedy keeps the tie
    doc = twins.load_ensemble("auto")
    assert doc["mode"] == "greedy"
    for task, entry in doc["tasks"].items():
        sel = report.tasks[task]
        assert sel["heldout"]["estimate"] == 0.0
        best = sel["best_single"]["id"]
        assert entry["system"] == "best single" and entry["members"] == [best] and entry["weights"] == {best: 1}
        assert entry["expected_to_beat_single"] is False
        assert entry["dev_score"] == sel["best_single"]["score"]
        assert entry["reason"].startswith("the best single candidate is submitted: the ensemble is not expected "
                                          "to beat the best single candidate: held-out gain +0.0000")
        assert entry["selected"]["members"] == sel["members"] and len(sel["members"]) == 2 and entry["settings"] == {}
        assert {k: entry["interval"][k] for k in ("level", "folds", "repeats", "df", "estimate")} == {
            "level": 0.95, "folds": 5, "repeats": 2, "df": 4, "estimate": 0.0}
        assert "Nadeau" in entry["interval"]["method"]
        assert set(entry["prediction_sha256"]) == {best}
    out = tmp_path / "out"
    workflow.predict(twins, SAMPLE, out, "auto")
    assert score_dir(out, SAMPLE) == {t: e["dev_score"] for t, e in doc["tasks"].items()}


def test_an_ensemble_that_is_the_best_single_candidate_is_kept_as_it_is(twins):
    report = workflow.select(twins, SAMPLE, name="one", system="auto", mode="caruana")   # one twin, weight 1
    for task, entry in twins.load_ensemble("one")["tasks"].items():
        assert entry["members"] == [report.tasks[task]["best_single"]["id"]] and entry["system"] == "ensemble"
        assert entry["reason"] == "the ensemble is submitted: the ensemble is the best single candidate itself"
        assert entry["settings"] == {"steps": 50}


def test_mode_auto_saves_the_single_model_where_nothing_beats_it(twins, tmp_path):
    report = workflow.select(twins, SAMPLE, name="auto-twins", bags=2, steps=5)     # the default: mode auto
    doc = twins.load_ensemble("auto-twins")
    assert doc["mode"] == "auto" and report.mode == "auto"
    for task, entry in doc["tasks"].items():
        sel = report.tasks[task]
        best = sel["best_single"]["id"]
        assert sel["chosen"] == "single" and entry["chosen"] == "single" and entry["mode"] == "greedy"
        assert entry["system"] == "best single" and entry["members"] == [best] and entry["weights"] == {best: 1}
        assert {s: v["estimate"] for s, v in entry["systems"].items()} == {
            "single": 0.0, "greedy": 0.0, "greedy-strict": 0.0, "caruana": 0.0, "bagged": 0.0}
        assert entry["reason"].startswith("the best single candidate is submitted: auto chose single: held-out 0 "
                                          "against greedy 0, greedy-strict 0, caruana 0, bagged 0 (tie with")
        assert "nested cross-fit" in entry["reason"] and entry["interval"]["estimate"] == 0.0
    assert report.summary[-1]["system"] == "auto: " + ", ".join(f"{t} single" for t in report.tasks)
    out = tmp_path / "out"
    workflow.predict(twins, SAMPLE, out, "auto-twins")
    assert score_dir(out, SAMPLE) == {t: e["dev_score"] for t, e in doc["tasks"].items()}


def test_ensemble_system_keeps_the_ensemble_and_says_why(twins):
    report = workflow.select(twins, SAMPLE, name="kept", system="ensemble", mode="greedy")
    for task, entry in twins.load_ensemble("kept")["tasks"].items():
        assert entry["system"] == "ensemble" and entry["members"] == report.tasks[task]["members"]
        assert entry["reason"].startswith("the ensemble is submitted (--system ensemble, select's default): not expected to beat")
        assert entry["settings"] == {}


def test_an_unknown_system_is_an_error(twins):
    with pytest.raises(EnsembleError, match="expected one of ensemble, auto"):
        workflow.select(twins, SAMPLE, system="best")


@pytest.mark.parametrize("weight", [0, -1, True, float("inf"), float("nan"), "abc"])
def test_a_hand_edited_weight_is_refused_where_the_document_is_read(weight, tmp_path):
    doc = {"name": "e", "tasks": {"sts": {"members": ["b", "a"], "weights": {"a": 1, "b": weight}}}}
    with pytest.raises(EnsembleError, match=r"e.json: tasks.sts.weights.b: expected a (finite )?number"):
        check_ensemble_doc(tmp_path / "e.json", doc)


def test_members_come_back_in_selection_order_with_their_weights():
    doc = {"name": "e", "tasks": {"sts": {"members": ["b", "a"], "weights": {"a": 1, "b": 0.25}}}}
    assert list(members_in_order(doc, "sts").items()) == [("b", 0.25), ("a", 1)]
